"""`make bench`'s summary (benchmarks/run_all.py): a real run collects the JSON of a benchmark
into the ratio table. (Every benchmark's own smoke test also feeds its JSON to the table's row
function: tests/benchmarks/__init__.py summary_rows.)"""

from __future__ import annotations

import json
import subprocess
import sys

from ..conftest import REPO_ROOT

RUN_ALL = str(REPO_ROOT / "benchmarks" / "run_all.py")


def test_quick_run_collects_the_ratios():
    out = subprocess.run(
        [sys.executable, RUN_ALL, "--quick", "--only", "data", "--json"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["failures"] == {}
    assert [row["component"] for row in result["rows"]] == ["data loader"]
    assert all(row["value"] > 0 and row["met"] is not None for row in result["rows"])


def test_unknown_benchmark_is_a_usage_error():
    out = subprocess.run(
        [sys.executable, RUN_ALL, "--only", "nope"], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert out.returncode == 2 and "unknown benchmark" in out.stderr
