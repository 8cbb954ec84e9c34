"""The data-prep benchmark runs on a small corpus and reports consistent numbers."""

from __future__ import annotations

from ..dataprep.conftest import english_docs, write_jsonl
from . import last_json, run_benchmark, summary_rows


def test_bench_dataprep_reports_ratio_and_stage_rates(tmp_path):
    corpus = tmp_path / "corpus"
    for i, source in enumerate(("books", "docs")):
        docs = english_docs(30, seed=i, paragraphs=2)
        write_jsonl(
            corpus / source / "part-0.jsonl",
            [{"id": f"{source}-{j}", "text": t} for j, t in enumerate(docs)],
        )
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
