"""Hang detection: a running attempt that makes no training progress is ended and restarted.

A distributed job whose rank stops (a wedged GPU, a stuck NCCL call, a process stopped by a
debugger, a dead NIC) does not fail: every other rank waits in its next collective, the pods stay
Running and the GPUs stay paid for. The operator watches what the trainer (rank 0) reports: once
the attempt has reported its first step, the step or the trainer's state (``training``,
``saving``, ``evaluating``) must change at least every ``hangTimeoutSeconds``
(``status.progress.activityAt``, stamped by the operator's own clock when it sees a change).
When it does not, the attempt ends with reason ``Hang``: the gang is deleted and the next
attempt resumes from the latest complete checkpoint. A hang is counted in
``status.restarts.hangs`` and, being a fault, as a failure (``maxFailures``, backoff).

Before the first step the startup timeout applies instead (loading a large checkpoint, compiling).

The timeout is ``spec.hangTimeoutSeconds`` or, when absent, :func:`derived_timeout` of the
observed step and save times. The trainer's collective timeout is set from the same spec value
(plus ``contract.COLLECTIVE_TIMEOUT_MARGIN_SECONDS``) so that, should the operator be away, a
rank blocked in a collective ends itself shortly after the operator would have.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.failures import Cause, Failure
from olmo_operator.lifecycle.failure_policy import HANG, end_attempt, progress_record
from olmo_operator.lifecycle.plan import Plan, parse_time
from olmo_operator.progress import ACTIVITY_AT

DERIVED_FLOOR_SECONDS = 600.0
"""The derived timeout is never shorter than this (slow steps, long first evaluations)."""
DERIVED_STEPS = 20
"""…and covers this many observed step times."""
DERIVED_SAVES = 3
"""…and this many of the latest save's blocking time."""


def derived_timeout(step_seconds: float | None, save_seconds: float | None) -> float:
    """The hang timeout when the spec gives none: the floor, or 20 steps, or three saves."""
    return max(
        DERIVED_FLOOR_SECONDS,
        DERIVED_STEPS * (step_seconds or 0.0),
        DERIVED_SAVES * (save_seconds or 0.0),
    )


def hang_timeout(plan: Plan) -> float:
    """The hang timeout of the current attempt (seconds)."""
    if plan.spec.hang_timeout_seconds is not None:
        return float(plan.spec.hang_timeout_seconds)
    throughput = plan.get("throughput") or {}
    return derived_timeout(throughput.get("stepSeconds"), plan.get("lastSaveSeconds"))


def check_hang(
    plan: Plan, attempt: int, current: Mapping[str, Any], pods: list[Mapping[str, Any]]
) -> bool:
    """End attempt ``attempt`` when its trainer made no progress within the hang timeout. True
    when it did."""
    record = progress_record(plan)
    if record.get(c.PROGRESS_ATTEMPT) != attempt or record.get(c.PROGRESS_STEP) is None:
        return False  # not armed before the attempt's first step
    since = parse_time(record.get(ACTIVITY_AT))
    if since is None:
        return False
    timeout = hang_timeout(plan)
    idle = (plan.now - since).total_seconds()
    if idle < timeout:
        return False
    step = record.get(c.PROGRESS_STEP)
    state = record.get(c.PROGRESS_STATE) or "training"
    source = "hangTimeoutSeconds" if plan.spec.hang_timeout_seconds is not None else "derived"
    message = (
        f"no training progress for {idle:.0f}s (hang timeout {timeout:.0f}s, {source}): "
        f"the trainer stayed at step {step} ({state}) since {record.get(ACTIVITY_AT)}"
    )
    plan.event("Warning", HANG, f"attempt {attempt}: {message}; restarting the gang")
    end_attempt(
        plan, attempt, current, pods, failure=Failure(Cause.FAILURE, HANG, message), settle=False
    )
    return True
