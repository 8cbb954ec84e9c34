"""In-loop downstream tasks: which tokenizer they use (or the config error when none is known),
and that they run every eval.interval steps with their metrics logged."""

from __future__ import annotations

import logging

import pytest

import olmo.eval
from olmo.train.callbacks import StepEnd
from olmo.train.callbacks.downstream import DownstreamEval, eval_tokenizer
from olmo.train.metrics import MetricsLogger, read_metrics

from ...eval.conftest import train_bpe
from ..conftest import train_config


def test_no_tokenizer_known_is_a_config_error(tmp_path, dataset):
    config = train_config(tmp_path, dataset, **{"eval.tasks": ["piqa"]})
    with pytest.raises(ValueError, match="no tokenizer is known"):
        eval_tokenizer(config)


def test_the_tokenizer_data_prep_wrote_next_to_the_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    train_bpe().save(str(data / "tokenizer.json"))
    config = train_config(tmp_path, data, **{"eval.tasks": ["piqa"]})
    tokenizer = eval_tokenizer(config)
    assert tokenizer.encode("hello world")


class FakeEngine:
    module = object()

    def __init__(self):
        self.train_calls = 0

    def train(self):
        self.train_calls += 1


def test_runs_every_interval_and_logs(tmp_path, monkeypatch, caplog, dist):
    calls = []

    def in_loop(model, tokenizer, **kwargs):
        calls.append(kwargs)
        return {"eval/piqa/acc_none": 0.5, "eval/piqa/headline": 0.5}

    monkeypatch.setattr(olmo.eval, "in_loop", in_loop)
    config = train_config(tmp_path, **{"eval.interval": 2, "eval.tasks": ["piqa"], "eval.limit": 4})
    engine = FakeEngine()
    logger = MetricsLogger(tmp_path, config, 0, enabled=True)
    callback = DownstreamEval("tokenizer", engine, logger, config, dist)
    with caplog.at_level(logging.INFO, logger="olmo.train"):
        for step in range(1, 5):
            callback.on_step_end(StepEnd(step, {}, 0.1, preempted=False))
    assert [m["step"] for m in read_metrics(tmp_path)] == [2, 4]
    assert read_metrics(tmp_path)[0]["eval/piqa/headline"] == 0.5
    assert calls[0] == {"tasks": ["piqa"], "limit": 4, "batch_size": 16, "device": dist.device,
                        "rank": 0, "world_size": 1}  # fmt: skip
    assert engine.train_calls == 2
    assert "step 4 downstream (0s): piqa 50.0" in caplog.text
