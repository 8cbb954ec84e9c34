"""Refused creates: a child the API server will never accept ends the run, not a retry loop.

The CRD's schema cannot say everything the API server checks on the objects the operator makes
from a spec (a node selector value that is no label value, ...). Such a create is answered 422
(or 400) and answering it again changes nothing, so the OLMoJob goes to phase Failed with the
server's message, naming the object, and a Warning Event. A name taken by an object the OLMoJob
does not own (:class:`olmo_operator.kube.NameConflict`) is as permanent: the operator never
deletes someone else's object. 403 is not here: the operator's RBAC can be fixed, so that stays
a retried warning.

After the run finished, the only create is the final rotation Job: a refused one is recorded as
the failed final rotation (the TTL can then run), the phase stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle.action import Action, ActionKind
from olmo_operator.lifecycle.failure_policy import fail
from olmo_operator.lifecycle.observed import Observed, labels_of, name_of
from olmo_operator.lifecycle.plan import Plan, now_iso
from olmo_operator.lifecycle.timing import Timing
from olmo_operator.spec import OLMoJob

PERMANENT_STATUS = frozenset({400, 422})
"""HTTP answers to a create that the same request will always get (Invalid, BadRequest)."""


def permanent(status: int, *, name_conflict: bool = False) -> bool:
    """Whether a refused create ends the run (rather than being retried)."""
    return name_conflict or status in PERMANENT_STATUS


def refused_create_action(
    job: OLMoJob,
    status: Mapping[str, Any],
    observed: Observed,
    child: Mapping[str, Any],
    detail: str,
    timing: Timing | None = None,
) -> Action:
    """The Action after the API server refused to create ``child`` for good (``detail``: the
    server's message). ``status`` is the status as written just before (the create's own
    action)."""
    plan = Plan(job, status, observed, timing or Timing())
    what = f"{child.get('kind')} {job.namespace}/{name_of(child)}"
    message = f"the API server refused to create {what}: {detail}"
    plan.event("Warning", "CreateRefused", message)
    if plan.phase in c.TERMINAL_PHASES:
        if labels_of(child).get(c.LABEL_COMPONENT) == c.ROTATION:
            plan.set(
                finalRotation={
                    "phase": "Failed",
                    "message": message,
                    "completionTime": now_iso(plan.now),
                }
            )
            plan.condition("CheckpointsRotated", False, "CreateRefused", message)
        plan.kind = ActionKind.WAIT
        plan.message = message
        return plan.finish()
    fail(plan, message)
    return plan.finish()
