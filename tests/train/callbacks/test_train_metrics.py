"""The training metrics: which steps are written, what is added to the step's own numbers
(throughput, MFU, memory, ETA, in this order), the log line, and closing the logger."""

from __future__ import annotations

import logging

import pytest
import torch

from olmo.train.callbacks import StepEnd
from olmo.train.callbacks.train_metrics import TrainMetrics
from olmo.train.distributed import DistInfo
from olmo.train.metrics import MetricsLogger, read_metrics

from ..conftest import SEQ_LEN, train_config

CPU = DistInfo(rank=0, local_rank=0, world_size=2, device=torch.device("cpu"), backend="gloo")


def step_metrics(step: int) -> dict:
    return {
        "step": step,
        "loss": 5.0 - step / 10,
        "lr": 1e-3,
        "grad_norm": 0.5,
        "batch_instances": 8,
    }


def run_steps(callback: TrainMetrics, count: int, seconds: float = 0.5) -> None:
    for step in range(1, count + 1):
        callback.on_step_end(StepEnd(step, step_metrics(step), seconds, preempted=False))


def test_writes_every_log_interval_and_the_last_step(tmp_path):
    config = train_config(tmp_path, max_steps=5, **{"logging.log_interval": 2})
    logger = MetricsLogger(tmp_path, config, 0, enabled=True)
    run_steps(TrainMetrics(logger, config, CPU), 5)
    assert [m["step"] for m in read_metrics(tmp_path)] == [2, 4, 5]


def test_adds_throughput_and_eta_after_the_step_numbers(tmp_path):
    config = train_config(tmp_path, max_steps=4)
    logger = MetricsLogger(tmp_path, config, 0, enabled=True)
    run_steps(TrainMetrics(logger, config, CPU), 2, seconds=0.5)
    last = read_metrics(tmp_path)[-1]
    assert list(last) == [*step_metrics(2), "tokens_per_s", "tokens_per_s_per_device",
                          "step_seconds", "memory_gib", "eta_seconds"]  # fmt: skip
    assert last["tokens_per_s"] == 8 * SEQ_LEN / 0.5
    assert last["tokens_per_s_per_device"] == last["tokens_per_s"] / 2
    assert last["step_seconds"] == 0.5
    assert last["eta_seconds"] == 2 * 0.5  # two steps left at the mean step time
    assert last["memory_gib"] > 0


def test_mfu_from_the_configured_peak(tmp_path):
    config = train_config(tmp_path, **{"logging.peak_flops_per_device": 1e9})
    callback = TrainMetrics(MetricsLogger(tmp_path, config, 0, enabled=True), config, CPU)
    out = callback.throughput(batch=8, seconds=1.0)
    per_device = 8 * SEQ_LEN / 2
    assert out["mfu"] == pytest.approx(per_device * callback.flops_per_token / 1e9, abs=1e-4)


def test_logs_one_line_per_written_step(tmp_path, caplog):
    config = train_config(tmp_path, max_steps=2)
    logger = MetricsLogger(tmp_path, config, 0, enabled=True)
    with caplog.at_level(logging.INFO, logger="olmo.train"):
        run_steps(TrainMetrics(logger, config, CPU), 2)
    assert "step 2/2 loss 4.8000 lr 0.001 grad_norm 0.500 1024 tok/s eta 0s" in caplog.text


def test_closes_the_logger_at_the_end(tmp_path):
    config = train_config(tmp_path)
    closed = []
    logger = MetricsLogger(tmp_path, config, 0, enabled=True)
    logger.close = lambda: closed.append(True)
    TrainMetrics(logger, config, CPU).on_finish()
    assert closed == [True]
