"""The trainer gang of one attempt: a headless Service and an Indexed Job named
``<job>-a<attempt>`` (one pod per node, ``torchrun`` with the node rank from the completion
index and the master at pod 0's DNS name), plus the attempt's config ConfigMap when the model
config is inline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from olmo_operator import contract as c
from olmo_operator.resources.capacity import pod_capacity
from olmo_operator.resources.entrypoints import PREEMPTION_AWARE_ENTRYPOINT
from olmo_operator.resources.metadata import metadata, selector
from olmo_operator.resources.names import (
    attempt_name,
    config_map_name,
    master_address,
    progress_account_name,
)
from olmo_operator.resources.pod import (
    Placement,
    container,
    env,
    indexed_job,
    job_env,
    on_disruption,
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
from olmo_operator.retention import trainer_overrides
from olmo_operator.spec import JobSpec, OLMoJob

SHM_VOLUME = "dshm"
SHM_SIZE_DEFAULT = "16Gi"
"""``sizeLimit`` of the trainer's memory-backed ``/dev/shm`` when its pods have no memory limit
(with one, the limit: tmpfs pages are charged to the pod's memory anyway)."""


@dataclass(frozen=True)
class AttemptState:
    """What, besides the spec, decides an attempt's objects."""

    attempt: int
    node_pool_index: int = 0
    nodes: int | None = None
    """Trainer pods of the attempt (None: ``spec.nodes``); fewer on a pool with ``maxNodes``."""
    save_interval: int | None = None
    """The attempt's save interval (None: ``spec.checkpoint.interval``); set by the operator
    when ``checkpoint.adaptive`` is on (``status.checkpointInterval``)."""
    excluded_nodes: tuple[str, ...] = ()
    """Nodes the trainer pods must avoid (``status.excludedNodes``: failed preflights)."""

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> AttemptState:
        attempt = int(status.get("attempt") or 1)
        interval = status.get("checkpointInterval") or {}
        return cls(
            attempt=attempt,
            node_pool_index=int(status.get("nodePoolIndex") or 0),
            nodes=status.get("nodes"),
            save_interval=interval.get("steps") if interval.get("attempt") == attempt else None,
            excluded_nodes=tuple(status.get("excludedNodes") or ()),
        )

    def nodes_of(self, spec: JobSpec) -> int:
        return self.nodes if self.nodes is not None else spec.nodes


# --------------------------------------------------------------------------------------------
# The command line


def _quote(value: Any) -> str:
    """A YAML scalar for ``--set`` (JSON is YAML; strings stay strings: ``"yes"``, ``"1b"``)."""
    return json.dumps(value)


def trainer_config_path(spec: JobSpec) -> str:
    if spec.model.preset is not None:
        return f"{c.IMAGE_CONFIGS_DIR}/{spec.model.preset}.yaml"
    return f"{c.CONFIG_MOUNT}/{c.CONFIG_FILE}"


def trainer_overrides_for(job: OLMoJob, save_interval: int | None = None) -> list[str]:
    """Every ``--set`` the trainer gets, in order (the spec's own ``overrides`` last, so they
    win); ``save_interval`` replaces ``checkpoint.interval`` (the attempt's adaptive choice)."""
    spec = job.spec
    out = [f"run_name={_quote(job.name)}", f"data.paths={_quote([spec.data_dir])}"]
    out += trainer_overrides(spec)
    if save_interval is not None:
        out.append(f"checkpoint.save_interval={save_interval}")
    if spec.max_steps is not None:
        out.append(f"max_steps={spec.max_steps}")
    if spec.wandb is not None:
        for key, value in (
            ("project", spec.wandb.project),
            ("entity", spec.wandb.entity),
            ("mode", spec.wandb.mode),
        ):
            if value is not None:
                out.append(f"wandb.{key}={_quote(value)}")
    out += list(spec.overrides)
    return out


def trainer_args(job: OLMoJob, state: AttemptState) -> list[str]:
    """``torchrun ... -m olmo.train.cli ...``; ``$(VAR)`` are expanded by the kubelet."""
    spec = job.spec
    args = [
        "torchrun",
        "--nnodes",
        str(state.nodes_of(spec)),
        "--nproc-per-node",
        str(spec.procs_per_node),
        "--node-rank",
        "$(JOB_COMPLETION_INDEX)",
        "--master-addr",
        "$(MASTER_ADDR)",
        "--master-port",
        "$(MASTER_PORT)",
        "-m",
        "olmo.train.cli",
        "--config",
        trainer_config_path(spec),
        "--run-dir",
        spec.run_dir,
        "--resume",
        "latest",
    ]
    for override in trainer_overrides_for(job, state.save_interval):
        args += ["--set", override]
    return args


def _trainer_env(job: OLMoJob, state: AttemptState) -> list[dict[str, Any]]:
    """Rendezvous from the environment (contract 4), the job's uid (the trainer's run-directory
    fence), the preflight and collective timeouts and the node's name, then W&B, then the
    user's ``spec.env``."""
    spec, attempt = job.spec, state.attempt
    out = [
        *job_env(job, attempt),
        env(c.ENV_GRACE, spec.termination_grace_period_seconds),
        # torchrun gives its workers 30 s between SIGTERM and SIGKILL unless told otherwise:
        # the trainer gets the pod's whole grace period to save its checkpoint.
        env("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", spec.termination_grace_period_seconds),
        env("MASTER_ADDR", master_address(job.name, attempt)),
        env("MASTER_PORT", c.RENDEZVOUS_PORT),
        env("NNODES", state.nodes_of(spec)),
        env("NPROC_PER_NODE", spec.procs_per_node),
        {"name": c.ENV_NODE_NAME, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    if spec.preflight.enabled:
        out.append(env(c.ENV_PREFLIGHT_TIMEOUT, spec.preflight.timeout_seconds))
    if spec.hang_timeout_seconds is not None:
        timeout = spec.hang_timeout_seconds + c.COLLECTIVE_TIMEOUT_MARGIN_SECONDS
        out.append(env(c.ENV_COLLECTIVE_TIMEOUT, timeout))
    if job.uid:
        # The run-directory fence orders attempts within one OLMoJob (olmo/checkpoints/fence.py).
        out.append(env(c.ENV_JOB_UID, job.uid))
    if spec.gpus_per_node == 0:
        out.append(env("DS_ACCELERATOR", "cpu"))
    out += storage_env(spec, scratch=True)
    out += wandb_env(spec)
    out += [dict(e) for e in spec.env]
    return out


# --------------------------------------------------------------------------------------------
# Volumes and resources


def shm_size_limit(resources: Mapping[str, Any]) -> str:
    """``sizeLimit`` of the trainer's ``/dev/shm``: its memory limit, else ``SHM_SIZE_DEFAULT``."""
    limits = resources.get("limits")
    if isinstance(limits, Mapping) and limits.get("memory") is not None:
        return str(limits["memory"])
    return SHM_SIZE_DEFAULT


def _trainer_volumes(
    job: OLMoJob, attempt: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): checkpoints and the dataset read-only (each unless in object storage),
    ``/dev/shm``, the config, then what object storage needs (scratch, a key file)."""
    spec = job.spec
    volumes, mounts = claim_volumes(spec)
    mounts.append({"name": SHM_VOLUME, "mountPath": c.SHM_MOUNT})
    volumes.append(
        {
            "name": SHM_VOLUME,
            "emptyDir": {"medium": "Memory", "sizeLimit": shm_size_limit(spec.resources)},
        }
    )
    if spec.model.preset is None:
        ref_name, ref_key = (
            (spec.model.config_map.name, spec.model.config_map.key)
            if spec.model.config_map is not None
            else (config_map_name(job.name, attempt), c.CONFIG_FILE)
        )
        mounts.append({"name": "config", "mountPath": c.CONFIG_MOUNT, "readOnly": True})
        volumes.append(
            {
                "name": "config",
                "configMap": {"name": ref_name, "items": [{"key": ref_key, "path": c.CONFIG_FILE}]},
            }
        )
    more_volumes, more_mounts = storage_volumes(spec, scratch=True)
    return volumes + more_volumes, mounts + more_mounts


def _trainer_resources(spec: JobSpec) -> dict[str, Any]:
    resources = quantities(spec.resources)
    if spec.gpus_per_node > 0:
        for kind in ("limits", "requests"):
            resources.setdefault(kind, {})["nvidia.com/gpu"] = str(spec.gpus_per_node)
    return resources


# --------------------------------------------------------------------------------------------
# The objects


def headless_service(job: OLMoJob, attempt: int) -> dict[str, Any]:
    name = attempt_name(job.name, attempt)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(job, name, c.TRAINER, attempt),
        "spec": {
            "clusterIP": "None",
            "selector": selector(job.name, c.TRAINER, attempt),
            "publishNotReadyAddresses": True,
            "ports": [
                {
                    "name": "rendezvous",
                    "port": c.RENDEZVOUS_PORT,
                    "targetPort": c.RENDEZVOUS_PORT,
                    "protocol": "TCP",
                }
            ],
        },
    }


def config_map(job: OLMoJob, attempt: int) -> dict[str, Any] | None:
    """The inline training config of this attempt (None unless ``spec.model.config``)."""
    if job.spec.model.config is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(job, config_map_name(job.name, attempt), c.TRAINER, attempt),
        "data": {c.CONFIG_FILE: job.spec.model.config},
    }


def avoid_nodes(nodes: tuple[str, ...]) -> dict[str, Any]:
    """Required node anti-affinity: never schedule on ``nodes`` (by node name, which need not
    equal the ``kubernetes.io/hostname`` label)."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": list(nodes)}]}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }


def trainer_job(job: OLMoJob, state: AttemptState) -> dict[str, Any]:
    """The attempt's Indexed Job: one pod per node, gang semantics (any failure ends it)."""
    spec, attempt = job.spec, state.attempt
    name = attempt_name(job.name, attempt)
    pool = spec.node_pool(state.node_pool_index)
    volumes, mounts = _trainer_volumes(job, attempt)
    resources = _trainer_resources(spec)
    main = container(
        spec,
        c.TRAINER_CONTAINER,
        spec.image,
        ["/bin/sh", "-c", PREEMPTION_AWARE_ENTRYPOINT, "olmo-trainer"],
        trainer_args(job, state),
        env=_trainer_env(job, state),
        **storage_env_from(spec),
        ports=[{"name": "rendezvous", "containerPort": c.RENDEZVOUS_PORT, "protocol": "TCP"}],
        volumeMounts=mounts,
        resources=resources or None,
    )
    annotations = {c.ANNOTATION_NODE_POOL: pool.name} if pool is not None else {}
    # Provisioned or operator-owned pools: what binds the pods to their capacity (nothing on a
    # pre-existing pool, whose objects stay as they were).
    pod_annotations, extra_selector, extra_tolerations = pod_capacity(job, pool, attempt)
    template = pod_template(
        job,
        c.TRAINER,
        main,
        volumes,
        attempt=attempt,
        subdomain=name,
        service_account=pod_account(spec, progress_account_name(job.name)),
        grace_seconds=spec.termination_grace_period_seconds,
        placement=Placement(
            spec.priority_class_name,
            {**(pool.node_selector if pool is not None else {}), **extra_selector},
            [*(pool.tolerations if pool is not None else ()), *extra_tolerations],
        ),
        annotations={**annotations, **pod_annotations},
    )
    if state.excluded_nodes:
        template["spec"]["affinity"] = avoid_nodes(state.excluded_nodes)
    return indexed_job(
        job,
        name,
        c.TRAINER,
        template,
        attempt=attempt,
        annotations=annotations,
        completions=state.nodes_of(spec),
        backoff_limit=0,
        rules=[
            # A disrupted pod (preempted, evicted, node shutdown/taint) ends the attempt at
            # once, with the cause in the Job's Failed condition.
            on_disruption("FailJob"),
            # The trainer's "preempted" exit ends it too. Any other failure also fails the Job
            # (backoffLimit 0): the operator restarts the whole gang.
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": c.TRAINER_CONTAINER,
                    "operator": "In",
                    "values": [c.EXIT_PREEMPTED],
                },
            },
        ],
    )
