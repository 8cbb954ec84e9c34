"""The decision: from (job, status, observed children) to the next :class:`Action`.

:func:`next_action` builds one :class:`~olmo_operator.lifecycle.plan.Plan`, mirrors the pods'
validated progress reports (the ``<job>-progress`` ConfigMap) into it, hands it to the policy
that owns the current phase, and returns the plan's one Action. Which policy that is::

    Succeeded / Failed                 after_finish   (final rotation, TTL)
    spec.suspend                       suspend
    data not prepared yet              data_prep
    no attempt yet, or resuming        startup        (attempt 1, or the next one)
    Restarting                         startup        (when restartAt is due, old pods gone)
    Pending / Running                  running        (→ failure_policy when it ended badly)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle.action import Action, ActionKind, ObjectRef
from olmo_operator.lifecycle.after_finish import after_finish
from olmo_operator.lifecycle.capacity import keep_node_pools
from olmo_operator.lifecycle.data_prep import needs_data, prepare_data
from olmo_operator.lifecycle.ledger import account
from olmo_operator.lifecycle.observed import Observed, deleting, labels_of, pod_done, ref, with_kind
from olmo_operator.lifecycle.plan import Plan, now_iso
from olmo_operator.lifecycle.running import watch_attempt
from olmo_operator.lifecycle.startup import restart_when_due, start
from olmo_operator.lifecycle.suspend import resume, suspend
from olmo_operator.lifecycle.timing import Timing
from olmo_operator.progress import Event, mirror_progress
from olmo_operator.spec import OLMoJob, SpecError


def next_action(
    job: OLMoJob, status: Mapping[str, Any], observed: Observed, timing: Timing | None = None
) -> Action:
    """Decide what to do next for ``job`` (parsed spec + identity) given its current ``status``
    and its ``observed`` children."""
    plan = Plan(job, status or {}, observed, timing or Timing())
    progress_patch, progress_events = mirror_progress(
        plan.old, plan.kids.progress, now_iso(plan.now), job.uid
    )
    plan.patch.update(progress_patch)
    plan.events.extend(progress_events)
    if job.generation is not None:
        plan.set(observedGeneration=job.generation)
    _decide(plan)
    keep_node_pools(plan)
    account(plan)
    return plan.finish()


def invalid_spec_action(status: Mapping[str, Any], error: SpecError, observed: Observed) -> Action:
    """An OLMoJob that cannot run: phase Failed with the reason; its running children go."""
    return fail_for_good_action(status, f"invalid spec: {error}", "InvalidSpec", observed)


def fail_for_good_action(
    status: Mapping[str, Any], message: str, reason: str, observed: Observed
) -> Action:
    """Phase Failed with ``message`` (a Warning Event ``reason`` when it is new) and the running
    trainer, data-prep and eval children deleted; nothing else once that is done. For a job that
    must not run at all (an invalid spec, a policy violation), whatever its phase."""
    deletes: list[ObjectRef] = []
    objs = [
        *with_kind(observed.jobs, "batch/v1", "Job"),
        *with_kind(observed.pods, "v1", "Pod"),
        *with_kind(observed.services, "v1", "Service"),
        *with_kind(observed.deployments, "apps/v1", "Deployment"),
    ]
    # Capacity the job holds or asked for goes too (requests, templates, Karpenter NodePools).
    for obj in [
        *with_kind(
            observed.provisioning_requests, c.PROVISIONING_API_VERSION, "ProvisioningRequest"
        ),
        *with_kind(observed.pod_templates, "v1", "PodTemplate"),
        *with_kind(observed.node_pools, c.KARPENTER_API_VERSION, "NodePool"),
    ]:
        if not deleting(obj):
            deletes.append(ref(obj))
    for obj in objs:
        component = labels_of(obj).get(c.LABEL_COMPONENT)
        active = not deleting(obj) and not (obj["kind"] == "Pod" and pod_done(obj))
        if component in (c.TRAINER, c.DATAPREP, c.EVALWORKER) and active:
            deletes.append(ref(obj))
    if status.get("phase") == c.FAILED and status.get("message") == message and not deletes:
        return Action(ActionKind.WAIT, message)
    patch: dict[str, Any] = {"phase": c.FAILED, "message": message}
    if not status.get("completionTime"):
        patch["completionTime"] = now_iso(observed.now)
    events = ()
    if status.get("message") != message:
        events = (Event("Warning", reason, message),)
    return Action(ActionKind.FAIL, message, patch, delete=tuple(deletes), events=events)


def _decide(plan: Plan) -> None:
    attempt = int(plan.old.get("attempt") or 0)

    # Objects of attempts other than the current one never stay (a restart ends an attempt).
    plan.remove(plan.kids.not_of_attempt(attempt))

    if plan.phase in c.TERMINAL_PHASES:
        after_finish(plan, attempt)
        return
    if plan.spec.suspend:
        suspend(plan, attempt)
        return

    resuming = plan.phase == c.SUSPENDED
    if resuming:
        resume(plan)

    if needs_data(plan) and not prepare_data(plan):
        return

    if attempt == 0:
        start(plan, 1, counted=True)
        return
    if resuming:
        start(plan, attempt + 1, counted=True)
        return
    if plan.phase == c.RESTARTING:
        restart_when_due(plan, attempt)
        return
    if plan.phase == c.PREPARING_DATA:  # data just became ready; the attempt was never started
        start(plan, attempt, counted=True)
        return
    watch_attempt(plan, attempt)
