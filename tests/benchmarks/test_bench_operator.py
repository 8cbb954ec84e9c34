"""The operator benchmark runs against the API emulator and reports consistent numbers."""

from __future__ import annotations

from . import last_json, run_benchmark, summary_rows

TINY = (
    "--crs",
    "5",
    "--rounds",
    "1",
    "--reconcile-seconds",
    "0.2",
    "--backoff-base-seconds",
    "0.1",
)


def test_bench_operator_reports_latencies_and_ratios():
    result = last_json(run_benchmark("bench_operator.py", *TINY, timeout=120))
    assert result["crs"] == 5 and result["reconcile_seconds"] == 0.2
    for key, goal in result["goals"].items():
        assert 0 < result[key] < 60
        ratio = key.removesuffix("_s") + "_ratio"
        assert abs(result[ratio] - result[key] / goal) < 1e-2
    assert result["api_requests"] > 5 * 5  # each OLMoJob's reconcile lists and creates children
    summary_rows("operator", result)  # make bench's table reads it
