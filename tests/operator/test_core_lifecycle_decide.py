"""next_action(): which policy owns the phase, progress in every phase, restart safety, and
OLMoJobs that cannot run."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind, Observed, invalid_spec_action, next_action
from olmo_operator.spec import SpecError, parse_job
from tests.operator.olmojobs import olmojob
from tests.operator.world import T0, TIMING, World


def test_progress_is_mirrored_during_any_phase() -> None:
    w = World()
    w.step()
    w.report(c.PROGRESS_TRAINER, {"attempt": 1, "step": 42, "tokens": 1000})
    action = w.step(1)
    ledger = action.status.pop("goodput")  # charged: the job changed state (it started)
    assert ledger["state"] == "training" and ledger["seconds"] == {"starting": 1.0}
    assert action.status == {
        "step": 42,
        "tokens": 1000,
        c.STATUS_PROGRESS: {"attempt": 1, "step": 42, "activityAt": "2026-01-01T00:00:01Z"},
    }
    assert w.status["step"] == 42


# --------------------------------------------------------------------------------------------
# Restart safety


def test_a_failure_is_counted_once() -> None:
    """Reconciling the same observed state twice (a retry, a second trigger) counts nothing
    twice: the first decision moved status.attempt on, so the old attempt is just deleted."""
    w = World()
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[0], 1)
    status_before, objects_before = copy.deepcopy(w.status), copy.deepcopy(w.objects)
    first = w.step(1)
    # Replay the same children against the new status (the deletes "did not happen yet").
    w.objects = objects_before
    second = next_action(parse_job(w.obj), w.status, w.observed(), TIMING)
    assert first.kind is ActionKind.RESTART and second.kind is ActionKind.WAIT
    assert "restarts" not in second.status
    assert {r.name for r in second.delete} >= {"run-a1", *pods}
    assert status_before["attempt"] == 1 and w.status["attempt"] == 2


def test_objects_of_other_attempts_are_removed() -> None:
    w = World()
    w.step()
    w.objects[("Job", "run-a0")] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "run-a0",
            "labels": {c.LABEL_JOB: "run", c.LABEL_COMPONENT: "trainer", c.LABEL_ATTEMPT: "0"},
        },
    }
    w.objects[("Job", "other-a1")] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "other-a1",
            "labels": {c.LABEL_JOB: "other", c.LABEL_COMPONENT: "trainer", c.LABEL_ATTEMPT: "0"},
        },
    }
    action = w.step(1)
    assert [r.name for r in action.delete] == ["run-a0"]  # never another OLMoJob's children


# --------------------------------------------------------------------------------------------
# Bad input


def test_invalid_spec_fails_with_its_reason_once() -> None:
    obj = World().obj
    error = SpecError("spec.checkpoint.path must be a relative path")
    observed = Observed(now=T0)
    first = invalid_spec_action({}, error, observed)
    assert first.kind is ActionKind.FAIL and first.status["phase"] == c.FAILED
    assert first.events[0].reason == "InvalidSpec"
    again = invalid_spec_action(first.status, error, observed)
    assert again.kind is ActionKind.WAIT and again.events == ()
    assert parse_job(obj).name == "run"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"checkpoint": {"claimName": "k", "path": "a/../b"}}, "relative path"),
        ({"model": {"preset": "tiny", "config": "x"}}, "exactly one of"),
        ({"overrides": ["=x"]}, "KEY=VALUE"),
        ({"nodePools": [{"name": "a"}, {"name": "a"}]}, "unique"),
    ],
)
def test_specs_the_schema_cannot_catch_are_refused_with_a_clear_message(
    patch: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        parse_job(olmojob(**patch))
