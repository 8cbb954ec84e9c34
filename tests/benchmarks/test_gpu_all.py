"""The prepared GPU script (``benchmarks/gpu_all.py``) runs its CPU dry run end to end: the
trainer at ZeRO stage 1 offloaded and at stage 3 (each case in its own process), model vs HF, eval
throughput, the results JSON and the Markdown table. Its numbers on CPU mean nothing; that it
runs does. Which 7B case runs on which GPU and host is ``plan_case``, checked here without one."""

from __future__ import annotations

import importlib.util
import json

import pytest

from ..conftest import REPO_ROOT
from . import last_json, run_benchmark


@pytest.fixture(scope="module")
def gpu_all():
    spec = importlib.util.spec_from_file_location("gpu_all", REPO_ROOT / "benchmarks/gpu_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_7b_offloads_the_optimizer_where_one_gpu_cannot_hold_it(gpu_all):
    case = {"preset": "7b", "stage": 3, "compile": False}
    # 6.9B parameters × 20 bytes on one GPU (~138 GiB with activations): no 80 GB GPU holds it.
    assert 130 < gpu_all.estimate_gib("7b", 3) < 140
    assert gpu_all.plan_case(case, free_gib=300, host_gib=120) == (case, None)
    planned, reason = gpu_all.plan_case(case, free_gib=79, host_gib=120)  # H100, 128 GiB host
    assert planned == {**case, "offload": True} and reason is None
    assert 30 < gpu_all.estimate_gib("7b", 3, offload=True) < 40
    assert 100 < gpu_all.host_estimate_gib("7b") < 120
    planned, reason = gpu_all.plan_case(case, free_gib=79, host_gib=64)
    assert planned["offload"] and "GiB of host memory (64 GiB available)" in reason
    planned, reason = gpu_all.plan_case(case, free_gib=24, host_gib=500)
    assert "even offloaded, 24 GiB free" in reason
    one_b = {"preset": "1b", "stage": 1, "compile": False}  # never offloaded: it must fit
    assert gpu_all.plan_case(one_b, free_gib=10, host_gib=500)[1] == "needs ~32 GiB, 10 GiB free"
    assert gpu_all.case_name({**case, "offload": True}) == "7b ZeRO-3 offload"
    assert gpu_all.host_available_gib() > 0


def test_gpu_all_dry_run_covers_every_section(tmp_path):
    out = tmp_path / "gpu_all.json"
    lines = run_benchmark("gpu_all.py", "--dry-run", "--out", str(out), timeout=400)
    result = last_json(lines)
    assert json.loads(out.read_text()) == result
    assert result["dry_run"] and result["device"] == "cpu (dry run)"
    cases = result["trainer"]
    assert [(c["preset"], c["stage"], c.get("offload", False)) for c in cases] == [
        ("tiny", 1, True),
        ("tiny", 3, False),
    ]
    for case in cases:
        assert case["tokens_per_s"] > 0, case
        assert case["loss_last"] < case["loss_first"] + 1.0  # it trains, it does not diverge
    fwd = result["model_vs_hf"]["fwd_bwd"]
    assert fwd["ours_tokens_per_s"] > 0 and fwd["hf_tokens_per_s"] > 0
    assert result["model_vs_hf"]["numerics"]["fp32_max_abs_logit_diff"] < 1e-3
    assert result["eval"]["continuations_per_s"] > 0
    table = "\n".join(lines)
    assert "| trainer tiny ZeRO-3 |" in table and "| trainer tiny ZeRO-1 offload |" in table
    assert "| model fwd+bwd tiny ours |" in table
