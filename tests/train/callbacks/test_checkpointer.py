"""The checkpointer: when it saves (interval, max_steps, stop_at, SIGTERM within the grace), what
rotation removes after a save, and what the other callbacks hear of it. Real checkpoint folders
(``save_checkpoint``, ``finalize``) around a fake engine."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from olmo.checkpoints import layout
from olmo.checkpoints.paths import DEEPSPEED_TAG
from olmo.train.callbacks import Callback, Saved, StepEnd
from olmo.train.callbacks.checkpointer import Checkpointer
from olmo.train.checkpointing import TrainerState
from olmo.train.preemption import GRACE_ENV, Preemption

from ..conftest import train_config


class FakeEngine:
    """Writes one shard where DeepSpeed would write its ZeRO-3 files."""

    def save_checkpoint(self, path: str, tag: str, save_latest: bool) -> None:
        (Path(path) / tag).mkdir(parents=True, exist_ok=True)
        (Path(path) / tag / "rank0.pt").write_bytes(b"weights")


class Listener(Callback):
    def __init__(self):
        self.saved: list[Saved] = []

    def on_save(self, saved: Saved) -> None:
        self.saved.append(saved)


def checkpointer(tmp_path, dist, **extra):
    config = train_config(tmp_path, **extra)
    state = TrainerState(world_size=1)
    listener = Listener()
    preemption = Preemption(dist.device)
    run = tmp_path / "run"
    ckpt = Checkpointer(config, run, FakeEngine(), state, dist, preemption, listener)
    return ckpt, state, listener, run


def steps(ckpt: Checkpointer, state: TrainerState, upto: int, preempted_at: int | None = None):
    while state.step < upto:
        state.step += 1
        state.tokens += 512
        ckpt.on_step_end(StepEnd(state.step, {}, 0.1, preempted=state.step == preempted_at))


def saved_steps(run: Path) -> list[int]:
    return [c.step for c in layout.list_checkpoints(run)]


def test_saves_every_interval_at_stop_at_and_at_the_end(tmp_path, dist):
    ckpt, state, listener, run = checkpointer(
        tmp_path, dist, max_steps=10, stop_at=6,
        **{"checkpoint.save_interval": 4, "checkpoint.rotate": False},
    )  # fmt: skip
    steps(ckpt, state, 10)
    assert saved_steps(run) == [4, 6, 8, 10]
    assert [s.step for s in listener.saved] == [4, 6, 8, 10]
    last = listener.saved[-1]
    assert last.path == layout.final_dir(run, 10) and last.tokens == 10 * 512
    assert layout.is_complete(last.path, verify=True)
    assert (last.path / DEEPSPEED_TAG / "rank0.pt").read_bytes() == b"weights"


def test_rotation_after_each_save_is_reported(tmp_path, dist):
    ckpt, state, listener, run = checkpointer(
        tmp_path, dist, max_steps=6,
        **{"checkpoint.save_interval": 2, "checkpoint.keep_last": 2},
    )  # fmt: skip
    steps(ckpt, state, 6)
    assert saved_steps(run) == [4, 6]
    assert [s.rotated_out for s in listener.saved] == [[], [], [layout.final_dir(run, 2)]]


def test_keep_every_is_part_of_the_policy(tmp_path, dist):
    ckpt, state, _, run = checkpointer(
        tmp_path, dist, max_steps=8,
        **{"checkpoint.save_interval": 2, "checkpoint.keep_last": 1,
           "checkpoint.keep_every": 4},
    )  # fmt: skip
    steps(ckpt, state, 8)
    assert saved_steps(run) == [4, 8]


def test_sigterm_saves_when_the_last_save_fits_in_the_grace_left(tmp_path, dist, monkeypatch):
    monkeypatch.setenv(GRACE_ENV, "30")
    ckpt, state, _, run = checkpointer(tmp_path, dist, max_steps=100)
    ckpt.last_save_seconds = 5.0
    ckpt.preemption.received_at = time.monotonic()
    steps(ckpt, state, 3, preempted_at=3)
    assert saved_steps(run) == [3]


def test_sigterm_does_not_save_when_the_last_save_took_too_long(
    tmp_path, dist, monkeypatch, caplog
):
    monkeypatch.setenv(GRACE_ENV, "30")
    ckpt, state, listener, run = checkpointer(tmp_path, dist, max_steps=100)
    ckpt.last_save_seconds = 29.0
    ckpt.preemption.received_at = time.monotonic() - 2.0  # 28s left
    with caplog.at_level(logging.WARNING, logger="olmo.train"):
        steps(ckpt, state, 3, preempted_at=3)
    assert saved_steps(run) == [] and listener.saved == []
    assert "not saving on SIGTERM: 28.0s left, last save took 29.0s" in caplog.text


def test_sigterm_save_can_be_turned_off(tmp_path, dist):
    ckpt, state, _, run = checkpointer(
        tmp_path, dist, max_steps=100, **{"checkpoint.save_on_sigterm": False}
    )
    steps(ckpt, state, 3, preempted_at=3)
    assert saved_steps(run) == []


@pytest.mark.parametrize("step", [4, 8])
def test_a_sigterm_on_a_save_step_saves_once(tmp_path, dist, step):
    ckpt, state, listener, run = checkpointer(
        tmp_path, dist, max_steps=8, **{"checkpoint.save_interval": 4}
    )
    steps(ckpt, state, step, preempted_at=step)
    assert [s.step for s in listener.saved] == [4, 8][: step // 4]
    assert saved_steps(run)[-1] == step


def test_save_records_how_long_it_took(tmp_path, dist):
    ckpt, state, _, _ = checkpointer(tmp_path, dist)
    state.step = 1
    assert ckpt.last_save_seconds is None
    ckpt.save()
    assert ckpt.last_save_seconds is not None and ckpt.last_save_seconds > 0
