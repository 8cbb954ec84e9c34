"""Timing: the restart backoff and its settings from the environment."""

from __future__ import annotations

import pytest

from olmo_operator.lifecycle.timing import Timing
from tests.operator.world import TIMING


def test_backoff_doubles_and_is_capped() -> None:
    assert [TIMING.backoff(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]
    assert Timing(backoff_base_seconds=0.1, backoff_max_seconds=1).backoff(5) == 1


def test_timing_from_the_environment() -> None:
    timing = Timing.from_env(
        {"OLMO_OPERATOR_BACKOFF_BASE_SECONDS": "0.1", "OLMO_OPERATOR_BACKOFF_MAX_SECONDS": "1"}
    )
    assert timing.backoff_base_seconds == 0.1 and timing.backoff_max_seconds == 1
    assert Timing.from_env({}) == Timing()
    assert Timing().failure_settle_seconds == 60
    assert (
        Timing.from_env({"OLMO_OPERATOR_FAILURE_SETTLE_SECONDS": "0"}).failure_settle_seconds == 0
    )
    with pytest.raises(ValueError, match="OLMO_OPERATOR_BACKOFF_BASE_SECONDS"):
        Timing.from_env({"OLMO_OPERATOR_BACKOFF_BASE_SECONDS": "soon"})


def test_preemption_backoff_starts_immediately_then_doubles_to_its_cap() -> None:
    timing = Timing()
    assert [timing.preemption_backoff(n) for n in range(0, 8)] == [0, 0, 30, 60, 120, 240, 300, 300]
    timing = Timing.from_env(
        {
            "OLMO_OPERATOR_PREEMPTION_BACKOFF_BASE_SECONDS": "0.1",
            "OLMO_OPERATOR_PREEMPTION_BACKOFF_MAX_SECONDS": "1",
        }
    )
    assert (timing.preemption_backoff_base_seconds, timing.preemption_backoff_max_seconds) == (
        0.1,
        1,
    )
    assert timing.preemption_backoff(3) == 0.2 and timing.preemption_backoff(9) == 1
    with pytest.raises(ValueError, match="OLMO_OPERATOR_PREEMPTION_BACKOFF_MAX_SECONDS"):
        Timing.from_env({"OLMO_OPERATOR_PREEMPTION_BACKOFF_MAX_SECONDS": "-1"})
