"""Test helpers for node capacity (importable by other suites, e.g. a cluster-path e2e test):
pool specs, the capacity APIs' CRDs for the emulator, a fake provisioner, and schema checks.

:class:`FakeProvisioner` plays the cluster autoscaler and Karpenter through the API only, so it
runs against the emulator or a real cluster (kind) alike: it marks each ProvisioningRequest
``Provisioned=True`` (creating one Node per requested pod, labelled and tainted as the request's
PodTemplate asks) or ``Failed`` after a delay, per request class; and turns each Karpenter
NodePool into Nodes labelled ``karpenter.sh/nodepool`` and tainted as its template says, deleting
them when the NodePool goes.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
from kubernetes.client.exceptions import ApiException

from olmo_operator import contract as c
from tests.operator.conftest import BackgroundLoop

JSON = dict[str, Any]
SCHEMAS = Path(__file__).parent / "schemas"
CLASS_OK = "best-effort-atomic-scale-up.autoscaling.x-k8s.io"
CLASS_NEVER = "queued-provisioning.gke.io"
"""The fake provisioner never answers requests of this class (a pool that gets no capacity)."""
CLASS_FAILS = "failing.example.com"
"""The fake provisioner fails requests of this class after its delay."""
NODE_CLASS_REF = {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"}


def schema(name: str) -> JSON:
    return json.loads((SCHEMAS / name).read_text())


def validate_provisioning_request(obj: JSON) -> None:
    jsonschema.validate(obj, schema("provisioningrequest-v1.json"))


RESTRICTED_DOMAINS = ("kubernetes.io", "k8s.io", "karpenter.sh")
ALLOWED_KEYS = {
    "karpenter.sh/capacity-type",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/arch",
    "kubernetes.io/os",
}


def validate_node_pool(obj: JSON) -> None:
    """The schema, plus Karpenter's CEL rule on label domains (not evaluated by jsonschema)."""
    jsonschema.validate(obj, schema("nodepool-v1.json"))
    template = obj["spec"]["template"]
    keys = [r["key"] for r in template["spec"]["requirements"]]
    keys += list(((template.get("metadata") or {}).get("labels") or {}).keys())
    for key in keys:
        domain = key.split("/")[0] if "/" in key else ""
        restricted = any(domain.endswith(d) for d in RESTRICTED_DOMAINS)
        if restricted and key not in ALLOWED_KEYS and not domain.endswith("node.kubernetes.io"):
            raise jsonschema.ValidationError(f"label domain of {key!r} is restricted by Karpenter")


def crd(group: str, version: str, kind: str, plural: str, scope: str) -> JSON:
    """A minimal CRD for the emulator (schema-less: the tests validate with the JSON schemas)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": scope,
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }


PROVISIONING_CRD = crd(
    c.PROVISIONING_GROUP,
    c.PROVISIONING_VERSION,
    "ProvisioningRequest",
    c.PROVISIONING_PLURAL,
    "Namespaced",
)
NODEPOOL_CRD = crd(
    c.KARPENTER_GROUP, c.KARPENTER_VERSION, "NodePool", c.KARPENTER_PLURAL, "Cluster"
)


def provisioned_pool(name: str, class_name: str = CLASS_OK, timeout: int = 900) -> JSON:
    return {
        "name": name,
        "nodeSelector": {"pool": name},
        "provisioning": {"className": class_name, "timeoutSeconds": timeout},
    }


def karpenter_pool(name: str, capacity_type: str = "spot") -> JSON:
    return {
        "name": name,
        "preemptible": capacity_type == "spot",
        "maxPreemptions": 1,
        "managed": "karpenter",
        "karpenter": {
            "nodeClassRef": dict(NODE_CLASS_REF),
            "requirements": [
                {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["p5"]}
            ],
            "capacityType": capacity_type,
            "zones": ["us-east-1a"],
        },
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeProvisioner(BackgroundLoop):
    """The cluster autoscaler (ProvisioningRequests) and Karpenter (NodePools), reduced to what
    the operator observes; ``start()`` runs it in a thread every ``interval`` seconds.

    Requests of class :data:`CLASS_OK` become Provisioned after ``delay`` seconds (with one Node
    per pod), :data:`CLASS_FAILS` Failed after ``delay``, :data:`CLASS_NEVER` never answered.
    ``k8s`` is ``tests.operator.conftest.K8s`` (or anything with ``custom``/``core``)."""

    name = "fake-provisioner"

    def __init__(self, k8s: Any, namespace: str = "default", delay: float = 0.3):
        super().__init__()
        self.k8s, self.namespace, self.delay = k8s, namespace, delay
        self.seen: dict[str, float] = {}
        self.handled: list[tuple[str, str]] = []

    def tolerate(self, error: ApiException) -> bool:
        return error.status in (404, 409)  # raced with the operator: the next round sees it

    def tick(self) -> None:
        self.sync()

    def sync(self) -> None:
        self._requests()
        self._node_pools()

    # -- ProvisioningRequests ------------------------------------------------------------------

    def _requests(self) -> None:
        items = self.k8s.custom.list_namespaced_custom_object(
            c.PROVISIONING_GROUP, c.PROVISIONING_VERSION, self.namespace, c.PROVISIONING_PLURAL
        )["items"]
        for request in items:
            name = request["metadata"]["name"]
            conditions = (request.get("status") or {}).get("conditions") or []
            if conditions or request["metadata"].get("deletionTimestamp"):
                continue
            first = self.seen.setdefault(name, time.monotonic())
            if time.monotonic() - first < self.delay:
                continue
            cls = request["spec"]["provisioningClassName"]
            if cls == CLASS_NEVER:
                continue
            if cls == CLASS_FAILS:
                self._condition(request, "Failed", "CapacityUnavailable", "no capacity in zone")
                continue
            self._make_nodes(request)
            self._condition(request, "Provisioned", "Provisioned", "capacity is ready")

    def _condition(self, request: JSON, kind: str, reason: str, message: str) -> None:
        cond = {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": _now(),
        }
        self.k8s.custom.patch_namespaced_custom_object_status(
            c.PROVISIONING_GROUP,
            c.PROVISIONING_VERSION,
            self.namespace,
            c.PROVISIONING_PLURAL,
            request["metadata"]["name"],
            {"status": {"conditions": [cond]}},
        )
        self.handled.append((request["metadata"]["name"], kind))

    def _make_nodes(self, request: JSON) -> None:
        pod_set = request["spec"]["podSets"][0]
        template = self.k8s.core.read_namespaced_pod_template(
            pod_set["podTemplateRef"]["name"], self.namespace
        )
        selector = template.template.spec.node_selector or {}
        for i in range(pod_set["count"]):
            self._node(f"{request['metadata']['name']}-node-{i}", dict(selector), [])

    # -- Karpenter NodePools -------------------------------------------------------------------

    def _node_pools(self) -> None:
        with contextlib.suppress(ApiException):
            pools = self.k8s.custom.list_cluster_custom_object(
                c.KARPENTER_GROUP, c.KARPENTER_VERSION, c.KARPENTER_PLURAL
            )["items"]
            names = {p["metadata"]["name"] for p in pools}
            for pool in pools:
                spec = pool["spec"]["template"]["spec"]
                capacity = next(
                    (
                        r["values"][0]
                        for r in spec["requirements"]
                        if r["key"] == c.KARPENTER_CAPACITY_TYPE
                    ),
                    "on-demand",
                )
                node_labels = {
                    c.KARPENTER_NODEPOOL_LABEL: pool["metadata"]["name"],
                    c.KARPENTER_CAPACITY_TYPE: capacity,
                }
                for i in range(2):
                    self._node(
                        f"{pool['metadata']['name']}-{i}",
                        node_labels,
                        copy.deepcopy(spec.get("taints") or []),
                    )
            for node in self.k8s.core.list_node().items:
                owner = (node.metadata.labels or {}).get(c.KARPENTER_NODEPOOL_LABEL)
                if owner is not None and owner not in names:
                    self.k8s.core.delete_node(node.metadata.name)

    def _node(self, name: str, labels: dict[str, str], taints: list[JSON]) -> None:
        body = {
            "metadata": {"name": name, "labels": {**labels, "kubernetes.io/hostname": name}},
            "spec": {"taints": taints} if taints else {},
        }
        try:
            self.k8s.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
            return
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
        self.k8s.core.patch_node_status(name, {"status": {"conditions": [ready]}})
