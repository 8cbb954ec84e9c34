"""The data-prep Indexed Job: ``olmo-dataprep run`` on ``workers`` pods writing token shards
into the dataset (its volume, or its uri in object storage) before the first attempt (worker ``i`` from ``JOB_COMPLETION_INDEX``)."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.resources.names import dataprep_name
from olmo_operator.resources.pod import (
    container,
    indexed_job,
    job_env,
    on_disruption,
    pod_template,
    pvc_volume,
    quantities,
)
from olmo_operator.resources.storage import (
    pod_account,
    storage_env,
    storage_env_from,
    storage_volumes,
)
from olmo_operator.spec import OLMoJob


def dataprep_job(job: OLMoJob) -> dict[str, Any]:
    """The data-prep Indexed Job writing token shards into the dataset (volume or uri)."""
    spec = job.spec
    prepare = spec.dataset.prepare
    if prepare is None:
        raise ValueError("spec.dataset.prepare is not set")
    mounts = [{"name": "pipeline", "mountPath": c.PIPELINE_MOUNT, "readOnly": True}]
    pipeline = {
        "name": "pipeline",
        "configMap": {
            "name": prepare.pipeline.name,
            "items": [{"key": prepare.pipeline.key, "path": c.PIPELINE_FILE}],
        },
    }
    volumes = [pipeline]
    if spec.dataset.claim_name is not None:
        mounts.append({"name": "data", "mountPath": c.DATA_MOUNT})
        volumes.append(pvc_volume("data", spec.dataset.claim_name))
    more_volumes, more_mounts = storage_volumes(spec)
    main = container(
        spec,
        c.DATAPREP,
        prepare.image or spec.image,
        ["olmo-dataprep"],
        [
            "run",
            f"{c.PIPELINE_MOUNT}/{c.PIPELINE_FILE}",
            "--num-workers",
            str(prepare.workers),
            "--output",
            spec.data_dir,
        ],
        env=job_env(job, None) + storage_env(spec),
        **storage_env_from(spec),
        volumeMounts=mounts + more_mounts,
        resources=quantities(prepare.resources) if prepare.resources else None,
    )
    template = pod_template(
        job,
        c.DATAPREP,
        main,
        volumes + more_volumes,
        service_account=pod_account(spec, None),
    )
    return indexed_job(
        job,
        dataprep_name(job.name),
        c.DATAPREP,
        template,
        completions=prepare.workers,
        # Workers are independent: Kubernetes retries a failed one; preempted ones are free.
        backoff_limit=max(spec.max_failures, 1) * prepare.workers,
        rules=[on_disruption("Ignore")],
    )
