"""What the operator sees: its children sorted by component and attempt, and how a Job's or
pod's status is read."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle.observed import (
    Children,
    Observed,
    job_failed,
    job_succeeded,
    with_kind,
)
from tests.operator.world import T0


def child(name: str, component: str, attempt: int | None = None, job: str = "run") -> dict:
    labels = {c.LABEL_JOB: job, c.LABEL_COMPONENT: component}
    if attempt is not None:
        labels[c.LABEL_ATTEMPT] = str(attempt)
    return {"metadata": {"name": name, "labels": labels}}


def test_list_items_get_their_kind_back() -> None:
    (item,) = with_kind([{"metadata": {"name": "x"}}], "batch/v1", "Job")
    assert (item["apiVersion"], item["kind"]) == ("batch/v1", "Job")
    full = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    assert with_kind([full], "batch/v1", "Job") == [full]


def test_children_are_sorted_by_component_and_attempt() -> None:
    observed = Observed(
        now=T0,
        jobs=(
            child("run-a1", c.TRAINER, 1),
            child("run-a2", c.TRAINER, 2),
            child("run-dataprep", c.DATAPREP),
            child("run-rotate", c.ROTATION),
            child("other-a1", c.TRAINER, 1, job="other"),  # another OLMoJob's: never ours
        ),
        pods=(child("run-a1-0", c.TRAINER, 1), child("run-a2-0", c.TRAINER, 2)),
        services=(child("run-a2", c.TRAINER, 2),),
        deployments=(child("run-eval", c.EVALWORKER),),
    )
    kids = Children.of("run", observed)
    assert [j["metadata"]["name"] for j in kids.trainer_jobs] == ["run-a1", "run-a2"]
    assert kids.trainer_job(2)["metadata"]["name"] == "run-a2" and kids.trainer_job(3) is None
    assert kids.dataprep["kind"] == "Job" and kids.rotation is not None
    assert kids.eval["kind"] == "Deployment"
    assert [p["metadata"]["name"] for p in kids.attempt_pods(2)] == ["run-a2-0"]
    assert {o["metadata"]["name"] for o in kids.of_attempt(2)} == {"run-a2", "run-a2-0"}
    assert {(o["kind"], o["metadata"]["name"]) for o in kids.not_of_attempt(2)} == {
        ("Job", "run-a1"),
        ("Pod", "run-a1-0"),
    }


def pod(index: int, phase: str = "Succeeded") -> dict[str, Any]:
    key = "batch.kubernetes.io/job-completion-index"
    return {
        "metadata": {"name": f"p{index}", "labels": {key: str(index)}},
        "status": {"phase": phase},
    }


def test_a_job_succeeded_by_condition_count_or_pods() -> None:
    job = {"spec": {"completions": 2}, "status": {}}
    assert not job_succeeded(job)
    assert job_succeeded(
        {**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    )
    assert job_succeeded({**job, "status": {"succeeded": 2}})
    assert job_succeeded(job, [pod(0), pod(1)])
    assert not job_succeeded(job, [pod(0), pod(0)])  # the same index twice (a retried pod)
    assert not job_succeeded(job, [pod(0), pod(1, "Failed")])


def test_a_job_failed_by_condition_or_count() -> None:
    assert not job_failed({"status": {}})
    assert job_failed({"status": {"failed": 1}})
    assert job_failed({"status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}})
    assert not job_failed({"status": {"conditions": [{"type": "Failed", "status": "False"}]}})
