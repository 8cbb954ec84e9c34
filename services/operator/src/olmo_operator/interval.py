"""The save interval of the next attempt, from the observed preemption rate (Young/Daly).

A checkpoint costs the run twice: each save stops training for ``C`` seconds, and each
interruption throws away the work done since the last complete save. Saving often makes the
first cost large, saving rarely the second. With interruptions arriving at random, ``M`` seconds
apart on average (the mean time between failures, MTBF), the expected waste per second of work
is about ``C / T + T / (2 M)`` for a compute time ``T`` between saves; it is smallest at

    T = sqrt(2 × C × M)

(J. W. Young, "A first order approximation to the optimum checkpoint interval", CACM 17(9),
1974; J. T. Daly, "A higher order estimate of the optimum checkpoint interval for restart
dumps", Future Generation Computer Systems 22(3), 2006, which also shows this first-order value
to be close to the optimum whenever ``C`` is small next to ``M``). The assumptions, and where
they hold for us:

- interruptions form a Poisson process (exponential times between them, no memory): a node
  preemption or failure is as likely one minute after a save as one hour after it;
- ``C`` is what training loses per save: the blocking part of the save (with an object store,
  the local save plus the wait for the previous upload; the trainer reports it as
  ``saveSeconds``);
- an interruption loses the work since the last complete save (half an interval on average;
  a save cut short counts for nothing) plus a restart cost that does not depend on the interval,
  so it does not move the optimum;
- first order: the formula ignores that failures also strike during saves and restarts, which
  matters only when ``C`` approaches ``M`` (then any interval loses most of the run).

The operator measures ``M`` per node pool from the goodput ledger: the wall seconds the job held
nodes on the pool divided by the attempts there that ended by preemption, failure or hang
(:func:`estimate_mtbf`). :func:`choose_interval` turns that and the trainer's latest ``saveSeconds``
and ``stepSeconds`` into whole steps for ``checkpoint.save_interval``, clamped to
``spec.checkpoint.adaptive`` ``[minInterval, maxInterval]``; until the pool has seen an
interruption, or before the trainer has measured a save and a step, it keeps the spec's interval
(with a step time but no save time yet, at most the MTBF's worth of steps: the optimum is never
longer, and a longer interval may never complete a save to measure).
Everything here is pure and standard-library only; ``benchmarks/bench_checkpoint_interval.py``
replays preemption traces through these same functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class IntervalChoice:
    """The save interval for the next attempt and why (``status.checkpointInterval``)."""

    steps: int
    """The save interval for the next attempt, in optimizer steps."""
    reason: str
    """One line for ``status.checkpointInterval.reason`` and the Event."""
    mtbf_seconds: float | None
    """The estimated mean time between interruptions on the pool; None before the first one."""
    save_seconds: float | None
    """The measured blocking save time used; None when not measured yet."""
    step_seconds: float | None
    """The measured seconds of one optimizer step used; None when not measured yet."""


def _check_number(name: str, value: float, *, positive: bool = False) -> float:
    """``value`` as a float if it is finite and ≥ 0 (> 0 with ``positive``), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be ≥ 0, got {value!r}")
    return float(value)


def _check_count(name: str, value: int, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value!r}")
    return value


def young_daly_seconds(save_seconds: float, mtbf_seconds: float) -> float:
    """The first-order optimum compute time between saves: ``sqrt(2 × save × MTBF)`` seconds.

    Both arguments are seconds, finite and ≥ 0 (a zero gives zero: save as often as allowed).
    """
    c = _check_number("save_seconds", save_seconds)
    m = _check_number("mtbf_seconds", mtbf_seconds)
    return math.sqrt(2.0 * c * m)


def estimate_mtbf(run_seconds: float, interruptions: int) -> float | None:
    """Observed mean seconds between interruptions: ``run_seconds / interruptions``.

    ``run_seconds`` is the wall time the job held nodes on the pool, ``interruptions`` the
    attempts there that ended by preemption, failure or hang. None when there was none yet
    (the rate is unknown, not zero).
    """
    seconds = _check_number("run_seconds", run_seconds)
    count = _check_count("interruptions", interruptions, minimum=0)
    if count == 0:
        return None
    return seconds / count


def _clamp(steps: int, min_steps: int, max_steps: int) -> tuple[int, str]:
    """``steps`` within the bounds, and a note naming the bound it was clamped to ('' if none)."""
    if steps < min_steps:
        return min_steps, f"clamped to minInterval {min_steps}"
    if steps > max_steps:
        return max_steps, f"clamped to maxInterval {max_steps}"
    return steps, ""


def _format_seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def choose_interval(
    *,
    default_steps: int,
    min_steps: int,
    max_steps: int,
    save_seconds: float | None,
    step_seconds: float | None,
    run_seconds: float,
    interruptions: int,
    pool: str | None = None,
) -> IntervalChoice:
    """The next attempt's save interval in steps, by Young/Daly, within ``[min_steps, max_steps]``.

    ``default_steps`` is ``spec.checkpoint.interval``, kept (within the bounds) while the pool has
    seen no interruption or the trainer has not yet reported a save time and a step time
    (``save_seconds`` / ``step_seconds`` None); with a step time but no save time it is cut to
    the steps that fit in one MTBF when longer. Otherwise the interval is
    ``round(young_daly_seconds(save, MTBF) / step_seconds)`` steps, clamped to the bounds.
    ``pool`` (optional) only names the pool in the reason. Raises ValueError on bounds that are
    not ``1 ≤ min_steps ≤ max_steps``, a ``default_steps`` < 1, or a negative, non-finite (or,
    for ``step_seconds``, zero) measurement.
    """
    default = _check_count("default_steps", default_steps, minimum=1)
    low = _check_count("min_steps", min_steps, minimum=1)
    high = _check_count("max_steps", max_steps, minimum=1)
    if low > high:
        raise ValueError(f"min_steps ({low}) must be ≤ max_steps ({high})")
    save = None if save_seconds is None else _check_number("save_seconds", save_seconds)
    step = (
        None if step_seconds is None else _check_number("step_seconds", step_seconds, positive=True)
    )
    mtbf = estimate_mtbf(run_seconds, interruptions)

    missing = ""
    if mtbf is None:
        where = f"on pool {pool}" if pool else "on this pool"
        missing = f"no interruption seen {where} yet"
    elif save is None and step is None:
        missing = "no save or step time measured yet"
    elif save is None:
        missing = "no save time measured yet"
    elif step is None:
        missing = "no step time measured yet"
    if missing:
        reason = f"{missing}: spec interval {default} steps"
        steps = default
        if mtbf is not None and step is not None and default * step > mtbf:
            # Without a save time Young/Daly cannot be computed, but its optimum never exceeds
            # the MTBF (Daly 2006); a longer interval often ends before its first save, and so
            # before the save time is ever measured.
            steps = max(1, math.floor(mtbf / step))
            reason += f", capped at the MTBF {_format_seconds(mtbf)} = {steps} steps"
        return _chosen(steps, reason, low, high, mtbf, save, step)

    assert mtbf is not None and save is not None and step is not None
    seconds = young_daly_seconds(save, mtbf)
    exact = max(1, round(seconds / step))  # a zero save time still saves every step at most
    reason = (
        f"Young/Daly: sqrt(2 × {_format_seconds(save)} × {_format_seconds(mtbf)}) = "
        f"{_format_seconds(seconds)} = {exact} steps"
    )
    return _chosen(exact, reason, low, high, mtbf, save, step)


def _chosen(
    steps: int,
    reason: str,
    low: int,
    high: int,
    mtbf: float | None,
    save: float | None,
    step: float | None,
) -> IntervalChoice:
    """``steps`` clamped to ``[low, high]``, the reason saying so when it was."""
    steps, clamped = _clamp(steps, low, high)
    return IntervalChoice(
        steps=steps,
        reason=f"{reason}, {clamped}" if clamped else reason,
        mtbf_seconds=mtbf,
        save_seconds=save,
        step_seconds=step,
    )
