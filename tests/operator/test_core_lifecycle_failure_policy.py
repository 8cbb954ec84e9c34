"""Failure policy: what an ended attempt costs (preemption or failure), the settle window,
node-pool fallback, and the gang restart."""

from __future__ import annotations

import datetime as dt

from olmo_operator import contract as c
from olmo_operator.failures import Cause
from olmo_operator.lifecycle import ActionKind, ObjectRef, Timing
from tests.operator.world import World, iso, reasons


def test_failure_restarts_the_gang_after_backoff() -> None:
    w = World(maxFailures=3)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[1], 1)
    action = w.step(30)
    assert action.kind is ActionKind.RESTART
    assert action.failure is not None and action.failure.cause is Cause.FAILURE
    assert w.status["phase"] == c.RESTARTING and w.status["attempt"] == 2
    assert w.status["restarts"] == {"failures": 1, "preemptions": 0}
    assert w.status["restartAt"] == iso(w.now + dt.timedelta(seconds=10))
    assert w.status["lastRestart"]["cause"] == "Failure"
    assert w.status["lastRestart"]["attempt"] == 1
    # The whole attempt goes: Job, Service and every pod (the running one too).
    assert set(action.delete) >= {
        ObjectRef("batch/v1", "Job", "run-a1"),
        ObjectRef("v1", "Service", "run-a1"),
        ObjectRef("v1", "Pod", pods[0]),
        ObjectRef("v1", "Pod", pods[1]),
    }
    assert "AttemptFailed" in reasons(action) and "Restarting" in reasons(action)

    assert w.step(5).kind is ActionKind.WAIT  # backoff
    action = w.step(5)
    assert action.kind is ActionKind.START_ATTEMPT and action.new_attempt == 2
    assert w.status["phase"] == c.RUNNING and "restartAt" not in w.status
    assert w.names("Job") == ["run-a2"]
    args = w.job("run-a2")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--resume") + 1] == "latest"


def _settling_world() -> tuple[World, list[str]]:
    w = World(maxFailures=3)
    w.timing = Timing(failure_settle_seconds=60)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[0], 1)  # the survivor of a reclaimed node: lost its peer, exits 1 first
    action = w.step(1)
    assert action.kind is ActionKind.WAIT and action.failure is None
    assert w.status["failureSeenAt"] == iso(w.now)
    assert "waiting until" in action.message and w.names("Job") == ["run-a1"]
    return w, pods


def test_a_failure_settles_before_it_is_counted() -> None:
    w, _pods = _settling_world()
    assert w.step(30).kind is ActionKind.WAIT  # still inside the window: nothing counted
    action = w.step(31)
    assert action.kind is ActionKind.RESTART and action.failure.cause is Cause.FAILURE
    assert w.status["restarts"] == {"failures": 1, "preemptions": 0}
    assert "failureSeenAt" not in w.status


def test_a_preemption_signal_inside_the_settle_window_makes_it_a_preemption() -> None:
    w, pods = _settling_world()
    # The reclaimed node's pod gets its DisruptionTarget condition (or its node goes) later.
    w.objects[("Pod", pods[1])]["status"]["conditions"] = [
        {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}
    ]
    action = w.step(20)
    assert action.kind is ActionKind.RESTART and action.failure.cause is Cause.PREEMPTION
    assert w.status["restarts"] == {"failures": 0, "preemptions": 1}
    assert "failureSeenAt" not in w.status
    assert w.step(0).kind is ActionKind.START_ATTEMPT and "failureSeenAt" not in w.status


def test_too_many_failures_fail_the_job_and_keep_its_pods() -> None:
    w = World(maxFailures=1)
    for attempt in (1, 2):
        w.step(60)
        (pod, _) = w.start_pods(f"run-a{attempt}")
        w.end_pod(pod, 1)
        action = w.step(1)
    assert action.kind is ActionKind.FAIL
    assert w.status["phase"] == c.FAILED and w.status["restarts"]["failures"] == 2
    assert "exceed maxFailures 1" in w.status["message"]
    assert w.status["completionTime"] == iso(w.now)
    assert w.names("Job") == ["run-a2"]  # kept for its logs
    assert "Service" not in {k for k, _ in w.objects}
    assert action.events[0].type == "Warning" and action.events[0].reason == "Failed"
    assert w.step(600).kind is ActionKind.WAIT  # terminal


# --------------------------------------------------------------------------------------------
# Preemptions


def test_preemption_restarts_at_once_without_spending_failures() -> None:
    w = World(maxFailures=0)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(
        pods[0],
        143,
        conditions=[
            {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
        ],
    )
    action = w.step(1)
    assert action.kind is ActionKind.RESTART and action.failure.cause is Cause.PREEMPTION
    assert w.status["restarts"] == {"failures": 0, "preemptions": 1}
    assert w.status["restartAt"] == iso(w.now)
    assert "Preempted" in reasons(action)
    action = w.step(0)
    assert action.kind is ActionKind.START_ATTEMPT and w.status["attempt"] == 2


def test_node_gone_is_a_preemption() -> None:
    w = World()
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[1], 1)
    w.nodes = {"node-0": {"metadata": {"name": "node-0"}}, "node-1": None}
    action = w.step(1)
    assert action.failure.cause is Cause.PREEMPTION and action.failure.reason == "NodeGone"


def test_job_failed_by_pod_failure_policy_with_pods_gone() -> None:
    w = World()
    w.step()
    w.fail_job(
        "run-a1",
        "PodFailurePolicy",
        "Pod ml/run-a1-0 has condition DisruptionTarget matching FailJob rule at index 0",
    )
    action = w.step(1)
    assert action.failure.cause is Cause.PREEMPTION


def test_spot_pool_falls_back_to_on_demand_and_stays_on_the_last_pool() -> None:
    w = World(
        nodePools=[
            {"name": "spot", "preemptible": True, "maxPreemptions": 2, "nodeSelector": {"s": "1"}},
            {"name": "on-demand", "nodeSelector": {"s": "0"}},
        ]
    )
    w.step()
    pools = []
    for _ in range(4):
        attempt = w.status["attempt"]
        (pod, _) = w.start_pods(f"run-a{attempt}")
        w.end_pod(pod, 75)
        action = w.step(1)
        assert action.kind is ActionKind.RESTART
        pools.append((w.status["nodePool"], w.status["nodePoolPreemptions"], reasons(action)))
        w.step(600)  # past the preemption backoff (no checkpoint: these preemptions are in a row)
    assert [p[:2] for p in pools] == [
        ("spot", 1),
        ("on-demand", 0),
        ("on-demand", 1),
        ("on-demand", 2),
    ]
    assert "NodePoolFallback" in pools[1][2] and all(
        "NodePoolFallback" not in p[2] for p in pools[2:]
    )
    job = w.job(f"run-a{w.status['attempt']}")
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"s": "0"}
    assert w.status["restarts"]["preemptions"] == 4


def test_on_demand_pools_do_not_fall_back() -> None:
    w = World(nodePools=[{"name": "a", "maxPreemptions": 1}, {"name": "b"}])
    w.step()
    (pod, _) = w.start_pods("run-a1")
    w.end_pod(pod, 75)
    w.step(1)
    assert w.status["nodePool"] == "a"
