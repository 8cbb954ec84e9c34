"""Stuck starts: an attempt whose pods cannot start fails after ``startupTimeoutSeconds``.

A pod waiting for an image that cannot be pulled (``ImagePullBackOff``, ``ErrImagePull``,
``InvalidImageName``), for config its containers cannot get (``CreateContainerConfigError``,
``CreateContainerError``: a missing Secret or ConfigMap key) or for a node
(``PodScheduled=False``, reason ``Unschedulable``) never fails by itself: the Job stays active
and the OLMoJob would show Running forever. While such pods wait, the status message says what
they wait on and until when; past ``spec.startupTimeoutSeconds`` the attempt ends as a failure
with the pod's reason (counted against ``maxFailures``, with backoff, by
:func:`~olmo_operator.lifecycle.failure_policy.end_attempt`).

The clock starts at the latest of the pod's and the Job's ``creationTimestamp`` and the Job's
``status.startTime`` (which the Job controller sets when Kueue admits a suspended Job), so no
extra status is kept and a Job waiting for Kueue admission never times out (its pods do not
exist yet). The default (30 minutes) leaves time for a GPU node pool to scale up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.failures import Cause, Failure
from olmo_operator.lifecycle.failure_policy import end_attempt
from olmo_operator.lifecycle.observed import deleting, name_of, pod_done
from olmo_operator.lifecycle.plan import Plan, now_iso, parse_time

STUCK_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
"""Container ``state.waiting.reason`` values that do not resolve by waiting alone."""

UNSCHEDULABLE = "Unschedulable"
WAITING_PREFIX = "waiting to start"
"""Marks the status message of an attempt whose pods wait (see :func:`waiting_message`)."""


@dataclasses.dataclass(frozen=True)
class Waiting:
    """One pod that has not started, and why."""

    pod: str
    reason: str
    message: str
    since: dt.datetime | None


def waiting_on(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when ``pod`` is stuck before starting, else None."""
    if pod_done(pod) or deleting(pod):
        return None
    status = pod.get("status") or {}
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            return waiting["reason"], str(waiting.get("message") or "")
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == UNSCHEDULABLE
        ):
            return UNSCHEDULABLE, str(cond.get("message") or "")
    return None


def _started(pod: Mapping[str, Any], job: Mapping[str, Any] | None) -> dt.datetime | None:
    times = [
        parse_time((pod.get("metadata") or {}).get("creationTimestamp")),
        parse_time(((job or {}).get("metadata") or {}).get("creationTimestamp")),
        parse_time(((job or {}).get("status") or {}).get("startTime")),
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def waiting_pods(pods: Iterable[Mapping[str, Any]], job: Mapping[str, Any] | None) -> list[Waiting]:
    out = []
    for pod in pods:
        stuck = waiting_on(pod)
        if stuck is not None:
            out.append(Waiting(name_of(pod), stuck[0], stuck[1], _started(pod, job)))
    return out


def waiting_message(attempt: int, waiting: list[Waiting], deadline: dt.datetime | None) -> str:
    """The status message while pods wait: which, on what, and when the attempt fails."""
    shown = "; ".join(
        f"{w.pod}: {w.reason}" + (f" ({_short(w.message)})" if w.message else "")
        for w in waiting[:3]
    )
    more = f"; and {len(waiting) - 3} more" if len(waiting) > 3 else ""
    until = f"; the attempt fails at {now_iso(deadline)}" if deadline is not None else ""
    return (
        f"attempt {attempt} {WAITING_PREFIX}: {len(waiting)} pod(s) waiting: {shown}{more}"
        f"{until} (startupTimeoutSeconds)"
    )


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_startup(
    plan: Plan, attempt: int, current: Mapping[str, Any], pods: list[Mapping[str, Any]]
) -> bool:
    """Attempt ``attempt`` whose Job runs: True when some of its pods are stuck (the plan then
    says so, or ends the attempt past the timeout); False when none is."""
    waiting = waiting_pods(pods, current)
    if not waiting:
        return False
    timeout = dt.timedelta(seconds=plan.spec.startup_timeout_seconds)
    deadlines = [(w.since + timeout, w) for w in waiting if w.since is not None]
    deadline = min((d for d, _ in deadlines), default=None)
    expired = [w for d, w in deadlines if plan.now >= d]
    if expired:
        first = expired[0]
        seconds = plan.spec.startup_timeout_seconds
        detail = f": {_short(first.message)}" if first.message else ""
        failure = Failure(
            Cause.FAILURE,
            first.reason,
            f"pod {first.pod} did not start within startupTimeoutSeconds ({seconds}s): "
            f"{first.reason}{detail}",
            first.pod,
        )
        end_attempt(plan, attempt, current, pods, failure=failure)
        if plan.phase == c.FAILED:
            # Pods that never started have no logs to keep, but they hold (or wait for) nodes.
            plan.remove(plan.kids.of_attempt(attempt))
        return True
    message = waiting_message(attempt, waiting, deadline)
    if plan.get("message") != message or plan.phase != c.RUNNING:
        plan.to_phase(c.RUNNING, message)
    return True


def is_waiting_message(message: str, attempt: int) -> bool:
    return message.startswith(f"attempt {attempt} {WAITING_PREFIX}")
