"""Success policy of a started attempt: waiting for Kueue, running, succeeded, or ended.

The attempt's Job decides: suspended means Kueue has not admitted it (or took it back) and
nothing counts (phase Pending); complete, or every index succeeded, ends the run (phase
Succeeded); failed, or any pod failed, goes to the failure policy; pods stuck before starting
(image pulls, container config, scheduling) fail it after ``startupTimeoutSeconds``
(:mod:`.stalled`); a failed preflight ends it without spending a budget (:mod:`.preflight`);
no training progress within the hang timeout ends it as a Hang (:mod:`.hang`); a node
announcing its termination ends it at once, and on a pool provisioned per attempt the Job waits
for capacity (:mod:`.capacity`). While it runs, the eval worker is kept present.
"""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.failures import failed_pods
from olmo_operator.lifecycle.action import ActionKind
from olmo_operator.lifecycle.capacity import await_capacity, check_notices
from olmo_operator.lifecycle.failure_policy import end_attempt
from olmo_operator.lifecycle.hang import check_hang
from olmo_operator.lifecycle.observed import deleting, job_failed, job_succeeded, job_suspended
from olmo_operator.lifecycle.plan import Plan, now_iso
from olmo_operator.lifecycle.preflight import check_preflight
from olmo_operator.lifecycle.stalled import check_startup, is_waiting_message
from olmo_operator.lifecycle.startup import start
from olmo_operator.resources import eval_deployment


def watch_attempt(plan: Plan, attempt: int) -> None:
    """Phases Pending and Running: follow attempt ``attempt``'s Job (re-created if missing)."""
    current = plan.kids.trainer_job(attempt)
    if current is None:
        if not await_capacity(plan, attempt):
            start(plan, attempt, counted=False)
        return
    if deleting(current):
        plan.message = f"attempt {attempt}'s Job is being deleted"
        return
    pods = plan.kids.attempt_pods(attempt)
    if job_suspended(current):
        # Kueue has not admitted it (or took it back): nothing counts while it waits.
        queue = plan.spec.queue_name or "?"
        plan.to_phase(c.PENDING, f"attempt {attempt} waiting for admission by Kueue ({queue})")
        return
    if job_succeeded(current, pods):
        succeed(plan, attempt)
        return
    if check_preflight(plan, attempt, current, pods):
        return
    if job_failed(current) or failed_pods(pods):
        end_attempt(plan, attempt, current, pods)
        return
    if check_notices(plan, attempt, current, pods):
        return
    if check_startup(plan, attempt, current, pods):
        return
    if check_hang(plan, attempt, current, pods):
        return
    if plan.phase != c.RUNNING or is_waiting_message(plan.get("message", ""), attempt):
        where = f" on node pool {plan.get('nodePool')}" if plan.spec.node_pools else ""
        nodes = int(plan.get("nodes") or plan.spec.nodes)
        plan.to_phase(c.RUNNING, f"attempt {attempt}{where}: {nodes} node(s)")
    if plan.spec.eval.enabled and plan.kids.eval is None:
        plan.create.append(eval_deployment(plan.job))


def succeed(plan: Plan, attempt: int) -> None:
    """Phase Succeeded (final): the rendezvous Service goes; the Job stays for its logs."""
    step = plan.get("step")
    plan.to_phase(
        c.SUCCEEDED,
        f"attempt {attempt} completed" + (f" at step {step}" if step is not None else ""),
    )
    plan.set(completionTime=now_iso(plan.now), restartAt=None)
    plan.condition("Running", False, "Completed", f"attempt {attempt}")
    plan.condition("Complete", True, "TrainerCompleted", f"attempt {attempt}")
    plan.remove(plan.kids.attempt_services(attempt))
    plan.remove(plan.kids.capacity_objects())
    plan.kind = ActionKind.SUCCEED
