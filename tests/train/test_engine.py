"""The engine's configuration: DeepSpeed's batch settings follow the schedule's first batch,
ZeRO-3 with bf16 as configured, and OLMo's weight-decay groups. (Building and resuming the
engine for real is tests/train/test_trainer.py.)"""

from __future__ import annotations

import pytest

from olmo.model.transformer import OLMo
from olmo.train.engine import deepspeed_config, param_groups

from .conftest import train_config


@pytest.mark.parametrize(
    ("extra", "world", "micro", "accumulation"),
    [
        ({}, 1, 2, 4),  # 8 instances: 4 micro-batches of 2
        ({}, 2, 2, 2),
        ({"batch.micro_batch_size": 3}, 2, 2, 2),  # 4 per rank: 3 does not divide it
        ({"batch.warmup_start_size": 2, "batch.warmup_double_every_tokens": 256}, 2, 1, 1),
    ],
)
def test_batch_settings_follow_the_first_batch(tmp_path, extra, world, micro, accumulation):
    ds = deepspeed_config(train_config(tmp_path, **extra), world)
    assert ds["train_micro_batch_size_per_gpu"] == micro
    assert ds["gradient_accumulation_steps"] == accumulation


def test_zero3_bf16_and_clipping_from_the_config(tmp_path):
    ds = deepspeed_config(train_config(tmp_path, **{"grad_clip.max_norm": 0.5}), 1)
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["bf16"] == {"enabled": True} and ds["gradient_clipping"] == 0.5
    assert deepspeed_config(train_config(tmp_path, precision="fp32"), 1)["bf16"] == {
        "enabled": False
    }


def test_no_weight_decay_on_the_embedding(tmp_path):
    config = train_config(tmp_path)
    model = OLMo(config.model)
    decay, no_decay = param_groups(model, config.optimizer)
    assert no_decay["weight_decay"] == 0.0
    assert len(no_decay["params"]) == 1 and no_decay["params"][0] is model.embed.weight
    assert (
        decay["weight_decay"] == 0.1 and len(decay["params"]) == len(list(model.parameters())) - 1
    )
    config = train_config(tmp_path, **{"optimizer.decay_embeddings": True})
    (everything,) = param_groups(model, config.optimizer)
    assert len(everything["params"]) == len(list(model.parameters()))
