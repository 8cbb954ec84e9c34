"""Suspend policy: spec.suspend deletes the attempt's pods and keeps the run."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind
from tests.operator.world import World


def test_suspend_deletes_the_attempt_and_resume_starts_the_next_one() -> None:
    w = World(eval={"enabled": True})
    w.step()
    w.start_pods("run-a1")
    w.edit(suspend=True)
    action = w.step(5)
    assert action.kind is ActionKind.SUSPEND and w.status["phase"] == c.SUSPENDED
    assert w.names("Job") == [] and w.names("Pod") == [] and w.names("Service") == []
    assert w.names("Deployment") == []
    assert w.names("ServiceAccount") == ["run-progress"]  # (PVCs are never touched)
    assert w.step(5).kind is ActionKind.WAIT
    w.edit(suspend=False)
    action = w.step(5)
    assert action.kind is ActionKind.START_ATTEMPT and action.new_attempt == 2
    assert w.status["phase"] == c.RUNNING and w.names("Job") == ["run-a2"]
    assert w.status.get("restarts") is None  # suspending is neither failure nor preemption


def test_suspend_during_data_preparation_deletes_the_unfinished_data_prep_job() -> None:
    w = World(dataset={"claimName": "data", "prepare": {"pipelineConfigMap": {"name": "p"}}})
    w.step()
    assert w.names("Job") == ["run-dataprep"]
    w.edit(suspend=True)
    action = w.step(5)
    assert action.kind is ActionKind.SUSPEND and w.names("Job") == []
    conditions = {x["type"]: x["status"] for x in w.status["conditions"]}
    assert conditions["Suspended"] == "True"
    w.edit(suspend=False)
    action = w.step(5)
    # The data is still not prepared: data-prep runs again before any attempt.
    assert action.kind is ActionKind.PREPARE_DATA and w.names("Job") == ["run-dataprep"]
    conditions = {x["type"]: (x["status"], x["reason"]) for x in w.status["conditions"]}
    assert conditions["Suspended"] == ("False", "Resumed")
