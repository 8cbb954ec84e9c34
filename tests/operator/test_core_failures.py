"""classify_failure(): preemption (free restart) or failure (spends maxFailures), per signal."""

from __future__ import annotations

from typing import Any

import pytest

from olmo_operator.failures import Cause, classify_failure


def pod(
    name: str,
    *,
    exit_code: int | None = None,
    finished: str = "2026-01-01T00:00:10Z",
    phase: str = "Failed",
    node: str | None = "node-a",
    reason: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if reason:
        status["reason"] = reason
    if exit_code is not None:
        terminated: dict[str, Any] = {"exitCode": exit_code, "finishedAt": finished}
        if message:
            terminated["message"] = message
        status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": terminated}}]
    spec = {"nodeName": node} if node else {}
    return {"metadata": {"name": name}, "spec": spec, "status": status}


def node(
    name: str = "node-a",
    *,
    ready: bool = True,
    taints: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or []},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def failed_job(reason: str = "BackoffLimitExceeded", message: str = "") -> dict[str, Any]:
    return {
        "status": {
            "failed": 1,
            "conditions": [
                {"type": "Failed", "status": "True", "reason": reason, "message": message}
            ],
        }
    }


DISRUPTION = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}


@pytest.mark.parametrize(
    ("pods", "nodes", "cause", "reason"),
    [
        # pod conditions and reasons
        (
            [pod("p0", exit_code=143, conditions=[DISRUPTION])],
            {},
            Cause.PREEMPTION,
            "DisruptionTarget",
        ),
        (
            [
                pod(
                    "p0",
                    exit_code=137,
                    conditions=[{**DISRUPTION, "reason": "DeletionByTaintManager"}],
                )
            ],
            {},
            Cause.PREEMPTION,
            "DisruptionTarget",
        ),
        ([pod("p0", reason="Evicted", message="low on memory")], {}, Cause.PREEMPTION, "Evicted"),
        ([pod("p0", reason="Terminated")], {}, Cause.PREEMPTION, "Terminated"),
        ([pod("p0", reason="NodeShutdown")], {}, Cause.PREEMPTION, "NodeShutdown"),
        # nodes
        ([pod("p0", exit_code=1)], {"node-a": None}, Cause.PREEMPTION, "NodeGone"),
        ([pod("p0", exit_code=1)], {"node-a": node(ready=False)}, Cause.PREEMPTION, "NodeNotReady"),
        (
            [pod("p0", exit_code=1)],
            {
                "node-a": node(
                    taints=[
                        {
                            "key": "cloud.google.com/impending-node-termination",
                            "effect": "NoSchedule",
                        }
                    ]
                )
            },
            Cause.PREEMPTION,
            "NodeTerminating",
        ),
        (
            [pod("p0", exit_code=1)],
            {
                "node-a": node(
                    taints=[
                        {"key": "aws-node-termination-handler/spot-itn", "effect": "NoSchedule"}
                    ]
                )
            },
            Cause.PREEMPTION,
            "NodeTerminating",
        ),
        (
            [pod("p0", exit_code=1)],
            {
                "node-a": node(
                    taints=[{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]
                )
            },
            Cause.PREEMPTION,
            "NodeTerminating",
        ),
        # exit codes
        ([pod("p0", exit_code=75)], {}, Cause.PREEMPTION, "ExitCode75"),
        ([pod("p0", exit_code=1)], {}, Cause.FAILURE, "ExitCode1"),
        ([pod("p0", exit_code=137)], {}, Cause.FAILURE, "ExitCode137"),  # OOM kill, on-demand node
        (
            [pod("p0", exit_code=143)],
            {"node-a": node(labels={"cloud.google.com/gke-spot": "true"})},
            Cause.PREEMPTION,
            "KilledOnSpotNode",
        ),
        (
            [pod("p0", exit_code=137)],
            {"node-a": node(labels={"kubernetes.azure.com/scalesetpriority": "spot"})},
            Cause.PREEMPTION,
            "KilledOnSpotNode",
        ),
        # a plain error on a spot node is still a failure
        (
            [pod("p0", exit_code=1)],
            {"node-a": node(labels={"cloud.google.com/gke-spot": "true"})},
            Cause.FAILURE,
            "ExitCode1",
        ),
        # a node that is fine, or that could not be read, says nothing
        ([pod("p0", exit_code=1)], {"node-a": node()}, Cause.FAILURE, "ExitCode1"),
        ([pod("p0", exit_code=1, node=None)], {}, Cause.FAILURE, "ExitCode1"),
    ],
)
def test_signal_to_cause(
    pods: list[dict[str, Any]], nodes: dict[str, Any], cause: Cause, reason: str
) -> None:
    failure = classify_failure(failed_job(), pods, nodes)
    assert (failure.cause, failure.reason) == (cause, reason), failure


def test_the_first_failure_is_the_root_cause_when_the_rest_were_stopped() -> None:
    """Rank 1 crashed; the Job controller then stopped rank 0, whose entrypoint said 75."""
    pods = [
        pod("run-a1-0", exit_code=75, finished="2026-01-01T00:00:12Z"),
        pod("run-a1-1", exit_code=1, finished="2026-01-01T00:00:10Z", message="CUDA error"),
    ]
    failure = classify_failure(failed_job(), pods)
    assert failure.cause is Cause.FAILURE
    assert failure.pod == "run-a1-1"
    assert "CUDA error" in failure.message


def test_a_preempted_rank_is_the_cause_even_when_its_peers_failed_first() -> None:
    """The node of rank 0 went away; rank 1 noticed first (NCCL error) — still a preemption."""
    pods = [
        pod("run-a1-0", exit_code=143, finished="2026-01-01T00:00:20Z", conditions=[DISRUPTION]),
        pod("run-a1-1", exit_code=1, finished="2026-01-01T00:00:10Z"),
    ]
    failure = classify_failure(failed_job(), pods)
    assert failure.cause is Cause.PREEMPTION and failure.pod == "run-a1-0"


def test_job_pod_failure_policy_condition_decides_when_pods_are_gone() -> None:
    job = failed_job(
        "PodFailurePolicy",
        "Pod ml/run-a1-0 has condition DisruptionTarget matching FailJob rule at index 0",
    )
    assert classify_failure(job, []).cause is Cause.PREEMPTION
    job = failed_job(
        "PodFailurePolicy",
        "Container trainer for pod ml/run-a1-0 failed with exit code 75 matching FailJob rule "
        "at index 1",
    )
    assert classify_failure(job, []).cause is Cause.PREEMPTION
    failure = classify_failure(failed_job("DeadlineExceeded", "Job was active too long"), [])
    assert (failure.cause, failure.reason) == (Cause.FAILURE, "DeadlineExceeded")


def test_an_unexplained_end_is_a_failure() -> None:
    failure = classify_failure({"status": {"failed": 1}}, [])
    assert failure.cause is Cause.FAILURE


# --------------------------------------------------------------------------------------------
# The pod's own limits: failures whatever node, checked before the preemption signals

SPOT = {"node-a": node(labels={"cloud.google.com/gke-spot": "true"})}


def oom_pod(*, last_state: bool = False, container: str = "trainer") -> dict[str, Any]:
    p = pod("p0", exit_code=137)
    terminated = {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-01-01T00:00:10Z"}
    cs = {"name": container, "state": {"terminated": terminated}}
    if last_state:
        cs = {"name": container, "state": {"waiting": {}}, "lastState": {"terminated": terminated}}
    p["status"]["containerStatuses"] = [cs]
    return p


@pytest.mark.parametrize("last_state", [False, True])
def test_oom_killed_on_a_spot_node_is_a_failure(last_state: bool) -> None:
    failure = classify_failure(failed_job(), [oom_pod(last_state=last_state)], SPOT)
    assert (failure.cause, failure.reason) == (Cause.FAILURE, "OOMKilled"), failure
    assert "memory limit" in failure.message and failure.pod == "p0"


def test_oom_killed_sidecar_wins_over_a_disruption_elsewhere() -> None:
    pods = [oom_pod(container="sidecar"), pod("p1", exit_code=143, conditions=[DISRUPTION])]
    failure = classify_failure(failed_job(), pods, SPOT)
    assert (failure.cause, failure.reason) == (Cause.FAILURE, "OOMKilled")


@pytest.mark.parametrize(
    "message",
    [
        'Container trainer exceeded its local ephemeral storage limit "100Gi". ',
        "Pod ephemeral local storage usage exceeds the total limit of containers 10Gi. ",
        'Usage of EmptyDir volume "dshm" exceeds the limit "64Gi". ',
    ],
)
def test_evicted_over_its_own_limits_is_a_failure(message: str) -> None:
    evicted = pod("p0", reason="Evicted", message=message)
    evicted["status"]["message"] = message
    failure = classify_failure(failed_job(), [evicted], SPOT)
    assert (failure.cause, failure.reason) == (Cause.FAILURE, "EvictedOverLimit"), failure
    disrupted = pod(
        "p0",
        exit_code=137,
        conditions=[
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": message,
            }
        ],
    )
    failure = classify_failure(failed_job(), [disrupted], SPOT)
    assert (failure.cause, failure.reason) == (Cause.FAILURE, "EvictedOverLimit"), failure


def test_node_pressure_eviction_stays_a_preemption() -> None:
    message = (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        "Container trainer was using 10Gi, request is 8Gi, has larger consumption of memory."
    )
    evicted = pod("p0", reason="Evicted")
    evicted["status"]["message"] = message
    failure = classify_failure(failed_job(), [evicted], SPOT)
    assert (failure.cause, failure.reason) == (Cause.PREEMPTION, "Evicted")
    kubelet = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "TerminationByKubelet",
        "message": message,
    }
    failure = classify_failure(failed_job(), [pod("p0", exit_code=137, conditions=[kubelet])])
    assert (failure.cause, failure.reason) == (Cause.PREEMPTION, "DisruptionTarget")
