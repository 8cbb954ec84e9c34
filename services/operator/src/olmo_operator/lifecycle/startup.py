"""Startup policy: when an attempt may start, and what starting it means.

Attempt N+1 starts once its ``restartAt`` (the failure backoff) has passed and every pod of an
older attempt has stopped — a pod being deleted (``deletionTimestamp`` set) still counts until
its phase is Succeeded or Failed — or, at the latest, once the grace period plus
``Timing.termination_wait_seconds`` has passed. The wait has a limit because a pod on a node that
stopped answering may never report its end; past the limit the new attempt starts anyway (with a
``PreviousAttemptFenced`` Warning Event), and what keeps the old gang from writing the run
directory then is the fence: the new attempt's trainer claims ``RUN_DIR/ATTEMPT`` when it
starts, and an older trainer checks that marker before every checkpoint save and rotation and
stops without writing (``olmo.checkpoints.fence``, exit code 3). Starting creates everything
the attempt needs on the current node pool (names are per attempt, so nothing waits for the old
objects' deletion). A missing Job of the current attempt is re-created the same way, without
counting a new attempt. On a pool provisioned per attempt the Job waits for the attempt's
ProvisioningRequest (:mod:`.capacity`).
"""

from __future__ import annotations

import datetime as dt

from olmo_operator import contract as c
from olmo_operator.lifecycle.action import ActionKind
from olmo_operator.lifecycle.attempt_shape import attempt_state
from olmo_operator.lifecycle.capacity import provisioned
from olmo_operator.lifecycle.observed import attempt_of, name_of, pod_done
from olmo_operator.lifecycle.plan import Plan, now_iso, parse_time
from olmo_operator.resources import (
    attempt_capacity,
    desired_objects,
    provisioning_request_name,
)


def start(plan: Plan, attempt: int, *, counted: bool) -> None:
    """Create (or re-create) everything attempt ``attempt`` needs."""
    spec, job = plan.spec, plan.job
    pool_index = int(plan.get("nodePoolIndex", 0))
    if spec.node_pools:
        pool_index = max(0, min(pool_index, len(spec.node_pools) - 1))
        pool = spec.node_pools[pool_index]
        plan.set(nodePoolIndex=pool_index, nodePool=pool.name)
    state = attempt_state(plan, attempt, pool_index)
    nodes = state.nodes_of(spec)
    pool = spec.node_pool(pool_index)
    # A pool provisioned per attempt: the Job only once the attempt's request is Provisioned.
    waiting = (
        pool is not None
        and pool.provisioning is not None
        and not provisioned(plan.kids.provisioning_request(attempt))
    )
    if waiting:
        plan.create.extend(desired_objects(job, state, trainer=False))
        plan.create.extend(attempt_capacity(job, state))
    else:
        plan.create.extend(desired_objects(job, state))
    plan.remove(plan.kids.not_of_attempt(attempt))
    where = f" on node pool {spec.node_pools[pool_index].name}" if spec.node_pools else ""
    if waiting:
        assert pool is not None and pool.provisioning is not None
        plan.to_phase(
            c.PENDING,
            f"attempt {attempt}{where}: asking for capacity for {nodes} node(s) "
            f"(ProvisioningRequest {provisioning_request_name(job.name, attempt)}, class "
            f"{pool.provisioning.class_name})",
        )
    elif spec.queue_name:
        plan.to_phase(
            c.PENDING,
            f"attempt {attempt}{where} queued in Kueue queue {spec.queue_name}",
        )
    else:
        plan.to_phase(c.RUNNING, f"attempt {attempt}{where}: {nodes} node(s)")
    plan.set(attempt=attempt, restartAt=None, failureSeenAt=None)
    if not plan.get("startTime"):
        plan.set(startTime=now_iso(plan.now))
    plan.condition("Running", True, "AttemptStarted", f"attempt {attempt}")
    plan.kind = ActionKind.START_ATTEMPT
    plan.new_attempt = attempt if counted else None
    if not counted:
        plan.message = f"re-creating the missing objects of attempt {attempt}"


def restart_when_due(plan: Plan, attempt: int) -> None:
    """Phase Restarting: start ``attempt`` once the backoff is over and the old pods are gone."""
    restart_at = parse_time(plan.old.get("restartAt"))
    if restart_at is not None and plan.now < restart_at:
        plan.message = f"attempt {attempt} starts at {now_iso(restart_at)} (backoff)"
        return
    lingering = lingering_pods(plan, attempt)
    if lingering:
        ended = parse_time((plan.old.get("lastRestart") or {}).get("time")) or plan.now
        limit = ended + dt.timedelta(
            seconds=plan.spec.termination_grace_period_seconds
            + plan.timing.termination_wait_seconds
        )
        if plan.now < limit:
            plan.message = (
                f"waiting for {len(lingering)} pod(s) of the previous attempt to stop "
                f"(until {now_iso(limit)})"
            )
            return
        names = ", ".join(sorted(name_of(p) for p in lingering))
        plan.event(
            "Warning",
            "PreviousAttemptFenced",
            f"starting attempt {attempt} although {len(lingering)} pod(s) of an older attempt "
            f"have not stopped ({names}): the attempt marker in the run directory keeps them "
            "from saving or rotating checkpoints",
        )
    start(plan, attempt, counted=True)


def lingering_pods(plan: Plan, attempt: int) -> list:
    """Trainer pods of other attempts that may still run: every one whose phase is not
    Succeeded or Failed, those being deleted included (a deleted pod runs until its containers
    stop, for up to its grace period, or forever on a lost node)."""
    return [p for p in plan.kids.trainer_pods if attempt_of(p) != attempt and not pod_done(p)]
