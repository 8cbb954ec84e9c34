"""Everything a running attempt needs, in creation order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from olmo_operator.resources.capacity import capacity_objects
from olmo_operator.resources.eval_worker import eval_deployment
from olmo_operator.resources.progress_channel import progress_config_map
from olmo_operator.resources.rbac import progress_rbac
from olmo_operator.resources.trainer import (
    AttemptState,
    config_map,
    headless_service,
    trainer_job,
)
from olmo_operator.spec import OLMoJob, parse_job


def desired_objects(
    job: OLMoJob | Mapping[str, Any], state: AttemptState, *, trainer: bool = True
) -> list[dict[str, Any]]:
    """The progress ConfigMap and RBAC, config, the headless Service, the Indexed Job (not with
    ``trainer=False``: an attempt waiting for its capacity), and the eval worker when
    ``spec.eval.enabled``."""
    if not isinstance(job, OLMoJob):
        job = parse_job(job)
    objects = [progress_config_map(job), *progress_rbac(job)]
    cm = config_map(job, state.attempt)
    if cm is not None:
        objects.append(cm)
    objects.append(headless_service(job, state.attempt))
    if trainer:
        objects.append(trainer_job(job, state))
    if job.spec.eval.enabled:
        objects.append(eval_deployment(job))
    return objects


def attempt_capacity(job: OLMoJob, state: AttemptState) -> list[dict[str, Any]]:
    """The attempt's PodTemplate and ProvisioningRequest when its pool is provisioned per
    attempt (else nothing)."""
    pool = job.spec.node_pool(state.node_pool_index)
    if pool is None or pool.provisioning is None:
        return []
    template = trainer_job(job, state)["spec"]["template"]
    return capacity_objects(job, pool, state.attempt, template)
