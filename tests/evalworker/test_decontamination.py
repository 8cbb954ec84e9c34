"""Eval results name the decontamination set of the training data (``records.
training_decontamination``): from the data-prep ``summary.json`` beside each dataset the
checkpoint's ``config.yaml`` names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from olmo.checkpoints import layout
from olmo_evalworker import records
from olmo_evalworker.cli import main
from olmo_evalworker.watcher import Watcher

from .conftest import RecordingEvaluator, make_checkpoint

FAKE = "tests.evalworker.fakes:evaluate"
RECORD = {
    "enabled": True,
    "name": "olmo-core9-1a2b3c4d",
    "id": "ab" * 32,
    "paragraphs": 94673,
    "min_words": 13,
    "documents_removed": 5,
    "sources": [{"kind": "default"}],
}


def dataset(folder: Path, decontamination: dict[str, Any] | None) -> Path:
    """A data-prep output folder as far as the worker reads it (summary.json, manifest.json)."""
    folder.mkdir(parents=True)
    summary: dict[str, Any] = {"documents_in": 10, "documents_kept": 5}
    if decontamination is not None:
        summary["decontamination"] = decontamination
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "manifest.json").write_text("{}")
    return folder


def checkpoint_of(run_dir: Path, step: int, data_paths: list[str]) -> Path:
    """A COMPLETE checkpoint whose run config names ``data_paths``."""
    temp = layout.prepare_temp_dir(run_dir, step)
    (temp / layout.CONFIG_FILE).write_text(yaml.safe_dump({"data": {"paths": data_paths}}))
    (temp / "trainer_state.json").write_text(f'{{"step": {step}}}')
    return layout.finalize(run_dir, temp, step=step, tokens=step * 1000)


def test_results_and_metrics_name_the_training_data_set(run_dir, tmp_path):
    data = dataset(tmp_path / "data", RECORD)
    checkpoint_of(run_dir, 10, [str(data)])
    Watcher(run_dir, RecordingEvaluator()).run_pass()
    results = json.loads(layout.eval_result_path(run_dir, 10).read_text())
    assert results["decontamination"] == {
        "sets": ["olmo-core9-1a2b3c4d"],
        "data": [{"path": str(data), **{k: v for k, v in RECORD.items() if k != "sources"}}],
    }
    (line,) = records.read_metrics(run_dir)
    assert line["decontamination"] == "olmo-core9-1a2b3c4d"


def test_every_dataset_is_reported_even_without_a_record(run_dir, tmp_path):
    dataset(run_dir / "data" / "a", RECORD)  # relative to the run dir
    dataset(tmp_path / "old", None)  # data-prep from before sets were recorded
    dataset(tmp_path / "off", {"enabled": False, "documents_removed": 0})
    (tmp_path / "plain").mkdir()  # not a data-prep output
    paths = ["data/a", str(tmp_path / "old"), str(tmp_path / "off" / "manifest.json"),
             str(tmp_path / "plain"), str(tmp_path / "missing")]  # fmt: skip
    record = records.training_decontamination(checkpoint_of(run_dir, 20, paths))
    assert record is not None
    assert record["sets"] == ["olmo-core9-1a2b3c4d"]
    a, old, off, plain, missing = record["data"]
    assert a["name"] == "olmo-core9-1a2b3c4d" and a["path"] == str(run_dir / "data" / "a")
    assert old["name"] is None and "no decontamination record" in old["note"]
    assert off == {"path": str(tmp_path / "off"), "name": None, "enabled": False,
                   "documents_removed": 0}  # fmt: skip
    assert plain["name"] is None and "not a data-prep output" in plain["note"]
    assert missing == {"path": str(tmp_path / "missing"), "name": None, "note": "not found"}
    # A checkpoint without a run config (an HF directory, say) has no record.
    assert records.training_decontamination(make_checkpoint(run_dir, 30)) is None


def test_run_prints_and_writes_the_set(run_dir, tmp_path, capsys):
    data = dataset(tmp_path / "data", RECORD)
    checkpoint = checkpoint_of(run_dir, 10, [str(data)])
    out = tmp_path / "results.json"
    code = main(
        ["run", "--checkpoint", str(checkpoint), "--tasks", "copa", "--evaluator", FAKE,
         "--output", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    assert "training data decontaminated against: olmo-core9-1a2b3c4d" in capsys.readouterr().out
    assert json.loads(out.read_text())["decontamination"]["sets"] == ["olmo-core9-1a2b3c4d"]
