"""The eval worker: a Deployment of one ``olmo-eval watch`` replica that evaluates each new
complete checkpoint of the run directory and reports the results to the OLMoJob's status."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.resources.metadata import metadata, selector
from olmo_operator.resources.names import eval_name, progress_account_name
from olmo_operator.resources.pod import (
    Placement,
    container,
    job_env,
    pod_template,
    quantities,
    wandb_env,
)
from olmo_operator.resources.storage import (
    claim_volumes,
    pod_account,
    storage_env,
    storage_env_from,
    storage_volumes,
)
from olmo_operator.spec import OLMoJob

EVAL_PORT = 8080  # the eval worker's /healthz and Prometheus /metrics


def eval_deployment(job: OLMoJob) -> dict[str, Any]:
    """The eval worker: one replica watching the run directory (a folder on the checkpoint
    volume, or a prefix in object storage)."""
    spec = job.spec
    args = ["watch", spec.run_dir, "--port", str(EVAL_PORT), "--poll-seconds", "30"]
    if spec.eval.tasks:
        args += ["--tasks", ",".join(spec.eval.tasks)]
    if spec.eval.limit is not None:
        args += ["--limit", str(spec.eval.limit)]
    # The dataset too, read-only at the trainer's path: a checkpoint's tokenizer is the
    # tokenizer.json next to the manifest of its config's data.paths (/data/<path>, or a uri).
    volumes, mounts = claim_volumes(spec)
    more_volumes, more_mounts = storage_volumes(spec, scratch=True)
    main = container(
        spec,
        c.EVALWORKER,
        spec.eval.image or spec.image,
        ["olmo-eval"],
        args,
        ports=[{"name": "metrics", "containerPort": EVAL_PORT}],
        # /healthz answers 503 when the watch loop died or one evaluation is stuck.
        livenessProbe={
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 30,
            "failureThreshold": 3,
        },
        env=job_env(job, None) + storage_env(spec, scratch=True) + wandb_env(spec),
        **storage_env_from(spec),
        volumeMounts=mounts + more_mounts,
        resources=quantities(spec.eval.resources) if spec.eval.resources else None,
    )
    template = pod_template(
        job,
        c.EVALWORKER,
        main,
        volumes + more_volumes,
        restart_policy=None,
        service_account=pod_account(spec, progress_account_name(job.name)),
        placement=Placement(
            spec.priority_class_name, spec.eval.node_selector, spec.eval.tolerations
        ),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(job, eval_name(job.name), c.EVALWORKER),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(job.name, c.EVALWORKER)},
            "template": template,
        },
    }
