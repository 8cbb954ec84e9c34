"""Stuck starts: pods that wait for an image, for their config or for a node end the attempt as
a failure after ``startupTimeoutSeconds``; until then the status says what they wait on."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind
from olmo_operator.lifecycle.stalled import waiting_on
from tests.operator.world import World, iso, reasons


def _waiting(w: World, job: str, **state: Any) -> list[str]:
    """The Job's pods created now, Pending, their container waiting with ``state``."""
    w.job(job).setdefault("metadata", {})["creationTimestamp"] = iso(w.now)
    pods = w.start_pods(job)
    for name in pods:
        pod = w.objects[("Pod", name)]
        pod["metadata"]["creationTimestamp"] = iso(w.now)
        pod["status"] = {
            "phase": "Pending",
            "containerStatuses": [{"name": "trainer", "state": {"waiting": dict(state)}}],
        }
    return pods


def _unschedulable(w: World, job: str) -> list[str]:
    w.job(job).setdefault("metadata", {})["creationTimestamp"] = iso(w.now)
    pods = w.start_pods(job)
    for name in pods:
        pod = w.objects[("Pod", name)]
        pod["metadata"]["creationTimestamp"] = iso(w.now)
        pod["spec"].pop("nodeName")
        pod["status"] = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
        }
    return pods


@pytest.mark.parametrize(
    "reason",
    [
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    ],
)
def test_pods_stuck_before_starting_fail_the_attempt_after_the_timeout(reason: str) -> None:
    w = World(startupTimeoutSeconds=600, maxFailures=2)
    w.step()
    pods = _waiting(w, "run-a1", reason=reason, message="something is wrong")

    action = w.step(30)
    assert action.kind is ActionKind.WAIT and w.status["phase"] == c.RUNNING
    message = w.status["message"]
    assert f"{pods[0]}: {reason} (something is wrong)" in message
    assert "fails at 2026-01-01T00:10:00Z" in message  # the pods' creation + 600 s
    assert "restarts" not in w.status
    # Reconciles while waiting change nothing (the message names a fixed deadline).
    assert set(w.step(300).status) <= {"goodput"}  # only the time charged

    action = w.step(300)  # 630 s after the pods were created
    assert action.kind is ActionKind.RESTART
    assert w.status["restarts"]["failures"] == 1
    assert w.status["lastRestart"]["reason"] == reason
    assert "startupTimeoutSeconds (600s)" in w.status["lastRestart"]["message"]
    assert w.status["phase"] == c.RESTARTING and "AttemptFailed" in reasons(action)
    assert w.names("Job") == []  # the whole stuck gang goes


def test_unschedulable_pods_count_as_stuck_and_the_message_says_why() -> None:
    w = World(startupTimeoutSeconds=1200)
    w.step()
    _unschedulable(w, "run-a1")
    w.step(60)
    assert "Unschedulable (0/3 nodes are available" in w.status["message"]
    assert w.step(1100).kind is ActionKind.WAIT
    action = w.step(100)
    assert (
        action.kind is ActionKind.RESTART and w.status["lastRestart"]["reason"] == "Unschedulable"
    )


def test_the_default_timeout_leaves_time_for_gpu_autoscaling() -> None:
    w = World()
    w.step()
    _unschedulable(w, "run-a1")
    assert w.step(1700).kind is ActionKind.WAIT and "restarts" not in w.status
    assert w.step(101).kind is ActionKind.RESTART


def test_pods_that_start_in_time_clear_the_waiting_message() -> None:
    w = World(startupTimeoutSeconds=600)
    w.step()
    pods = _waiting(w, "run-a1", reason="ImagePullBackOff")
    w.step(10)
    assert "waiting to start" in w.status["message"]
    for name in pods:
        w.objects[("Pod", name)]["status"] = {"phase": "Running"}
    action = w.step(1000)
    assert action.kind is ActionKind.WAIT and w.status["message"] == "attempt 1: 2 node(s)"
    assert "restarts" not in w.status


def test_a_job_waiting_for_kueue_admission_never_times_out() -> None:
    w = World(queueName="team-a", startupTimeoutSeconds=60)
    w.step()
    job = w.job("run-a1")
    job["metadata"]["creationTimestamp"] = iso(w.now)
    assert w.step(3600).kind is ActionKind.WAIT and w.status["phase"] == c.PENDING
    # Admitted an hour later: the clock starts then (the Job's startTime, the pods' creation).
    job["spec"]["suspend"] = False
    job["status"] = {"startTime": iso(w.now)}
    w.step(1)
    pods = w.start_pods("run-a1")
    for name in pods:
        w.objects[("Pod", name)]["status"] = {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        }
    assert w.step(30).kind is ActionKind.WAIT and "restarts" not in w.status
    assert w.step(31).kind is ActionKind.RESTART


def test_the_last_allowed_failure_fails_the_job_and_removes_the_stuck_pods() -> None:
    w = World(startupTimeoutSeconds=60, maxFailures=0)
    w.step()
    _waiting(w, "run-a1", reason="ErrImagePull", message='pull "img": not found')
    action = w.step(61)
    assert action.kind is ActionKind.FAIL and w.status["phase"] == c.FAILED
    assert "ErrImagePull" in w.status["message"]
    # Pods that never ran have no logs to keep, and they hold (or wait for) GPU nodes.
    assert w.names("Job") == [] and w.names("Pod") == []


def test_waiting_reasons_of_one_pod() -> None:
    running = {"status": {"phase": "Running"}}
    assert waiting_on(running) is None
    init = {
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "m"}}}
            ],
        }
    }
    assert waiting_on(init) == ("ImagePullBackOff", "m")
    creating = {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "X"}}}]}}
    assert waiting_on(creating) is None  # ContainerCreating and the like resolve by themselves
    gone = {**init, "metadata": {"deletionTimestamp": iso(dt.datetime.now(dt.UTC))}}
    assert waiting_on(gone) is None
