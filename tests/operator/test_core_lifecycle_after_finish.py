"""After the run finished: the final rotation, the eval worker, the TTL."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind
from tests.operator.world import World, iso, reasons


def test_success_then_final_rotation_then_ttl() -> None:
    w = World(ttlSecondsAfterFinished=60)
    w.step()
    w.start_pods("run-a1")
    w.complete_job("run-a1")
    action = w.step(5)
    assert action.kind is ActionKind.SUCCEED
    assert w.status["phase"] == c.SUCCEEDED and w.status["completionTime"] == iso(w.now)
    assert "Service" not in {k for k, _ in w.objects}  # the rendezvous Service goes
    assert w.names("Job") == ["run-a1"]  # the Job (and its logs) stay

    action = w.step(1)
    assert action.kind is ActionKind.ROTATE
    assert w.names("Job") == ["run-a1", "run-rotate"]
    assert w.status["finalRotation"] == {"phase": "Running"}
    # The TTL waits for the running rotation.
    action = w.step(120)
    assert action.kind is ActionKind.WAIT and not w.deleted_olmojob

    w.objects[("Pod", "run-rotate-x")] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "run-rotate-x",
            "labels": {c.LABEL_JOB: "run", c.LABEL_COMPONENT: "rotation"},
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "rotation",
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "message": "delete /c/step1\ndeleted 1 checkpoint folder and 0 "
                            "temporary folders, kept 3\n",
                        }
                    },
                }
            ],
        },
    }
    w.job("run-rotate")["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    action = w.step(1)
    assert w.status["finalRotation"]["phase"] == "Succeeded"
    assert w.status["finalRotation"]["message"].startswith("deleted 1 checkpoint folder")
    assert "CheckpointsRotated" in reasons(action)
    # TTL already passed: the OLMoJob is deleted in the same reconcile.
    assert action.kind is ActionKind.DELETE and w.deleted_olmojob


def test_final_rotation_waits_for_the_final_evaluation_when_required() -> None:
    w = World(
        eval={"enabled": True},
        checkpoint={"claimName": "ckpt", "requireEvaluated": True},
    )
    w.step()
    assert w.names("Deployment") == ["run-eval"]
    checkpoint = {
        "step": 300,
        "path": "/checkpoints/run/checkpoints/step000300",
        "time": "2026-01-01T00:00:00Z",
    }
    w.report(c.PROGRESS_TRAINER, {"attempt": 1, "latestCheckpoint": checkpoint})
    w.start_pods("run-a1")
    w.complete_job("run-a1")
    w.step()
    action = w.step()
    assert action.kind is ActionKind.WAIT and "evaluation" in action.message
    assert w.names("Deployment") == ["run-eval"]  # still evaluating
    evaluation = {"step": 300, "headline": {"piqa": 0.6}, "time": "2026-01-01T00:01:00Z"}
    w.report(c.PROGRESS_EVAL, {"lastEval": evaluation})
    action = w.step()
    assert action.kind is ActionKind.ROTATE
    assert w.names("Deployment") == []  # the final checkpoint is evaluated: the worker goes
    args = w.job("run-rotate")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--require-evaluated" in args


def test_ttl_deletes_a_failed_job() -> None:
    w = World(maxFailures=0, ttlSecondsAfterFinished=100)
    w.step()
    (pod, _) = w.start_pods("run-a1")
    w.end_pod(pod, 1)
    w.step(1)
    assert w.status["phase"] == c.FAILED
    assert w.step(50).kind is ActionKind.WAIT
    action = w.step(50)
    assert action.delete_job and "TTLExpired" in reasons(action)


def test_a_failed_rotation_is_reported_and_the_job_stays_succeeded() -> None:
    w = World()
    w.step()
    w.start_pods("run-a1")
    w.complete_job("run-a1")
    w.step(1)
    assert w.step(1).kind is ActionKind.ROTATE
    w.fail_job("run-rotate", message="Job has reached the specified backoff limit")
    action = w.step(1)
    assert w.status["phase"] == c.SUCCEEDED
    assert w.status["finalRotation"]["phase"] == "Failed"
    assert w.status["finalRotation"]["message"] == "Job has reached the specified backoff limit"
    assert "RotationFailed" in reasons(action)
    conditions = {x["type"]: (x["status"], x["reason"]) for x in w.status["conditions"]}
    assert conditions["CheckpointsRotated"] == ("False", "RotationFailed")
    assert w.step(1).kind is ActionKind.WAIT  # rotated once, never again
    assert w.names("Job") == ["run-a1", "run-rotate"]


# --------------------------------------------------------------------------------------------
# The eval worker ends within a bounded time after success (issue 15, item 3)


def _succeeded_with_unevaluated_checkpoint(**eval_spec: object) -> World:
    w = World(
        eval={"enabled": True, **eval_spec},
        checkpoint={"claimName": "ckpt", "requireEvaluated": True},
    )
    w.step()
    checkpoint = {"step": 300, "path": "/checkpoints/run/step300", "time": iso(w.now)}
    w.report(c.PROGRESS_TRAINER, {"attempt": 1, "latestCheckpoint": checkpoint})
    w.start_pods("run-a1")
    w.complete_job("run-a1")
    assert w.step().kind is ActionKind.SUCCEED
    action = w.step()
    assert action.kind is ActionKind.WAIT and "evaluation" in action.message
    assert w.names("Deployment") == ["run-eval"] and "finalEval" not in w.status
    return w


def test_final_timeout_removes_the_eval_worker_and_the_rotation_runs() -> None:
    w = _succeeded_with_unevaluated_checkpoint(finalTimeoutSeconds=600)
    assert w.step(598).kind is ActionKind.WAIT
    assert w.names("Deployment") == ["run-eval"]
    action = w.step(2)
    assert w.status["finalEval"]["phase"] == "TimedOut"
    assert "finalTimeoutSeconds (600s)" in w.status["finalEval"]["message"]
    assert "FinalEvalTimedOut" in reasons(action)
    assert w.names("Deployment") == []
    assert action.kind is ActionKind.ROTATE and "run-rotate" in w.names("Job")
    args = w.job("run-rotate")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--require-evaluated" in args  # un-evaluated checkpoints are still kept


def test_final_timeout_defaults_to_two_hours() -> None:
    w = _succeeded_with_unevaluated_checkpoint()
    assert w.step(7199).kind is ActionKind.WAIT
    assert w.step(1).kind is ActionKind.ROTATE
    assert w.status["finalEval"]["phase"] == "TimedOut"


def test_a_given_up_final_evaluation_removes_the_eval_worker_and_the_rotation_runs() -> None:
    w = _succeeded_with_unevaluated_checkpoint()
    failure = {"step": 200, "message": "older", "time": iso(w.now)}
    w.report(c.PROGRESS_EVAL, {"lastEvalFailure": failure})
    assert w.step(1).kind is ActionKind.WAIT  # a failure on an older checkpoint says nothing
    failure = {"step": 300, "message": "CUDA OOM", "time": iso(w.now)}
    w.report(c.PROGRESS_EVAL, {"lastEvalFailure": failure})
    action = w.step(1)
    assert w.status["finalEval"]["phase"] == "Failed"
    assert "CUDA OOM" in w.status["finalEval"]["message"]
    assert "FinalEvalFailed" in reasons(action)
    assert w.names("Deployment") == [] and action.kind is ActionKind.ROTATE


def test_an_evaluated_final_checkpoint_is_recorded() -> None:
    w = _succeeded_with_unevaluated_checkpoint()
    evaluation = {"step": 300, "headline": {"piqa": 0.6}, "time": iso(w.now)}
    w.report(c.PROGRESS_EVAL, {"lastEval": evaluation})
    action = w.step(1)
    assert w.status["finalEval"]["phase"] == "Evaluated"
    assert "FinalEvalEvaluated" in reasons(action) and action.kind is ActionKind.ROTATE
    assert w.names("Deployment") == []
