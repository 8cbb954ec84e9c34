"""The plan of one reconcile: changes collected, then one Action with only what changed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle.observed import Observed
from olmo_operator.lifecycle.plan import Plan, now_iso, parse_time
from olmo_operator.lifecycle.timing import Timing
from olmo_operator.spec import parse_job
from tests.operator.olmojobs import olmojob
from tests.operator.world import T0


def plan(status: dict[str, Any], **observed: Any) -> Plan:
    return Plan(parse_job(olmojob()), status, Observed(now=T0, **observed), Timing())


def test_only_what_changed_is_patched_and_a_phase_change_is_the_first_event() -> None:
    p = plan({"phase": c.RUNNING, "attempt": 1, "message": "m"})
    p.event("Normal", "CheckpointSaved", "step 10")
    p.set(attempt=1, step=10)
    p.to_phase(c.SUCCEEDED, "done")
    action = p.finish()
    assert action.status == {"step": 10, "phase": c.SUCCEEDED, "message": "done"}
    assert [e.reason for e in action.events] == [c.SUCCEEDED, "CheckpointSaved"]
    assert action.events[0].message == "phase Running → Succeeded: done"
    assert action.message == "done"


def test_a_condition_changes_its_transition_time_only_when_its_status_flips() -> None:
    before = "2025-01-01T00:00:00Z"
    running = {"type": "Running", "status": "True", "reason": "A", "lastTransitionTime": before}
    p = plan({"conditions": [running]})
    p.condition("Running", True, "AttemptStarted", "attempt 2")
    assert p.finish().status["conditions"][0]["lastTransitionTime"] == before
    p = plan({"conditions": [running]})
    p.condition("Running", False, "Failed", "x")
    (cond,) = p.finish().status["conditions"]
    assert (cond["status"], cond["lastTransitionTime"]) == ("False", now_iso(T0))
    assert plan({"conditions": [running]}).finish().status == {}  # untouched: not patched


def test_removing_skips_objects_being_deleted_and_repeats() -> None:
    p = plan({})
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "run-a1"}}
    gone = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "deletionTimestamp": "t"}}
    p.remove([job, gone, job])
    assert [r.name for r in p.finish().delete] == ["run-a1"]


def test_times_are_utc_seconds() -> None:
    t = dt.datetime(2026, 1, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert now_iso(t) == "2026-01-01T00:30:00Z"
    assert parse_time("2026-01-01T00:30:00Z") == t
    assert parse_time("2026-01-01T00:30:00") == t  # no zone: UTC
    assert parse_time("soon") is None and parse_time(None) is None
