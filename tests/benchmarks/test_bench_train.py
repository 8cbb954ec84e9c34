"""The trainer-overhead benchmark runs and reports its ratio."""

from __future__ import annotations

import json

from . import run_benchmark, summary_rows


def test_bench_train_reports_overhead_ratio(tmp_path):
    lines = run_benchmark(
        "bench_train.py", "--presets", "tiny", "--seq-len", "32", "--batch", "2",
        "--rounds", "1", "--steps", "1", timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert len(lines) == 1, lines  # stdout holds the JSON line only
    summary = json.loads(lines[0])
    assert summary["benchmark"] == "train_step_overhead"
    (result,) = summary["results"]
    assert result["preset"] == "tiny"
    trainer, bare = result["trainer_tokens_per_s"], result["bare_tokens_per_s"]
    assert trainer > 0 and bare > 0
    # overhead = trainer step time / bare step time = bare tokens/s / trainer tokens/s
    assert abs(result["overhead_ratio"] - bare / trainer) <= 2e-3 * result["overhead_ratio"] + 1e-3
    times = result["trainer_step_s"] / result["bare_step_s"]
    assert abs(result["overhead_ratio"] - times) <= 2e-3 * result["overhead_ratio"] + 1e-3
    summary_rows("train", summary)  # make bench's table reads it
