"""Checkpoint interval: goodput of the operator's adaptive (Young/Daly) interval vs fixed ones.

Replays preemption traces through the operator's own pure functions
(``olmo_operator.interval.choose_interval``): a simulated run needs ``--work-steps`` optimizer
steps of ``--step-seconds`` each; every save blocks training for ``--save-seconds`` and commits
only when it completes; every interruption costs ``--restart-seconds`` of wall time before training
goes on (rescheduling, then ``--load-seconds`` of it on the new nodes loading the checkpoint) plus
the steps since the last complete save. Preemptions arrive at exponential intervals of mean MTBF
on the wall clock (``--mtbf-hours``; a preemption while the job holds no nodes hits nothing),
seeded (``--seeds`` traces per MTBF), and every policy replays the same traces. They come without
warning: no emergency save (a spot VM's notice, 30 s to 2 min, rarely fits a large save).

Saves happen as the trainer does them: at every multiple of the interval and at the last step.
Policies:

- fixed: the same interval for every attempt, for each interval of ``--fixed`` (the spec's default
  1000 among them);
- adaptive: the first attempt uses the spec default; after each interruption the simulated operator
  calls ``choose_interval`` with what its ledger would hold: the seconds the job held nodes on the
  pool (load, training, saving), the interruptions so far, the save time measured by the latest
  complete save and the step time (None until measured), bounds ``--min-interval``/``--max-interval``.

Goodput is useful work ÷ wall time (``work_steps × step_seconds`` ÷ the run's wall seconds), the
mean over the seeds. A run still unfinished after ``--max-wall-factor`` times its work in wall time
(an interval so long that a save rarely completes between preemptions) stops there and counts the
work of its latest complete checkpoint (``unfinished`` in the JSON counts such runs per policy). The goal (issue 20): adaptive ≥ 0.95 × the best fixed interval at every MTBF
(the best one chosen afterwards on the same traces: an interval nobody could pick beforehand),
and far above the default interval when preemptions are frequent. A missed goal is printed
("goal NOT met"), not an error.

    python benchmarks/bench_checkpoint_interval.py [--quick] [--seeds 50] [--json [PATH]]

``--json`` alone prints the result as one JSON line on stdout (the table then goes to stderr, as
``make bench`` expects); ``--json PATH`` writes it to PATH.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import platform
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "services" / "operator" / "src"))  # also without the venv's install

from olmo_operator.interval import choose_interval, estimate_mtbf, young_daly_seconds  # noqa: E402

DEFAULT_INTERVAL = 1000
GOAL = 0.95
FIXED = (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000)


@dataclass(frozen=True)
class Setting:
    work_steps: int
    step_seconds: float
    save_seconds: float
    restart_seconds: float
    load_seconds: float
    default_steps: int
    min_steps: int
    max_steps: int
    max_wall_seconds: float


@dataclass
class Run:
    """One policy replayed on one trace."""

    wall_seconds: float
    held_seconds: float  # the ledger's seconds on the pool (load, training, saving)
    interruptions: int
    done_steps: int  # the work kept: all of it unless the run hit the wall cap
    lost_steps: int
    saves: int
    intervals: list[int]  # the interval of each attempt


class Trace:
    """Preemption times on the wall clock: a Poisson process of mean gap ``mtbf`` seconds, drawn
    lazily from ``seed`` (so every policy, however long it runs, sees the same arrivals)."""

    def __init__(self, mtbf_seconds: float, seed: int):
        self._rng = random.Random(seed)
        self._rate = 1.0 / mtbf_seconds
        self._times: list[float] = []

    def next_after(self, t: float) -> float:
        while not self._times or self._times[-1] <= t:
            last = self._times[-1] if self._times else 0.0
            self._times.append(last + self._rng.expovariate(self._rate))
        return self._times[bisect.bisect_right(self._times, t)]


def simulate(s: Setting, trace: Trace, fixed: int | None) -> Run:
    """Replay ``trace``: a fixed interval (``fixed``) or, with None, the operator's adaptive one."""
    wall = 0.0
    held = 0.0  # ledger: seconds holding nodes on the pool
    committed = 0  # the step of the latest complete checkpoint
    interruptions = lost = saves = 0
    measured_save: float | None = None
    measured_step: float | None = None
    interval = fixed if fixed is not None else s.default_steps
    if fixed is None:
        interval = min(max(interval, s.min_steps), s.max_steps)
    intervals = []
    while True:
        intervals.append(interval)
        wall += s.restart_seconds - s.load_seconds  # rescheduling: no nodes held
        start = wall
        preempt = trace.next_after(wall)
        t = wall + s.load_seconds
        step = committed
        finished = False
        while t <= preempt:
            target = min((step // interval + 1) * interval, s.work_steps)
            trained = t + (target - step) * s.step_seconds
            if preempt < trained:  # preempted while training: the steps since the save are lost
                step += int((preempt - t) // s.step_seconds)
                break
            t, step = trained, target
            measured_step = s.step_seconds
            if preempt < t + s.save_seconds:  # preempted while saving: that save counts for nothing
                break
            t += s.save_seconds
            committed, saves, measured_save = step, saves + 1, s.save_seconds
            if step == s.work_steps:
                finished = True
                break
        if step > committed and measured_step is None:
            measured_step = s.step_seconds  # the trainer reports stepSeconds before any save
        if finished:
            return Run(t, held + t - start, interruptions, step, lost, saves, intervals)
        # interrupted at `preempt` (while loading, training or saving)
        held += preempt - start
        wall = preempt
        interruptions += 1
        lost += step - committed
        if wall > s.max_wall_seconds:  # an interval that (almost) never completes a save
            return Run(wall, held, interruptions, committed, lost, saves, intervals)
        if fixed is None:
            interval = choose_interval(
                default_steps=s.default_steps,
                min_steps=s.min_steps,
                max_steps=s.max_steps,
                save_seconds=measured_save,
                step_seconds=measured_step,
                run_seconds=held,
                interruptions=interruptions,
            ).steps


def measure(s: Setting, mtbf_hours: float, seeds: int, fixed: tuple[int, ...]) -> dict:
    """Every policy on the same ``seeds`` traces of one MTBF: mean goodput and the comparison."""
    mtbf = mtbf_hours * 3600.0
    policies: dict[str, int | None] = {str(n): n for n in fixed} | {"adaptive": None}
    runs: dict[str, list[Run]] = {name: [] for name in policies}
    for seed in range(seeds):
        for name, steps in policies.items():  # a fresh trace object, the same arrivals
            runs[name].append(simulate(s, Trace(mtbf, seed), steps))

    def goodput(name: str) -> float:
        return statistics.fmean(r.done_steps * s.step_seconds / r.wall_seconds for r in runs[name])

    fixed_goodput = {n: goodput(str(n)) for n in fixed}
    best = max(fixed_goodput, key=lambda n: fixed_goodput[n])
    adaptive = goodput("adaptive")
    default = fixed_goodput.get(s.default_steps)
    # What the adaptive policy settled on: each run's last interval; and the ideal with the true MTBF.
    last = [r.intervals[-1] for r in runs["adaptive"]]
    interruptions = [r.interruptions for r in runs["adaptive"]]
    ideal = young_daly_seconds(s.save_seconds, mtbf) / s.step_seconds
    observed = [
        m
        for r in runs["adaptive"]
        if (m := estimate_mtbf(r.held_seconds, r.interruptions)) is not None
    ]
    return {
        "mtbf_hours": mtbf_hours,
        "adaptive": adaptive,
        "best_fixed_steps": best,
        "best_fixed": fixed_goodput[best],
        "default": default,
        "ratio_vs_best": adaptive / fixed_goodput[best],
        "ratio_vs_default": adaptive / default if default else None,
        "goal_met": adaptive >= GOAL * fixed_goodput[best],
        "young_daly_steps_true_mtbf": round(ideal),
        "adaptive_last_interval_median": statistics.median(last),
        "adaptive_interruptions_mean": statistics.fmean(interruptions),
        "observed_mtbf_hours_median": statistics.median(observed) / 3600 if observed else None,
        "fixed": {str(n): g for n, g in fixed_goodput.items()},
        "unfinished": {
            n: k for n, v in runs.items() if (k := sum(r.done_steps < s.work_steps for r in v))
        },
    }


def table(result: dict) -> str:
    s = result["setting"]
    lines = [
        f"checkpoint interval — {s['work_steps']:,} steps of {s['step_seconds']:g} s, "
        f"save {s['save_seconds']:g} s, restart {s['restart_seconds']:g} s "
        f"(load {s['load_seconds']:g} s), {result['seeds']} seeds per MTBF, "
        f"adaptive bounds [{s['min_steps']}, {s['max_steps']}]",
        f"{'MTBF':>7} {'interr.':>7} {'adaptive':>8} {'(interval)':>10} {'best fixed':>15} "
        f"{'default':>8} {'ad÷best':>8} {'ad÷default':>10}  goal ≥ {GOAL}",
    ]
    for r in result["results"]:
        best = f"{r['best_fixed']:.4f} @{r['best_fixed_steps']}"
        interval = f"~{r['adaptive_last_interval_median']:.0f}/{r['young_daly_steps_true_mtbf']}"
        by_default = f"{r['ratio_vs_default']:.3f}" if r["ratio_vs_default"] else "-"
        lines.append(
            f"{r['mtbf_hours']:>5g} h {r['adaptive_interruptions_mean']:>7.1f} "
            f"{r['adaptive']:>8.4f} {interval:>10} {best:>15} "
            f"{r['default'] or math.nan:>8.4f} {r['ratio_vs_best']:>8.3f} {by_default:>10}  "
            f"{'goal met' if r['goal_met'] else 'goal NOT met'}"
        )
    lines.append(
        "(interval: the adaptive run's last interval, median over seeds / Young-Daly with the true "
        "MTBF; interr.: interruptions per run)"
    )
    return "\n".join(lines)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer seeds and steps (a smoke run)")
    p.add_argument("--work-steps", type=int, default=None, help="default 100000 (quick 20000)")
    p.add_argument("--seeds", type=int, default=None, help="traces per MTBF; default 50 (quick 3)")
    p.add_argument("--mtbf-hours", type=_floats, default=(0.25, 1.0, 4.0, 24.0))
    p.add_argument("--fixed", type=_ints, default=FIXED, help="fixed intervals (steps)")
    p.add_argument("--step-seconds", type=float, default=1.0)
    p.add_argument("--save-seconds", type=float, default=30.0)
    p.add_argument("--restart-seconds", type=float, default=120.0)
    p.add_argument("--load-seconds", type=float, default=60.0, help="part of the restart on nodes")
    p.add_argument("--default-interval", type=int, default=DEFAULT_INTERVAL)
    p.add_argument("--min-interval", type=int, default=25)
    p.add_argument("--max-interval", type=int, default=5000)
    p.add_argument("--max-wall-factor", type=float, default=20.0,
                   help="stop a run after this many times its work in wall time")  # fmt: skip
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="write the result as JSON to PATH (no PATH: one line on stdout)")  # fmt: skip
    args = p.parse_args(argv)
    work_steps = args.work_steps or (20_000 if args.quick else 100_000)
    seeds = args.seeds or (3 if args.quick else 50)
    if not 0 <= args.load_seconds <= args.restart_seconds:
        p.error("--load-seconds must be between 0 and --restart-seconds")
    if min(args.mtbf_hours, default=0) <= 0 or min(args.fixed, default=0) < 1:
        p.error("--mtbf-hours must be > 0 and --fixed intervals ≥ 1 (non-empty lists)")
    if args.max_wall_factor < 1:
        p.error("--max-wall-factor must be ≥ 1")
    if work_steps < 1 or seeds < 1 or args.step_seconds <= 0 or args.save_seconds < 0:
        p.error("--work-steps, --seeds and --step-seconds must be > 0, --save-seconds ≥ 0")
    fixed = tuple(sorted(set(args.fixed) | {args.default_interval}))
    s = Setting(
        work_steps=work_steps,
        step_seconds=args.step_seconds,
        save_seconds=args.save_seconds,
        restart_seconds=args.restart_seconds,
        load_seconds=args.load_seconds,
        default_steps=args.default_interval,
        min_steps=args.min_interval,
        max_steps=args.max_interval,
        max_wall_seconds=args.max_wall_factor * work_steps * args.step_seconds,
    )
    try:  # the operator's own validation of the bounds
        choose_interval(default_steps=s.default_steps, min_steps=s.min_steps,
                        max_steps=s.max_steps, save_seconds=None, step_seconds=None,
                        run_seconds=0.0, interruptions=0)  # fmt: skip
    except ValueError as e:
        p.error(str(e))
    result = {
        "setting": s.__dict__,
        "seeds": seeds,
        "quick": args.quick,
        "goal": GOAL,
        "python": platform.python_version(),
        "results": [measure(s, m, seeds, fixed) for m in args.mtbf_hours],
    }
    result["ratio"] = min(r["ratio_vs_best"] for r in result["results"])
    print(table(result), file=sys.stderr if args.json == "-" else sys.stdout, flush=True)
    if args.json == "-":
        print(json.dumps(result))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
