"""SIGTERM (node preemption, eviction, drain): finish the current step, then stop with the
"preempted" exit code (DESIGN contract 4). The checkpointer decides whether a save still fits
in what is left of the grace period (``olmo.train.callbacks.checkpointer``)."""

from __future__ import annotations

import logging
import os
import signal
import time

import torch

from olmo.train.distributed import any_rank

log = logging.getLogger("olmo.train")

GRACE_ENV = "OLMO_TERMINATION_GRACE_SECONDS"
"""Overrides ``checkpoint.sigterm_grace_seconds`` (the pod's terminationGracePeriodSeconds)."""


class Preemption:
    """Within ``with``: SIGTERM is recorded instead of killing the process."""

    def __init__(self, device: torch.device):
        self.device = device
        self.received_at: float | None = None
        """``time.monotonic()`` when this process got SIGTERM."""
        self._previous = None

    def __enter__(self) -> Preemption:
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous)

    def _on_sigterm(self, signum, frame) -> None:
        if self.received_at is None:
            self.received_at = time.monotonic()
            log.warning("SIGTERM received: finishing the current step")

    def requested(self) -> bool:
        """Whether any rank got SIGTERM (a collective: every rank calls it after each step)."""
        return any_rank(self.received_at is not None, self.device)

    def seconds_left(self, configured_grace: float) -> float:
        """Seconds until SIGKILL, counting from this process's SIGTERM (the whole grace period
        when this process got none)."""
        value = os.environ.get(GRACE_ENV)
        grace = float(value) if value else configured_grace
        return grace - (time.monotonic() - (self.received_at or time.monotonic()))
