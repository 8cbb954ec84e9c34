"""The cluster path with operator-managed node pools (issue 17): the job's first pool is
provisioned per attempt and never gets capacity, so the operator falls back — without spending
a failure — to an operator-owned Karpenter pool, trains there to the end, and leaves no
ProvisioningRequest, PodTemplate or NodePool behind.

The real kopf operator (capacity features on) runs against the API emulator with the
ProvisioningRequest and NodePool CRDs installed; ``FakeProvisioner`` plays the cluster autoscaler
(a request of the "never" class is never answered) and Karpenter (a NodePool becomes labelled,
tainted Nodes). The test kubelet runs the operator's pods as local processes (it binds pods to
its own nodes: node selection is the operator's decision under test, not the kubelet's), with the
data-prep Job, the two-node trainer Job and the final rotation Job of the plain cluster-path test.
"""

from __future__ import annotations

import time

import pytest

from olmo.checkpoints import layout
from olmo_operator import contract as c
from tests.operator.capacity import (
    CLASS_NEVER,
    FakeProvisioner,
    karpenter_pool,
    provisioned_pool,
    validate_node_pool,
    validate_provisioning_request,
)
from tests.operator.conftest import K8s, wait_for
from tests.operator.test_integration_capacity import (  # noqa: F401 (fixtures)
    capacity_operator,
    provisioner,
    requests,
)

from .kubelet import Kubelet
from .test_cluster_path import (
    CHECKPOINT_CLAIM,
    INTERVAL,
    KEEP_LAST,
    MAX_STEPS,
    NAME,
    RUN_TIMEOUT,
    corpus,  # noqa: F401 (a fixture)
    images,
    olmojob_spec,
    status_of,
    trainer_pods,
)

pytestmark = pytest.mark.slow

QUEUED, ON_DEMAND = "h100-queued", "h100-on-demand"


def custom(k8s: K8s, plural: str, group: str, version: str, namespaced: bool = True) -> list:
    if namespaced:
        found = k8s.custom.list_namespaced_custom_object(group, version, k8s.namespace, plural)
    else:
        found = k8s.custom.list_cluster_custom_object(group, version, plural)
    return found["items"]


def node_pools(k8s: K8s) -> list:
    return custom(k8s, c.KARPENTER_PLURAL, c.KARPENTER_GROUP, c.KARPENTER_VERSION, False)


@pytest.mark.parametrize("kubelet_runtime", ["process"])
def test_no_capacity_on_the_first_pool_falls_back_trains_and_leaves_nothing_behind(
    k8s: K8s,
    capacity_operator,  # noqa: F811 (the fixture)
    provisioner: FakeProvisioner,  # noqa: F811 (the fixture)
    job_controller,
    kubelet: Kubelet,
    kubelet_runtime: str,
    corpus: dict[str, int],  # noqa: F811 (the fixture)
):
    spec = olmojob_spec(images(kubelet_runtime))
    spec["eval"] = {"enabled": False}
    spec["checkpoint"]["requireEvaluated"] = False
    spec["nodePools"] = [
        provisioned_pool(QUEUED, class_name=CLASS_NEVER, timeout=5),
        karpenter_pool(ON_DEMAND, capacity_type="on-demand"),
    ]
    k8s.create_olmojob(NAME, spec)

    # The queued pool: its request is made (valid against the published API) and never answered.
    (request,) = wait_for(lambda: requests(k8s), RUN_TIMEOUT, 0.1, "the ProvisioningRequest")
    validate_provisioning_request(request)
    assert request["spec"]["provisioningClassName"] == CLASS_NEVER
    assert request["spec"]["podSets"][0]["count"] == spec["nodes"]
    assert not k8s.batch.list_namespaced_job(
        k8s.namespace, label_selector=f"{c.LABEL_COMPONENT}={c.TRAINER}"
    ).items

    # The fallback pool: an operator-owned NodePool, the trainer pods pinned to it.
    (pool,) = wait_for(lambda: node_pools(k8s), RUN_TIMEOUT, 0.1, "the NodePool")
    validate_node_pool(pool)
    pods = wait_for(lambda: len(p := trainer_pods(k8s, 2)) == 2 and p, RUN_TIMEOUT, 0.1, "pods")
    for pod in pods.values():
        selector = pod["spec"].get("nodeSelector") or {}
        assert selector.get("karpenter.sh/nodepool") == pool["metadata"]["name"]
        assert pod["metadata"]["annotations"].get("karpenter.sh/do-not-disrupt") == "true"
    taint = pool["spec"]["template"]["spec"]["taints"][0]
    assert any(t.get("key") == taint["key"] for t in pods[0]["spec"]["tolerations"])

    final = wait_for(
        lambda: (
            (s := status_of(k8s)).get("phase") in c.TERMINAL_PHASES
            and (s.get("finalRotation") or {}).get("phase") in ("Succeeded", "Failed")
            and s
        ),
        RUN_TIMEOUT,
        0.2,
        "the OLMoJob to finish and rotate its checkpoints",
    )
    assert final["phase"] == c.SUCCEEDED, final
    assert final["nodePool"] == ON_DEMAND
    restarts = final.get("restarts") or {}  # no capacity costs nothing
    assert (restarts.get("failures", 0), restarts.get("preemptions", 0)) == (0, 0)
    assert final["lastProvisioning"]["pool"] == QUEUED
    assert final["lastProvisioning"]["outcome"] == "TimedOut"
    events = {e["reason"]: e for e in k8s.events(NAME)}
    assert "NoCapacity" in events and QUEUED in events["NoCapacity"]["message"]

    # Trained to the end on the fallback pool, checkpoints rotated by the policy.
    run_dir = kubelet.claim_dir(CHECKPOINT_CLAIM) / NAME
    kept = [ckpt.step for ckpt in layout.list_checkpoints(run_dir)]
    assert kept == list(range(INTERVAL, MAX_STEPS + 1, INTERVAL))[-KEEP_LAST:]
    assert layout.latest_complete(run_dir).step == MAX_STEPS

    # Nothing of the capacity machinery is left: GPU nodes can scale to zero.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (requests(k8s) or node_pools(k8s)):
        time.sleep(0.2)
    assert requests(k8s) == [] and node_pools(k8s) == []
    templates = k8s.core.list_namespaced_pod_template(k8s.namespace).items
    assert templates == []
