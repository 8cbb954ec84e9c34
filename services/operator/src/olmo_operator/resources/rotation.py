"""The final rotation Job: one short ``olmo-ckpt rotate`` on the run directory after the run
succeeded (trainer image; the run directory on the checkpoint volume or in object storage),
under the entrypoint that keeps its summary as the termination
message."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.resources.entrypoints import ROTATION_ENTRYPOINT
from olmo_operator.resources.metadata import metadata
from olmo_operator.resources.names import rotation_name
from olmo_operator.resources.pod import container, pod_template, pvc_volume
from olmo_operator.resources.storage import (
    pod_account,
    storage_env,
    storage_env_from,
    storage_volumes,
)
from olmo_operator.retention import rotate_args
from olmo_operator.spec import OLMoJob


def rotation_job(job: OLMoJob) -> dict[str, Any]:
    """One short Job running ``olmo-ckpt rotate`` on the run directory (trainer image)."""
    spec = job.spec
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if spec.checkpoint.claim_name is not None:
        mounts.append({"name": "checkpoints", "mountPath": c.CHECKPOINTS_MOUNT})
        volumes.append(pvc_volume("checkpoints", spec.checkpoint.claim_name))
    more_volumes, more_mounts = storage_volumes(spec)
    variables = storage_env(spec)
    main = container(
        spec,
        c.ROTATION,
        spec.image,
        ["/bin/sh", "-c", ROTATION_ENTRYPOINT, "olmo-rotate"],
        rotate_args(spec),
        **({"env": variables} if variables else {}),
        **storage_env_from(spec),
        volumeMounts=mounts + more_mounts,
    )
    volumes += more_volumes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(job, rotation_name(job.name), c.ROTATION),
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 2,
            "activeDeadlineSeconds": 1800,
            "template": pod_template(
                job, c.ROTATION, main, volumes, service_account=pod_account(spec, None)
            ),
        },
    }
