"""The training loop: take optimizer steps until ``max_steps``, ``stop_at`` or SIGTERM, and
tell the callbacks after each one. Saving, logging, evaluation and progress reports are
callbacks (``olmo.train.callbacks``) that decide their own timing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from olmo.train import exit_codes
from olmo.train.callbacks import Callback, StepEnd
from olmo.train.checkpointing import TrainerState
from olmo.train.preemption import Preemption

log = logging.getLogger("olmo.train")


def run(
    step: Callable[[], dict[str, Any]],
    state: TrainerState,
    callbacks: Callback,
    preemption: Preemption,
    *,
    max_steps: int,
    stop_at: int | None,
) -> int:
    """Train; returns the exit code (``olmo.train.exit_codes``). ``step`` advances ``state``."""
    try:
        with preemption:
            return _steps(step, state, callbacks, preemption, max_steps, stop_at)
    finally:
        callbacks.on_finish()


def _steps(step, state, callbacks, preemption, max_steps, stop_at) -> int:
    started = time.monotonic()
    while state.step < max_steps:
        t0 = time.monotonic()
        metrics = step()
        end = StepEnd(state.step, metrics, time.monotonic() - t0, preemption.requested())
        callbacks.on_step_end(end)
        if end.preempted:
            log.warning("stopping after step %d: preempted", end.step)
            return exit_codes.PREEMPTED
        if end.step == stop_at:
            log.info("stopping at step %d (stop_at); resume with --resume latest", end.step)
            return exit_codes.SUCCESS
    log.info("done: %d steps in %.0fs", state.step, time.monotonic() - started)
    return exit_codes.SUCCESS
