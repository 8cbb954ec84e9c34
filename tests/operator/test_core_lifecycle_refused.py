"""A create the API server refuses for good (422/400, or a name taken by another's object)
ends the run with the server's message, instead of a retry loop."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind
from olmo_operator.lifecycle.refused import permanent, refused_create_action
from olmo_operator.spec import parse_job
from tests.operator.world import World, reasons

DETAIL = 'Job.batch "run-a1" is invalid: spec.template.spec.nodeSelector[pool]: Invalid value'


def test_only_invalid_and_bad_requests_and_name_conflicts_are_permanent() -> None:
    assert permanent(422) and permanent(400) and permanent(409, name_conflict=True)
    assert not permanent(403)  # the operator's RBAC can be fixed: retried
    assert not permanent(404) and not permanent(409)


def test_a_refused_attempt_job_fails_the_olmojob_with_the_servers_message() -> None:
    w = World()
    started = w.step()  # the status (attempt 1, Running) is written before the creates
    job_obj = next(o for o in started.create if o["kind"] == "Job")
    action = refused_create_action(parse_job(w.obj), w.status, w.observed(), job_obj, DETAIL)
    assert action.kind is ActionKind.FAIL
    status = action.status
    assert status["phase"] == c.FAILED and status["completionTime"]
    assert status["message"] == f"the API server refused to create Job ml/run-a1: {DETAIL}"
    conditions = {x["type"]: x["status"] for x in status["conditions"]}
    assert conditions == {"Running": "False", "Failed": "True"}
    assert reasons(action) == [c.FAILED, "CreateRefused"]
    assert all(e.type == "Warning" for e in action.events)
    assert action.create == ()


def test_after_success_a_refused_rotation_is_the_failed_final_rotation() -> None:
    w = World()
    w.step()
    w.complete_job("run-a1")
    assert w.step(1).kind is ActionKind.SUCCEED
    rotate = w.step(1)
    assert rotate.kind is ActionKind.ROTATE
    (rotation,) = rotate.create
    action = refused_create_action(parse_job(w.obj), w.status, w.observed(), rotation, "nope")
    assert w.status["phase"] == c.SUCCEEDED and "phase" not in action.status
    assert action.status["finalRotation"]["phase"] == "Failed"
    assert "nope" in action.status["finalRotation"]["message"]
    assert reasons(action) == ["CreateRefused"]
