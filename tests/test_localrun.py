"""The local default (`make train-local` → `olmo-local`), shortened: corpus → data-prep with 2
workers → 2-process ZeRO-3 training → eval worker on every checkpoint → summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from olmo.checkpoints import layout

from .conftest import REPO_ROOT


@pytest.mark.slow
def test_local_default_runs_the_whole_stack(tmp_path):
    out = tmp_path / "local"
    proc = subprocess.run(
        [
            sys.executable, "-m", "olmo.localrun", "--out", str(out), "--steps", "60",
            "--save-interval", "20", "--eval-limit", "2", "--eval-tasks", "piqa,copa",
        ],
        capture_output=True, text=True, timeout=900, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())

    data = summary["data"]
    dropped = sum(sum(reasons.values()) for reasons in data["dropped"].values())
    assert data["documents_in"] == data["documents_kept"] + dropped > 1000
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["total_tokens"] == data["tokens"]

    train = summary["train"]
    assert train["steps"] == 60
    assert train["final_loss"] < train["unigram_entropy"] < train["first_loss"]
    assert "unigram entropy" in proc.stdout

    run = out / "run"
    kept = [c.step for c in layout.list_checkpoints(run)]
    assert kept == [40, 60]  # keep_last 2 (keep_every 150 never hit), step 20 rotated away
    for step in (20, 40, 60):  # every checkpoint was evaluated before rotation took it
        results = json.loads(layout.eval_result_path(run, step).read_text())
        assert set(results["tasks"]) == {"piqa", "copa"}
    assert all(c.evaluated for c in layout.list_checkpoints(run))
    assert "piqa" in proc.stdout and "headline" in proc.stdout
    plots = {p.split("/")[-1] for p in summary["plots"]}
    assert plots == {"loss.png", "lr.png", "throughput.png", "eval.png"}
    assert len(summary["wandb"]) == 2  # the trainer's and the eval worker's offline runs
