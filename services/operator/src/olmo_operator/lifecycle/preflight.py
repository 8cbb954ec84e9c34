"""Preflight failures: a node that fails the trainer's checks is excluded, and nothing is spent.

Before an attempt trains, every trainer process checks its device, writes to the checkpoint
location and joins a collective across the whole gang within ``spec.preflight.timeoutSeconds``
(``olmo/train/preflight.py``); rank 0 reports the outcome (``status.lastPreflight``). When it
failed, the operator ends the attempt at once (the trainers exit anyway):

- each node the report names is added to ``status.excludedNodes`` (newest last, at most
  :data:`MAX_EXCLUDED`), and the next attempts' trainer pods avoid them by required node
  anti-affinity (``matchFields`` on ``metadata.name``);
- a ``PreflightFailed`` Warning Event names the nodes and what failed there;
- the next attempt starts at once and no budget is spent (``restarts.preflightFailures`` counts
  them); it does count toward ``maxAttemptsWithoutProgress``, so that checks that fail on every
  node end the job rather than loop.

A failure that names no node (a collective that timed out without telling who was missing)
cannot be pinned on a node: it is an ordinary failure of the attempt, with its budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.failures import Cause, Failure
from olmo_operator.lifecycle.action import ActionKind
from olmo_operator.lifecycle.failure_policy import (
    end_attempt,
    fail,
    over_budget,
    progress_after,
)
from olmo_operator.lifecycle.plan import Plan, now_iso

MAX_EXCLUDED = 32
PREFLIGHT_FAILED = "PreflightFailed"


def failed_preflight(plan: Plan, attempt: int) -> list[dict[str, Any]] | None:
    """The failures of attempt ``attempt``'s preflight, or None when it did not fail."""
    last = plan.get("lastPreflight") or {}
    if last.get(c.PROGRESS_ATTEMPT) != attempt or last.get(c.PREFLIGHT_PASSED) is not False:
        return None
    return list(last.get(c.PREFLIGHT_FAILURES) or [])


def describe(failures: list[Mapping[str, Any]]) -> str:
    parts = []
    for f in failures[:4]:
        where = f[c.PREFLIGHT_NODE] or f"node rank {f[c.PREFLIGHT_NODE_RANK]}"
        parts.append(f"{where}: {f[c.PREFLIGHT_CHECK]}: {f[c.PREFLIGHT_MESSAGE]}")
    more = f"; and {len(failures) - 4} more" if len(failures) > 4 else ""
    return "; ".join(parts) + more


def check_preflight(
    plan: Plan, attempt: int, current: Mapping[str, Any] | None, pods: list[Mapping[str, Any]]
) -> bool:
    """End attempt ``attempt`` when its preflight failed. True when it did."""
    failures = failed_preflight(plan, attempt)
    if failures is None:
        return False
    detail = describe(failures)
    nodes = [f[c.PREFLIGHT_NODE] for f in failures if f[c.PREFLIGHT_NODE]]
    if not nodes:
        failure = Failure(Cause.FAILURE, PREFLIGHT_FAILED, f"preflight failed: {detail}")
        end_attempt(plan, attempt, current, pods, failure=failure, settle=False)
        return True
    excluded = [n for n in plan.get("excludedNodes") or [] if n not in nodes] + sorted(set(nodes))
    excluded = excluded[-MAX_EXCLUDED:]
    restarts = dict(plan.old.get("restarts") or {})
    restarts["preflightFailures"] = int(restarts.get("preflightFailures", 0)) + 1
    plan.failure = Failure(Cause.FAILURE, PREFLIGHT_FAILED, f"preflight failed: {detail}")
    progress = progress_after(plan)
    plan.failure = None  # nothing for the restart metrics: no budget was spent
    names = ", ".join(sorted(set(nodes)))
    plan.event(
        "Warning",
        PREFLIGHT_FAILED,
        f"attempt {attempt}: preflight failed ({detail}); excluding node(s) {names} from the "
        "next attempts (status.excludedNodes)",
    )
    plan.set(excludedNodes=excluded, restarts=restarts, noProgress=progress)
    verdict = over_budget(
        plan,
        {
            "failures": int(restarts.get("failures", 0)),
            "preemptions": int(restarts.get("preemptions", 0)),
        },
        progress,
    )
    if verdict is not None:
        reason, why = verdict
        plan.event("Warning", reason, f"{why}: the OLMoJob fails")
        plan.remove(plan.kids.attempt_services(attempt))
        fail(plan, f"attempt {attempt} ended: preflight failed on {names}; {why}", reason=reason)
        return True
    nxt = attempt + 1
    plan.set(attempt=nxt, restartAt=now_iso(plan.now), failureSeenAt=None)
    plan.to_phase(
        c.RESTARTING,
        f"attempt {attempt} ended (preflight failed on {names}); attempt {nxt} starts now "
        "without those nodes",
    )
    plan.condition("Running", False, PREFLIGHT_FAILED, detail)
    plan.remove(plan.kids.of_attempt(attempt))
    plan.kind = ActionKind.RESTART
    return True
