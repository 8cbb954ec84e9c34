"""The model benchmark runs and reports its ratio."""

from __future__ import annotations

from . import last_json, run_benchmark, summary_rows


def test_bench_model_reports_ratio():
    result = last_json(
        run_benchmark(
            "bench_model.py", "--rounds", "1", "--steps", "1", "--batch", "1", "--seq-len", "32"
        )
    )
    assert result["ours_tokens_per_s"] > 0 and result["hf_tokens_per_s"] > 0
    ratio = result["ours_tokens_per_s"] / result["hf_tokens_per_s"]
    assert abs(result["ratio"] - ratio) < 1e-2
    summary_rows("model", result)  # make bench's table reads it
