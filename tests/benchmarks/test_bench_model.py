"""The model benchmark runs and reports its ratio (its speed goal is checked by `make bench`,
not here: timings do not belong in tests)."""

from __future__ import annotations

import json
import subprocess
import sys

from ..conftest import REPO_ROOT


def test_bench_model_reports_ratio():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_model.py"),
            "--json",
            "--rounds",
            "1",
            "--steps",
            "1",
            "--batch",
            "1",
            "--seq-len",
            "32",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ours_tokens_per_s"] > 0 and result["hf_tokens_per_s"] > 0
    ratio = result["ours_tokens_per_s"] / result["hf_tokens_per_s"]
    assert abs(result["ratio"] - ratio) < 1e-2
