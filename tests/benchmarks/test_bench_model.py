"""The model benchmark runs and reports its ratio, and its profile breakdown adds up."""

from __future__ import annotations

from . import last_json, run_benchmark, summary_rows

SMALL = ("--rounds", "1", "--steps", "1", "--batch", "1", "--seq-len", "32", "--threads", "1")


def test_bench_model_reports_ratio_and_breakdown():
    result = last_json(run_benchmark("bench_model.py", *SMALL, "--profile"))
    assert result["ours_tokens_per_s"] > 0 and result["hf_tokens_per_s"] > 0
    assert result["threads"] == 1 and result["hf_attention"]
    # one round: the per-round ratio is the ratio of the two rates
    ratio = result["ours_tokens_per_s"] / result["hf_tokens_per_s"]
    assert abs(result["ratio"] - ratio) < 1e-2
    assert result["ratio_min"] <= result["ratio"] <= result["ratio_max"]
    for name in ("ours", "hf"):
        prof = result["profile"][name]
        assert prof["body_ms"] > 0 and prof["step_ms"] > 0
        assert abs(prof["step_ms"] - prof["body_ms"] - prof["head_loss_ms"]) < 0.2
        ops = result["top_ops_ms"][name]
        assert any(op == "aten::mm" for op, _ in ops)  # the matmuls are among the top operators
        assert all(ms > 0 for _, ms in ops)
    summary_rows("model", result)  # make bench's table reads it
