"""W&B logging with the real wandb library in offline mode: one run per run dir, its id kept in
RUN_DIR/eval/wandb-id and resumed by a restarted worker, metrics charted against the checkpoint
step."""

from __future__ import annotations

import pytest

from olmo_evalworker import records
from olmo_evalworker.cli import main
from olmo_evalworker.wandb_sink import WandbSink
from olmo_evalworker.watcher import Watcher

from .conftest import RecordingEvaluator, make_checkpoint

FAKE = "tests.evalworker.fakes:evaluate"


@pytest.fixture(autouse=True)
def quiet_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def offline_runs(run_dir):
    return sorted(p.name for p in (records.eval_dir(run_dir) / "wandb").glob("offline-run-*"))


def test_each_evaluation_is_logged_at_its_checkpoint_step(run_dir, monkeypatch):
    for step in (10, 20):
        make_checkpoint(run_dir, step)
    sink = WandbSink(run_dir, project="olmo-test", mode="offline")
    logged = []
    real_log = sink.run.log
    monkeypatch.setattr(sink.run, "log", lambda data: (logged.append(data), real_log(data)))
    watcher = Watcher(run_dir, RecordingEvaluator(), sinks=[sink])
    watcher.run_pass()
    watcher.close()

    assert [d["checkpoint/step"] for d in logged] == [10, 20]
    assert logged[1]["checkpoint/tokens"] == 20_000
    assert logged[1]["eval/copa/headline"] == 0.20 and logged[1]["eval/piqa/acc_none"] == 0.21
    run_id = (records.eval_dir(run_dir) / records.WANDB_ID_FILE).read_text().strip()
    assert run_id == sink.run_id and len(run_id) == 8
    assert offline_runs(run_dir)[0].endswith(f"-{run_id}")


def test_a_restarted_worker_resumes_the_same_wandb_run(run_dir):
    make_checkpoint(run_dir, 10)
    args = ["watch", str(run_dir), "--evaluator", FAKE, "--once", "--no-http", "--quiet"]
    assert main([*args, "--wandb-mode", "offline"]) == 0  # a mode alone turns W&B on
    run_id = (records.eval_dir(run_dir) / records.WANDB_ID_FILE).read_text().strip()
    make_checkpoint(run_dir, 20)
    assert main([*args, "--wandb-project", "olmo-test", "--wandb-mode", "offline"]) == 0
    assert (records.eval_dir(run_dir) / records.WANDB_ID_FILE).read_text().strip() == run_id
    runs = offline_runs(run_dir)
    assert len(runs) == 2 and all(f"-{run_id}" in r for r in runs)

    make_checkpoint(run_dir, 30)
    assert main([*args, "--wandb-project", "olmo-test", "--wandb-mode", "disabled"]) == 0
    assert len(offline_runs(run_dir)) == 2  # disabled: no W&B at all


def test_bad_mode_is_rejected(run_dir):
    with pytest.raises(ValueError, match="W&B mode must be one of"):
        WandbSink(run_dir, project="p", mode="sometimes")
