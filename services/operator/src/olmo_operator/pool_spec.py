"""The node pools of an OLMoJob spec (``spec.nodePools[]``), declared like the rest of the spec.

A pool works one of three ways (see the README's "Node pools"):

- **pre-existing** (only ``nodeSelector``/``tolerations``): someone else made the nodes;
- **provisioned per attempt** (``provisioning: {className, timeoutSeconds, parameters}``): each
  attempt first asks the cluster autoscaler for the whole gang with a ProvisioningRequest
  (``autoscaling.x-k8s.io/v1``) and creates its Job only once the request is ``Provisioned``;
- **operator-owned** (``managed: karpenter`` with ``karpenter: {...}``): while the job runs on the
  pool the operator owns a Karpenter NodePool (``karpenter.sh/v1``) made for it, deleted when
  the job leaves the pool, ends or is suspended.

The cross-field rules (``managed: karpenter`` needs ``karpenter`` and the reverse; a pool is
provisioned per attempt or operator-owned, not both) are :func:`pool_problems`.
"""

from __future__ import annotations

from typing import Any

from olmo_operator import openapi
from olmo_operator.typed_schema import Pattern, prop, spec_type

DNS_SUBDOMAIN = Pattern(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    must="be a DNS subdomain (lowercase alphanumerics, '-' and '.')",
)
DURATION = Pattern(
    r"^(([0-9]+(s|m|h))+|Never)$", must="be a duration such as 720h or 90m, or Never"
)
MANAGED_KARPENTER = "karpenter"

NODE_SELECTOR_REQUIREMENT = openapi.obj(
    "A node selector requirement, as in a node affinity (Karpenter NodePool requirements).",
    {
        "key": openapi.string("Node label key (e.g. karpenter.k8s.aws/instance-family)."),
        "operator": openapi.string(
            "How key and values relate.",
            enum=["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"],
        ),
        "values": openapi.array("Label values.", {"type": "string"}),
        "minValues": openapi.integer("Karpenter: at least this many distinct values.", minimum=1),
    },
    required=("key", "operator"),
)


def _tolerations(description: str) -> Any:
    return prop("tolerations", description, schema=openapi.TOLERATION)


@spec_type
class Provisioning:
    """Gang capacity first: a ProvisioningRequest for every attempt on this pool."""

    class_name: str = prop(
        "className",
        "ProvisioningRequest class: best-effort-atomic-scale-up.autoscaling.x-k8s.io, GKE's "
        "queued-provisioning.gke.io, ...",
        required=True,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    timeout_seconds: int = prop(
        "timeoutSeconds",
        "No Provisioned=True within this long moves the job to the next pool (not a failure).",
        minimum=1,
        default=900,
    )
    parameters: dict[str, str] = prop(
        "parameters",
        "The request's spec.parameters (class-specific, e.g. ValidUntilSeconds, "
        "maxRunDurationSeconds).",
    )


@spec_type
class NodeClassRef:
    """The Karpenter node class (cloud-specific settings) of the operator-owned NodePool."""

    group: str = prop("group", "API group, e.g. karpenter.k8s.aws.", required=True, min_length=1)
    kind: str = prop("kind", "Kind, e.g. EC2NodeClass.", required=True, min_length=1)
    name: str = prop("name", "Name of the node class.", required=True, min_length=1)


@spec_type
class KarpenterPool:
    """What the operator-owned Karpenter NodePool launches."""

    node_class_ref: NodeClassRef = prop("nodeClassRef", "The node class.", required=True)
    requirements: tuple[dict[str, Any], ...] = prop(
        "requirements",
        "Node requirements (GPU instance families, node labels), as Karpenter's.",
        schema=NODE_SELECTOR_REQUIREMENT,
        max_items=90,
    )
    capacity_type: str | None = prop(
        "capacityType",
        "spot or on-demand (karpenter.sh/capacity-type); absent: Karpenter's default.",
        enum=["spot", "on-demand"],
    )
    zones: tuple[str, ...] = prop(
        "zones", "Zones to launch in (topology.kubernetes.io/zone); empty: any.", min_length=1
    )
    expire_after: str | None = prop(
        "expireAfter",
        "Node lifetime (Karpenter expireAfter); default Never, since an expiring node ends the "
        "gang's attempt.",
        pattern=DURATION,
    )


@spec_type
class NodePool:
    """A node pool the trainer may run on. Pools are tried in order."""

    name: str = prop(
        "name", "Pool name (shown in status.nodePool).", required=True, min_length=1, max_length=63
    )
    node_selector: dict[str, str] = prop("nodeSelector", "Node labels the trainer pods require.")
    tolerations: tuple[dict[str, Any], ...] = _tolerations("Tolerations for the pool's taints.")
    preemptible: bool = prop(
        "preemptible",
        "Spot/preemptible capacity: after maxPreemptions preemptions here the job moves to the "
        "next pool.",
        default=False,
    )
    max_preemptions: int = prop(
        "maxPreemptions",
        "Preemptions on this (preemptible) pool before falling back to the next pool.",
        minimum=1,
        default=3,
    )
    max_nodes: int | None = prop(
        "maxNodes",
        "At most this many trainer pods on this pool. When smaller than spec.nodes the job runs "
        "here on the largest divisor of spec.nodes that fits, with the same global batch (more "
        "gradient accumulation) and the same data order.",
        minimum=1,
        maximum=4096,
    )
    cost_per_node_hour: float | None = prop(
        "costPerNodeHour",
        "Price of one node-hour on this pool (any currency): status.goodput.pools[].cost and the "
        "olmo_job_cost metric.",
        minimum=0,
    )
    provisioning: Provisioning | None = prop(
        "provisioning",
        "Ask the cluster autoscaler for the whole gang before each attempt "
        "(ProvisioningRequest); needs the chart value operator.provisioning.enabled.",
    )
    managed: str | None = prop(
        "managed",
        "karpenter: the operator owns a Karpenter NodePool for the job on this pool (needs "
        "karpenter and the chart value operator.karpenter.enabled).",
        enum=[MANAGED_KARPENTER],
    )
    karpenter: KarpenterPool | None = prop(
        "karpenter", "The operator-owned NodePool (with managed: karpenter)."
    )

    @property
    def karpenter_managed(self) -> bool:
        return self.managed == MANAGED_KARPENTER

    def nodes_for(self, requested: int) -> int:
        """Trainer pods of an attempt on this pool for a job of ``requested`` nodes."""
        return workable_nodes(requested, self.max_nodes)


def workable_nodes(requested: int, max_nodes: int | None) -> int:
    """The largest node count that keeps the job's global batch and data order: ``requested``
    when it fits, else its largest divisor that is at most ``max_nodes``.

    Every global batch the trainer's schedule uses splits evenly over ``requested`` nodes × the
    processes per node (the trainer checks this at start), so it also splits over any divisor of
    ``requested`` × the same processes: the trainer keeps the batch and takes more micro-batches
    per step. A count that does not divide ``requested`` might not split a batch evenly, and the
    operator does not read the training config to know (it may be a preset inside the image)."""
    if requested < 1:
        raise ValueError(f"requested nodes must be at least 1, got {requested}")
    if max_nodes is None or max_nodes >= requested:
        return requested
    if max_nodes < 1:
        raise ValueError(f"maxNodes must be at least 1, got {max_nodes}")
    return max(d for d in range(1, max_nodes + 1) if requested % d == 0)


def pool_problems(pools: tuple[NodePool, ...], *, queued: bool) -> list[str]:
    """The rules across a pool's fields (``queued``: the job uses a Kueue queue)."""
    out = []
    for i, pool in enumerate(pools):
        where = f"spec.nodePools[{i}] ({pool.name})"
        if pool.karpenter_managed and pool.karpenter is None:
            out.append(f"{where}: managed: karpenter needs karpenter.nodeClassRef")
        if pool.karpenter is not None and not pool.karpenter_managed:
            out.append(f"{where}: karpenter is only read with managed: karpenter")
        if pool.provisioning is not None and pool.karpenter_managed:
            out.append(
                f"{where}: a pool is provisioned per attempt (provisioning) or owned by the "
                "operator (managed: karpenter), not both"
            )
        if pool.provisioning is not None and queued:
            out.append(
                f"{where}: provisioning with spec.queueName: Kueue's ProvisioningRequest "
                "admission check provisions queued jobs; drop one of them"
            )
    return out
