"""Issue 20 in the pure lifecycle: hang detection, preflight failures, elastic fallback, the
adaptive checkpoint interval and the goodput ledger across restarts (no API server)."""

from __future__ import annotations

from typing import Any

import pytest

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind
from olmo_operator.lifecycle.hang import derived_timeout
from olmo_operator.pool_spec import workable_nodes
from tests.operator.olmojobs import env_of, sets_of
from tests.operator.test_core_budgets import checkpoint, preempt
from tests.operator.world import World, iso, reasons

POOLS = [
    {"name": "spot", "preemptible": True, "maxPreemptions": 1, "costPerNodeHour": 1.0},
    {"name": "small", "maxNodes": 1, "costPerNodeHour": 3.0},
]


def trainer(w: World, **fields: Any) -> None:
    w.report(c.PROGRESS_TRAINER, {"attempt": w.status["attempt"], **fields})


def container(w: World) -> dict[str, Any]:
    job = w.job(f"run-a{w.status['attempt']}")
    (main,) = job["spec"]["template"]["spec"]["containers"]
    return main


# --------------------------------------------------------------------------------------------
# Hang detection


def test_no_progress_within_the_hang_timeout_restarts_the_gang_as_a_hang() -> None:
    w = World(hangTimeoutSeconds=60)
    w.step()
    w.start_pods("run-a1")
    env = env_of(container(w))
    assert env[c.ENV_COLLECTIVE_TIMEOUT] == str(60 + c.COLLECTIVE_TIMEOUT_MARGIN_SECONDS)
    # Not armed before the first step (startup is the startup timeout's business).
    assert w.step(300).kind is ActionKind.WAIT
    trainer(w, step=1, state="training")
    w.step(1)
    for step in (2, 3):  # progress keeps it alive
        trainer(w, step=step, state="training")
        assert w.step(50).kind is ActionKind.WAIT
    trainer(w, step=3, state="saving")  # a state change is progress too
    assert w.step(50).kind is ActionKind.WAIT
    assert w.step(30).kind is ActionKind.WAIT  # 30 s since the save began
    action = w.step(31)  # 61 s without a change
    assert action.kind is ActionKind.RESTART
    assert action.failure is not None and action.failure.reason == "Hang"
    assert "no training progress for 61s" in action.failure.message
    assert "Hang" in reasons(action) and w.status["phase"] == c.RESTARTING
    assert w.status["restarts"] == {"failures": 1, "preemptions": 0, "hangs": 1}
    assert w.status["goodput"]["restarts"][-1]["reason"] == "Hang"


def test_the_derived_hang_timeout_follows_the_step_and_save_times() -> None:
    assert derived_timeout(None, None) == 600
    assert derived_timeout(60.0, 10.0) == 1200  # 20 steps
    assert derived_timeout(1.0, 300.0) == 900  # 3 saves
    w = World()
    w.step()
    w.start_pods("run-a1")
    assert c.ENV_COLLECTIVE_TIMEOUT not in env_of(container(w))  # torch's default
    trainer(w, step=1, state="training", stepSeconds=40.0)
    w.step(1)
    assert w.step(799).kind is ActionKind.WAIT
    assert w.step(2).failure.reason == "Hang"  # 801 s > 20 × 40 s


# --------------------------------------------------------------------------------------------
# Preflight


def failed_preflight(w: World, *failures: dict[str, Any]) -> None:
    trainer(
        w,
        state="preflight",
        preflight={"passed": False, "seconds": 2.5, "time": iso(w.now), "failures": list(failures)},
    )


def test_a_failed_preflight_excludes_the_node_and_spends_nothing() -> None:
    w = World()
    w.step()
    w.start_pods("run-a1")
    assert env_of(container(w))[c.ENV_PREFLIGHT_TIMEOUT] == "300"
    failed_preflight(w, {"node": "node-1", "nodeRank": 1, "check": "storage", "message": "ENOTDIR"})
    action = w.step(1)
    assert action.kind is ActionKind.RESTART and action.failure is None
    assert w.status["excludedNodes"] == ["node-1"]
    assert w.status["restarts"] == {"preflightFailures": 1}
    assert w.status["noProgress"]["attempts"] == 1
    (event,) = [e for e in action.events if e.reason == "PreflightFailed"]
    assert "node-1" in event.message and "storage: ENOTDIR" in event.message
    w.step(1)  # restartAt is now: attempt 2, with the node excluded
    assert w.status["attempt"] == 2
    affinity = w.job("run-a2")["spec"]["template"]["spec"]["affinity"]
    term = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchFields"] == [
        {"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}
    ]


def test_a_preflight_that_names_no_node_is_an_ordinary_failure() -> None:
    w = World()
    w.step()
    w.start_pods("run-a1")
    failed_preflight(w, {"node": "", "nodeRank": 0, "check": "collective", "message": "timed out"})
    action = w.step(1)
    assert action.failure is not None and action.failure.reason == "PreflightFailed"
    assert w.status["restarts"]["failures"] == 1 and "excludedNodes" not in w.status


def test_preflights_failing_everywhere_end_the_job_as_no_progress() -> None:
    w = World(maxAttemptsWithoutProgress=2)
    w.step()
    for attempt, node in ((1, "node-0"), (2, "node-1")):
        w.start_pods(f"run-a{attempt}")
        failed_preflight(w, {"node": node, "nodeRank": 0, "check": "device", "message": "NaN"})
        w.step(1)
        w.step(1)
    assert w.status["phase"] == c.FAILED
    assert w.status["conditions"][-1]["reason"] == "NoProgress"


def test_preflight_can_be_switched_off() -> None:
    w = World(preflight={"enabled": False})
    w.step()
    assert c.ENV_PREFLIGHT_TIMEOUT not in env_of(container(w))


# --------------------------------------------------------------------------------------------
# Elastic fallback and the adaptive interval


@pytest.mark.parametrize(
    ("requested", "maximum", "expected"),
    [(8, None, 8), (8, 8, 8), (8, 7, 4), (8, 3, 2), (6, 5, 3), (7, 6, 1), (1, 1, 1)],
)
def test_workable_nodes_is_the_largest_divisor_that_fits(requested, maximum, expected) -> None:
    assert workable_nodes(requested, maximum) == expected


def test_a_smaller_pool_runs_the_same_job_on_fewer_nodes_with_an_adaptive_interval() -> None:
    w = World(
        nodePools=POOLS,
        hangTimeoutSeconds=100_000,  # long silences below stand for hours of training
        checkpoint={"claimName": "ckpt", "interval": 100, "adaptive": {
            "minInterval": 10, "maxInterval": 500}},
    )  # fmt: skip
    w.step()
    assert w.status["nodes"] == 2 and w.status["checkpointInterval"]["steps"] == 100
    assert "no interruption" in w.status["checkpointInterval"]["reason"]
    trainer(w, step=1, state="training", stepSeconds=2.0, tokensPerSecond=1000.0,
            saveSeconds=8.0)  # fmt: skip
    w.step(1)
    checkpoint(w, 150)
    w.step(3600)  # an hour on the spot pool
    action = preempt(w)
    assert "NodePoolFallback" in reasons(action)
    ledger = w.status["goodput"]
    assert ledger["pools"]["spot"]["interruptions"] == 1
    assert ledger["restarts"][-1]["cause"] == "Preemption"
    w.step(1)  # attempt 2, on the small pool: one node, same batch
    assert w.status["nodePool"] == "small" and w.status["nodes"] == 1
    job = w.job("run-a2")
    assert job["spec"]["completions"] == 1
    env = env_of(container(w))
    assert env["NNODES"] == "1"
    (resize,) = [e for e in w.actions[-1].events if e.reason == "ElasticResize"]
    assert "1 of 2 node(s)" in resize.message and "2× the gradient accumulation" in resize.message
    # No interruption on the new pool yet: the spec interval.
    assert w.status["checkpointInterval"]["attempt"] == 2
    assert w.status["checkpointInterval"]["steps"] == 100
    # An interruption there: Young/Daly from the small pool's time and the measured save.
    w.start_pods("run-a2")
    w.step(1800)
    trainer(w, step=160, state="training", stepSeconds=2.0, saveSeconds=8.0)
    w.step(1)
    (pod, *_) = w.pods_of("run-a2")
    w.end_pod(pod, 1)
    w.step(120)  # past the failure settle window
    w.step(120)
    assert w.status["attempt"] == 3
    interval = w.status["checkpointInterval"]
    assert interval["attempt"] == 3 and interval["mtbfSeconds"] > 1800
    expected = round((2 * 8.0 * interval["mtbfSeconds"]) ** 0.5 / 2.0)
    assert interval["steps"] == expected
    assert f"checkpoint.save_interval={expected}" in sets_of(container(w)["args"])
    assert any(e.reason == "CheckpointInterval" for a in w.actions[-3:] for e in a.events)
    # The ledger charged both pools, and priced them.
    pools = w.status["goodput"]["pools"]
    assert pools["spot"]["cost"] > 0 and pools["small"]["cost"] > 0
    assert pools["spot"]["nodeSeconds"] == pytest.approx(2 * pools["spot"]["seconds"])


def test_the_goodput_column_and_figures_follow_the_trainer() -> None:
    w = World(hangTimeoutSeconds=1000)
    w.step()
    trainer(w, step=10, tokens=40960, state="training", tokensPerSecond=512.0)
    w.step(1)
    w.step(100)
    ledger = w.status["goodput"]
    assert ledger["state"] == "training"
    assert ledger["nominalTokensPerSecond"] == 512.0
    assert 0 < ledger["ratio"] <= 1
    assert ledger["effectiveTokensPerSecond"] == pytest.approx(40960 / 101, abs=1e-3)
    # Finished: charged to the end, then nothing more (the merge patch drops the state).
    w.start_pods("run-a1")
    w.complete_job("run-a1")
    w.step(40)
    ledger = w.status["goodput"]
    assert "state" not in ledger and "charged" not in ledger
    assert ledger["seconds"] == {"starting": 1.0, "training": 140.0}
    assert w.step(60).status.get("goodput") is None  # nothing to write any more
