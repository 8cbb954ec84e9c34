"""Failure budgets (issue 15, item 1): preemption backoff and total budget, the no-progress
limit, OOM kills and over-limit evictions as failures, and the reason of phase Failed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from olmo_operator import contract as c
from olmo_operator.failures import Cause
from olmo_operator.lifecycle import Action, ActionKind
from tests.operator.world import World, iso, reasons

SPOT_NODE = {"metadata": {"name": "node-0", "labels": {"cloud.google.com/gke-spot": "true"}}}


def checkpoint(w: World, step: int) -> None:
    """The trainer (rank 0) reports a complete checkpoint, as ``olmo.progress`` does."""
    saved = {"step": step, "path": f"/checkpoints/run/step{step}", "time": iso(w.now)}
    w.report(c.PROGRESS_TRAINER, {"attempt": w.status["attempt"], "latestCheckpoint": saved})


def preempt(w: World, seconds: float = 1) -> Action:
    """The current attempt's pods start, then rank 0 is preempted by the scheduler."""
    (pod, _) = w.start_pods(f"run-a{w.status['attempt']}")
    disruption = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    w.end_pod(pod, 143, conditions=[disruption])
    action = w.step(seconds)
    assert action.failure is not None and action.failure.cause is Cause.PREEMPTION
    return action


def fail_attempt(w: World, code: int = 1) -> Action:
    (pod, _) = w.start_pods(f"run-a{w.status['attempt']}")
    w.end_pod(pod, code)
    return w.step(1)


def restart_delay(w: World) -> float:
    return (
        dt.datetime.fromisoformat(w.status["restartAt"].replace("Z", "+00:00")) - w.now
    ).total_seconds()


def start_next(w: World) -> None:
    action = w.step(restart_delay(w))
    assert action.kind is ActionKind.START_ATTEMPT, action


def conditions(w: World) -> dict[str, tuple[str, str]]:
    return {x["type"]: (x["status"], x["reason"]) for x in w.status["conditions"]}


# --------------------------------------------------------------------------------------------
# OOM kills and over-limit evictions spend maxFailures


def test_oom_killed_trainer_on_a_spot_node_spends_the_failure_budget() -> None:
    w = World(maxFailures=0)
    w.step()
    w.nodes = {"node-0": SPOT_NODE}
    (pod, _) = w.start_pods("run-a1")
    w.end_pod(pod, 137)
    w.objects[("Pod", pod)]["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = (
        "OOMKilled"
    )
    action = w.step(1)
    assert action.kind is ActionKind.FAIL
    assert (action.failure.cause, action.failure.reason) == (Cause.FAILURE, "OOMKilled")
    assert w.status["restarts"] == {"failures": 1, "preemptions": 0}
    assert conditions(w)["Failed"] == ("True", "TooManyFailures")


# --------------------------------------------------------------------------------------------
# Preemption backoff


def test_preemption_restarts_back_off_and_progress_resets_the_backoff() -> None:
    w = World(maxAttemptsWithoutProgress=100)
    w.step()
    delays = []
    for _ in range(6):
        preempt(w)
        delays.append(restart_delay(w))
        start_next(w)
    # World's Timing: preemption base 30 s, cap 300 s; the first in a row is immediate.
    assert delays == [0, 30, 60, 120, 240, 300]
    assert w.status["noProgress"] == {"attempts": 6, "preemptions": 6}

    checkpoint(w, 1000)  # this attempt saved a checkpoint: it made progress
    preempt(w)
    assert restart_delay(w) == 0
    assert w.status["noProgress"] == {"attempts": 0, "preemptions": 0, "baselineStep": 1000}
    start_next(w)
    preempt(w)  # no newer checkpoint: the first preemption in a row again
    assert restart_delay(w) == 0
    start_next(w)
    preempt(w)
    assert restart_delay(w) == 30
    assert w.status["noProgress"] == {"attempts": 2, "preemptions": 2, "baselineStep": 1000}


# --------------------------------------------------------------------------------------------
# The job's total preemption budget


def test_more_preemptions_than_max_preemptions_fail_the_job() -> None:
    w = World(maxPreemptions=2, maxFailures=0)
    w.step()
    for step in (100, 200):
        checkpoint(w, step)  # progress each time: only the preemption budget can end it
        preempt(w)
        start_next(w)
    checkpoint(w, 300)
    action = preempt(w)
    assert action.kind is ActionKind.FAIL
    assert w.status["phase"] == c.FAILED
    assert w.status["restarts"] == {"failures": 0, "preemptions": 3}
    assert "3 preemptions exceed maxPreemptions 2" in w.status["message"]
    assert conditions(w)["Failed"] == ("True", "TooManyPreemptions")
    assert conditions(w)["Running"] == ("False", "TooManyPreemptions")
    assert "TooManyPreemptions" in reasons(action) and "Failed" in reasons(action)
    assert w.names("Job") == ["run-a3"]  # kept for its logs
    assert w.step(600).kind is ActionKind.WAIT


def test_max_preemptions_allows_large_values_and_defaults_to_100() -> None:
    from olmo_operator.spec import parse_spec

    base: dict[str, Any] = {
        "model": {"preset": "tiny"},
        "image": "img",
        "dataset": {"claimName": "d"},
        "checkpoint": {"claimName": "c"},
    }
    spec = parse_spec(base, job_name="run")
    assert spec.max_preemptions == 100 and spec.max_attempts_without_progress == 10
    assert parse_spec({**base, "maxPreemptions": 10**6}, job_name="run").max_preemptions == 10**6


# --------------------------------------------------------------------------------------------
# No progress


def test_attempts_without_a_newer_checkpoint_fail_the_job_with_no_progress() -> None:
    w = World(maxAttemptsWithoutProgress=3, maxFailures=10)
    w.step()
    checkpoint(w, 500)  # the baseline: known when attempt 1 ends
    fail_attempt(w)
    assert w.status["noProgress"] == {"attempts": 0, "preemptions": 0, "baselineStep": 500}
    start_next(w)
    preempt(w)  # a preemption without progress counts too
    start_next(w)
    fail_attempt(w)
    assert w.status["noProgress"] == {"attempts": 2, "preemptions": 1, "baselineStep": 500}
    start_next(w)
    action = fail_attempt(w)
    assert action.kind is ActionKind.FAIL and w.status["phase"] == c.FAILED
    assert conditions(w)["Failed"] == ("True", "NoProgress")
    assert (
        "3 attempts in a row saved no complete checkpoint newer than step 500"
        in (w.status["message"])
    )
    assert w.status["restarts"] == {"failures": 3, "preemptions": 1}


def test_an_attempt_that_made_progress_resets_the_no_progress_count() -> None:
    w = World(maxAttemptsWithoutProgress=2, maxFailures=10)
    w.step()
    fail_attempt(w)  # no checkpoint at all yet: no progress
    assert w.status["noProgress"] == {"attempts": 1, "preemptions": 0}
    start_next(w)
    checkpoint(w, 100)
    fail_attempt(w)  # saved step 100: progress
    assert w.status["noProgress"] == {"attempts": 0, "preemptions": 0, "baselineStep": 100}
    start_next(w)
    fail_attempt(w)
    assert w.status["phase"] == c.RESTARTING
    start_next(w)
    fail_attempt(w)
    assert w.status["phase"] == c.FAILED and conditions(w)["Failed"] == ("True", "NoProgress")


def test_too_many_failures_is_the_failed_reason() -> None:
    w = World(maxFailures=0)
    w.step()
    fail_attempt(w)
    assert w.status["phase"] == c.FAILED
    assert conditions(w)["Failed"] == ("True", "TooManyFailures")
    assert w.status["completionTime"] == iso(w.now)
