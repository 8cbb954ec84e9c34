"""Failure policy: what an ended attempt costs, and what comes next.

:func:`olmo_operator.failures.classify_failure` says why the attempt ended; this module decides
what that means. A preemption does not spend ``maxFailures`` (``restarts.preemptions`` + 1): the
first since the last progress restarts at once, further ones in a row back off
(:meth:`Timing.preemption_backoff`); after ``nodePools[].maxPreemptions`` on a preemptible pool
that is not the last, the next attempt moves to the next node pool; more than the job's
``maxPreemptions`` fails the OLMoJob (``TooManyPreemptions``). A failure spends the budget
(``restarts.failures`` + 1, exponential backoff); more than ``maxFailures`` fails the OLMoJob
(``TooManyFailures``). Whatever the cause, an attempt that saved no newer complete checkpoint
than the one known when the previous attempt ended counts toward ``maxAttemptsWithoutProgress``
(``status.noProgress``); that many in a row fail the OLMoJob (``NoProgress``), so that no mix of
preemptions and failures can loop forever. A failed OLMoJob keeps the last attempt's Job and
pods for their logs. A failure with no preemption signal yet is counted only after the settle window
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
from olmo_operator.goodput import lost_work, record_restart
from olmo_operator.lifecycle.action import ActionKind
from olmo_operator.lifecycle.plan import Plan, now_iso, parse_time

HANG = "Hang"
"""The reason of an attempt the operator ended for want of progress (``lifecycle/hang.py``)."""


def end_attempt(
    plan: Plan,
    attempt: int,
    current: Mapping[str, Any] | None,
    pods: list[Mapping[str, Any]],
    failure: Failure | None = None,
    *,
    settle: bool = True,
) -> None:
    """The attempt's Job or one of its pods failed: count it, then restart or fail.

    ``failure`` is the verdict when the caller already knows it (an attempt that could not
    start, a hang); otherwise the Job and pods are classified. ``settle=False``: the verdict is
    final, no settle window (the operator itself ends the attempt, e.g. a hang)."""
    spec = plan.spec
    if failure is None:
        failure = classify_failure(current, pods, plan.observed.nodes)
    if failure.cause is not Cause.PREEMPTION and settle and _settling(plan, attempt, failure):
        return
    plan.failure = failure
    restarts = dict(plan.old.get("restarts") or {})
    failures, preemptions = int(restarts.get("failures", 0)), int(restarts.get("preemptions", 0))
    pool_index = int(plan.get("nodePoolIndex", 0))
    pool_preemptions = int(plan.get("nodePoolPreemptions", 0))
    progress = progress_after(plan)
    preempted = failure.cause is Cause.PREEMPTION

    if preempted:
        preemptions += 1
    else:
        failures += 1
    counts = {**restarts, "failures": failures, "preemptions": preemptions}
    if failure.reason == HANG:
        counts["hangs"] = int(restarts.get("hangs", 0)) + 1
    record_lost_work(plan, attempt, failure)
    budget = (
        f"failures {failures}/{spec.max_failures}; preemptions {preemptions}/"
        f"{spec.max_preemptions}; attempts without progress {progress['attempts']}/"
        f"{spec.max_attempts_without_progress}"
    )
    verdict = over_budget(plan, counts, progress)
    if verdict is not None:
        reason, why = verdict
        plan.set(restarts=counts, noProgress=progress, failureSeenAt=None)
        plan.event(
            "Warning",
            "Preempted" if preempted else "AttemptFailed",
            f"attempt {attempt}: {failure.message} ({budget})",
        )
        plan.event("Warning", reason, f"{why}: the OLMoJob fails")
        plan.remove(plan.kids.attempt_services(attempt))
        fail(plan, f"attempt {attempt} ended: {failure.message}; {why}", reason=reason)
        return

    if preempted:
        pool_preemptions += 1
        delay = plan.timing.preemption_backoff(progress["preemptions"])
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
    else:
        delay = plan.timing.backoff(failures)

    nxt_attempt = attempt + 1
    when = "now" if delay <= 0 else f"in {delay:g}s"
    plan.event(
        "Warning",
        "Preempted" if preempted else "AttemptFailed",
        f"attempt {attempt}: {failure.message}; restarting from the latest checkpoint as "
        f"attempt {nxt_attempt} {when} ({budget})",
    )
    restart_at = plan.now + dt.timedelta(seconds=delay)
    plan.set(
        attempt=nxt_attempt,
        restarts=counts,
        noProgress=progress,
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


def record_lost_work(plan: Plan, attempt: int, failure: Failure) -> None:
    """Charge the ended attempt's lost work to the goodput ledger: the steps and tokens it
    trained past the checkpoint the next attempt resumes from (``status.goodput.restarts``)."""
    record = progress_record(plan)
    reported = record.get(c.PROGRESS_ATTEMPT) == attempt
    last_step = record.get(c.PROGRESS_STEP) if reported else None
    last_tokens = plan.get("tokens") if reported else None
    ckpt = plan.get("latestCheckpoint") or {}
    from_step = ckpt.get("step")
    steps, tokens = lost_work(last_step, last_tokens, from_step, ckpt.get("tokens"))
    pool = plan.get("nodePool") or "" if plan.spec.node_pools else ""
    ledger = record_restart(
        plan.get("goodput"),
        attempt=attempt,
        cause=failure.cause.value,
        reason=failure.reason,
        pool=pool,
        lost_steps=steps,
        lost_tokens=tokens,
        from_step=from_step,
        now=plan.now,
    )
    plan.set(goodput=ledger)


def progress_record(plan: Plan) -> dict[str, Any]:
    """``status.progress`` after this reconcile's mirror pass (the old record with its patch)."""
    old = plan.old.get(c.STATUS_PROGRESS)
    record = dict(old) if isinstance(old, Mapping) else {}
    patch = plan.patch.get(c.STATUS_PROGRESS)
    if isinstance(patch, Mapping):
        for key, value in patch.items():
            if value is None:
                record.pop(key, None)
            else:
                record[key] = value
    return record


def progress_after(plan: Plan) -> dict[str, Any]:
    """``status.noProgress`` once the attempt that just ended is counted.

    The baseline is the newest complete checkpoint known when the previous attempt ended
    (``baselineStep``; absent: none yet). An attempt that ends with a newer one (mirrored
    ``latestCheckpoint``) made progress: both counts restart from 0 and its checkpoint becomes
    the next baseline. Otherwise ``attempts`` + 1, and ``preemptions`` + 1 when it was
    preempted (the exponent of the preemption backoff). Everything lives in the status, so a
    restarted operator counts the same."""
    old = dict(plan.old.get("noProgress") or {})
    baseline = old.get("baselineStep")
    step = (plan.get("latestCheckpoint") or {}).get("step")
    if isinstance(step, int) and (baseline is None or step > baseline):
        return {"attempts": 0, "preemptions": 0, "baselineStep": step}
    preempted = plan.failure is not None and plan.failure.cause is Cause.PREEMPTION
    out: dict[str, Any] = {
        "attempts": int(old.get("attempts", 0)) + 1,
        "preemptions": int(old.get("preemptions", 0)) + (1 if preempted else 0),
    }
    if baseline is not None:
        out["baselineStep"] = baseline
    return out


def over_budget(
    plan: Plan, counts: Mapping[str, int], progress: Mapping[str, Any]
) -> tuple[str, str] | None:
    """The condition reason and message when a budget is spent, else None."""
    spec = plan.spec
    if counts["failures"] > spec.max_failures:
        return (
            "TooManyFailures",
            f"{counts['failures']} failures exceed maxFailures {spec.max_failures}",
        )
    if counts["preemptions"] > spec.max_preemptions:
        return (
            "TooManyPreemptions",
            f"{counts['preemptions']} preemptions exceed maxPreemptions {spec.max_preemptions}",
        )
    if progress["attempts"] >= spec.max_attempts_without_progress:
        since = progress.get("baselineStep")
        where = f"step {since}" if since is not None else "the start (no checkpoint yet)"
        return (
            "NoProgress",
            f"{progress['attempts']} attempts in a row saved no complete checkpoint newer than "
            f"{where} (maxAttemptsWithoutProgress {spec.max_attempts_without_progress})",
        )
    return None


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


def fail(plan: Plan, message: str, *, reason: str = "Failed") -> None:
    """Phase Failed (final): the eval worker goes; Jobs and pods stay for their logs.

    ``reason`` (CamelCase: ``TooManyFailures``, ``TooManyPreemptions``, ``NoProgress``, ...) is
    the ``Running`` and ``Failed`` conditions' reason, so tools can tell why without parsing the
    message."""
    plan.to_phase(c.FAILED, message)
    plan.set(completionTime=now_iso(plan.now), restartAt=None)
    plan.condition("Running", False, reason, message)
    plan.condition("Failed", True, reason, message)
    if plan.kids.eval is not None:
        plan.remove([plan.kids.eval])
    plan.remove(plan.kids.capacity_objects())
    plan.kind = ActionKind.FAIL
