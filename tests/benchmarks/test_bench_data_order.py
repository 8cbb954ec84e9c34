"""The data-order-at-scale benchmark runs and reports memory and time against its goals."""

from __future__ import annotations

from . import last_json, run_benchmark, summary_rows


def test_bench_data_order_reports_memory_and_time():
    result = last_json(run_benchmark("bench_data_order.py", "--tokens", "1e11", "--shards", "3000"))
    large, many = result["large"], result["many_shards"]
    assert large["tokens"] == 10**11 and large["instances"] == 10**11 // 2048
    assert many["shards"] == 3000
    for r in (large, many):
        assert 0 < r["rss_before_mb"] <= r["peak_rss_mb"]
        assert abs(r["rss_ratio"] - r["peak_rss_mb"] / 256) < 1e-9
        assert abs(r["time_ratio"] - r["seconds"] / 5) < 1e-9
    assert result["shuffle_bytes_per_rank_at_large"] == large["instances"] * 8
    assert len(summary_rows("data_order", result)) == 4
