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
    # Decontaminated against the core tasks' eval data by default, and said so.
    decontamination = data["decontamination"]
    assert decontamination["set"].startswith("olmo-core9-")
    removed = decontamination["documents_removed"]
    assert f"decontamination: {removed:,} documents removed against" in proc.stdout

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


def test_the_summary_reports_what_decontamination_removed():
    from olmo.localrun import decontamination_report

    dropped = {"quality": {"gopher_word_count": 4}, "decontamination": {"decontaminated": 3}}
    record = {"enabled": True, "name": "olmo-core9-1a2b3c4d", "id": "ab" * 32,
              "paragraphs": 94673, "documents_removed": 3}  # fmt: skip
    report, line = decontamination_report({"dropped": dropped, "decontamination": record})
    assert line == (
        "decontamination: 3 documents removed against olmo-core9-1a2b3c4d (94,673 eval paragraphs)"
    )
    assert report == {"enabled": True, "set": "olmo-core9-1a2b3c4d", "id": "ab" * 32,
                      "paragraphs": 94673, "documents_removed": 3}  # fmt: skip
    # Nothing removed is said too; a run with the stage off, and an older data-prep output.
    _, line = decontamination_report({"dropped": {}, "decontamination": record})
    assert line.startswith("decontamination: 0 documents removed against olmo-core9-1a2b3c4d")
    off = {"dropped": {}, "decontamination": {"enabled": False, "documents_removed": 0}}
    assert decontamination_report(off) == ({"enabled": False, "documents_removed": 0},
                                           "decontamination: off")  # fmt: skip
    report, line = decontamination_report({"dropped": dropped})
    assert report == {"set": None, "documents_removed": 3}
    assert line == "decontamination: 3 documents removed (set not recorded by data-prep)"
