"""What the operator sees of an OLMoJob's children, and how it reads them.

:class:`Observed` is the input a reconcile gets (the labelled children as the API lists them,
and the nodes of an ended attempt's pods); :class:`Children` sorts them by component and
attempt. The readers below (a Job succeeded, failed, is suspended; a pod is done; an object is
being deleted) are the only places that interpret a child's status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle.action import ObjectRef
from olmo_operator.resources.names import attempt_name, dataprep_name, eval_name, rotation_name
from olmo_operator.resources.progress_channel import progress_config_map_name


@dataclass(frozen=True)
class Observed:
    """What exists now: the OLMoJob's children (labelled ``olmo-k8s.io/job=<name>``) and the
    nodes of the pods of an ended attempt (None: the node is gone; absent: unknown)."""

    now: dt.datetime
    jobs: tuple[Mapping[str, Any], ...] = ()
    pods: tuple[Mapping[str, Any], ...] = ()
    services: tuple[Mapping[str, Any], ...] = ()
    deployments: tuple[Mapping[str, Any], ...] = ()
    config_maps: tuple[Mapping[str, Any], ...] = ()
    nodes: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    provisioning_requests: tuple[Mapping[str, Any], ...] = ()
    """The job's ProvisioningRequests (listed with ``OLMO_FEATURE_PROVISIONING``)."""
    pod_templates: tuple[Mapping[str, Any], ...] = ()
    node_pools: tuple[Mapping[str, Any], ...] = ()
    """The job's Karpenter NodePools (cluster-scoped; listed with ``OLMO_FEATURE_KARPENTER``)."""
    notices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Nodes of the current attempt's running pods that carry an impending-termination signal
    (seen with ``OLMO_FEATURE_TERMINATION_NOTICES``), by name."""


# --------------------------------------------------------------------------------------------
# Readers of one object


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def name_of(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def attempt_of(obj: Mapping[str, Any]) -> int | None:
    raw = labels_of(obj).get(c.LABEL_ATTEMPT)
    return int(raw) if raw is not None and str(raw).isdigit() else None


def deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def ref(obj: Mapping[str, Any]) -> ObjectRef:
    return ObjectRef(obj["apiVersion"], obj["kind"], name_of(obj))


def condition_true(obj: Mapping[str, Any] | None, kind: str) -> bool:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return True
    return False


def condition_of(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def pod_done(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def job_suspended(job: Mapping[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def job_succeeded(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]] = ()) -> bool:
    """Complete condition, or every index succeeded (as counted by the Job or seen on pods)."""
    if condition_true(job, "Complete") or condition_true(job, "SuccessCriteriaMet"):
        return True
    spec, status = job.get("spec") or {}, job.get("status") or {}
    completions = spec.get("completions") or 1
    if (status.get("succeeded") or 0) >= completions:
        return True
    indexes = set()
    for pod in pods:
        if (pod.get("status") or {}).get("phase") == "Succeeded":
            meta = pod.get("metadata") or {}
            index = (meta.get("annotations") or {}).get(
                "batch.kubernetes.io/job-completion-index"
            ) or (meta.get("labels") or {}).get("batch.kubernetes.io/job-completion-index")
            indexes.add(index if index is not None else name_of(pod))
    return len(indexes) >= completions


def job_failed(job: Mapping[str, Any]) -> bool:
    if condition_true(job, "Failed") or condition_true(job, "FailureTarget"):
        return True
    return (job.get("status") or {}).get("failed", 0) > 0


# --------------------------------------------------------------------------------------------
# The children, sorted


def with_kind(
    objs: Iterable[Mapping[str, Any]], api_version: str, kind: str
) -> list[Mapping[str, Any]]:
    """Items of a list response carry no apiVersion/kind: put them back."""
    out = []
    for obj in objs:
        if obj.get("kind") and obj.get("apiVersion"):
            out.append(obj)
        else:
            out.append({**obj, "apiVersion": api_version, "kind": kind})
    return out


@dataclass
class Children:
    """The children of one OLMoJob, by component (another OLMoJob's never count)."""

    name: str
    trainer_jobs: list[Mapping[str, Any]]
    trainer_pods: list[Mapping[str, Any]]
    services: list[Mapping[str, Any]]
    config_maps: list[Mapping[str, Any]]
    dataprep: Mapping[str, Any] | None
    dataprep_pods: list[Mapping[str, Any]]
    rotation: Mapping[str, Any] | None
    rotation_pods: list[Mapping[str, Any]]
    eval: Mapping[str, Any] | None
    progress: Mapping[str, Any] | None = None
    """The ``<job>-progress`` ConfigMap the pods report into (no attempt: restarts keep it)."""
    provisioning_requests: list[Mapping[str, Any]] = field(default_factory=list)
    pod_templates: list[Mapping[str, Any]] = field(default_factory=list)
    node_pools: list[Mapping[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, observed: Observed) -> Children:
        jobs = with_kind(observed.jobs, "batch/v1", "Job")
        pods = with_kind(observed.pods, "v1", "Pod")
        services = with_kind(observed.services, "v1", "Service")
        deployments = with_kind(observed.deployments, "apps/v1", "Deployment")
        config_maps = with_kind(observed.config_maps, "v1", "ConfigMap")

        def mine(objs: Iterable[Mapping[str, Any]], component: str) -> list[Mapping[str, Any]]:
            return [
                o
                for o in objs
                if labels_of(o).get(c.LABEL_JOB) == name
                and labels_of(o).get(c.LABEL_COMPONENT) == component
            ]

        def named(objs: list[Mapping[str, Any]], wanted: str) -> Mapping[str, Any] | None:
            return next((o for o in objs if name_of(o) == wanted), None)

        return cls(
            name=name,
            trainer_jobs=mine(jobs, c.TRAINER),
            trainer_pods=mine(pods, c.TRAINER),
            services=mine(services, c.TRAINER),
            config_maps=mine(config_maps, c.TRAINER),
            dataprep=named(mine(jobs, c.DATAPREP), dataprep_name(name)),
            dataprep_pods=mine(pods, c.DATAPREP),
            rotation=named(mine(jobs, c.ROTATION), rotation_name(name)),
            rotation_pods=mine(pods, c.ROTATION),
            eval=named(mine(deployments, c.EVALWORKER), eval_name(name)),
            progress=named(mine(config_maps, c.TRAINER), progress_config_map_name(name)),
            provisioning_requests=mine(
                with_kind(
                    observed.provisioning_requests,
                    c.PROVISIONING_API_VERSION,
                    "ProvisioningRequest",
                ),
                c.TRAINER,
            ),
            pod_templates=mine(with_kind(observed.pod_templates, "v1", "PodTemplate"), c.TRAINER),
            node_pools=mine(
                with_kind(observed.node_pools, c.KARPENTER_API_VERSION, "NodePool"), c.NODEPOOL
            ),
        )

    def trainer_job(self, attempt: int) -> Mapping[str, Any] | None:
        wanted = attempt_name(self.name, attempt)
        return next((j for j in self.trainer_jobs if name_of(j) == wanted), None)

    def attempt_pods(self, attempt: int) -> list[Mapping[str, Any]]:
        return [p for p in self.trainer_pods if attempt_of(p) == attempt]

    def attempt_services(self, attempt: int) -> list[Mapping[str, Any]]:
        return [s for s in self.services if attempt_of(s) == attempt]

    def provisioning_request(self, attempt: int) -> Mapping[str, Any] | None:
        return next((r for r in self.provisioning_requests if attempt_of(r) == attempt), None)

    def capacity_objects(self, attempt: int | None = None) -> list[Mapping[str, Any]]:
        """ProvisioningRequests and PodTemplates (of ``attempt``; None: all)."""
        objs = [*self.provisioning_requests, *self.pod_templates]
        return [o for o in objs if attempt is None or attempt_of(o) == attempt]

    def _attempt_objects(self) -> list[Mapping[str, Any]]:
        return [
            *self.trainer_jobs,
            *self.services,
            *self.config_maps,
            *self.trainer_pods,
            *self.capacity_objects(),
        ]

    def of_attempt(self, attempt: int) -> list[Mapping[str, Any]]:
        return [o for o in self._attempt_objects() if attempt_of(o) == attempt]

    def not_of_attempt(self, attempt: int) -> list[Mapping[str, Any]]:
        return [
            o
            for o in self._attempt_objects()
            if attempt_of(o) is not None and attempt_of(o) != attempt
        ]
