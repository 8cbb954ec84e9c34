"""Startup policy: attempt 1, the node pool, waiting for an old attempt's pods, re-creating a
missing attempt."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind, ObjectRef
from tests.operator.world import T0, World, iso, reasons


def test_a_new_job_starts_attempt_1() -> None:
    w = World()
    action = w.step()
    assert action.kind is ActionKind.START_ATTEMPT and action.new_attempt == 1
    assert w.status["phase"] == c.RUNNING and w.status["attempt"] == 1
    assert w.status["startTime"] == iso(T0) and w.status["observedGeneration"] == 1
    assert w.names("Job") == ["run-a1"] and w.names("Service") == ["run-a1"]
    assert w.names("ServiceAccount") == ["run-progress"]
    assert reasons(action)[0] == "Running"  # every phase change is an Event
    # Nothing new happens while it runs.
    w.start_pods("run-a1")
    action = w.step(10)
    assert action.kind is ActionKind.WAIT and action.status == {} and action.events == ()


def test_node_pool_is_recorded_when_pools_are_given() -> None:
    w = World(nodePools=[{"name": "spot", "preemptible": True}, {"name": "od"}])
    w.step()
    assert w.status["nodePool"] == "spot" and w.status["nodePoolIndex"] == 0
    assert w.job("run-a1")["metadata"]["annotations"][c.ANNOTATION_NODE_POOL] == "spot"


def test_a_new_attempt_waits_for_the_old_pods_to_stop() -> None:
    w = World(terminationGracePeriodSeconds=60)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[0], 75)
    action = w.step(1)
    # Pretend the delete is slow: the other rank keeps running for a while.
    w.objects[("Pod", pods[1])] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pods[1],
            "labels": {c.LABEL_JOB: "run", c.LABEL_COMPONENT: "trainer", c.LABEL_ATTEMPT: "1"},
            "deletionTimestamp": iso(w.now),
        },
        "status": {"phase": "Running"},
    }
    assert ObjectRef("v1", "Pod", pods[1]) in action.delete
    action = w.step(5)
    assert action.kind is ActionKind.WAIT and "previous attempt" in action.message
    action = w.step(60 + 30)  # grace period + termination wait: go anyway
    assert action.kind is ActionKind.START_ATTEMPT


def _deleting_pod(w: World, name: str, phase: str) -> None:
    """A pod of attempt 1 that the operator deleted but that has not gone yet."""
    w.objects[("Pod", name)] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {c.LABEL_JOB: "run", c.LABEL_COMPONENT: "trainer", c.LABEL_ATTEMPT: "1"},
            "deletionTimestamp": iso(w.now),
        },
        "status": {"phase": phase},
    }


def test_pods_being_deleted_linger_until_done_and_past_the_limit_the_fence_is_announced() -> None:
    w = World(terminationGracePeriodSeconds=60)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[0], 75)
    w.step(1)  # attempt 1 ends: its pods are deleted
    _deleting_pod(w, pods[0], "Failed")  # done: does not hold the next attempt back
    _deleting_pod(w, pods[1], "Pending")  # deleted before its container started: may start
    action = w.step(5)
    assert action.kind is ActionKind.WAIT and "waiting for 1 pod(s)" in action.message
    action = w.step(60 + 30)
    assert action.kind is ActionKind.START_ATTEMPT and action.new_attempt == 2
    (fenced,) = [e for e in action.events if e.reason == "PreviousAttemptFenced"]
    assert fenced.type == "Warning" and pods[1] in fenced.message and pods[0] not in fenced.message
    assert "attempt marker in the run directory" in fenced.message


def test_no_fence_event_when_the_old_pods_stopped_in_time() -> None:
    w = World(terminationGracePeriodSeconds=60)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[0], 75)
    w.step(1)
    _deleting_pod(w, pods[1], "Running")
    assert w.step(5).kind is ActionKind.WAIT
    _deleting_pod(w, pods[1], "Failed")
    action = w.step(5)
    assert action.kind is ActionKind.START_ATTEMPT
    assert "PreviousAttemptFenced" not in reasons(action)


def test_restarted_operator_recreates_a_missing_attempt_without_counting_it() -> None:
    w = World()
    w.step()
    del w.objects[("Job", "run-a1")]  # e.g. the operator died between status patch and create
    action = w.step(1)
    assert action.kind is ActionKind.START_ATTEMPT and action.new_attempt is None
    assert w.status["attempt"] == 1 and w.names("Job") == ["run-a1"]
