"""Node capacity with the real kopf operator against the emulator: ProvisioningRequests before
the Job, operator-owned Karpenter NodePools, termination notices (issue 17 items 1-3).

:class:`tests.operator.capacity.FakeProvisioner` plays the cluster autoscaler and Karpenter; the
``job_controller`` fixture the job controller and the kubelet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from olmo_operator import contract as c

from .capacity import (
    CLASS_NEVER,
    CLASS_OK,
    NODEPOOL_CRD,
    PROVISIONING_CRD,
    FakeProvisioner,
    karpenter_pool,
    provisioned_pool,
    validate_node_pool,
    validate_provisioning_request,
)
from .conftest import K8s, Operator, fail_pod, running_operator, succeed_pod, wait_for
from .test_integration import TIMEOUT, attempt_pods, gone, status, wait_running, wait_status

FEATURES = {
    c.ENV_FEATURE_PROVISIONING: "true",
    c.ENV_FEATURE_KARPENTER: "true",
    c.ENV_FEATURE_TERMINATION_NOTICES: "true",
}


@pytest.fixture
def capacity_operator(emulator, olmojob_resource, monkeypatch) -> Iterator[Operator]:
    """The operator with every capacity feature on, the capacity CRDs installed."""
    for crd in (PROVISIONING_CRD, NODEPOOL_CRD):
        emulator.call(emulator.emulator.register_crd, crd)
    with running_operator(monkeypatch, **FEATURES) as op:
        yield op


@pytest.fixture
def provisioner(k8s: K8s) -> Iterator[FakeProvisioner]:
    fake = FakeProvisioner(k8s).start()
    yield fake
    fake.stop()
    assert not fake.errors, fake.errors


def requests(k8s: K8s) -> list[dict]:
    return k8s.custom.list_namespaced_custom_object(
        c.PROVISIONING_GROUP, c.PROVISIONING_VERSION, k8s.namespace, c.PROVISIONING_PLURAL
    )["items"]


def node_pools(k8s: K8s) -> list[dict]:
    return k8s.custom.list_cluster_custom_object(
        c.KARPENTER_GROUP, c.KARPENTER_VERSION, c.KARPENTER_PLURAL
    )["items"]


def events(k8s: K8s, reason: str) -> list[dict]:
    return [e for e in k8s.events() if e.get("reason") == reason]


def test_no_capacity_falls_back_then_provisioned_job_runs_and_nothing_is_left(
    k8s, make_olmojob, capacity_operator, provisioner, job_controller
):
    pools = [provisioned_pool("dws", CLASS_NEVER, timeout=2), provisioned_pool("atomic", CLASS_OK)]
    make_olmojob("llm", nodePools=pools)
    first = wait_for(lambda: requests(k8s), TIMEOUT, message="the first ProvisioningRequest")
    validate_provisioning_request({**first[0], "apiVersion": c.PROVISIONING_API_VERSION})
    assert k8s.jobs(f"{c.LABEL_JOB}=llm") == []  # no Job before capacity
    assert wait_status(k8s, "llm", phase=c.PENDING)
    pods = wait_running(k8s, "llm", 2)
    st = status(k8s, "llm")
    assert st["nodePool"] == "atomic" and st.get("restarts") is None
    assert st["lastProvisioning"]["outcome"] == "Provisioned"
    assert events(k8s, "NoCapacity"), "an Event says why the job moved on"
    annotations = pods[0]["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_CONSUME_PROVISIONING] == "llm-a2"
    assert annotations[c.ANNOTATION_PROVISIONING_CLASS] == CLASS_OK
    for pod in pods:
        succeed_pod(k8s, pod["metadata"]["name"], job_controller)
    wait_status(k8s, "llm", phase=c.SUCCEEDED)
    wait_for(lambda: not requests(k8s), TIMEOUT, message="no ProvisioningRequest left")
    assert gone(k8s.core.read_namespaced_pod_template, "llm-a2", k8s.namespace)


def test_karpenter_pool_follows_the_job_and_goes_with_it(
    k8s, make_olmojob, capacity_operator, provisioner, job_controller
):
    make_olmojob("llm", nodePools=[karpenter_pool("spot"), karpenter_pool("od", "on-demand")])
    pool = wait_for(lambda: node_pools(k8s), TIMEOUT, message="the job's NodePool")[0]
    validate_node_pool({**pool, "apiVersion": c.KARPENTER_API_VERSION, "kind": "NodePool"})
    assert pool["metadata"]["name"] == "default-llm-spot"
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": "16"}
    pods = wait_running(k8s, "llm", 1)
    assert pods[0]["spec"]["nodeSelector"][c.KARPENTER_NODEPOOL_LABEL] == "default-llm-spot"
    # A spot reclaim (maxPreemptions 1): the on-demand sibling's NodePool replaces it.
    node = pods[0]["spec"]["nodeName"]
    k8s.core.delete_node(node)
    fail_pod(k8s, pods[0]["metadata"]["name"], exit_code=137, controller=job_controller)
    wait_running(k8s, "llm", 2)
    names = wait_for(
        lambda: [p["metadata"]["name"] for p in node_pools(k8s)] == ["default-llm-od"],
        TIMEOUT,
        message="the on-demand NodePool only",
    )
    assert names
    k8s.patch_olmojob("llm", {"spec": {"suspend": True}})
    wait_for(lambda: not node_pools(k8s), TIMEOUT, message="no NodePool while suspended")
    k8s.patch_olmojob("llm", {"spec": {"suspend": False}})
    wait_for(lambda: node_pools(k8s), TIMEOUT, message="the NodePool again on resume")
    k8s.delete_olmojob("llm")
    wait_for(lambda: not node_pools(k8s), TIMEOUT, message="no NodePool after deletion")


def test_termination_notice_stops_the_gang_as_a_preemption(
    k8s, make_olmojob, capacity_operator, job_controller
):
    make_olmojob("llm", nodePools=[{"name": "spot", "preemptible": True, "maxPreemptions": 5}])
    pods = wait_running(k8s, "llm", 1)
    node = pods[0]["spec"]["nodeName"]
    taint = {"key": "cloud.google.com/impending-node-termination", "effect": "NoSchedule"}
    k8s.core.patch_node(node, {"spec": {"taints": [taint]}})
    wait_for(
        lambda: (
            all(
                (p["metadata"].get("deletionTimestamp") or gone(k8s.pod, p["metadata"]["name"]))
                for p in attempt_pods(k8s, "llm", 1)
            )
            or not attempt_pods(k8s, "llm", 1)
        ),
        TIMEOUT,
        message="the gang's pods deleted",
    )
    st = wait_status(k8s, "llm", attempt=2)
    assert st["restarts"] == {"failures": 0, "preemptions": 1}
    assert st["lastRestart"]["reason"] == "TerminationNotice"
    # Events are posted after the status patch: wait for it rather than read it at once.
    notice = wait_for(lambda: events(k8s, "TerminationNotice"), TIMEOUT, message="the Event")
    assert node in notice[0]["message"]
    k8s.core.patch_node(node, {"spec": {"taints": []}})
    wait_running(k8s, "llm", 2)


def test_a_feature_the_operator_lacks_is_refused_naming_the_chart_value(
    k8s, make_olmojob, operator
):
    make_olmojob("llm", nodePools=[karpenter_pool("spot")])
    st = wait_status(k8s, "llm", phase=c.FAILED)
    assert c.CHART_KARPENTER in st["message"]
