"""The scale-out benchmark: 1, 2 and 4 workers on the same input make the same dataset (it fails
otherwise), and it reports the CPU time per document of each."""

from __future__ import annotations

from . import last_json, run_benchmark, summary_rows, write_small_corpus


def test_bench_dataprep_scaleout_gives_identical_output_and_reports_cpu_per_document(tmp_path):
    corpus = write_small_corpus(tmp_path / "corpus", 40)
    result = last_json(
        run_benchmark(
            "bench_dataprep_scaleout.py",
            "--corpus", str(corpus), "--tokenizer", "train",
            "--copies", "2", "--files", "4", "--workers", "1,2,4",
            timeout=600,
        )
    )  # fmt: skip
    assert result["identical_output"] is True and result["documents"] == 160
    rows = result["results"]
    assert [r["workers"] for r in rows] == [1, 2, 4]
    assert len({(r["documents_kept"], r["tokens"]) for r in rows}) == 1
    for r in rows:
        assert r["cpu_s"] > 0 and r["wall_s"] > 0
        # cpu_s is rounded to 10 ms
        assert abs(r["cpu_ms_per_document"] - 1000 * r["cpu_s"] / result["documents"]) < 0.1
    assert result["ratio"] == max(r["ratio_to_one_worker"] for r in rows)
    assert len(summary_rows("dataprep_scaleout", result)) == 1
