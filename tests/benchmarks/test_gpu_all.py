"""The prepared GPU script (``benchmarks/gpu_all.py``) runs its CPU dry run end to end: the
trainer at ZeRO stages 1, 2 and 3 (each case in its own process), model vs HF, eval throughput,
the results JSON and the Markdown table. Its numbers on CPU mean nothing; that it runs does."""

from __future__ import annotations

import json

from . import last_json, run_benchmark


def test_gpu_all_dry_run_covers_every_section(tmp_path):
    out = tmp_path / "gpu_all.json"
    lines = run_benchmark("gpu_all.py", "--dry-run", "--out", str(out), timeout=400)
    result = last_json(lines)
    assert json.loads(out.read_text()) == result
    assert result["dry_run"] and result["device"] == "cpu (dry run)"
    cases = result["trainer"]
    assert [(c["preset"], c["stage"]) for c in cases] == [("tiny", 1), ("tiny", 3)]
    for case in cases:
        assert case["tokens_per_s"] > 0, case
        assert case["loss_last"] < case["loss_first"] + 1.0  # it trains, it does not diverge
    fwd = result["model_vs_hf"]["fwd_bwd"]
    assert fwd["ours_tokens_per_s"] > 0 and fwd["hf_tokens_per_s"] > 0
    assert result["model_vs_hf"]["numerics"]["fp32_max_abs_logit_diff"] < 1e-3
    assert result["eval"]["continuations_per_s"] > 0
    table = "\n".join(lines)
    assert "| trainer tiny ZeRO-3 |" in table and "| model fwd+bwd tiny ours |" in table
