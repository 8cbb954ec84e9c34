"""The capacity objects of a node pool that is not simply there (see :mod:`olmo_operator.pool_spec`).

- **Provisioned per attempt**: :func:`capacity_objects` gives attempt N's PodTemplate (the
  trainer's pod template, as the Job will run it) and its ProvisioningRequest
  (``autoscaling.x-k8s.io/v1``, ``count`` = nodes), both named ``<job>-a<N>``, labelled with the
  attempt and owned by the OLMoJob; the trainer pods then carry
  ``autoscaling.x-k8s.io/consume-provisioning-request: <job>-a<N>`` and the class annotation
  (:func:`pod_capacity`).
- **Operator-owned** (``managed: karpenter``): :func:`karpenter_node_pool` is the job's Karpenter
  NodePool (``karpenter.sh/v1``, cluster-scoped, so labelled with the OLMoJob's namespace, name and
  uid instead of owned): limits = nodes × GPUs (or × the pods' CPU request on a CPU job), a
  ``NoSchedule`` taint ``olmo-k8s.io/job=<key>`` that only this job's trainer pods tolerate,
  consolidation only of empty nodes with no budget for drift, and no expiry unless asked; the
  pods select its nodes by ``karpenter.sh/nodepool`` and carry ``karpenter.sh/do-not-disrupt``.

Karpenter reserves the label domains ``kubernetes.io``, ``k8s.io`` (which ``olmo-k8s.io`` ends
with) and ``karpenter.sh`` for its template labels, so the nodes get no label of ours: the
selection is Karpenter's own ``karpenter.sh/nodepool`` label.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.pool_spec import NodePool
from olmo_operator.resources.metadata import labels, metadata
from olmo_operator.resources.names import attempt_name
from olmo_operator.spec import OLMoJob

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_LABEL = 63


def _bounded(text: str, limit: int = MAX_LABEL) -> str:
    """``text`` as a DNS label of at most ``limit`` characters: kept when it is one, otherwise
    lowercased, other characters turned into '-', cut, and a hash of the original appended."""
    if len(text) <= limit and _DNS_LABEL.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    clean = re.sub(r"[^a-z0-9-]+", "-", text.lower())[: limit - 11].strip("-")
    return f"{clean}-{digest}" if clean else digest


def node_pool_name(job: OLMoJob, pool: NodePool) -> str:
    """The Karpenter NodePool of ``job`` on ``pool``: ``<namespace>-<job>-<pool>`` (bounded)."""
    return _bounded(f"{job.namespace}-{job.name}-{pool.name}")


def job_key(job: OLMoJob) -> str:
    """The value of the job's node taint: ``<namespace>.<job>`` as a label value (bounded)."""
    key = f"{job.namespace}.{job.name}"
    if len(key) <= MAX_LABEL:
        return key
    return _bounded(key.replace(".", "-"))


def provisioning_request_name(job: str, attempt: int) -> str:
    """Attempt N's ProvisioningRequest and PodTemplate: ``<job>-a<N>``."""
    return attempt_name(job, attempt)


# --------------------------------------------------------------------------------------------
# What the trainer pods get


def pod_capacity(
    job: OLMoJob, pool: NodePool | None, attempt: int
) -> tuple[dict[str, str], dict[str, str], list[dict[str, Any]]]:
    """``(annotations, nodeSelector, tolerations)`` the trainer pods add on ``pool``."""
    if pool is None:
        return {}, {}, []
    if pool.provisioning is not None:
        annotations = {
            c.ANNOTATION_CONSUME_PROVISIONING: provisioning_request_name(job.name, attempt),
            c.ANNOTATION_PROVISIONING_CLASS: pool.provisioning.class_name,
        }
        return annotations, {}, []
    if pool.karpenter_managed:
        toleration = {
            "key": c.TAINT_JOB,
            "operator": "Equal",
            "value": job_key(job),
            "effect": "NoSchedule",
        }
        return (
            {c.KARPENTER_DO_NOT_DISRUPT: "true"},
            {c.KARPENTER_NODEPOOL_LABEL: node_pool_name(job, pool)},
            [toleration],
        )
    return {}, {}, []


# --------------------------------------------------------------------------------------------
# Provisioned per attempt


def capacity_objects(
    job: OLMoJob, pool: NodePool, attempt: int, pod_template: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Attempt ``attempt``'s PodTemplate (``pod_template``: the trainer Job's) and the
    ProvisioningRequest for the attempt's pods on the pool (``spec.nodes``, or fewer with the
    pool's ``maxNodes``)."""
    assert pool.provisioning is not None
    name = provisioning_request_name(job.name, attempt)
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": metadata(job, name, c.TRAINER, attempt),
        "template": dict(pod_template),
    }
    spec: dict[str, Any] = {"provisioningClassName": pool.provisioning.class_name}
    if pool.provisioning.parameters:
        spec["parameters"] = dict(sorted(pool.provisioning.parameters.items()))
    spec["podSets"] = [{"podTemplateRef": {"name": name}, "count": pool.nodes_for(job.spec.nodes)}]
    request = {
        "apiVersion": c.PROVISIONING_API_VERSION,
        "kind": "ProvisioningRequest",
        "metadata": metadata(job, name, c.TRAINER, attempt),
        "spec": spec,
    }
    return [template, request]


# --------------------------------------------------------------------------------------------
# Operator-owned


def _cpu_millis(quantity: Any) -> int | None:
    text = str(quantity)
    try:
        return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)
    except ValueError:
        return None


def node_pool_limits(job: OLMoJob, nodes: int) -> dict[str, str]:
    """What the NodePool may launch in all: the gang's GPUs (``nodes`` pods), or on a CPU job
    its CPU request."""
    spec = job.spec
    if spec.gpus_per_node > 0:
        return {"nvidia.com/gpu": str(nodes * spec.gpus_per_node)}
    resources = spec.resources or {}
    cpu = (resources.get("requests") or {}).get("cpu") or (resources.get("limits") or {}).get("cpu")
    millis = _cpu_millis(cpu) if cpu is not None else None
    if millis is None:
        return {}
    total = millis * nodes
    return {"cpu": str(total // 1000) if total % 1000 == 0 else f"{total}m"}


def karpenter_node_pool(job: OLMoJob, pool: NodePool) -> dict[str, Any]:
    """The job's NodePool on ``pool`` (``managed: karpenter``)."""
    k = pool.karpenter
    assert k is not None
    requirements = [dict(r) for r in k.requirements]
    if k.capacity_type is not None:
        requirements.append(
            {"key": c.KARPENTER_CAPACITY_TYPE, "operator": "In", "values": [k.capacity_type]}
        )
    if k.zones:
        requirements.append({"key": c.ZONE_LABEL, "operator": "In", "values": list(k.zones)})
    meta_labels = {
        **labels(job.name, c.NODEPOOL),
        c.LABEL_JOB_NAMESPACE: job.namespace,
    }
    if job.uid:
        meta_labels[c.LABEL_JOB_UID] = job.uid
    spec: dict[str, Any] = {
        "template": {
            "spec": {
                "nodeClassRef": {
                    "group": k.node_class_ref.group,
                    "kind": k.node_class_ref.kind,
                    "name": k.node_class_ref.name,
                },
                "requirements": requirements,
                "taints": [{"key": c.TAINT_JOB, "value": job_key(job), "effect": "NoSchedule"}],
                "expireAfter": k.expire_after or "Never",
            }
        },
        # Only empty nodes are consolidated (a gang's node is never "underutilized" away), and
        # drift never replaces a node under a running gang; empty nodes go at once.
        "disruption": {
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": "30s",
            "budgets": [{"nodes": "0", "reasons": ["Drifted", "Underutilized"]}],
        },
    }
    limits = node_pool_limits(job, pool.nodes_for(job.spec.nodes))
    if limits:
        spec["limits"] = limits
    return {
        "apiVersion": c.KARPENTER_API_VERSION,
        "kind": "NodePool",
        "metadata": {
            "name": node_pool_name(job, pool),
            "labels": meta_labels,
            "annotations": {c.ANNOTATION_NODE_POOL: pool.name},
        },
        "spec": spec,
    }
