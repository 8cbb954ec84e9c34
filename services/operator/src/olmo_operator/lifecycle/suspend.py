"""Suspend policy: ``spec.suspend`` stops the run without ending it.

The attempt's Job, pods, Service and config, the eval worker and an unfinished data-prep Job are
deleted (PVCs and checkpoints stay): phase Suspended. Setting ``suspend`` back to false starts
the next attempt from the latest checkpoint (:mod:`.decide`); it is neither a failure nor a
preemption.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle.action import ActionKind
from olmo_operator.lifecycle.observed import job_succeeded
from olmo_operator.lifecycle.plan import Plan


def suspend(plan: Plan, attempt: int) -> None:
    kids = plan.kids
    active: list[Mapping[str, Any]] = [*kids.of_attempt(attempt)]
    if kids.eval is not None:
        active.append(kids.eval)
    if kids.dataprep is not None and not job_succeeded(kids.dataprep, kids.dataprep_pods):
        active += [kids.dataprep, *kids.dataprep_pods]
    plan.remove(active)
    if plan.phase != c.SUSPENDED:
        plan.to_phase(
            c.SUSPENDED,
            "suspended: pods deleted, checkpoints kept; set spec.suspend to false to resume",
        )
        plan.set(restartAt=None)
        plan.condition("Suspended", True, "SpecSuspend", "spec.suspend is true")
        plan.condition("Running", False, "Suspended", "spec.suspend is true")
        plan.kind = ActionKind.SUSPEND
    elif plan.delete:
        plan.kind = ActionKind.SUSPEND


def resume(plan: Plan) -> None:
    """``spec.suspend`` became false while Suspended (the next attempt starts)."""
    plan.condition("Suspended", False, "Resumed", "spec.suspend is false")
