"""Schedules against hand-computed values."""

from __future__ import annotations

import math

import pytest

from olmo.train.config import BatchConfig, GradClipConfig, SchedulerConfig
from olmo.train.schedule import (
    batch_size_at,
    batch_sizes,
    grad_clip_at,
    instances_before,
    lr_at,
    micro_batches,
)

PEAK = 4e-4


def test_warmup_starts_at_a_tenth_of_peak_and_is_linear():
    s = SchedulerConfig(name="cosine", warmup_steps=2000)
    assert lr_at(0, PEAK, s, 10000) == pytest.approx(4e-5)
    assert lr_at(1000, PEAK, s, 10000) == pytest.approx(4e-5 + 0.9 * 4e-4 * 0.5)  # 2.2e-4
    assert lr_at(2000, PEAK, s, 10000) == pytest.approx(PEAK)


def test_cosine_decay_to_a_tenth():
    s = SchedulerConfig(name="cosine", warmup_steps=2000)
    # Halfway through decay (step 6000 of 2000..10000): floor + (peak - floor) * 0.5.
    assert lr_at(6000, PEAK, s, 10000) == pytest.approx(4e-5 + 3.6e-4 * 0.5)
    # A quarter: floor + (peak - floor) * 0.5 * (1 + cos(pi/4)).
    quarter = 4e-5 + 3.6e-4 * 0.5 * (1 + math.cos(math.pi / 4))
    assert lr_at(4000, PEAK, s, 10000) == pytest.approx(quarter)
    assert lr_at(10000, PEAK, s, 10000) == pytest.approx(4e-5)


def test_linear_decay_7b_with_final_anneal():
    s = SchedulerConfig(name="linear", warmup_steps=5000, anneal_steps=1000)
    peak, max_steps = 3e-4, 21000  # decay ends at step 20000
    assert lr_at(5000, peak, s, max_steps) == pytest.approx(3e-4)
    assert lr_at(12500, peak, s, max_steps) == pytest.approx(3e-4 - 2.7e-4 * 0.5)  # 1.65e-4
    assert lr_at(20000, peak, s, max_steps) == pytest.approx(3e-5)
    assert lr_at(20500, peak, s, max_steps) == pytest.approx(1.5e-5)  # halfway to 0
    assert lr_at(21000, peak, s, max_steps) == 0.0


def test_inverse_sqrt_and_constant():
    s = SchedulerConfig(name="inverse_sqrt", warmup_steps=100)
    assert lr_at(100, 1.0, s, 10**6) == pytest.approx(1.0)
    assert lr_at(400, 1.0, s, 10**6) == pytest.approx(0.5)
    assert lr_at(10**6 - 1, 1.0, s, 10**6) == pytest.approx(0.1)  # floored at min_lr_factor
    c = SchedulerConfig(name="constant", warmup_steps=10)
    assert lr_at(5, 2.0, c, 100) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert lr_at(50, 2.0, c, 100) == 2.0


def test_grad_clip_loosened_for_first_steps():
    clip = GradClipConfig(max_norm=1.0, warmup_factor=10.0, warmup_steps=1000)
    assert grad_clip_at(0, clip) == 10.0
    assert grad_clip_at(999, clip) == 10.0
    assert grad_clip_at(1000, clip) == 1.0


def test_batch_size_warmup_doubles_every_t_tokens_up_to_cap():
    b = BatchConfig(global_batch_size=8192, warmup_start_size=1024, warmup_double_every_tokens=100)
    assert batch_size_at(0, b) == 1024
    assert batch_size_at(99, b) == 1024
    assert batch_size_at(100, b) == 2048
    assert batch_size_at(250, b) == 4096
    assert batch_size_at(300, b) == 8192
    assert batch_size_at(10**12, b) == 8192


def test_instances_before_follows_the_batch_warmup():
    b = BatchConfig(global_batch_size=8, warmup_start_size=2, warmup_double_every_tokens=40)
    seq = 10  # batch 2 → 20 tokens/step: doubles after 2 steps, then 4 → 40 tokens/step, ...
    sizes, position = [], 0
    for step in range(8):
        assert instances_before(step, b, seq) == position
        size = batch_size_at(position * seq, b)
        sizes.append(size)
        position += size
    assert sizes == [2, 2, 4, 8, 8, 8, 8, 8]
    assert instances_before(1000, b, seq) == 2 + 2 + 4 + 8 * 997


def test_no_warmup_is_constant():
    b = BatchConfig(global_batch_size=16)
    assert batch_size_at(10**9, b) == 16
    assert instances_before(5, b, 2048) == 80


def test_batch_sizes_lists_every_size_the_warmup_passes_through():
    assert batch_sizes(BatchConfig(global_batch_size=16)) == [16]
    b = BatchConfig(global_batch_size=8192, warmup_start_size=1024, warmup_double_every_tokens=100)
    assert batch_sizes(b) == [1024, 2048, 4096, 8192]
    # Not a power-of-two multiple: the last doubling is capped.
    b = BatchConfig(global_batch_size=8, warmup_start_size=3, warmup_double_every_tokens=100)
    assert batch_sizes(b) == [3, 6, 8]
    assert {batch_size_at(t, b) for t in range(0, 1000, 50)} == set(batch_sizes(b))


@pytest.mark.parametrize(
    ("batch", "world", "requested", "expected"),
    [
        (8, 1, 2, (2, 4)),
        (8, 2, 2, (2, 2)),
        (8, 2, 3, (2, 2)),  # the largest size <= 3 that divides the 4 instances of a rank
        (12, 2, 4, (3, 2)),
        (2, 2, 4, (1, 1)),
        (7, 1, 7, (7, 1)),
    ],
)
def test_micro_batches_split_each_rank_s_share_evenly(batch, world, requested, expected):
    assert micro_batches(batch, world, requested) == expected
