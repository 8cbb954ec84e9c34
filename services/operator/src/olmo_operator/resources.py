"""The Kubernetes objects an OLMoJob needs, as pure functions of (job, attempt state).

Per attempt: a headless Service and an Indexed Job named ``<job>-a<attempt>`` (one pod per node,
``torchrun`` with the node rank from the completion index and the master at pod 0's DNS name),
plus the attempt's config ConfigMap when the model config is inline. Per job: the
ServiceAccount/Role/RoleBinding that lets the pods report progress, the eval worker Deployment,
the data-prep Indexed Job and the final rotation Job. Names are deterministic, so creating them
again after an operator restart is a harmless 409.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from olmo_operator import contract as c
from olmo_operator.retention import rotate_args, trainer_overrides
from olmo_operator.spec import JobSpec, OLMoJob, parse_job

# --------------------------------------------------------------------------------------------
# Names


def attempt_name(job: str, attempt: int) -> str:
    """The trainer Job, its headless Service and (prefix of) its pods: ``<job>-a<attempt>``."""
    return f"{job}-a{attempt}"


def config_map_name(job: str, attempt: int) -> str:
    return f"{attempt_name(job, attempt)}-config"


def progress_account_name(job: str) -> str:
    """ServiceAccount, Role and RoleBinding of the pods that report progress."""
    return f"{job}-progress"


def dataprep_name(job: str) -> str:
    return f"{job}-dataprep"


def eval_name(job: str) -> str:
    return f"{job}-eval"


def rotation_name(job: str) -> str:
    return f"{job}-rotate"


def master_address(job: str, attempt: int) -> str:
    """Pod 0's DNS name: Indexed Job pods are ``<job name>-<index>`` under the subdomain."""
    name = attempt_name(job, attempt)
    return f"{name}-0.{name}"


# --------------------------------------------------------------------------------------------
# Labels and ownership


def labels(job: str, component: str, attempt: int | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": c.APP_NAME,
        "app.kubernetes.io/instance": job,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": c.PART_OF,
        "app.kubernetes.io/managed-by": c.MANAGED_BY,
        c.LABEL_JOB: job,
        c.LABEL_COMPONENT: component,
    }
    if attempt is not None:
        out[c.LABEL_ATTEMPT] = str(attempt)
    return out


def selector(job: str, component: str, attempt: int | None = None) -> dict[str, str]:
    out = {c.LABEL_JOB: job, c.LABEL_COMPONENT: component}
    if attempt is not None:
        out[c.LABEL_ATTEMPT] = str(attempt)
    return out


def owner_references(job: OLMoJob) -> list[dict[str, Any]]:
    """The OLMoJob as controller owner (omitted when the object has no uid yet)."""
    if not job.uid:
        return []
    return [
        {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND,
            "name": job.name,
            "uid": job.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _metadata(
    job: OLMoJob, name: str, component: str, attempt: int | None = None, **extra: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": job.namespace,
        "labels": labels(job.name, component, attempt),
    }
    refs = owner_references(job)
    if refs:
        meta["ownerReferences"] = refs
    meta.update(extra)
    return meta


# --------------------------------------------------------------------------------------------
# Pod building blocks

RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The images' user, whatever the image says; fsGroup: volumes (checkpoint and data PVCs) become
# writable by it.
RESTRICTED_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": c.IMAGE_UID,
    "runAsGroup": c.IMAGE_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
    "fsGroup": c.IMAGE_UID,
    "fsGroupChangePolicy": "OnRootMismatch",
}

# The writable folders of every pod (emptyDirs; the root filesystem is read-only). Their usage
# counts against the node's ephemeral storage; a pod that outgrows a limit is evicted.
TMP_VOLUME, TMP_SIZE_LIMIT = "tmp", "2Gi"
HOME_VOLUME, HOME_SIZE_LIMIT = "home", "4Gi"
SHM_VOLUME = "dshm"
SHM_SIZE_DEFAULT = "16Gi"
"""``sizeLimit`` of the trainer's memory-backed ``/dev/shm`` when its pods have no memory limit
(with one, the limit: tmpfs pages are charged to the pod's memory anyway)."""


def _restricted_pod(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """Make ``pod_spec`` (whose containers are built) run in a real container runtime: as the
    images' uid/gid with the restricted security profile and a read-only root filesystem, with
    emptyDirs at ``/tmp`` and ``$HOME`` and every cache pointed into them (``WRITABLE_ENV``,
    first, except the names the container sets itself: its own env — the user's ``spec.env``,
    last — wins)."""
    pod_spec["securityContext"] = copy.deepcopy(RESTRICTED_POD_SECURITY)
    pod_spec["volumes"] = [
        *pod_spec.get("volumes", []),
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
        {"name": HOME_VOLUME, "emptyDir": {"sizeLimit": HOME_SIZE_LIMIT}},
    ]
    for container in pod_spec["containers"]:
        container["securityContext"] = copy.deepcopy(RESTRICTED_CONTAINER_SECURITY)
        env = container.get("env", [])
        own = {e["name"] for e in env}
        container["env"] = [
            *(_env(name, value) for name, value in c.WRITABLE_ENV if name not in own),
            *env,
        ]
        container["volumeMounts"] = [
            *container.get("volumeMounts", []),
            {"name": TMP_VOLUME, "mountPath": c.TMP_MOUNT},
            {"name": HOME_VOLUME, "mountPath": c.IMAGE_HOME},
        ]
    return pod_spec


def shm_size_limit(resources: Mapping[str, Any]) -> str:
    """``sizeLimit`` of the trainer's ``/dev/shm``: its memory limit, else ``SHM_SIZE_DEFAULT``."""
    limits = resources.get("limits")
    if isinstance(limits, Mapping) and limits.get("memory") is not None:
        return str(limits["memory"])
    return SHM_SIZE_DEFAULT


PREEMPTION_AWARE_ENTRYPOINT = f"""\
# Run "$@" (torchrun) as a child; forward SIGTERM to it; report "preempted" with exit code
# {c.EXIT_PREEMPTED} when the pod was told to stop and the trainer did not finish cleanly.
# torchrun itself exits 1 whatever its workers' codes, so the pod's exit code says it instead.
term=0
trap 'term=1; kill -TERM "$child" 2>/dev/null' TERM INT
"$@" &
child=$!
while :; do
  wait "$child"
  rc=$?
  # a trapped signal interrupts wait (rc > 128) while the child is still running or unreaped
  if [ "$term" = 1 ] && [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi
  break
done
if [ "$term" = 1 ] && [ "$rc" -ne 0 ]; then exit {c.EXIT_PREEMPTED}; fi
exit "$rc"
"""

ROTATION_ENTRYPOINT = """\
# Run "$@" (olmo-ckpt rotate) as a child and keep the last lines of its output (the summary) as
# the container's termination message. sh is PID 1 here, and PID 1 ignores a SIGTERM it has no
# trap for: forward SIGTERM (and SIGINT) to the child, which stops at once (exit 143).
log=$(mktemp) || exec "$@"  # no writable $TMPDIR: no termination message, "$@" as PID 1
term=0 child=
trap 'term=1; kill -TERM "$child" 2>/dev/null' TERM INT
"$@" >"$log" 2>&1 &
child=$!
if [ "$term" = 1 ]; then kill -TERM "$child" 2>/dev/null; fi  # signalled before $child was set
while :; do
  wait "$child"
  rc=$?
  # a trapped signal interrupts wait (rc > 128) while the child is still running or unreaped
  if [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi
  break
done
cat "$log"
summary=$(tail -n 20 "$log")
printf '%s\\n' "$summary" > /dev/termination-log 2>/dev/null || true
rm -f "$log"
exit "$rc"
"""


def _env(name: str, value: Any) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def _job_env(job: OLMoJob, attempt: int | None) -> list[dict[str, Any]]:
    env = [_env(c.ENV_JOB_NAME, job.name), _env(c.ENV_JOB_NAMESPACE, job.namespace)]
    if attempt is not None:
        env.append(_env(c.ENV_ATTEMPT, attempt))
    return env


def _wandb_env(spec: JobSpec) -> list[dict[str, Any]]:
    if spec.wandb is None or spec.wandb.secret is None:
        return []
    ref = spec.wandb.secret
    return [
        {
            "name": c.ENV_WANDB_KEY,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    ]


def _volume_pvc(name: str, claim: str, *, read_only: bool = False) -> dict[str, Any]:
    source: dict[str, Any] = {"claimName": claim}
    if read_only:
        source["readOnly"] = True
    return {"name": name, "persistentVolumeClaim": source}


def _quote(value: Any) -> str:
    """A YAML scalar for ``--set`` (JSON is YAML; strings stay strings: ``"yes"``, ``"1b"``)."""
    return json.dumps(value)


def trainer_config_path(spec: JobSpec) -> str:
    if spec.model.preset is not None:
        return f"{c.IMAGE_CONFIGS_DIR}/{spec.model.preset}.yaml"
    return f"{c.CONFIG_MOUNT}/{c.CONFIG_FILE}"


def trainer_overrides_for(job: OLMoJob) -> list[str]:
    """Every ``--set`` the trainer gets, in order (the spec's own ``overrides`` last, so they
    win)."""
    spec = job.spec
    out = [f"run_name={_quote(job.name)}", f"data.paths={_quote([spec.data_dir])}"]
    out += trainer_overrides(spec)
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


def trainer_args(job: OLMoJob, attempt: int) -> list[str]:
    """``torchrun ... -m olmo.train.cli ...``; ``$(VAR)`` are expanded by the kubelet."""
    spec = job.spec
    args = [
        "torchrun",
        "--nnodes",
        str(spec.nodes),
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
    for override in trainer_overrides_for(job):
        args += ["--set", override]
    return args


def quantities(resources: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``{limits,requests}: {name: quantity}`` with every quantity as a string (``8`` → ``"8"``),
    the form the API's ResourceRequirements takes."""
    return {
        kind: {name: str(value) for name, value in values.items()}
        for kind, values in resources.items()
        if isinstance(values, Mapping)
    }


def _trainer_resources(spec: JobSpec) -> dict[str, Any]:
    resources = quantities(spec.resources)
    if spec.gpus_per_node > 0:
        for kind in ("limits", "requests"):
            resources.setdefault(kind, {})["nvidia.com/gpu"] = str(spec.gpus_per_node)
    return resources


# --------------------------------------------------------------------------------------------
# Per attempt


@dataclass(frozen=True)
class AttemptState:
    """What, besides the spec, decides an attempt's objects."""

    attempt: int
    node_pool_index: int = 0

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> AttemptState:
        return cls(
            attempt=int(status.get("attempt") or 1),
            node_pool_index=int(status.get("nodePoolIndex") or 0),
        )


def headless_service(job: OLMoJob, attempt: int) -> dict[str, Any]:
    name = attempt_name(job.name, attempt)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(job, name, c.TRAINER, attempt),
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
        "metadata": _metadata(job, config_map_name(job.name, attempt), c.TRAINER, attempt),
        "data": {c.CONFIG_FILE: job.spec.model.config},
    }


def trainer_job(job: OLMoJob, state: AttemptState) -> dict[str, Any]:
    """The attempt's Indexed Job: one pod per node, gang semantics (any failure ends it)."""
    spec, attempt = job.spec, state.attempt
    name = attempt_name(job.name, attempt)
    pool = spec.node_pool(state.node_pool_index)

    env = [
        *_job_env(job, attempt),
        _env(c.ENV_GRACE, spec.termination_grace_period_seconds),
        # torchrun gives its workers 30 s between SIGTERM and SIGKILL unless told otherwise:
        # the trainer gets the pod's whole grace period to save its checkpoint.
        _env("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", spec.termination_grace_period_seconds),
        _env("MASTER_ADDR", master_address(job.name, attempt)),
        _env("MASTER_PORT", c.RENDEZVOUS_PORT),
        _env("NNODES", spec.nodes),
        _env("NPROC_PER_NODE", spec.procs_per_node),
    ]
    if spec.gpus_per_node == 0:
        env.append(_env("DS_ACCELERATOR", "cpu"))
    env += _wandb_env(spec)
    env += [dict(e) for e in spec.env]

    mounts = [
        {"name": "checkpoints", "mountPath": c.CHECKPOINTS_MOUNT},
        {"name": "data", "mountPath": c.DATA_MOUNT, "readOnly": True},
        {"name": SHM_VOLUME, "mountPath": c.SHM_MOUNT},
    ]
    volumes: list[dict[str, Any]] = [
        _volume_pvc("checkpoints", spec.checkpoint.claim_name),
        _volume_pvc("data", spec.dataset.claim_name, read_only=True),
        {
            "name": SHM_VOLUME,
            "emptyDir": {"medium": "Memory", "sizeLimit": shm_size_limit(spec.resources)},
        },
    ]
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

    container: dict[str, Any] = {
        "name": c.TRAINER_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["/bin/sh", "-c", PREEMPTION_AWARE_ENTRYPOINT, "olmo-trainer"],
        "args": trainer_args(job, attempt),
        "env": env,
        "ports": [{"name": "rendezvous", "containerPort": c.RENDEZVOUS_PORT, "protocol": "TCP"}],
        "volumeMounts": mounts,
    }
    resources = _trainer_resources(spec)
    if resources:
        container["resources"] = resources

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "subdomain": name,
        "serviceAccountName": progress_account_name(job.name),
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        **_pull_secrets(spec),
        "containers": [container],
        "volumes": volumes,
    }
    _restricted_pod(pod_spec)
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    if pool is not None:
        if pool.node_selector:
            pod_spec["nodeSelector"] = dict(pool.node_selector)
        if pool.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in pool.tolerations]

    annotations = {c.ANNOTATION_NODE_POOL: pool.name} if pool is not None else {}
    meta = _metadata(job, name, c.TRAINER, attempt)
    if annotations:
        meta["annotations"] = dict(annotations)
    if spec.queue_name:
        meta["labels"][c.KUEUE_QUEUE_LABEL] = spec.queue_name
    template_meta: dict[str, Any] = {"labels": labels(job.name, c.TRAINER, attempt)}
    if annotations:
        template_meta["annotations"] = dict(annotations)

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.nodes,
            "parallelism": spec.nodes,
            "backoffLimit": 0,
            "suspend": bool(spec.queue_name),
            "podFailurePolicy": {
                "rules": [
                    # A disrupted pod (preempted, evicted, node shutdown/taint) ends the attempt
                    # at once, with the cause in the Job's Failed condition.
                    {
                        "action": "FailJob",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                    # The trainer's "preempted" exit ends it too. Any other failure also fails
                    # the Job (backoffLimit 0): the operator restarts the whole gang.
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": c.TRAINER_CONTAINER,
                            "operator": "In",
                            "values": [c.EXIT_PREEMPTED],
                        },
                    },
                ]
            },
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def progress_rbac(job: OLMoJob) -> list[dict[str, Any]]:
    """ServiceAccount + Role (get/patch this OLMoJob's status only) + RoleBinding."""
    name = progress_account_name(job.name)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(job, name, c.TRAINER),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _metadata(job, name, c.TRAINER),
            "rules": [
                {
                    "apiGroups": [c.GROUP],
                    "resources": [f"{c.PLURAL}/status"],
                    "resourceNames": [job.name],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(job, name, c.TRAINER),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": job.namespace}],
        },
    ]


def _pull_secrets(spec: Any) -> dict[str, Any]:
    """``imagePullSecrets`` of every pod (images from a private registry)."""
    if not spec.image_pull_secrets:
        return {}
    return {"imagePullSecrets": [{"name": name} for name in spec.image_pull_secrets]}


EVAL_PORT = 8080  # the eval worker's /healthz and Prometheus /metrics


def eval_deployment(job: OLMoJob) -> dict[str, Any]:
    """The eval worker: one replica watching the run directory."""
    spec = job.spec
    # command, not args alone: the image's ENTRYPOINT would otherwise be kept in front.
    args = ["watch", spec.run_dir, "--port", str(EVAL_PORT), "--poll-seconds", "30"]
    if spec.eval.tasks:
        args += ["--tasks", ",".join(spec.eval.tasks)]
    if spec.eval.limit is not None:
        args += ["--limit", str(spec.eval.limit)]
    container: dict[str, Any] = {
        "name": c.EVALWORKER,
        "image": spec.eval.image or spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["olmo-eval"],
        "args": args,
        "ports": [{"name": "metrics", "containerPort": EVAL_PORT}],
        # /healthz answers 503 when the watch loop died or one evaluation is stuck.
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 30,
            "failureThreshold": 3,
        },
        "env": _job_env(job, None) + _wandb_env(spec),
        # The dataset too, read-only at the trainer's path: a checkpoint's tokenizer is the
        # tokenizer.json next to the manifest of its config's data.paths (/data/<path>).
        "volumeMounts": [
            {"name": "checkpoints", "mountPath": c.CHECKPOINTS_MOUNT},
            {"name": "data", "mountPath": c.DATA_MOUNT, "readOnly": True},
        ],
    }
    if spec.eval.resources:
        container["resources"] = quantities(spec.eval.resources)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": progress_account_name(job.name),
        **_pull_secrets(spec),
        "containers": [container],
        "volumes": [
            _volume_pvc("checkpoints", spec.checkpoint.claim_name),
            _volume_pvc("data", spec.dataset.claim_name, read_only=True),
        ],
    }
    _restricted_pod(pod_spec)
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    if spec.eval.node_selector:
        pod_spec["nodeSelector"] = dict(spec.eval.node_selector)
    if spec.eval.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.eval.tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(job, eval_name(job.name), c.EVALWORKER),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(job.name, c.EVALWORKER)},
            "template": {
                "metadata": {"labels": labels(job.name, c.EVALWORKER)},
                "spec": pod_spec,
            },
        },
    }


def desired_objects(job: OLMoJob | Mapping[str, Any], state: AttemptState) -> list[dict[str, Any]]:
    """Everything a running attempt needs, in creation order: RBAC, config, the headless
    Service, the Indexed Job, and the eval worker when ``spec.eval.enabled``."""
    if not isinstance(job, OLMoJob):
        job = parse_job(job)
    objects = progress_rbac(job)
    cm = config_map(job, state.attempt)
    if cm is not None:
        objects.append(cm)
    objects += [headless_service(job, state.attempt), trainer_job(job, state)]
    if job.spec.eval.enabled:
        objects.append(eval_deployment(job))
    return objects


# --------------------------------------------------------------------------------------------
# Before and after training


def dataprep_job(job: OLMoJob) -> dict[str, Any]:
    """The data-prep Indexed Job writing token shards into the dataset volume."""
    spec = job.spec
    prepare = spec.dataset.prepare
    if prepare is None:
        raise ValueError("spec.dataset.prepare is not set")
    container: dict[str, Any] = {
        "name": c.DATAPREP,
        "image": prepare.image or spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["olmo-dataprep"],
        "args": [
            "run",
            f"{c.PIPELINE_MOUNT}/{c.PIPELINE_FILE}",
            "--num-workers",
            str(prepare.workers),
            "--output",
            spec.data_dir,
        ],
        "env": _job_env(job, None),
        "volumeMounts": [
            {"name": "pipeline", "mountPath": c.PIPELINE_MOUNT, "readOnly": True},
            {"name": "data", "mountPath": c.DATA_MOUNT},
        ],
    }
    if prepare.resources:
        container["resources"] = quantities(prepare.resources)
    meta = _metadata(job, dataprep_name(job.name), c.DATAPREP)
    if spec.queue_name:
        meta["labels"][c.KUEUE_QUEUE_LABEL] = spec.queue_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "completionMode": "Indexed",
            "completions": prepare.workers,
            "parallelism": prepare.workers,
            # Workers are independent: Kubernetes retries a failed one; preempted ones are free.
            "backoffLimit": max(spec.max_failures, 1) * prepare.workers,
            "suspend": bool(spec.queue_name),
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    }
                ]
            },
            "template": {
                "metadata": {"labels": labels(job.name, c.DATAPREP)},
                "spec": _restricted_pod(
                    {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        **_pull_secrets(spec),
                        "containers": [container],
                        "volumes": [
                            {
                                "name": "pipeline",
                                "configMap": {
                                    "name": prepare.pipeline.name,
                                    "items": [
                                        {"key": prepare.pipeline.key, "path": c.PIPELINE_FILE}
                                    ],
                                },
                            },
                            _volume_pvc("data", spec.dataset.claim_name),
                        ],
                    }
                ),
            },
        },
    }


def rotation_job(job: OLMoJob) -> dict[str, Any]:
    """One short Job running ``olmo-ckpt rotate`` on the run directory (trainer image)."""
    spec = job.spec
    container = {
        "name": c.ROTATION,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["/bin/sh", "-c", ROTATION_ENTRYPOINT, "olmo-rotate"],
        "args": rotate_args(spec),
        "volumeMounts": [{"name": "checkpoints", "mountPath": c.CHECKPOINTS_MOUNT}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(job, rotation_name(job.name), c.ROTATION),
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 2,
            "activeDeadlineSeconds": 1800,
            "template": {
                "metadata": {"labels": labels(job.name, c.ROTATION)},
                "spec": _restricted_pod(
                    {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        **_pull_secrets(spec),
                        "containers": [container],
                        "volumes": [_volume_pvc("checkpoints", spec.checkpoint.claim_name)],
                    }
                ),
            },
        },
    }
