"""Data preparation policy: before the first attempt, the data-prep Job writes the token shards.

It runs once: when it succeeds the ``DataPrepared`` condition is set and it never runs again
(even when its Job is gone); when it fails, the OLMoJob fails. While Kueue holds it back the
phase stays PreparingData and nothing is counted.
"""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.lifecycle.action import ActionKind
from olmo_operator.lifecycle.failure_policy import fail
from olmo_operator.lifecycle.observed import (
    condition_of,
    deleting,
    job_failed,
    job_succeeded,
    job_suspended,
)
from olmo_operator.lifecycle.plan import Plan
from olmo_operator.resources import dataprep_job


def needs_data(plan: Plan) -> bool:
    """Whether training must wait for data preparation."""
    return plan.spec.dataset.prepare is not None and not plan.has_condition("DataPrepared")


def prepare_data(plan: Plan) -> bool:
    """Run the data-prep Job; True once the data is ready (then training may start)."""
    dp = plan.kids.dataprep
    workers = plan.spec.dataset.prepare.workers  # type: ignore[union-attr]
    if dp is None:
        plan.create.append(dataprep_job(plan.job))
        plan.to_phase(c.PREPARING_DATA, f"preparing data with {workers} worker(s)")
        plan.kind = ActionKind.PREPARE_DATA
        return False
    if deleting(dp):
        plan.message = "waiting for the previous data-prep Job to be deleted"
        return False
    if job_succeeded(dp, plan.kids.dataprep_pods):
        plan.condition("DataPrepared", True, "DataPrepCompleted", f"{plan.spec.data_dir}")
        plan.event("Normal", "DataPrepared", f"token shards written to {plan.spec.data_dir}")
        return True
    if job_failed(dp):
        detail = condition_of(dp, "Failed").get("message") or "the data-prep Job failed"
        plan.condition("DataPrepared", False, "DataPrepFailed", detail)
        fail(plan, f"data preparation failed: {detail}")
        return False
    if job_suspended(dp) and plan.spec.queue_name:
        plan.to_phase(c.PREPARING_DATA, f"data-prep queued in Kueue queue {plan.spec.queue_name}")
    else:
        plan.to_phase(c.PREPARING_DATA, f"preparing data with {workers} worker(s)")
    return False
