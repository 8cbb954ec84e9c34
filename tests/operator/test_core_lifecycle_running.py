"""A started attempt: waiting for Kueue, running, succeeded."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind
from tests.operator.world import World


def test_kueue_suspended_job_waits_and_counts_nothing() -> None:
    w = World(queueName="team-a")
    action = w.step()
    assert w.status["phase"] == c.PENDING
    job = w.job("run-a1")
    assert job["spec"]["suspend"] is True
    assert w.step(10).kind is ActionKind.WAIT
    # Kueue admits it.
    job["spec"]["suspend"] = False
    w.step(1)
    assert w.status["phase"] == c.RUNNING
    # Kueue preempts the workload: the Job is suspended again and its pods stop with 75/143.
    pods = w.start_pods("run-a1")
    job["spec"]["suspend"] = True
    w.end_pod(pods[0], 75)
    action = w.step(1)
    assert action.kind is ActionKind.WAIT and w.status["phase"] == c.PENDING
    assert "restarts" not in w.status and w.status["attempt"] == 1


def test_an_attempt_succeeds_when_every_index_succeeded() -> None:
    """The pods may say it before the Job's Complete condition does."""
    w = World()
    w.step()
    for pod in w.start_pods("run-a1"):
        w.end_pod(pod, 0)
    action = w.step(5)
    assert action.kind is ActionKind.SUCCEED and w.status["phase"] == c.SUCCEEDED
    assert w.status["message"] == "attempt 1 completed"
    conditions = {x["type"]: (x["status"], x["reason"]) for x in w.status["conditions"]}
    assert conditions["Complete"] == ("True", "TrainerCompleted")
    assert conditions["Running"] == ("False", "Completed")
    assert w.names("Service") == [] and w.names("Job") == ["run-a1"]


def test_a_missing_eval_worker_is_created_again_while_running() -> None:
    w = World(eval={"enabled": True})
    w.step()
    w.start_pods("run-a1")
    del w.objects[("Deployment", "run-eval")]
    action = w.step(10)
    assert action.kind is ActionKind.WAIT and w.names("Deployment") == ["run-eval"]
    assert action.status == {}  # nothing else changed
