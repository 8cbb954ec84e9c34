"""Verified resume and the run-directory fence in the trainer: which checkpoint ``--resume
latest`` loads when the newest is unusable (``olmo.train.resume``), and a trainer of an older
attempt refusing to save once a newer attempt claimed the run directory
(``olmo.train.fencing``). The parts are tested without DeepSpeed; one real run covers both."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from olmo.checkpoints import fence, layout
from olmo.checkpoints.fence import Claim, FencedError
from olmo.checkpoints.paths import ATTEMPT_MARKER, CONFIG_FILE, DEEPSPEED_TAG, TRAINER_STATE
from olmo.train import exit_codes
from olmo.train.callbacks import StepEnd
from olmo.train.callbacks.checkpointer import Checkpointer
from olmo.train.checkpointing import TrainerState
from olmo.train.fencing import RunDirFence
from olmo.train.preemption import Preemption
from olmo.train.resume import NoUsableCheckpoint, candidates, load_first_usable

from .callbacks.test_checkpointer import FakeEngine, Listener
from .conftest import losses, run_trainer, small_config, train_config


def fake_checkpoint(run, step: int):
    temp = layout.prepare_temp_dir(run, step)
    (temp / DEEPSPEED_TAG).mkdir()
    (temp / DEEPSPEED_TAG / "shard.pt").write_bytes(b"x" * 100)
    (temp / TRAINER_STATE).write_text(json.dumps({"step": step}))
    (temp / CONFIG_FILE).write_text("{}\n")
    return layout.finalize(run, temp, step=step, tokens=step)


def test_resume_latest_falls_back_past_a_truncated_and_an_unloadable_checkpoint(tmp_path):
    two, four, six = (fake_checkpoint(tmp_path, s) for s in (2, 4, 6))
    (six / DEEPSPEED_TAG / "shard.pt").write_bytes(b"x" * 10)  # truncated after COMPLETE
    tried, fallback = candidates(tmp_path, "latest")
    assert tried == [six, four, two] and fallback

    def load(checkpoint):
        if checkpoint == four:
            raise RuntimeError("bad pickle")
        return TrainerState.read(checkpoint)

    resumed = load_first_usable(tried, load, fallback=fallback)
    assert resumed.checkpoint == two and resumed.loaded.step == 2
    assert [s.path for s in resumed.skipped] == [six, four]
    assert "has 10 bytes, COMPLETE recorded 100" in resumed.skipped[0].reason
    assert "loading failed: RuntimeError: bad pickle" in resumed.skipped[1].reason


def test_no_usable_checkpoint_fails_listing_everything_tried(tmp_path):
    two, four = fake_checkpoint(tmp_path, 2), fake_checkpoint(tmp_path, 4)
    (two / TRAINER_STATE).write_text("{")
    (four / CONFIG_FILE).unlink()
    tried, fallback = candidates(tmp_path, "latest")
    with pytest.raises(NoUsableCheckpoint) as error:
        load_first_usable(tried, TrainerState.read, fallback=fallback)
    assert str(four) in str(error.value) and str(two) in str(error.value)


def test_an_explicit_checkpoint_is_never_swapped_for_another(tmp_path):
    fake_checkpoint(tmp_path, 2)
    four = fake_checkpoint(tmp_path, 4)
    (four / DEEPSPEED_TAG / "shard.pt").unlink()
    tried, fallback = candidates(tmp_path, str(four))
    with pytest.raises(NoUsableCheckpoint, match=r"shard.pt \(listed in COMPLETE\) is missing"):
        load_first_usable(tried, TrainerState.read, fallback=fallback)


def fenced_checkpointer(tmp_path, dist, engine=None):
    config = train_config(tmp_path, max_steps=8, **{"checkpoint.save_interval": 2})
    run = tmp_path / "run"
    run.mkdir()
    state, listener = TrainerState(world_size=1), Listener()
    run_fence = RunDirFence(run, dist, Claim("uid", 1))
    run_fence.claim()
    ckpt = Checkpointer(
        config, run, engine or FakeEngine(), state, dist, Preemption(dist.device), listener,
        run_fence,
    )  # fmt: skip
    return ckpt, state, run


def step_to(ckpt, state, step):
    while state.step < step:
        state.step += 1
        ckpt.on_step_end(StepEnd(state.step, {}, 0.1, preempted=False))


def test_an_older_attempt_refuses_to_save_once_a_newer_one_claimed(tmp_path, dist):
    ckpt, state, run = fenced_checkpointer(tmp_path, dist)
    step_to(ckpt, state, 2)
    fence.claim(run, Claim("uid", 2))  # the operator started attempt 2; it claimed the dir
    with pytest.raises(FencedError, match=r"refusing to save step 4: .* newer attempt"):
        step_to(ckpt, state, 4)
    assert [c.step for c in layout.list_checkpoints(run)] == [2]
    assert layout.list_temp_dirs(run) == []  # nothing written, nothing removed


class ClaimedWhileSaving(FakeEngine):
    """A newer attempt claims the run directory while this one writes its shards."""

    def save_checkpoint(self, path: str, tag: str, save_latest: bool) -> None:
        super().save_checkpoint(path, tag, save_latest)
        fence.claim(Path(path).parent.parent, Claim("uid", 2))  # RUN_DIR


def test_a_claim_during_a_save_stops_its_publication(tmp_path, dist):
    ckpt, state, run = fenced_checkpointer(tmp_path, dist, ClaimedWhileSaving())
    with pytest.raises(FencedError, match="refusing to publish step 2"):
        step_to(ckpt, state, 2)
    assert layout.list_checkpoints(run) == []


def test_the_cli_exits_with_the_fenced_code(tmp_path, monkeypatch, capsys):
    import olmo.train.distributed
    import olmo.train.trainer
    from olmo.train.cli import main

    def fenced(*args, **kwargs):
        raise FencedError("a newer attempt owns the run directory")

    one_process = SimpleNamespace(is_main=True, rank=0)
    monkeypatch.setattr(olmo.train.distributed, "init_distributed", lambda: one_process)
    monkeypatch.setattr(olmo.train.trainer, "Trainer", fenced)
    config = small_config(tmp_path, tmp_path / "no-data")
    assert main(["--config", str(config), "--run-dir", str(tmp_path / "run")]) == 3
    assert exit_codes.FENCED == 3 and "newer attempt owns" in capsys.readouterr().err


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path, dataset, status_server):
    """End to end, as the operator starts it: the attempt claims the run dir, resumes from the
    previous checkpoint (exactly: same losses), reports what it skipped, and saves the skipped
    step again over the truncated one."""
    config = small_config(tmp_path, dataset, **{"checkpoint.save_interval": 2})
    run = tmp_path / "run"
    run_trainer(config, run, 1, "--set", "stop_at=4")
    first = losses(run)
    four = layout.final_dir(run, 4)
    shard = max((four / DEEPSPEED_TAG).rglob("*.pt"), key=lambda p: p.stat().st_size)
    shard.write_bytes(shard.read_bytes()[:100])
    env = {
        "OLMOJOB_NAME": "tiny", "OLMOJOB_NAMESPACE": "default", "OLMOJOB_ATTEMPT": "2",
        "OLMOJOB_UID": "uid-1", "OLMO_K8S_API_URL": status_server.url,
        "OLMO_PROGRESS_INTERVAL_SECONDS": "0",
    }  # fmt: skip
    result = run_trainer(config, run, 1, "--resume", "latest", "--set", "stop_at=4", env=env)
    assert "skipping checkpoint" in result.stderr and "truncated" in result.stderr
    assert "resumed from" in result.stderr and "step000002" in result.stderr
    assert losses(run) == first  # steps 3 and 4 again, from step 2's exact state
    assert layout.quick_check_problem(four) is None  # saved again, replacing the truncated one
    assert fence.read_marker(run) == Claim("uid-1", 2) and (run / ATTEMPT_MARKER).exists()
    report = [p["resume"] for p in status_server.progress() if "resume" in p][-1]
    assert report["step"] == 2 and report["path"] == str(layout.final_dir(run, 2))
    assert [s["path"] for s in report["skipped"]] == [str(four)]
    assert "bytes" in report["skipped"][0]["reason"]
