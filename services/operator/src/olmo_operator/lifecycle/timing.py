"""Restart timing: the backoff after failures and after repeated preemptions, the wait for an
old attempt's pods and the settle window of a failure (from the environment in the operator,
explicit in tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from olmo_operator import contract as c


@dataclass(frozen=True)
class Timing:
    """Restart timing (from the environment in the operator, explicit in tests)."""

    backoff_base_seconds: float = 10.0
    backoff_max_seconds: float = 600.0
    termination_wait_seconds: float = 30.0
    """After a restart, wait at most the pods' grace period plus this for the old pods to go."""
    failure_settle_seconds: float = 60.0
    """A failed pod with no preemption signal yet ends its attempt as a failure only this long
    after it was first seen. When a spot node is reclaimed, the other nodes' trainers lose their
    peer and exit 1 at once, before the node turns NotReady or the victim pod gets its
    DisruptionTarget condition (a node is marked NotReady ~40-50 s after it stops answering);
    the window lets those signals arrive, so the attempt counts as the preemption it was."""
    preemption_backoff_base_seconds: float = 30.0
    preemption_backoff_max_seconds: float = 300.0
    """Preemption restarts: the first one since the last attempt that made progress is
    immediate (capacity usually comes back at once: another spot node, the next pool); each
    further one in a row waits base·2^(n-2), capped, so that a pool that keeps reclaiming nodes
    is not hammered every few seconds."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Timing:
        env = os.environ if environ is None else environ
        return cls(
            backoff_base_seconds=_env_float(env, c.ENV_BACKOFF_BASE, 10.0),
            backoff_max_seconds=_env_float(env, c.ENV_BACKOFF_MAX, 600.0),
            termination_wait_seconds=_env_float(env, c.ENV_STOP_WAIT, 30.0),
            failure_settle_seconds=_env_float(env, c.ENV_FAILURE_SETTLE, 60.0),
            preemption_backoff_base_seconds=_env_float(env, c.ENV_PREEMPTION_BACKOFF_BASE, 30.0),
            preemption_backoff_max_seconds=_env_float(env, c.ENV_PREEMPTION_BACKOFF_MAX, 300.0),
        )

    def backoff(self, failures: int) -> float:
        """Seconds before the restart after the ``failures``-th failure: base·2^(n-1), capped."""
        if failures < 1:
            return 0.0
        return min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (failures - 1))

    def preemption_backoff(self, in_a_row: int) -> float:
        """Seconds before the restart after the ``in_a_row``-th consecutive preemption since the
        last attempt that made progress: 0 for the first, then base·2^(n-2), capped. Counting
        only since the last progress keeps a long job preempted weekly off the cap."""
        if in_a_row < 2:
            return 0.0
        return min(
            self.preemption_backoff_max_seconds,
            self.preemption_backoff_base_seconds * 2 ** (in_a_row - 2),
        )


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return value
