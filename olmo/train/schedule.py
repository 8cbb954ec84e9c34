"""Step-indexed schedules: learning rate, gradient-clipping threshold and global batch size.

All are pure functions of the optimizer step (0-based: the number of steps already taken), so
that a resumed run recomputes exactly the values an uninterrupted run would have used, and so
that ``inspect-batch`` can rebuild any batch offline. The batch-size warmup's doubling is
computed here only (``_warmup_size``); the trainer's checks, its DeepSpeed config, its steps and
``inspect-batch`` all ask these functions.
"""

from __future__ import annotations

import math

from olmo.train.config import BatchConfig, GradClipConfig, SchedulerConfig

__all__ = [
    "batch_size_at",
    "batch_sizes",
    "grad_clip_at",
    "instances_before",
    "lr_at",
    "micro_batches",
]


def lr_at(step: int, peak_lr: float, scheduler: SchedulerConfig, max_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Linear warmup from ``warmup_start_factor × peak`` to ``peak`` over ``warmup_steps``; then
    linear, cosine or inverse-sqrt decay down to ``min_lr_factor × peak`` at
    ``max_steps - anneal_steps``; then, if ``anneal_steps`` > 0, linearly to 0 at ``max_steps``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    s = scheduler
    if step < s.warmup_steps:
        start = s.warmup_start_factor
        return peak_lr * (start + (1.0 - start) * step / s.warmup_steps)
    decay_end = max_steps - s.anneal_steps
    if s.anneal_steps and step >= decay_end:
        remaining = max(0, max_steps - step)
        return _decayed(decay_end, peak_lr, s, decay_end) * remaining / s.anneal_steps
    return _decayed(step, peak_lr, s, decay_end)


def _decayed(step: int, peak: float, s: SchedulerConfig, decay_end: int) -> float:
    floor = s.min_lr_factor * peak
    if s.name == "constant":
        return peak
    if s.name == "inverse_sqrt":
        return max(floor, peak * math.sqrt(max(s.warmup_steps, 1) / max(step, 1)))
    span = decay_end - s.warmup_steps
    progress = 1.0 if span <= 0 else min(1.0, (step - s.warmup_steps) / span)
    if s.name == "linear":
        return peak - (peak - floor) * progress
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def grad_clip_at(step: int, clip: GradClipConfig) -> float:
    """Max global grad norm for ``step``: loosened by ``warmup_factor`` for the first steps."""
    return clip.max_norm * (clip.warmup_factor if step < clip.warmup_steps else 1.0)


def batch_size_at(tokens_seen: int, batch: BatchConfig) -> int:
    """Global batch (instances) after ``tokens_seen`` tokens: the start size doubles every
    ``warmup_double_every_tokens`` tokens, capped at ``global_batch_size``."""
    if batch.warmup_start_size is None or batch.warmup_double_every_tokens is None:
        return batch.global_batch_size
    return _warmup_size(batch, tokens_seen // batch.warmup_double_every_tokens)


def batch_sizes(batch: BatchConfig) -> list[int]:
    """Every global batch size the schedule uses, ascending (the warmup's sizes, then the full
    ``global_batch_size``)."""
    if batch.warmup_start_size is None or batch.warmup_double_every_tokens is None:
        return [batch.global_batch_size]
    sizes = [_warmup_size(batch, 0)]
    while sizes[-1] < batch.global_batch_size:
        sizes.append(_warmup_size(batch, len(sizes)))
    return sizes


def _warmup_size(batch: BatchConfig, doublings: int) -> int:
    """The warmup's start size doubled ``doublings`` times, capped at ``global_batch_size``."""
    assert batch.warmup_start_size is not None
    if doublings >= 64:
        return batch.global_batch_size
    return min(batch.global_batch_size, batch.warmup_start_size << doublings)


def micro_batches(global_batch: int, world_size: int, requested: int) -> tuple[int, int]:
    """How each rank runs its share of a global batch: (micro-batch size, micro-batches). The
    micro-batch is the largest size ≤ ``requested`` that divides the rank's share evenly."""
    per_rank = global_batch // world_size
    share = max(per_rank, 1)
    micro = next((n for n in range(min(share, requested), 0, -1) if share % n == 0), 1)
    return micro, per_rank // micro


def instances_before(step: int, batch: BatchConfig, seq_len: int) -> int:
    """Instances consumed by steps ``0 .. step-1`` (the global position where ``step`` starts)."""
    if batch.warmup_start_size is None:
        return step * batch.global_batch_size
    position = 0
    for taken in range(step):
        size = batch_size_at(position * seq_len, batch)
        if size == batch.global_batch_size:  # warmup over: the rest is arithmetic
            return position + (step - taken) * size
        position += size
    return position
