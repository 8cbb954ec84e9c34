"""The data-prep benchmark runs on a small corpus and reports consistent numbers."""

from __future__ import annotations

from . import last_json, run_benchmark, summary_rows, write_small_corpus


def test_bench_dataprep_reports_ratio_and_stage_rates(tmp_path):
    corpus = write_small_corpus(tmp_path / "corpus", 30)
    result = last_json(
        run_benchmark(
            "bench_dataprep.py", "--corpus", str(corpus), "--tokenizer", "train", "--rounds", "1"
        )
    )
    assert result["documents_in"] == 60 and 0 < result["documents_kept"] <= 60
    assert result["tokens"] > 0
    ratio = result["pipeline_tokens_per_s"] / result["reference_tokens_per_s"]
    assert abs(result["ratio"] - ratio) < 1e-2
    for stage in ("read", "langid", "quality", "pii", "tokenize"):
        assert result["stage_docs_per_s"][stage] > 0
    summary_rows("dataprep", result)  # make bench's table reads it
