"""Data preparation policy: the data-prep Job before the first attempt, once."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind
from tests.operator.world import World, reasons


def test_data_prep_runs_before_training() -> None:
    w = World(
        dataset={"claimName": "data", "prepare": {"pipelineConfigMap": {"name": "p"}, "workers": 3}}
    )
    action = w.step()
    assert action.kind is ActionKind.PREPARE_DATA and w.status["phase"] == c.PREPARING_DATA
    assert w.names("Job") == ["run-dataprep"]
    assert w.step(30).kind is ActionKind.WAIT
    w.job("run-dataprep")["status"] = {
        "succeeded": 3,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    action = w.step(30)
    assert action.kind is ActionKind.START_ATTEMPT and w.status["attempt"] == 1
    assert "DataPrepared" in reasons(action)
    assert {x["type"]: x["status"] for x in w.status["conditions"]}["DataPrepared"] == "True"
    # Data prep never runs again, even when its Job is gone.
    del w.objects[("Job", "run-dataprep")]
    w.start_pods("run-a1")
    assert w.step(10).kind is ActionKind.WAIT


def test_failed_data_prep_fails_the_job() -> None:
    w = World(dataset={"claimName": "data", "prepare": {"pipelineConfigMap": {"name": "p"}}})
    w.step()
    w.fail_job("run-dataprep", message="Job has reached the specified backoff limit")
    action = w.step(1)
    assert action.kind is ActionKind.FAIL and w.status["phase"] == c.FAILED
    assert "data preparation failed" in w.status["message"]


def test_data_prep_queued_in_kueue_waits_in_preparing_data() -> None:
    w = World(
        queueName="team-a",
        dataset={"claimName": "data", "prepare": {"pipelineConfigMap": {"name": "p"}}},
    )
    w.step()
    assert w.job("run-dataprep")["spec"]["suspend"] is True
    action = w.step(10)
    assert action.kind is ActionKind.WAIT and w.status["phase"] == c.PREPARING_DATA
    assert w.status["message"] == "data-prep queued in Kueue queue team-a"
    assert "attempt" not in w.status
