"""The data-prep memory benchmark runs on tiny files and reports consistent numbers."""

from __future__ import annotations

from . import last_json, run_benchmark, summary_rows


def test_bench_dataprep_memory_reports_peaks_and_ratio():
    result = last_json(
        run_benchmark("bench_dataprep_memory.py", "--sizes", "100kB,500kB", "--line", "3MB")
    )
    assert result["benchmark"] == "dataprep_peak_memory" and result["goal"] == 1.2
    cases = result["cases"]
    assert [(c["name"], c["kind"]) for c in cases] == [
        ("100kB", "documents"),
        ("500kB", "documents"),
        ("3MB line", "one line"),
    ]
    assert result["reference"] == "100kB"
    small, large, line = cases
    assert 0 < small["documents_in"] < large["documents_in"]
    assert small["documents_kept"] == small["documents_in"] and small["tokens"] > 0
    assert line["documents_in"] == 1 and line["dropped"] == {"read": {"too_long": 1}}
    for case in cases:
        assert case["peak_rss_mib"] > 0 and case["gzip_bytes"] > 0
        assert abs(case["ratio"] - case["peak_rss_mib"] / small["peak_rss_mib"]) < 1e-2
    assert result["ratio"] == max(large["ratio"], line["ratio"])
    assert len(summary_rows("dataprep_memory", result)) == 1  # make bench's table reads it
