"""The adaptive checkpoint interval (olmo_operator.interval): Young/Daly, the MTBF estimate from
the ledger's figures, and choose_interval's fallbacks, clamping, reasons and input checks."""

from __future__ import annotations

import math

import pytest

from olmo_operator.interval import (
    IntervalChoice,
    choose_interval,
    estimate_mtbf,
    young_daly_seconds,
)


def choose(**overrides) -> IntervalChoice:
    figures = dict(
        default_steps=1000,
        min_steps=10,
        max_steps=5000,
        save_seconds=12.0,
        step_seconds=2.0,
        run_seconds=7200.0,
        interruptions=2,
    )
    return choose_interval(**(figures | overrides))


# --------------------------------------------------------------------------------------------
# Young/Daly and the MTBF estimate


def test_young_daly_is_the_square_root_of_twice_save_time_times_mtbf():
    assert young_daly_seconds(12.0, 3600.0) == pytest.approx(293.939, abs=1e-3)
    assert young_daly_seconds(30, 900) == pytest.approx(232.379, abs=1e-3)
    assert young_daly_seconds(0.0, 3600.0) == 0.0


@pytest.mark.parametrize("save, mtbf", [(12.0, 3600.0), (30.0, 900.0), (120.0, 86400.0)])
def test_young_daly_minimises_the_first_order_waste(save, mtbf):
    # waste per second of work: a save every T seconds, half an interval lost per interruption
    def waste(t: float) -> float:
        return save / t + t / (2 * mtbf)

    best = young_daly_seconds(save, mtbf)
    assert waste(best) < waste(best * 0.9) and waste(best) < waste(best * 1.1)
    assert save / best == pytest.approx(best / (2 * mtbf))  # both costs equal at the optimum


@pytest.mark.parametrize(
    "save, mtbf, message",
    [(-1.0, 3600.0, "save_seconds must be ≥ 0"), (12.0, math.inf, "mtbf_seconds must be finite"),
     (math.nan, 3600.0, "save_seconds must be finite"), ("12", 3600.0, "must be a number")],
)  # fmt: skip
def test_young_daly_rejects_bad_inputs(save, mtbf, message):
    with pytest.raises(ValueError, match=message):
        young_daly_seconds(save, mtbf)


def test_mtbf_is_seconds_on_the_pool_per_interruption_and_unknown_before_one():
    assert estimate_mtbf(7200.0, 2) == 3600.0
    assert estimate_mtbf(650, 1) == 650.0
    assert estimate_mtbf(0.0, 3) == 0.0
    assert estimate_mtbf(7200.0, 0) is None
    with pytest.raises(ValueError, match="interruptions must be ≥ 0"):
        estimate_mtbf(100.0, -1)
    with pytest.raises(ValueError, match="interruptions must be an integer"):
        estimate_mtbf(100.0, 1.5)
    with pytest.raises(ValueError, match="run_seconds must be ≥ 0"):
        estimate_mtbf(-5.0, 1)


# --------------------------------------------------------------------------------------------
# choose_interval


def test_young_daly_interval_in_steps_with_the_reason_the_status_shows():
    choice = choose()
    assert choice == IntervalChoice(
        steps=147,
        reason="Young/Daly: sqrt(2 × 12.0 s × 3600 s) = 294 s = 147 steps",
        mtbf_seconds=3600.0,
        save_seconds=12.0,
        step_seconds=2.0,
    )


def test_more_interruptions_mean_shorter_intervals():
    steps = [choose(interruptions=n).steps for n in (1, 2, 4, 8, 16)]
    assert steps == sorted(steps, reverse=True) and len(set(steps)) == len(steps)
    # a four times higher rate halves the interval (square root)
    assert choose(interruptions=8).steps == pytest.approx(choose(interruptions=2).steps / 2, abs=1)


def test_no_interruption_keeps_the_spec_interval():
    choice = choose(interruptions=0, pool="spot")
    assert choice.steps == 1000 and choice.mtbf_seconds is None
    assert choice.reason == "no interruption seen on pool spot yet: spec interval 1000 steps"
    assert choose(interruptions=0, run_seconds=0.0).reason.startswith(
        "no interruption seen on this pool yet"
    )


def test_the_spec_interval_is_clamped_to_the_bounds_too():
    high = choose(interruptions=0, max_steps=500)
    assert high.steps == 500
    assert high.reason.endswith("spec interval 1000 steps, clamped to maxInterval 500")
    assert choose(interruptions=0, default_steps=5, min_steps=20).steps == 20


@pytest.mark.parametrize(
    "missing, reason",
    [({"save_seconds": None}, "no save time measured yet"),
     ({"step_seconds": None}, "no step time measured yet"),
     ({"save_seconds": None, "step_seconds": None}, "no save or step time measured yet")],
)  # fmt: skip
def test_without_measurements_the_spec_interval_stays(missing, reason):
    # MTBF 20000 s holds 10000 steps of 2 s: the spec interval is not cut
    choice = choose(run_seconds=40000.0, **missing)
    assert choice.steps == 1000
    assert choice.reason == f"{reason}: spec interval 1000 steps"
    assert choice.mtbf_seconds == 20000.0
    assert (choice.save_seconds, choice.step_seconds) == (
        missing.get("save_seconds", 12.0),
        missing.get("step_seconds", 2.0),
    )


def test_without_a_save_time_the_interval_is_at_most_one_mtbf_of_steps():
    # MTBF 900 s, steps of 4 s: 1000 steps (4000 s) would rarely reach a save to measure
    choice = choose(save_seconds=None, step_seconds=4.0, run_seconds=1800.0, interruptions=2)
    assert choice.steps == 225
    assert choice.reason == (
        "no save time measured yet: spec interval 1000 steps, capped at the MTBF 900 s = 225 steps"
    )
    assert choose(save_seconds=None, step_seconds=4.0, run_seconds=1.0, interruptions=2).steps == 10


def test_young_daly_is_clamped_to_min_and_max_interval():
    low = choose(save_seconds=0.5, run_seconds=100.0, interruptions=1)  # sqrt(100) = 10 s = 5 steps
    assert low.steps == 10
    assert low.reason == "Young/Daly: sqrt(2 × 0.5 s × 100 s) = 10.0 s = 5 steps, clamped to minInterval 10"  # fmt: skip
    high = choose(save_seconds=300.0, run_seconds=10 * 86400.0, interruptions=1)
    assert high.steps == 5000 and high.reason.endswith(", clamped to maxInterval 5000")
    assert high.mtbf_seconds == 864000.0


def test_a_zero_save_time_saves_every_step_at_most():
    assert choose(save_seconds=0.0, min_steps=1).steps == 1


@pytest.mark.parametrize(
    "overrides, message",
    [({"min_steps": 600, "max_steps": 500}, r"min_steps \(600\) must be ≤ max_steps \(500\)"),
     ({"min_steps": 0}, "min_steps must be ≥ 1"),
     ({"default_steps": 0}, "default_steps must be ≥ 1"),
     ({"max_steps": 2.5}, "max_steps must be an integer"),
     ({"save_seconds": -1.0}, "save_seconds must be ≥ 0"),
     ({"step_seconds": 0.0}, "step_seconds must be > 0"),
     ({"step_seconds": math.nan}, "step_seconds must be finite"),
     ({"run_seconds": -1.0}, "run_seconds must be ≥ 0"),
     ({"interruptions": True}, "interruptions must be an integer")],
)  # fmt: skip
def test_bad_inputs_are_clear_value_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        choose(**overrides)
