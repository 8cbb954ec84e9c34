"""The pod template every workload shares, and the Indexed Job that runs a gang of them.

The four workloads (trainer Job, eval worker Deployment, data-prep Job, rotation Job) differ in
their container, volumes, identity and placement; :func:`pod_template` adds what makes any of
them run in a real container runtime: the images' uid/gid with the restricted security profile
and a read-only root filesystem, emptyDirs at ``/tmp`` and ``$HOME`` with every cache pointed
into them, and the registry's pull secrets. The dict keys come in a fixed order, so the same
OLMoJob always gives the same JSON.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from olmo_operator import contract as c
from olmo_operator.resources.metadata import labels, metadata
from olmo_operator.spec import JobSpec, OLMoJob

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

# --------------------------------------------------------------------------------------------
# Building blocks


def env(name: str, value: Any) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def job_env(job: OLMoJob, attempt: int | None) -> list[dict[str, Any]]:
    """Who the pod works for: the OLMoJob's name and namespace (and attempt), so that it can
    report progress into the job's progress ConfigMap (``resources/progress_channel.py``)."""
    out = [env(c.ENV_JOB_NAME, job.name), env(c.ENV_JOB_NAMESPACE, job.namespace)]
    if attempt is not None:
        out.append(env(c.ENV_ATTEMPT, attempt))
    return out


def wandb_env(spec: JobSpec) -> list[dict[str, Any]]:
    if spec.wandb is None or spec.wandb.secret is None:
        return []
    ref = spec.wandb.secret
    return [
        {
            "name": c.ENV_WANDB_KEY,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    ]


def pvc_volume(name: str, claim: str, *, read_only: bool = False) -> dict[str, Any]:
    source: dict[str, Any] = {"claimName": claim}
    if read_only:
        source["readOnly"] = True
    return {"name": name, "persistentVolumeClaim": source}


def quantities(resources: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``{limits,requests}: {name: quantity}`` with every quantity as a string (``8`` → ``"8"``),
    the form the API's ResourceRequirements takes."""
    return {
        kind: {name: str(value) for name, value in values.items()}
        for kind, values in resources.items()
        if isinstance(values, Mapping)
    }


def pull_secrets(spec: JobSpec) -> dict[str, Any]:
    """``imagePullSecrets`` of every pod (images from a private registry)."""
    if not spec.image_pull_secrets:
        return {}
    return {"imagePullSecrets": [{"name": name} for name in spec.image_pull_secrets]}


def restricted_pod(pod_spec: dict[str, Any]) -> dict[str, Any]:
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
        own_env = container.get("env", [])
        own = {e["name"] for e in own_env}
        container["env"] = [
            *(env(name, value) for name, value in c.WRITABLE_ENV if name not in own),
            *own_env,
        ]
        container["volumeMounts"] = [
            *container.get("volumeMounts", []),
            {"name": TMP_VOLUME, "mountPath": c.TMP_MOUNT},
            {"name": HOME_VOLUME, "mountPath": c.IMAGE_HOME},
        ]
    return pod_spec


# --------------------------------------------------------------------------------------------
# The container and the pod template


def container(
    spec: JobSpec,
    name: str,
    image: str,
    command: list[str],
    args: list[str],
    *,
    resources: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One container: name, image (pulled by ``spec.imagePullPolicy``), command and args, then
    ``fields`` in the order given, then ``resources`` unless None. ``command``, not args alone:
    the image's ENTRYPOINT would otherwise be kept in front."""
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": command,
        "args": args,
        **fields,
    }
    if resources is not None:
        out["resources"] = resources
    return out


@dataclass(frozen=True)
class Placement:
    """Where the pods may run: the trainer's current node pool, the eval worker's own choice."""

    priority_class_name: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()


def pod_template(
    job: OLMoJob,
    component: str,
    main: dict[str, Any],
    volumes: list[dict[str, Any]],
    *,
    attempt: int | None = None,
    restart_policy: str | None = "Never",
    subdomain: str | None = None,
    service_account: str | None = None,
    grace_seconds: int | None = None,
    placement: Placement | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The pod template (``metadata`` with the component's labels, and ``spec``) of one
    container, ``main``, with ``volumes``, made restricted (:func:`restricted_pod`).

    ``service_account``: the pod's identity (the progress ServiceAccount, or the workload
    identity of ``spec.storage.serviceAccountName``); without one the pod gets no API token at
    all. ``restart_policy`` None leaves the default (a Deployment's)."""
    spec: dict[str, Any] = {}
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    if subdomain is not None:
        spec["subdomain"] = subdomain
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    else:
        spec["automountServiceAccountToken"] = False
    if grace_seconds is not None:
        spec["terminationGracePeriodSeconds"] = grace_seconds
    spec.update(pull_secrets(job.spec))
    spec["containers"] = [main]
    spec["volumes"] = volumes
    restricted_pod(spec)
    place = placement or Placement()
    if place.priority_class_name:
        spec["priorityClassName"] = place.priority_class_name
    if place.node_selector:
        spec["nodeSelector"] = dict(place.node_selector)
    if place.tolerations:
        spec["tolerations"] = [dict(t) for t in place.tolerations]
    meta: dict[str, Any] = {"labels": labels(job.name, component, attempt)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"metadata": meta, "spec": spec}


# --------------------------------------------------------------------------------------------
# The Indexed Job


def on_disruption(action: str) -> dict[str, Any]:
    """A pod failure policy rule for pods that were disrupted (preempted, evicted, node
    shutdown or taint) rather than failed by themselves."""
    return {"action": action, "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def indexed_job(
    job: OLMoJob,
    name: str,
    component: str,
    template: dict[str, Any],
    *,
    completions: int,
    backoff_limit: int,
    rules: list[dict[str, Any]],
    attempt: int | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An Indexed Job running ``completions`` pods at once (pod ``i`` gets completion index
    ``i``). With ``spec.queueName`` it carries Kueue's queue label and is created suspended:
    Kueue admits it by unsuspending."""
    extra = {"annotations": dict(annotations)} if annotations else {}
    meta = metadata(job, name, component, attempt, **extra)
    queue = job.spec.queue_name
    if queue:
        meta["labels"][c.KUEUE_QUEUE_LABEL] = queue
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": completions,
            "backoffLimit": backoff_limit,
            "suspend": bool(queue),
            "podFailurePolicy": {"rules": rules},
            "template": template,
        },
    }
