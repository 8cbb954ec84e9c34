"""The data-loader benchmark runs and reports its ratio (speed goals belong to `make bench`)."""

from __future__ import annotations

import json
import subprocess
import sys

from ..conftest import REPO_ROOT


def test_bench_data_reports_ratio():
    """The benchmark runs and reports consistent numbers (speed goals are not tested here)."""
    out = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_data.py"),
            "--json",
            "--tokens",
            "300000",
            "--rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["instances_per_s"] > 0 and result["reference_instances_per_s"] > 0
    ratio = result["instances_per_s"] / result["reference_instances_per_s"]
    assert abs(result["ratio"] - ratio) < 1e-2
