"""Everything a running attempt needs, in creation order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def desired_objects(job: OLMoJob | Mapping[str, Any], state: AttemptState) -> list[dict[str, Any]]:
    """The progress ConfigMap and RBAC, config, the headless Service, the Indexed Job, and the
    eval worker when ``spec.eval.enabled``."""
    if not isinstance(job, OLMoJob):
        job = parse_job(job)
    objects = [progress_config_map(job), *progress_rbac(job)]
    cm = config_map(job, state.attempt)
    if cm is not None:
        objects.append(cm)
    objects += [headless_service(job, state.attempt), trainer_job(job, state)]
    if job.spec.eval.enabled:
        objects.append(eval_deployment(job))
    return objects
