"""The eval worker on a run directory in an object store: a real S3 API server on 127.0.0.1 (moto's,
started by the ``s3_server`` fixture), checkpoints made as in the other worker tests and uploaded
with ``objectstore.upload_checkpoint``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olmo.checkpoints import layout, objectstore
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.storage import location
from olmo_evalworker import records
from olmo_evalworker.cli import main
from olmo_evalworker.watcher import Watcher

from .conftest import RecordingEvaluator, make_checkpoint

FAKE = "tests.evalworker.fakes:evaluate"


def upload(tmp_path: Path, run: str, step: int) -> str:
    objectstore.upload_checkpoint(make_checkpoint(tmp_path / "local", step), run)
    return f"{run}/checkpoints/{layout.step_dir_name(step)}"


def called(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_watch_on_s3_evaluates_each_checkpoint_once_across_restarts(
    tmp_path, s3_bucket, monkeypatch, capsys
):
    run = f"{s3_bucket}/runs/tiny"
    calls, cache = tmp_path / "calls.txt", tmp_path / "cache"
    monkeypatch.setenv("FAKE_EVAL_CALLS", str(calls))
    args = ["watch", run, "--evaluator", FAKE, "--once", "--cache-dir", str(cache)]
    args += ["--port", "0", "--host", "127.0.0.1", "--quiet"]
    upload(tmp_path, run, 10)

    assert main(args) == 0
    assert called(calls) == ["step000010"]
    assert "serving /healthz and /metrics on http://127.0.0.1:" in capsys.readouterr().out

    upload(tmp_path, run, 20)
    assert main(args) == 0  # a restarted worker: only the new checkpoint
    assert main(args) == 0  # and once more: nothing
    assert called(calls) == ["step000010", "step000020"]

    for step in (10, 20):
        ckpt = f"{run}/checkpoints/{layout.step_dir_name(step)}"
        results = json.loads(location(f"{run}/eval/step{step:06d}.json").read_text())
        assert (results["step"], results["tokens"]) == (step, step * 1000)
        assert results["checkpoint"] == ckpt  # the store's, not the deleted local copy's
        assert results["tasks"]["copa"]["headline"] == step / 100
        marker = layout.read_evaluated(ckpt)
        assert marker["results"] == f"eval/step{step:06d}.json"
        assert marker["complete_sha256"] == records.complete_sha256(ckpt)
    assert [m["step"] for m in records.read_metrics(run)] == [10, 20]
    # The cache held one checkpoint at a time and holds none now; the lock is all that is left.
    (folder,) = cache.iterdir()
    assert [p.name for p in folder.rglob("*") if p.is_file()] == [records.LOCK_FILE]

    # require_evaluated rotation on the store now frees the evaluated, older checkpoint.
    deleted = rotate(run, RetentionPolicy(keep_last=1, require_evaluated=True)).deleted
    assert [p.name for p in deleted] == ["step000010"]


def test_vanished_and_corrupted_checkpoints_on_s3(tmp_path, s3_bucket):
    run = f"{s3_bucket}/runs/tiny"
    gone, corrupt, fine = (upload(tmp_path, run, s) for s in (10, 20, 30))
    # An object of step 20 changed after the checkpoint was written (same size, other bytes).
    shard = location(corrupt) / "deepspeed" / "model_states.pt"
    shard.write_bytes(b"x" * shard.size())

    def rotated_away(path: Path):  # rotation deletes step 10 while it is being evaluated
        objectstore.delete_checkpoint(gone)
        raise OSError(f"{path}: file vanished")

    evaluator = RecordingEvaluator({10: rotated_away})
    watcher = Watcher(run, evaluator, cache_dir=tmp_path / "cache", retry_delay=0)
    report = watcher.run_pass()

    assert evaluator.calls == [10, 30]  # step 20 never reached the evaluator
    assert (report.vanished, report.failed, report.evaluated) == ([10], [20], [30])
    record = json.loads(records.failure_path(run, 20).read_text())  # on the store
    assert record["errors"][0]["type"] == "CheckpointVerificationError"
    assert "sha256 of deepspeed/model_states.pt" in record["reason"]
    assert not records.failure_path(run, 10).exists()  # vanishing is not a failure
    assert layout.is_evaluated(fine) and not layout.is_evaluated(corrupt)
    assert not list((watcher.local_dir / layout.CHECKPOINTS_DIR).iterdir())  # no copy left


def test_run_on_a_checkpoint_uri(tmp_path, s3_bucket, monkeypatch, capsys):
    run = f"{s3_bucket}/runs/tiny"
    ckpt = upload(tmp_path, run, 10)
    out = tmp_path / "out.json"
    monkeypatch.setenv("OLMO_STAGING_DIR", str(tmp_path / "staging"))
    args = ["run", "--checkpoint", ckpt, "--tasks", "copa,piqa", "--evaluator", FAKE, "--quiet"]
    assert main([*args, "--output", str(out)]) == 0
    assert "copa" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["checkpoint"] == ckpt and results["tasks"]["copa"]["headline"] == 0.10
    staged = [p for p in (tmp_path / "staging").rglob("*") if p.is_file()]
    assert staged == []  # the local copy is removed after the evaluation


@pytest.mark.parametrize("command", ["run", "watch"])
def test_a_missing_bucket_is_a_one_line_usage_error(s3_bucket, capsys, command):
    uri = "s3://no-such-bucket-here/runs/tiny"
    if command == "run":
        target = ["--checkpoint", f"{uri}/checkpoints/step000010"]
    else:
        target = [uri, "--once", "--no-http"]
    assert main([command, *target, "--evaluator", FAKE]) == 2
    err = capsys.readouterr().err
    assert err.startswith("olmo-eval: error: s3://no-such-bucket-here") and err.count("\n") == 1
    assert "bucket no-such-bucket-here does not exist" in err


def test_the_tokenizer_beside_training_data_on_s3_is_found(tmp_path, s3_bucket, monkeypatch):
    from olmo.eval.loading import find_tokenizer

    data = f"{s3_bucket}/data/tokens"
    (location(data) / "tokenizer.json").write_text('{"model": "bpe"}')
    (location(data) / "manifest.json").write_text("{}")
    checkpoint = tmp_path / "run" / "checkpoints" / "step000010"
    checkpoint.mkdir(parents=True)
    (checkpoint / layout.CONFIG_FILE).write_text(f"data:\n  paths: [{data}]\n")
    monkeypatch.setenv("OLMO_STAGING_DIR", str(tmp_path / "staging"))
    found = find_tokenizer(checkpoint)
    assert found is not None and found.is_relative_to(tmp_path / "staging")
    assert found.read_text() == '{"model": "bpe"}'
    (checkpoint / layout.CONFIG_FILE).write_text(f"data:\n  paths: [{s3_bucket}/nothing]\n")
    assert find_tokenizer(checkpoint) is None
