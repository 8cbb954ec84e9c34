"""Failure policy: what an ended attempt costs, and what comes next.

:func:`olmo_operator.failures.classify_failure` says why the attempt ended; this module decides
what that means. A preemption is free (``restarts.preemptions`` + 1, restart at once) and, after
``maxPreemptions`` on a preemptible pool that is not the last, moves the next attempt to the
next node pool. A failure spends the budget (``restarts.failures`` + 1, exponential backoff);
more than ``maxFailures`` fails the OLMoJob, keeping the last attempt's Job and pods for their
logs. A failure with no preemption signal yet is counted only after the settle window
(``Timing.failure_settle_seconds``), so that a reclaimed spot node's signals can still arrive.
Either way the whole gang goes (a torch distributed job cannot lose a rank) and the next attempt
resumes from the latest complete checkpoint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.failures import Cause, Failure, classify_failure
from olmo_operator.lifecycle.action import ActionKind
from olmo_operator.lifecycle.plan import Plan, now_iso, parse_time


def end_attempt(
    plan: Plan,
    attempt: int,
    current: Mapping[str, Any] | None,
    pods: list[Mapping[str, Any]],
    failure: Failure | None = None,
) -> None:
    """The attempt's Job or one of its pods failed: count it, then restart or fail.

    ``failure`` is the verdict when the caller already knows it (an attempt that could not
    start); otherwise the Job and pods are classified."""
    spec = plan.spec
    if failure is None:
        failure = classify_failure(current, pods, plan.observed.nodes)
    if failure.cause is not Cause.PREEMPTION and _settling(plan, attempt, failure):
        return
    plan.failure = failure
    restarts = dict(plan.old.get("restarts") or {})
    failures, preemptions = int(restarts.get("failures", 0)), int(restarts.get("preemptions", 0))
    pool_index = int(plan.get("nodePoolIndex", 0))
    pool_preemptions = int(plan.get("nodePoolPreemptions", 0))

    if failure.cause is Cause.PREEMPTION:
        preemptions += 1
        pool_preemptions += 1
        delay = 0.0
        pool = spec.node_pool(pool_index)
        if (
            pool is not None
            and pool.preemptible
            and pool_preemptions >= pool.max_preemptions
            and pool_index < len(spec.node_pools) - 1
        ):
            nxt = spec.node_pools[pool_index + 1]
            plan.event(
                "Warning",
                "NodePoolFallback",
                f"{pool_preemptions} preemption(s) on node pool {pool.name}: "
                f"moving to node pool {nxt.name}",
            )
            pool_index, pool_preemptions = pool_index + 1, 0
            plan.set(nodePool=nxt.name)
        budget = f"preemption {preemptions}; failures {failures}/{spec.max_failures}"
    else:
        failures += 1
        if failures > spec.max_failures:
            plan.set(restarts={"failures": failures, "preemptions": preemptions})
            plan.event(
                "Warning",
                "AttemptFailed",
                f"attempt {attempt}: {failure.message} "
                f"(failure {failures}, more than maxFailures {spec.max_failures})",
            )
            plan.remove(plan.kids.attempt_services(attempt))
            fail(
                plan,
                f"attempt {attempt} failed: {failure.message}; "
                f"{failures} failures exceed maxFailures {spec.max_failures}",
            )
            return
        delay = plan.timing.backoff(failures)
        budget = f"failure {failures}/{spec.max_failures}; preemptions {preemptions}"

    nxt_attempt = attempt + 1
    when = "now" if delay <= 0 else f"in {delay:g}s"
    plan.event(
        "Warning",
        "Preempted" if failure.cause is Cause.PREEMPTION else "AttemptFailed",
        f"attempt {attempt}: {failure.message}; restarting from the latest checkpoint as "
        f"attempt {nxt_attempt} {when} ({budget})",
    )
    restart_at = plan.now + dt.timedelta(seconds=delay)
    plan.set(
        attempt=nxt_attempt,
        restarts={"failures": failures, "preemptions": preemptions},
        nodePoolIndex=pool_index,
        nodePoolPreemptions=pool_preemptions,
        restartAt=now_iso(restart_at),
        failureSeenAt=None,
        lastRestart={
            "cause": failure.cause.value,
            "reason": failure.reason,
            "message": failure.message,
            "attempt": attempt,
            "time": now_iso(plan.now),
        },
    )
    if not spec.node_pools:
        plan.set(nodePoolIndex=None, nodePoolPreemptions=None)
    plan.to_phase(
        c.RESTARTING,
        f"attempt {attempt} ended ({failure.cause.value.lower()}: {failure.reason}); "
        f"attempt {nxt_attempt} starts {when}",
    )
    plan.condition("Running", False, failure.cause.value, failure.message)
    # Gang restart: the whole attempt goes (Job, pods, Service, config); the next one gets new
    # names, so nothing waits for the old objects' deletion to finish.
    plan.remove(plan.kids.of_attempt(attempt))
    plan.kind = ActionKind.RESTART


def _settling(plan: Plan, attempt: int, failure: Failure) -> bool:
    """Whether a failure of ``attempt`` is still inside its settle window (``Timing``): then
    nothing is counted yet and the attempt is left as it is."""
    settle = plan.timing.failure_settle_seconds
    if settle <= 0:
        return False
    seen = parse_time(plan.old.get("failureSeenAt"))
    if seen is None:
        seen = plan.now
        plan.set(failureSeenAt=now_iso(seen))
    until = seen + dt.timedelta(seconds=settle)
    if plan.now >= until:
        return False
    plan.message = (
        f"attempt {attempt}: {failure.message}; waiting until {now_iso(until)} for preemption "
        "signals before counting it as a failure"
    )
    return True


def fail(plan: Plan, message: str) -> None:
    """Phase Failed (final): the eval worker goes; Jobs and pods stay for their logs."""
    plan.to_phase(c.FAILED, message)
    plan.set(completionTime=now_iso(plan.now), restartAt=None)
    plan.condition("Running", False, "Failed", message)
    plan.condition("Failed", True, "Failed", message)
    if plan.kids.eval is not None:
        plan.remove([plan.kids.eval])
    plan.kind = ActionKind.FAIL
