"""``olmo-ckpt`` and rotation on an object store: a real S3 API server on 127.0.0.1 (moto's, started
by the ``s3_server`` fixture), checkpoints uploaded with ``objectstore.upload_checkpoint``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import fsspec
import pytest

from olmo.checkpoints import layout, objectstore
from olmo.checkpoints.cli import main
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.storage import location


def save(local_run: Path, step: int, nbytes: int = 1000) -> Path:
    temp = layout.prepare_temp_dir(local_run, step)
    (temp / "state.bin").write_bytes(bytes([step % 251]) * nbytes)
    (temp / "deepspeed").mkdir()
    (temp / "deepspeed" / "shard.pt").write_bytes(f"shard of step {step}".encode())
    return layout.finalize(local_run, temp, step=step, tokens=step * 2048)


def uploaded_run(tmp_path: Path, bucket: str, steps: tuple[int, ...]) -> str:
    run = f"{bucket}/runs/tiny"
    for step in steps:
        objectstore.upload_checkpoint(save(tmp_path / "local", step), run)
    return run


def ckpt_uri(run: str, step: int) -> str:
    return f"{run}/checkpoints/{layout.step_dir_name(step)}"


def steps_on_store(run: str) -> list[tuple[int, bool]]:
    return [(info.step, info.complete) for info in layout.list_checkpoints(run)]


def test_list_show_verify_download_upload(tmp_path, s3_bucket, capsys):
    run = uploaded_run(tmp_path, s3_bucket, (100, 200))
    layout.mark_evaluated(ckpt_uri(run, 200), {"ok": True})

    assert main(["list", run]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["step", "tokens", "complete", "evaluated", "size", "path"]
    assert lines[1].split()[:4] == ["100", "204800", "yes", "no"]
    assert lines[2].split()[:4] == ["200", "409600", "yes", "yes"]
    assert lines[2].endswith(ckpt_uri(run, 200)) and len(lines) == 3
    assert main(["list", run, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["step"], r["complete"], r["evaluated"]) for r in rows] == [
        (100, True, False),
        (200, True, True),
    ]

    assert main(["show", ckpt_uri(run, 100)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["problem"] is None and shown["EVALUATED"] is None
    assert sorted(shown["COMPLETE"]["files"]) == ["deepspeed/shard.pt", "state.bin"]

    assert main(["verify", run]) == 0
    assert "2 of 2 checkpoint(s) verified" in capsys.readouterr().out

    # The newest complete checkpoint, sha256-checked, into DEST/stepNNNNNN.
    assert main(["download", run, str(tmp_path / "copy")]) == 0
    copy = tmp_path / "copy" / "step000200"
    assert f"to {copy}" in capsys.readouterr().out
    assert layout.is_complete(copy, verify=True)
    assert (copy / "state.bin").read_bytes() == bytes([200]) * 1000

    # An object changed after the checkpoint was written (same size, other bytes).
    location(ckpt_uri(run, 100)).__truediv__("state.bin").write_bytes(b"x" * 1000)
    assert main(["verify", ckpt_uri(run, 100)]) == 1
    out = capsys.readouterr().out
    assert f"FAILED  {ckpt_uri(run, 100)}" in out and "sha256 of state.bin does not match" in out
    assert main(["verify", run]) == 1
    assert "1 of 2 checkpoint(s) verified" in capsys.readouterr().out
    assert main(["download", ckpt_uri(run, 100), str(tmp_path / "bad")]) == 1
    assert "sha256 of state.bin" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "step000100").exists()

    # upload: a new step, then the same one again (a no-op).
    local = save(tmp_path / "local", 300)
    assert main(["upload", str(local), run]) == 0
    assert "2 files" in capsys.readouterr().out
    assert main(["upload", str(local), run]) == 0
    assert "already complete, same files" in capsys.readouterr().out
    assert layout.read_latest_pointer(run) == "step000300"


def test_rotate_on_s3_keep_last_keep_every_require_evaluated(tmp_path, s3_bucket, capsys):
    run = uploaded_run(tmp_path, s3_bucket, (100, 200, 300, 400, 500))
    layout.mark_evaluated(ckpt_uri(run, 100), {"ok": True})

    args = ["rotate", run, "--keep-last", "2", "--keep-every", "200", "--require-evaluated"]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would delete  {ckpt_uri(run, 100)}" in out
    assert f"keep          {ckpt_uri(run, 300)}  (not evaluated yet)" in out
    assert len(steps_on_store(run)) == 5

    assert main(args) == 0
    assert "deleted 1 checkpoint folder" in capsys.readouterr().out
    assert steps_on_store(run) == [(200, True), (300, True), (400, True), (500, True)]
    assert not location(ckpt_uri(run, 100)).exists()  # every object gone, markers first

    layout.mark_evaluated(ckpt_uri(run, 300), {"ok": True})
    assert main(["rotate", run, "--keep-last", "1", "--keep-every", "200"]) == 0
    assert steps_on_store(run) == [(200, True), (400, True), (500, True)]
    assert layout.read_latest_pointer(run) == "step000500"


def test_abandoned_and_half_deleted_uploads(tmp_path, s3_bucket, capsys):
    run = uploaded_run(tmp_path, s3_bucket, (100, 200))
    # An upload that died before COMPLETE: objects under step000300, no marker.
    (location(ckpt_uri(run, 300)) / "state.bin").write_bytes(b"partial")
    # A delete that died after COMPLETE went: step000200 keeps some objects.
    (location(ckpt_uri(run, 200)) / layout.COMPLETE).remove()

    assert steps_on_store(run) == [(100, True), (200, False), (300, False)]
    assert layout.latest_complete(run).step == 100
    with pytest.raises(ValueError, match="no COMPLETE marker"):
        layout.resolve_checkpoint(run, "step000200")
    assert main(["verify", run]) == 0
    out = capsys.readouterr().out
    assert f"skip    {ckpt_uri(run, 200)}" in out and "1 of 1 checkpoint(s) verified" in out
    assert main(["download", ckpt_uri(run, 200), str(tmp_path / "copy")]) == 2
    assert "no COMPLETE marker" in capsys.readouterr().err

    # Within the grace period (an hour by default) an incomplete folder may be an upload in
    # progress: kept.
    assert main(["rotate", run, "--keep-last", "1"]) == 0
    assert "incomplete, recently modified" in capsys.readouterr().out
    assert steps_on_store(run) == [(100, True), (200, False), (300, False)]

    # Once untouched for longer than the grace period: collected; the complete one stays.
    result = rotate(run, RetentionPolicy(keep_last=1), now=time.time() + 3601)
    assert sorted(p.name for p in result.deleted) == ["step000200", "step000300"]
    assert steps_on_store(run) == [(100, True)]
    assert location(f"{run}/checkpoints").files().keys() >= {"step000100/COMPLETE"}
    assert not any(k.startswith(("step000200", "step000300")) for k in location(run).files())


def test_a_missing_bucket_and_missing_credentials_are_one_line_errors(
    s3_bucket, monkeypatch, capsys
):
    assert main(["list", "s3://no-such-bucket-here/runs/tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("olmo-ckpt: s3://no-such-bucket-here/runs/tiny: bucket")
    assert "does not exist" in err and err.count("\n") == 1

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    fsspec.filesystem("s3").clear_instance_cache()
    try:
        assert main(["rotate", f"{s3_bucket}/runs/tiny", "--keep-last", "1"]) == 2
        err = capsys.readouterr().err
        assert "no credentials for the object store" in err and err.count("\n") == 1
    finally:
        fsspec.filesystem("s3").clear_instance_cache()
