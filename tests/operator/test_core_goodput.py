"""The goodput ledger's pure functions: charging time to states, pools and cost, the timeline,
restarts and the work they lost, and the headline figures."""

from __future__ import annotations

import datetime as dt

import pytest

from olmo_operator.goodput import (
    MAX_RESTARTS,
    MAX_TIMELINE,
    advance,
    lost_work,
    record_restart,
    summarize,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
COSTS = {"spot": 1.2, "od": None}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def go(ledger, state, seconds, *, attempt=1, pool="spot", nodes=2, min_seconds=0.0):
    return advance(
        ledger,
        state,
        at(seconds),
        attempt=attempt,
        pool=pool,
        nodes=nodes,
        costs=COSTS,
        min_seconds=min_seconds,
    )


def test_time_goes_to_the_state_it_was_spent_in_and_holding_states_to_the_pool() -> None:
    ledger = go(None, "pending", 0)
    ledger = go(ledger, "starting", 10)
    ledger = go(ledger, "training", 40)
    ledger = go(ledger, "saving", 640)
    ledger = go(ledger, "training", 660)
    ledger = go(ledger, "restarting", 1260, attempt=1)
    ledger = go(ledger, None, 1300)
    assert ledger["seconds"] == {
        "pending": 10.0,
        "starting": 30.0,
        "training": 1200.0,
        "saving": 20.0,
        "restarting": 40.0,
    }
    spot = ledger["pools"]["spot"]
    assert spot["seconds"] == 1250.0 and spot["nodeSeconds"] == 2500.0
    assert spot["cost"] == pytest.approx(2500 / 3600 * 1.2, abs=1e-3)
    assert "state" not in ledger and "charged" not in ledger  # finished: nothing more is charged
    assert go(ledger, None, 5000) == ledger


def test_a_pool_without_a_price_has_node_seconds_but_no_cost() -> None:
    ledger = go(go(None, "training", 0, pool="od"), "restarting", 3600, pool="od")
    assert ledger["pools"]["od"] == {"seconds": 3600.0, "nodeSeconds": 7200.0, "interruptions": 0}
    assert "cost" not in summarize(ledger, tokens=None, nominal_tokens_per_second=None)


def test_an_unchanged_state_is_charged_only_every_min_seconds_and_a_change_at_once() -> None:
    ledger = go(None, "training", 0)
    same = go(ledger, "training", 20, min_seconds=30)
    assert same == ledger  # nothing to write
    later = go(ledger, "training", 31, min_seconds=30)
    assert later["seconds"] == {"training": 31.0} and later["since"] == ledger["since"]
    changed = go(ledger, "saving", 5, min_seconds=30)
    assert changed["seconds"] == {"training": 5.0} and changed["since"] == "2026-01-01T00:00:05Z"


def test_the_timeline_merges_contiguous_segments_and_keeps_the_newest() -> None:
    ledger = go(None, "training", 0)
    for t in (10, 20, 30):
        ledger = go(ledger, "training", t)
    ledger = go(ledger, "saving", 40)
    ledger = go(ledger, "training", 45, attempt=2)
    assert ledger["timeline"] == [
        {"attempt": 1, "state": "training", "start": "2026-01-01T00:00:00Z",
         "end": "2026-01-01T00:00:40Z"},
        {"attempt": 1, "state": "saving", "start": "2026-01-01T00:00:40Z",
         "end": "2026-01-01T00:00:45Z"},
    ]  # fmt: skip
    for i in range(MAX_TIMELINE + 10):
        ledger = go(ledger, "saving" if i % 2 else "training", 50 + i, attempt=2)
    assert len(ledger["timeline"]) == MAX_TIMELINE
    assert ledger["timeline"][-1]["end"] == "2026-01-01T00:02:39Z"


def test_unknown_states_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown ledger state 'sleeping'"):
        go(None, "sleeping", 0)


@pytest.mark.parametrize(
    ("last", "tokens", "frm", "from_tokens", "expected"),
    [
        (10, 40960, 6, 24576, (4, 16384)),  # exact, from the checkpoint's tokens
        (10, 40960, 6, None, (4, 16384)),  # prorated by step
        (10, 40960, None, None, (10, 40960)),  # no checkpoint: everything is redone
        (5, 20480, 6, 24576, (0, 0)),  # nothing past the checkpoint
        (None, None, 6, None, (0, 0)),  # the attempt reported nothing
        (10, None, 6, None, (4, 0)),
    ],
)
def test_lost_work(last, tokens, frm, from_tokens, expected) -> None:
    assert lost_work(last, tokens, frm, from_tokens) == expected


def test_restarts_add_lost_work_and_interruptions_of_the_pool() -> None:
    ledger = go(None, "training", 0)
    ledger = record_restart(
        ledger, attempt=1, cause="Preemption", reason="DisruptionTarget", pool="spot",
        lost_steps=4, lost_tokens=16384, from_step=6, now=at(100),
    )  # fmt: skip
    ledger = record_restart(
        ledger, attempt=2, cause="Failure", reason="Hang", pool="spot",
        lost_steps=1, lost_tokens=4096, from_step=None, now=at(200),
    )  # fmt: skip
    assert ledger["lostSteps"] == 5 and ledger["lostTokens"] == 20480
    assert ledger["pools"]["spot"]["interruptions"] == 2
    assert ledger["restarts"][0] == {
        "attempt": 1, "cause": "Preemption", "reason": "DisruptionTarget", "lostSteps": 4,
        "lostTokens": 16384, "time": "2026-01-01T00:01:40Z", "fromStep": 6,
    }  # fmt: skip
    assert "fromStep" not in ledger["restarts"][1]
    for i in range(MAX_RESTARTS + 3):
        ledger = record_restart(
            ledger, attempt=3 + i, cause="Preemption", reason="x", pool="od",
            lost_steps=0, lost_tokens=0, from_step=1, now=at(300 + i),
        )  # fmt: skip
    assert len(ledger["restarts"]) == MAX_RESTARTS and ledger["restarts"][-1]["attempt"] == 25


def test_summary_compares_kept_tokens_per_wall_second_with_the_trainers_rate() -> None:
    ledger = go(go(go(None, "starting", 0), "training", 100), "suspended", 1100)
    ledger = go(ledger, "training", 5000)  # the suspension is not paid time
    out = summarize(ledger, tokens=800_000, nominal_tokens_per_second=1000.0)
    assert out["effectiveTokensPerSecond"] == pytest.approx(800_000 / 1100, abs=1e-3)
    assert out["nominalTokensPerSecond"] == 1000.0
    assert out["ratio"] == pytest.approx(0.7273, abs=1e-4)
    assert out["cost"] == pytest.approx(2200 / 3600 * 1.2, abs=1e-3)
    # Never above 1 (a nominal rate measured on a slow step), and absent without a rate.
    assert summarize(ledger, tokens=10**9, nominal_tokens_per_second=1.0)["ratio"] == 1.0
    assert "ratio" not in summarize(ledger, tokens=800_000, nominal_tokens_per_second=None)
