"""Capacity policy: gang capacity before an attempt, operator-owned NodePools, termination
notices.

**Provisioned per attempt** (a pool with ``provisioning``). Starting attempt N creates its
PodTemplate and ProvisioningRequest ``<job>-a<N>`` (and the attempt's config, Service and RBAC)
but not its Job: phase Pending until the request's ``Provisioned`` condition is True, then the
Job, whose pods consume the request (:func:`await_capacity`). ``Failed``, ``CapacityRevoked`` or
``BookingExpired`` before that, or no ``Provisioned=True`` within ``provisioning.timeoutSeconds``
of the request's creation, moves the job to the next pool as attempt N+1 (:func:`no_capacity`:
a ``NoCapacity`` Warning Event, ``status.lastProvisioning``), spending neither the failure nor
the preemption budget nor ``maxAttemptsWithoutProgress`` (nothing ran). On the last pool it
starts over from the first one after the preemption backoff's maximum, so that a cluster
without capacity is asked again rather than hammered. The request and its PodTemplate go with
the attempt (a restart, suspend, success or failure deletes them).

**Operator-owned** (``managed: karpenter``): while the job is neither finished nor suspended, the
NodePool of its current pool exists (:func:`keep_node_pools`); every other NodePool of the job
is deleted — the previous pool's on fallback, all of them at the end or on suspend — so that
Karpenter removes their nodes.

**Termination notices**: a running attempt whose pod sits on a node announcing its termination
(:data:`olmo_operator.failures.TERMINATION_SIGNALS`, seen in ``Observed.notices``) ends at once
as a preemption (:func:`check_notices`): the gang's pods are deleted with their grace period
(SIGTERM: the trainer saves a checkpoint and exits 75), a ``TerminationNotice`` Event names the
node and the signal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.failures import termination_notice
from olmo_operator.lifecycle.action import ActionKind
from olmo_operator.lifecycle.observed import condition_of, deleting, name_of
from olmo_operator.lifecycle.plan import Plan, now_iso, parse_time
from olmo_operator.resources import karpenter_node_pool

PROVISIONED = "Provisioned"
NO_CAPACITY_CONDITIONS = ("Failed", "CapacityRevoked", "BookingExpired")
"""ProvisioningRequest conditions (``autoscaling.x-k8s.io/v1``) that end the wait for capacity."""
TIMED_OUT = "TimedOut"


def provisioned(request: Mapping[str, Any] | None) -> bool:
    return request is not None and condition_of(request, PROVISIONED).get("status") == "True"


def await_capacity(plan: Plan, attempt: int) -> bool:
    """The current pool is provisioned per attempt and attempt ``attempt`` has no Job yet: wait
    for its request, or move on. True when this decided the reconcile (the caller stops)."""
    from olmo_operator.lifecycle.startup import start  # startup imports this module

    pool = plan.spec.node_pool(int(plan.get("nodePoolIndex") or 0))
    if pool is None or pool.provisioning is None:
        return False
    request = plan.kids.provisioning_request(attempt)
    if request is None or deleting(request):
        start(plan, attempt, counted=False)
        return True
    if provisioned(request):
        _record(plan, pool.name, attempt, PROVISIONED, _detail(request, PROVISIONED))
        start(plan, attempt, counted=False)
        plan.message = f"attempt {attempt}: capacity provisioned ({name_of(request)})"
        return True
    for kind in NO_CAPACITY_CONDITIONS:
        if condition_of(request, kind).get("status") == "True":
            no_capacity(plan, attempt, kind, _detail(request, kind))
            return True
    created = parse_time((request.get("metadata") or {}).get("creationTimestamp")) or plan.now
    deadline = created + dt.timedelta(seconds=pool.provisioning.timeout_seconds)
    if plan.now >= deadline:
        no_capacity(
            plan,
            attempt,
            TIMED_OUT,
            f"not provisioned within timeoutSeconds {pool.provisioning.timeout_seconds}",
        )
        return True
    plan.to_phase(
        c.PENDING,
        f"attempt {attempt} on node pool {pool.name}: waiting for capacity for "
        f"{pool.nodes_for(plan.spec.nodes)} "
        f"node(s) (ProvisioningRequest {name_of(request)}, class {pool.provisioning.class_name}, "
        f"until {now_iso(deadline)})",
    )
    return True


def _detail(request: Mapping[str, Any], kind: str) -> str:
    cond = condition_of(request, kind)
    return str(cond.get("message") or cond.get("reason") or kind)


def _record(plan: Plan, pool: str, attempt: int, outcome: str, message: str) -> None:
    old = plan.get("lastProvisioning") or {}
    if old.get("attempt") == attempt and old.get("outcome") == outcome:
        return
    plan.set(
        lastProvisioning={
            "pool": pool,
            "attempt": attempt,
            "outcome": outcome,
            "message": message,
            "time": now_iso(plan.now),
        }
    )


def no_capacity(plan: Plan, attempt: int, outcome: str, detail: str) -> None:
    """Attempt ``attempt`` got no capacity on its pool: attempt ``attempt + 1`` on the next pool
    (the first again after the last, after a delay); nothing is counted."""
    spec = plan.spec
    index = int(plan.get("nodePoolIndex") or 0)
    pool = spec.node_pools[index]
    wrapped = index >= len(spec.node_pools) - 1
    nxt_index = 0 if wrapped else index + 1
    nxt = spec.node_pools[nxt_index]
    delay = plan.timing.preemption_backoff_max_seconds if wrapped else 0.0
    when = "now" if delay <= 0 else f"in {delay:g}s"
    why = f"no capacity on node pool {pool.name} for attempt {attempt} ({outcome}: {detail})"
    _record(plan, pool.name, attempt, outcome, detail)
    plan.event(
        "Warning",
        "NoCapacity",
        f"{why}; attempt {attempt + 1} on node pool {nxt.name} starts {when} (no failure or "
        "preemption counted)",
    )
    plan.set(
        attempt=attempt + 1,
        nodePoolIndex=nxt_index,
        nodePool=nxt.name,
        nodePoolPreemptions=0,
        restartAt=now_iso(plan.now + dt.timedelta(seconds=delay)),
        failureSeenAt=None,
    )
    plan.to_phase(c.RESTARTING, f"{why}; attempt {attempt + 1} on node pool {nxt.name} {when}")
    plan.condition("Running", False, "NoCapacity", why)
    plan.remove(plan.kids.of_attempt(attempt))
    plan.kind = ActionKind.RESTART


def check_notices(plan: Plan, attempt: int, current: Mapping[str, Any], pods: list) -> bool:
    """End the running attempt at once when one of its pods' nodes announces its termination.
    True when it did."""
    from olmo_operator.lifecycle.failure_policy import end_attempt

    failure = termination_notice(pods, plan.observed.notices)
    if failure is None:
        return False
    plan.event(
        "Warning",
        "TerminationNotice",
        f"attempt {attempt}: {failure.message}; stopping the gang now so that it checkpoints "
        f"within its grace period ({plan.spec.termination_grace_period_seconds}s)",
    )
    end_attempt(plan, attempt, current, pods, failure=failure)
    return True


def keep_node_pools(plan: Plan) -> None:
    """The job's Karpenter NodePools after this reconcile: the current pool's while the job
    runs (created when missing), no other."""
    wanted: dict[str, Any] | None = None
    if plan.phase not in c.TERMINAL_PHASES and not plan.spec.suspend and plan.get("attempt"):
        pool = plan.spec.node_pool(int(plan.get("nodePoolIndex") or 0))
        if pool is not None and pool.karpenter_managed:
            wanted = karpenter_node_pool(plan.job, pool)
    have = {name_of(p): p for p in plan.kids.node_pools}
    if wanted is not None and wanted["metadata"]["name"] not in have:
        plan.create.append(wanted)
    keep = wanted["metadata"]["name"] if wanted is not None else None
    plan.remove(p for name, p in have.items() if name != keep)
