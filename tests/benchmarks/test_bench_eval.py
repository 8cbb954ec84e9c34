"""The eval benchmark runs, checks the engine against naive scoring and against OLMo's own
evaluator (ai2-olmo-eval, in its venv: built on first use, shared with
tests/eval/test_reference_parity.py), and reports both ratios."""

from __future__ import annotations

import pytest

from . import last_json, run_benchmark, summary_rows


def test_bench_eval_reports_ratio():
    result = last_json(
        run_benchmark(
            "bench_eval.py", "--tasks", "piqa,boolq", "--limit", "2", "--rounds", "1",
            "--vocab-size", "600",
        )
    )  # fmt: skip
    assert result["continuations"] == 8 and result["items"] == 4
    assert result["max_abs_score_difference"] < 1e-3  # the engine computes what naive does
    assert result["unique_requests"] < result["requests"]  # boolq's unconditional pair is shared
    assert result["continuations_per_s"] > 0 and result["reference_continuations_per_s"] > 0
    ratio = result["continuations_per_s"] / result["reference_continuations_per_s"]
    assert result["ratio"] == pytest.approx(ratio, rel=0.02)  # the rates are printed rounded
    # OLMo's evaluator on the same model: the same scores, and its rate.
    assert result["olmo_eval_max_abs_loglikelihood_difference"] < 1e-4
    assert result["olmo_eval_continuations_per_s"] > 0
    theirs = result["continuations_per_s"] / result["olmo_eval_continuations_per_s"]
    assert result["ratio_vs_olmo_eval"] == pytest.approx(theirs, rel=0.02)
    summary_rows("eval", result)  # make bench's table reads it
