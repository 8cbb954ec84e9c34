"""Held-out perplexity: every eval.interval steps, over at most validation_instances instances,
with the engine back in training mode afterwards."""

from __future__ import annotations

import math

import pytest
import torch

from olmo.train.callbacks import StepEnd
from olmo.train.callbacks.validation import Validation, open_validation
from olmo.train.metrics import MetricsLogger, read_metrics

from ..conftest import SEQ_LEN, train_config


class FakeEngine:
    """A model whose mean next-token loss is 2.0 on every batch."""

    def __init__(self):
        self.training = True
        self.batches: list[torch.Size] = []

    def __call__(self, ids, labels):
        assert not self.training
        self.batches.append(ids.shape)
        return torch.tensor(2.0)

    def eval(self):
        self.training = False

    def train(self):
        self.training = True


def validation(tmp_path, dist, validation_set, **extra):
    config = train_config(tmp_path, **{"eval.validation_paths": [str(validation_set)], **extra})
    engine = FakeEngine()
    logger = MetricsLogger(tmp_path, config, 0, enabled=True)
    return Validation(open_validation(config), engine, logger, config, dist), engine


def run_steps(callback, count: int) -> None:
    for step in range(1, count + 1):
        callback.on_step_end(StepEnd(step, {}, 0.1, preempted=False))


def test_logs_loss_and_perplexity_every_interval(tmp_path, dist, validation_set):
    callback, engine = validation(
        tmp_path, dist, validation_set,
        **{"eval.interval": 3, "eval.validation_instances": 5, "batch.micro_batch_size": 2},
    )  # fmt: skip
    run_steps(callback, 7)
    logged = read_metrics(tmp_path)
    assert [m["step"] for m in logged] == [3, 6]
    assert logged[0]["eval/val_loss"] == pytest.approx(2.0)
    assert logged[0]["eval/val_perplexity"] == pytest.approx(math.exp(2.0))
    # 5 instances in micro-batches of 2, twice.
    assert engine.batches == [torch.Size([2, SEQ_LEN]), torch.Size([2, SEQ_LEN]),
                              torch.Size([1, SEQ_LEN])] * 2  # fmt: skip
    assert engine.training


def test_no_interval_no_validation(tmp_path, dist, validation_set):
    callback, engine = validation(tmp_path, dist, validation_set, **{"eval.interval": None})
    run_steps(callback, 3)
    assert engine.batches == [] and read_metrics(tmp_path) == []


def test_no_validation_paths_no_dataset(tmp_path):
    assert open_validation(train_config(tmp_path)) is None
