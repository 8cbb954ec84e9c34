"""Capacity policy: ProvisioningRequests before the Job, operator-owned NodePools, termination
notices (``olmo_operator.lifecycle.capacity``), in the pure core."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind, Observed
from tests.operator.capacity import (
    CLASS_OK,
    karpenter_pool,
    provisioned_pool,
    validate_node_pool,
    validate_provisioning_request,
)
from tests.operator.world import World, iso, reasons


class CapacityWorld(World):
    """World plus the capacity objects and the nodes with termination notices."""

    def __init__(self, **spec: Any):
        super().__init__(**spec)
        self.notices: dict[str, Any] = {}

    def step(self, seconds: float = 0.0) -> Any:
        action = super().step(seconds)
        for obj in self.objects.values():  # as the API server stamps what it creates
            obj.setdefault("metadata", {}).setdefault("creationTimestamp", iso(self.now))
        return action

    def observed(self) -> Observed:
        base = super().observed()
        for (kind, _), obj in self.objects.items():
            if kind == "ProvisioningRequest":
                validate_provisioning_request(obj)
            if kind == "NodePool":
                validate_node_pool(obj)

        def of(kind: str) -> tuple[dict[str, Any], ...]:
            return tuple(o for (k, _), o in sorted(self.objects.items()) if k == kind)

        return Observed(
            now=base.now,
            jobs=base.jobs,
            pods=base.pods,
            services=base.services,
            deployments=base.deployments,
            config_maps=base.config_maps,
            nodes=base.nodes,
            provisioning_requests=of("ProvisioningRequest"),
            pod_templates=of("PodTemplate"),
            node_pools=of("NodePool"),
            notices=dict(self.notices),
        )

    def answer(self, name: str, kind: str, message: str = "") -> None:
        request = self.objects[("ProvisioningRequest", name)]
        request["status"] = {
            "conditions": [
                {
                    "type": kind,
                    "status": "True",
                    "reason": kind,
                    "message": message or kind,
                    "lastTransitionTime": iso(self.now),
                }
            ]
        }


def test_attempt_waits_for_provisioned_then_creates_the_job_with_the_annotations() -> None:
    w = CapacityWorld(nodePools=[provisioned_pool("a"), provisioned_pool("b")])
    w.step()
    assert w.status["phase"] == c.PENDING and "asking for capacity" in w.status["message"]
    assert w.names("Job") == [] and w.names("ProvisioningRequest") == ["run-a1"]
    assert w.names("PodTemplate") == ["run-a1"]
    request = w.objects[("ProvisioningRequest", "run-a1")]
    assert request["spec"]["podSets"] == [{"podTemplateRef": {"name": "run-a1"}, "count": 2}]
    assert request["spec"]["provisioningClassName"] == CLASS_OK
    w.step(5)
    assert w.names("Job") == [] and "waiting for capacity" in w.status["message"]
    w.answer("run-a1", "Provisioned")
    w.step(5)
    assert w.names("Job") == ["run-a1"] and w.status["phase"] == c.RUNNING
    annotations = w.job("run-a1")["spec"]["template"]["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_CONSUME_PROVISIONING] == "run-a1"
    assert annotations[c.ANNOTATION_PROVISIONING_CLASS] == CLASS_OK
    assert w.status["lastProvisioning"]["outcome"] == "Provisioned"
    # The template the request names is the Job's own pod template.
    template = w.objects[("PodTemplate", "run-a1")]["template"]
    assert template["spec"] == w.job("run-a1")["spec"]["template"]["spec"]


def test_failed_request_moves_to_the_next_pool_without_counting() -> None:
    w = CapacityWorld(nodePools=[provisioned_pool("a"), provisioned_pool("b")])
    w.step()
    w.answer("run-a1", "Failed", "out of GPUs")
    action = w.step(5)
    assert action.kind is ActionKind.RESTART and "NoCapacity" in reasons(action)
    assert w.status["nodePool"] == "b" and w.status["attempt"] == 2
    assert w.status.get("restarts") is None and w.status.get("noProgress") is None
    assert w.status["lastProvisioning"] == {
        "pool": "a",
        "attempt": 1,
        "outcome": "Failed",
        "message": "out of GPUs",
        "time": w.status["lastProvisioning"]["time"],
    }
    assert w.names("ProvisioningRequest") == [] and w.names("PodTemplate") == []
    w.step(1)
    assert w.names("ProvisioningRequest") == ["run-a2"]
    assert w.status["phase"] == c.PENDING


def test_no_answer_within_the_timeout_moves_on_and_the_last_pool_starts_over() -> None:
    w = CapacityWorld(nodePools=[provisioned_pool("a", timeout=60)])
    w.step()
    w.step(59)
    assert w.status["phase"] == c.PENDING
    action = w.step(2)
    assert "NoCapacity" in reasons(action) and w.status["lastProvisioning"]["outcome"] == "TimedOut"
    # One pool only: asked again, after the preemption backoff's maximum.
    assert w.status["nodePool"] == "a" and w.status["phase"] == c.RESTARTING
    w.step(1)
    assert w.names("ProvisioningRequest") == []
    w.step(w.timing.preemption_backoff_max_seconds)
    assert w.names("ProvisioningRequest") == ["run-a2"]


def test_capacity_revoked_while_waiting_also_moves_on() -> None:
    w = CapacityWorld(nodePools=[provisioned_pool("a"), provisioned_pool("b")])
    w.step()
    w.answer("run-a1", "CapacityRevoked")
    w.step(1)
    assert w.status["lastProvisioning"]["outcome"] == "CapacityRevoked"
    assert w.status["nodePool"] == "b"


def test_success_deletes_the_request_and_template() -> None:
    w = CapacityWorld(nodePools=[provisioned_pool("a")])
    w.step()
    w.answer("run-a1", "Provisioned")
    w.step(1)
    w.start_pods("run-a1")
    w.complete_job("run-a1")
    w.step(1)
    assert w.status["phase"] == c.SUCCEEDED
    assert w.names("ProvisioningRequest") == [] and w.names("PodTemplate") == []


def test_karpenter_pool_is_created_switched_on_fallback_and_deleted_at_the_end() -> None:
    w = CapacityWorld(nodePools=[karpenter_pool("spot"), karpenter_pool("od", "on-demand")])
    w.step()
    assert w.names("NodePool") == ["ml-run-spot"]
    pool = w.objects[("NodePool", "ml-run-spot")]
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": "16"}
    assert pool["spec"]["disruption"]["consolidationPolicy"] == "WhenEmpty"
    taint = pool["spec"]["template"]["spec"]["taints"][0]
    assert taint == {"key": c.TAINT_JOB, "value": "ml.run", "effect": "NoSchedule"}
    assert pool["metadata"]["labels"][c.LABEL_JOB_UID] == "u-1"
    pod = w.job("run-a1")["spec"]["template"]
    assert pod["spec"]["nodeSelector"][c.KARPENTER_NODEPOOL_LABEL] == "ml-run-spot"
    assert {**taint, "operator": "Equal"} in pod["spec"]["tolerations"]
    assert pod["metadata"]["annotations"][c.KARPENTER_DO_NOT_DISRUPT] == "true"
    # One preemption on the spot pool (maxPreemptions 1): the on-demand sibling.
    pods = w.start_pods("run-a1")
    w.end_pod(pods[0], 143, reason="Evicted")
    w.step(1)
    assert w.status["nodePool"] == "od"
    assert w.names("NodePool") == ["ml-run-od"]
    w.step(1)
    w.start_pods("run-a2")
    w.complete_job("run-a2")
    w.step(1)
    assert w.status["phase"] == c.SUCCEEDED and w.names("NodePool") == []


def test_suspend_deletes_the_node_pool_and_resume_creates_it_again() -> None:
    w = CapacityWorld(nodePools=[karpenter_pool("spot")])
    w.step()
    w.edit(suspend=True)
    w.step(1)
    assert w.names("NodePool") == []
    w.edit(suspend=False)
    w.step(1)
    assert w.names("NodePool") == ["ml-run-spot"]


def test_termination_notice_ends_the_running_attempt_as_a_preemption() -> None:
    w = CapacityWorld(nodePools=[{"name": "spot", "preemptible": True}])
    w.step()
    pods = w.start_pods("run-a1")
    node = w.objects[("Pod", pods[0])]["spec"]["nodeName"]
    w.step(1)
    assert w.status["phase"] == c.RUNNING
    w.notices[node] = {
        "metadata": {"name": node},
        "spec": {
            "taints": [
                {"key": "cloud.google.com/impending-node-termination", "effect": "NoSchedule"}
            ]
        },
    }
    action = w.step(1)
    assert action.kind is ActionKind.RESTART
    assert "TerminationNotice" in reasons(action)
    notice = next(e for e in action.events if e.reason == "TerminationNotice")
    assert node in notice.message and "GKE" in notice.message
    assert w.status["restarts"] == {"failures": 0, "preemptions": 1}
    assert w.status["lastRestart"]["reason"] == "TerminationNotice"
    # The gang's pods are deleted (with their own grace period) and the Job with them.
    assert w.names("Pod") == [] and w.names("Job") == []


def test_a_rebalance_recommendation_is_not_acted_on() -> None:
    w = CapacityWorld()
    w.step()
    pods = w.start_pods("run-a1")
    node = w.objects[("Pod", pods[0])]["spec"]["nodeName"]
    taint = {"key": "aws-node-termination-handler/rebalance-recommendation", "effect": "NoSchedule"}
    w.notices[node] = {"metadata": {"name": node}, "spec": {"taints": [taint]}}
    assert w.step(1).kind is ActionKind.WAIT and w.status["phase"] == c.RUNNING
