"""The checkpoint-interval benchmark replays preemption traces through the operator's
choose_interval and reports sane goodputs for every MTBF (the quick setting is deterministic:
its seeds are fixed)."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import sys

from ..conftest import REPO_ROOT
from . import last_json, run_benchmark, summary_rows


@functools.cache
def _bench():
    name = "bench_checkpoint_interval"
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_reports_every_mtbf_with_sane_goodputs():
    result = last_json(run_benchmark("bench_checkpoint_interval.py", "--quick", timeout=60))
    assert [r["mtbf_hours"] for r in result["results"]] == [0.25, 1.0, 4.0, 24.0]
    for r in result["results"]:
        goodputs = [r["adaptive"], r["best_fixed"], r["default"], *r["fixed"].values()]
        assert all(0 < g <= 1 for g in goodputs)
        assert r["best_fixed"] == max(r["fixed"].values()) == r["fixed"][str(r["best_fixed_steps"])]
        assert r["default"] == r["fixed"]["1000"]
        assert math.isclose(r["ratio_vs_best"], r["adaptive"] / r["best_fixed"])
        # the goal, met by the quick setting's fixed seeds (and by the full run)
        assert r["ratio_vs_best"] >= 0.95 and r["goal_met"]
    frequent = result["results"][0]
    assert frequent["ratio_vs_default"] > 1.2  # far above the default interval at MTBF 15 min
    assert frequent["adaptive_interruptions_mean"] > 10
    # the adaptive runs settle near Young/Daly with the true MTBF (232 steps at 15 min)
    assert 150 <= frequent["adaptive_last_interval_median"] <= 350
    assert frequent["young_daly_steps_true_mtbf"] == 232
    assert result["ratio"] == min(r["ratio_vs_best"] for r in result["results"])
    assert len(summary_rows("checkpoint_interval", result)) == 5  # make bench's table reads it


def test_table_and_json_file(tmp_path, capsys):
    out = tmp_path / "interval.json"
    args = ["--quick", "--mtbf-hours", "0.5,2", "--seeds", "2", "--json", str(out)]
    assert _bench().main(args) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.strip().endswith("goal met")]
    assert len(rows) == 2 and rows[0].lstrip().startswith("0.5 h") and "2 h" in rows[1]
    result = json.loads(out.read_text())
    assert result["seeds"] == 2 and [r["mtbf_hours"] for r in result["results"]] == [0.5, 2.0]


def test_without_preemptions_the_wall_time_is_start_work_and_saves():
    bench = _bench()
    s = bench.Setting(
        work_steps=10_000, step_seconds=0.5, save_seconds=20.0, restart_seconds=100.0,
        load_seconds=40.0, default_steps=1000, min_steps=10, max_steps=5000,
        max_wall_seconds=1e9,
    )  # fmt: skip
    trace = bench.Trace(mtbf_seconds=1e12, seed=0)  # first preemption long after the run
    for fixed, saves in ((1000, 10), (3000, 4), (None, 10)):  # saves at 3000, 6000, 9000, 10000
        run = bench.simulate(s, trace, fixed)
        assert run.saves == saves and run.interruptions == run.lost_steps == 0
        assert run.wall_seconds == run.held_seconds + 60.0 == 100.0 + 5000.0 + saves * 20.0


def test_a_preemption_loses_the_steps_since_the_last_complete_save():
    bench = _bench()
    s = bench.Setting(
        work_steps=1000, step_seconds=1.0, save_seconds=10.0, restart_seconds=30.0,
        load_seconds=10.0, default_steps=300, min_steps=10, max_steps=5000,
        max_wall_seconds=1e9,
    )  # fmt: skip

    class OneAt(bench.Trace):  # one preemption at wall 20 + 10 + 450 s, then none
        def next_after(self, t):
            return 480.0 if t < 480.0 else 1e12

    run = bench.simulate(s, OneAt(1.0, 0), 300)
    # attempt 1: load to 30 s, steps 0-300 to 330 s, save to 340 s, step 440 at 480 s: preempted
    assert run.interruptions == 1 and run.lost_steps == 140 and run.intervals == [300, 300]
    # attempt 2 from step 300: 30 s restart, 700 steps, saves at 600, 900, 1000
    assert run.wall_seconds == 480.0 + 30.0 + 700.0 + 3 * 10.0
    assert run.held_seconds == (480.0 - 20.0) + (run.wall_seconds - 500.0)
    adaptive = bench.simulate(s, OneAt(1.0, 0), None)  # MTBF 460 s, save 10 s: 96 steps
    assert adaptive.intervals == [300, 96]
