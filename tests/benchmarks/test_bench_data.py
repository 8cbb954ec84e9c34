"""The data-loader benchmark runs and reports its ratio."""

from __future__ import annotations

from . import last_json, run_benchmark, summary_rows


def test_bench_data_reports_ratio():
    result = last_json(run_benchmark("bench_data.py", "--tokens", "300000", "--rounds", "1"))
    assert result["instances_per_s"] > 0 and result["reference_instances_per_s"] > 0
    ratio = result["instances_per_s"] / result["reference_instances_per_s"]
    assert abs(result["ratio"] - ratio) < 1e-2
    summary_rows("data", result)  # make bench's table reads it
