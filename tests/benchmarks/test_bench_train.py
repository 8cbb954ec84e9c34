"""The trainer-overhead benchmark runs and reports its ratio (its speed goal is checked by
running the benchmark, not here: timings do not belong in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ..conftest import REPO_ROOT


def test_bench_train_reports_overhead_ratio(tmp_path):
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(name, None)  # a one-process group on a free port of its own
    out = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_train.py"),
            "--presets",
            "tiny",
            "--seq-len",
            "32",
            "--batch",
            "2",
            "--rounds",
            "1",
            "--steps",
            "1",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout  # stdout holds the JSON line only
    summary = json.loads(lines[0])
    assert summary["benchmark"] == "train_step_overhead"
    (result,) = summary["results"]
    assert result["preset"] == "tiny"
    trainer, bare = result["trainer_tokens_per_s"], result["bare_tokens_per_s"]
    assert trainer > 0 and bare > 0
    # overhead = trainer step time / bare step time = bare tokens/s / trainer tokens/s
    assert abs(result["overhead_ratio"] - bare / trainer) <= 2e-3 * result["overhead_ratio"] + 1e-3
    times = result["trainer_step_s"] / result["bare_step_s"]
    assert abs(result["overhead_ratio"] - times) <= 2e-3 * result["overhead_ratio"] + 1e-3
