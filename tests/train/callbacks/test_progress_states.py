"""What the trainer reports besides steps and checkpoints (design of issue 20, section A):
``state``/``stateSince`` on every change and at once, ``saving`` around each save and
``evaluating`` around each evaluation (announced by those callbacks to their peers),
``stepSeconds``/``tokensPerSecond``/``mfu`` over the recent steps, ``saveSeconds`` and the
latest checkpoint's tokens; and the same sequence from a real run started the operator's way."""

from __future__ import annotations

import pytest
import torch

from olmo.train.callbacks import Callbacks, StepEnd
from olmo.train.callbacks.checkpointer import Checkpointer
from olmo.train.callbacks.progress import JobProgress
from olmo.train.callbacks.train_metrics import RECENT_STEPS, TrainMetrics
from olmo.train.callbacks.validation import Validation, open_validation
from olmo.train.checkpointing import TrainerState
from olmo.train.distributed import DistInfo
from olmo.train.metrics import MetricsLogger
from olmo.train.preemption import Preemption

from ..conftest import SEQ_LEN, run_trainer, small_config, train_config
from .test_checkpointer import FakeEngine as SavingEngine
from .test_progress import FakeReporter
from .test_validation import FakeEngine as EvalEngine

CPU = DistInfo(rank=0, local_rank=0, world_size=2, device=torch.device("cpu"), backend="gloo")


def states(reporter: FakeReporter) -> list[tuple[str, bool]]:
    return [(fields["state"], urgent) for fields, urgent in reporter.reports if "state" in fields]


def test_a_state_is_reported_at_once_and_only_when_it_changes():
    reporter = FakeReporter()
    progress = JobProgress(reporter)
    progress.set_state("starting", since="2026-01-01T00:00:00Z")
    progress.set_state("preflight")
    progress.set_state("preflight")
    progress.on_activity("training")
    assert states(reporter) == [("starting", True), ("preflight", True), ("training", True)]
    assert reporter.reports[0][0]["stateSince"] == "2026-01-01T00:00:00Z"
    assert reporter.reports[1][0]["stateSince"].endswith("Z")
    with pytest.raises(ValueError, match="state must be one of"):
        progress.set_state("idle")


def test_a_save_is_announced_and_reports_its_seconds_and_tokens(tmp_path, dist):
    config = train_config(tmp_path, max_steps=4, **{"checkpoint.save_interval": 2})
    reporter = FakeReporter()
    callbacks = Callbacks([JobProgress(reporter)])
    state = TrainerState(world_size=1)
    checkpointer = Checkpointer(
        config, tmp_path / "run", SavingEngine(), state, dist, Preemption(dist.device), callbacks
    )
    callbacks.append(checkpointer)
    for _ in range(2):
        state.step += 1
        state.tokens += 512
        callbacks.on_step_end(StepEnd(state.step, {"tokens": state.tokens}, 0.1, False))
    kinds = [
        fields.get("state") or ("save" if "saveSeconds" in fields else "step")
        for fields, _ in reporter.reports
    ]
    assert kinds == ["step", "step", "saving", "save", "training"]
    save = next(fields for fields, _ in reporter.reports if "saveSeconds" in fields)
    assert save["saveSeconds"] > 0 and "checkpointBlockedSeconds" not in save
    assert save["latestCheckpoint"]["step"] == 2 and save["latestCheckpoint"]["tokens"] == 1024


def test_an_evaluation_is_announced(tmp_path, dist, validation_set):
    config = train_config(
        tmp_path,
        **{"eval.validation_paths": [str(validation_set)], "eval.interval": 2},
    )
    reporter = FakeReporter()
    logger = MetricsLogger(tmp_path, config, 0, enabled=True)
    validation = Validation(open_validation(config), EvalEngine(), logger, config, dist)
    callbacks = Callbacks([JobProgress(reporter), validation])
    for step in (1, 2, 3, 4):
        callbacks.on_step_end(StepEnd(step, {"tokens": step * 512}, 0.1, False))
    assert [s for s, _ in states(reporter)] == ["evaluating", "training"] * 2


def test_throughput_over_the_recent_steps(tmp_path):
    config = train_config(tmp_path, max_steps=100, **{"logging.log_interval": 1000})
    reporter = FakeReporter()
    metrics = TrainMetrics(MetricsLogger(tmp_path, config, 0, enabled=False), config, CPU)
    callbacks = Callbacks([metrics, JobProgress(reporter)])
    batch = {"tokens": 0, "batch_instances": 8, "loss": 1.0, "lr": 1e-3, "grad_norm": 1.0}
    for step in range(1, RECENT_STEPS + 6):
        seconds = 9.0 if step <= 5 else 0.5  # the slow first steps leave the window
        callbacks.on_step_end(StepEnd(step, batch | {"step": step}, seconds, False))
    speed = [fields for fields, _ in reporter.reports if "stepSeconds" in fields]
    assert len(speed) == RECENT_STEPS + 5
    assert speed[0] == {
        "stepSeconds": 9.0,
        "tokensPerSecond": pytest.approx(8 * SEQ_LEN / 9, abs=1e-3),
    }
    assert speed[-1] == {"stepSeconds": 0.5, "tokensPerSecond": 8 * SEQ_LEN / 0.5}
    assert "mfu" not in speed[-1]  # no peak FLOPs known on a CPU


def test_mfu_is_reported_when_the_peak_is_known(tmp_path):
    config = train_config(tmp_path, **{"logging.peak_flops_per_device": 1e9})
    reporter = FakeReporter()
    metrics = TrainMetrics(MetricsLogger(tmp_path, config, 0, enabled=False), config, CPU)
    callbacks = Callbacks([metrics, JobProgress(reporter)])
    batch = {"tokens": 0, "batch_instances": 8, "loss": 1.0, "lr": 1e-3, "grad_norm": 1.0}
    callbacks.on_step_end(StepEnd(1, batch | {"step": 1}, 1.0, False))
    (speed,) = [fields for fields, _ in reporter.reports if "stepSeconds" in fields]
    per_device = 8 * SEQ_LEN / 2
    assert speed["mfu"] == pytest.approx(per_device * metrics.flops_per_token / 1e9, rel=1e-4)
    assert 0 < speed["mfu"] <= 1


def test_an_impossible_mfu_is_left_out():
    """A wrong configured peak (MFU above 1) would make the operator refuse the whole report."""
    from olmo.train.callbacks import Throughput

    reporter = FakeReporter()
    JobProgress(reporter).on_throughput(Throughput(1.0, 100.0, mfu=3.5))
    assert reporter.reports == [({"stepSeconds": 1.0, "tokensPerSecond": 100.0}, False)]


def test_the_entrypoint_and_the_trainer_share_one_reporter(monkeypatch):
    monkeypatch.setenv("OLMOJOB_NAME", "tiny")
    monkeypatch.setenv("OLMOJOB_NAMESPACE", "default")
    monkeypatch.setenv("OLMO_K8S_API_URL", "http://127.0.0.1:9")
    first = JobProgress.from_env(is_main=True)
    assert JobProgress.from_env(is_main=True) is first
    first.on_finish()
    second = JobProgress.from_env(is_main=True)
    assert second is not first
    second.on_finish()


def test_a_run_reports_its_states_throughput_and_saves(tmp_path, dataset, status_server):
    """olmo-train as the operator starts it (with a preflight): starting → preflight → training
    → saving → training …, with the throughput and the save's seconds."""
    config = small_config(
        tmp_path, dataset, max_steps=4, **{"checkpoint.save_interval": 2, "checkpoint.keep_last": 2}
    )
    env = {
        "OLMOJOB_NAME": "tiny", "OLMOJOB_NAMESPACE": "default", "OLMOJOB_ATTEMPT": "1",
        "OLMO_K8S_API_URL": status_server.url, "OLMO_PROGRESS_INTERVAL_SECONDS": "0",
        "OLMO_PREFLIGHT_TIMEOUT_SECONDS": "60", "OLMO_NODE_NAME": "node-a",
    }  # fmt: skip
    run_trainer(config, tmp_path / "run", 1, env=env)
    progress = status_server.progress()
    seen: list[str] = []
    for document in progress:
        if not seen or seen[-1] != document["state"]:
            seen.append(document["state"])
    # Every change goes out at once; the sender may fold a very short state into the next one,
    # so the sequence is checked as an ordered subsequence of what was sent.
    expected = iter(seen)
    wanted = ["starting", "preflight", "training", "saving", "training", "saving", "training"]
    assert all(state in expected for state in wanted), seen
    last = progress[-1]
    assert last["preflight"]["passed"] is True and last["preflight"]["failures"] == []
    assert last["stepSeconds"] > 0 and last["tokensPerSecond"] > 0 and "mfu" not in last
    assert last["saveSeconds"] > 0
    assert last["latestCheckpoint"]["step"] == 4
    assert last["latestCheckpoint"]["tokens"] == 4 * 8 * SEQ_LEN
    assert not (tmp_path / "run" / ".preflight").exists()
