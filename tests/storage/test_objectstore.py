"""The checkpoint contract on an object store (olmo.checkpoints.objectstore), against a real S3 API
server on 127.0.0.1, and through fsspec's in-memory store (the code path gs:// takes too): files
first, COMPLETE last, then ``latest``; readers trust only COMPLETE; deletes remove COMPLETE first;
abandoned uploads are collected after the grace period."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from olmo.checkpoints import layout, objectstore
from olmo.checkpoints.paths import COMPLETE, EVALUATED
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.storage import Location, location


def local_checkpoint(run_dir: Path, step: int, payload: bytes = b"") -> Path:
    """A complete local checkpoint with a few files, as the trainer writes it."""
    temp = layout.prepare_temp_dir(run_dir, step)
    (temp / "deepspeed").mkdir()
    (temp / "deepspeed" / "rank0.pt").write_bytes(payload or bytes([step % 256]) * 5000)
    (temp / "deepspeed" / "rank1.pt").write_bytes(b"r1" * (step + 1))
    (temp / "trainer_state.json").write_text(json.dumps({"step": step}))
    return layout.finalize(run_dir, temp, step=step, tokens=step * 100)


@pytest.fixture(params=["s3", "memory"])
def run_uri(request):
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        yield f"{bucket}/runs/r1"
        return
    uri = f"memory://olmo-tests-{uuid.uuid4().hex[:8]}/runs/r1"
    yield uri
    location(uri).remove()


def test_upload_then_read_back_through_the_layout_functions(tmp_path, run_uri):
    seen_during_upload = []

    def on_file(rel, size):
        # While files are going up, the checkpoint is never complete.
        seen_during_upload.append(layout.is_complete(objectstore.step_location(run_uri, 2)))

    stats = objectstore.upload_checkpoint(local_checkpoint(tmp_path, 2), run_uri, on_file=on_file)
    assert seen_during_upload == [False, False, False]
    assert stats.files == 3 and stats.bytes == 5000 + 6 + len('{"step": 2}') and not stats.skipped
    objectstore.upload_checkpoint(local_checkpoint(tmp_path, 4), run_uri)

    infos = layout.list_checkpoints(run_uri)
    assert [(i.step, i.complete, i.tokens, i.evaluated) for i in infos] == [
        (2, True, 200, False),
        (4, True, 400, False),
    ]
    assert isinstance(infos[0].path, Location) and infos[0].name == "step000002"
    assert infos[0].as_dict()["path"] == f"{run_uri}/checkpoints/step000002"
    assert layout.latest_complete(run_uri).step == 4
    assert layout.read_latest_pointer(run_uri) == "step000004"
    assert layout.resolve_checkpoint(run_uri, "latest").name == "step000004"
    assert layout.resolve_checkpoint(run_uri, "step000002").name == "step000002"
    assert layout.quick_check_problem(infos[0].path) is None
    assert layout.completeness_problem(infos[0].path, verify=True) is None

    layout.mark_evaluated(infos[0].path, {"tasks": 9})
    assert layout.is_evaluated(infos[0].path) and layout.read_evaluated(infos[0].path)["tasks"] == 9
    assert layout.list_checkpoints(run_uri)[0].evaluated

    # Uploading the same checkpoint again moves nothing; latest never moves backwards.
    again = objectstore.upload_checkpoint(tmp_path / "checkpoints" / "step000002", run_uri)
    assert again.skipped and again.bytes == 0
    assert layout.read_latest_pointer(run_uri) == "step000004"


def test_readers_trust_only_complete(tmp_path, run_uri):
    objectstore.upload_checkpoint(local_checkpoint(tmp_path, 1), run_uri)
    with pytest.raises(RuntimeError, match="upload died"):

        def die(rel, size):
            raise RuntimeError("upload died")

        objectstore.upload_checkpoint(local_checkpoint(tmp_path, 2), run_uri, on_file=die)
    half = objectstore.step_location(run_uri, 2)
    assert half.files() and not (half / COMPLETE).exists()
    assert [(i.step, i.complete) for i in layout.list_checkpoints(run_uri)] == [
        (1, True),
        (2, False),
    ]
    assert layout.latest_complete(run_uri).step == 1
    assert [c.name for c in layout.complete_checkpoints(run_uri)] == ["step000001"]
    with pytest.raises(ValueError, match="no COMPLETE marker"):
        layout.resolve_checkpoint(run_uri, "step000002")

    # A listed object of a "complete" checkpoint gone (or truncated) is not complete either.
    objectstore.upload_checkpoint(local_checkpoint(tmp_path, 3), run_uri)
    step3 = objectstore.step_location(run_uri, 3)
    (step3 / "deepspeed" / "rank1.pt").write_bytes(b"short")
    assert "has 5 bytes" in layout.quick_check_problem(step3)
    (step3 / "deepspeed" / "rank1.pt").remove()
    assert "missing" in layout.quick_check_problem(step3)
    assert layout.latest_complete(run_uri).step == 1

    # A retried upload of the half-written step replaces its debris.
    objectstore.upload_checkpoint(tmp_path / "checkpoints" / "step000002", run_uri)
    assert layout.latest_complete(run_uri).step == 2


def test_a_changed_object_fails_verification_and_download(tmp_path, run_uri):
    objectstore.upload_checkpoint(local_checkpoint(tmp_path / "a", 5), run_uri)
    ckpt = objectstore.step_location(run_uri, 5)
    copy = objectstore.download_checkpoint(ckpt, tmp_path / "mirror" / "checkpoints")
    assert copy == tmp_path / "mirror" / "checkpoints" / "step000005"
    assert layout.completeness_problem(copy, verify=True) is None
    original = tmp_path / "a" / "checkpoints" / "step000005"
    for rel in ("deepspeed/rank0.pt", "deepspeed/rank1.pt", "trainer_state.json", COMPLETE):
        assert (copy / rel).read_bytes() == (original / rel).read_bytes()
    # A complete identical local copy is reused, not downloaded again.
    mtime = (copy / "deepspeed" / "rank0.pt").stat().st_mtime_ns
    assert objectstore.download_checkpoint(ckpt, tmp_path / "mirror" / "checkpoints") == copy
    assert (copy / "deepspeed" / "rank0.pt").stat().st_mtime_ns == mtime

    (ckpt / "deepspeed" / "rank0.pt").write_bytes(b"X" * 5000)  # same size, other bytes
    assert layout.quick_check_problem(ckpt) is None  # sizes cannot see it ...
    assert "sha256" in layout.completeness_problem(ckpt, verify=True)  # ... checksums do
    with pytest.raises(ValueError, match=r"sha256 of deepspeed/rank0\.pt"):
        objectstore.download_checkpoint(ckpt, tmp_path / "other")
    assert not (tmp_path / "other" / "step000005").exists()
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "other").iterdir())


def test_delete_removes_complete_first(tmp_path, run_uri, monkeypatch):
    objectstore.upload_checkpoint(local_checkpoint(tmp_path, 1), run_uri)
    objectstore.upload_checkpoint(local_checkpoint(tmp_path, 2), run_uri)
    ckpt = objectstore.step_location(run_uri, 2)
    layout.mark_evaluated(ckpt, {})
    removed = []
    real_remove = Location.remove

    def remove(self):
        removed.append(self.name)
        if self.name == "step000002":
            raise OSError("killed half-way through the delete")
        real_remove(self)

    monkeypatch.setattr(Location, "remove", remove)
    with pytest.raises(OSError, match="half-way"):
        objectstore.delete_checkpoint(ckpt)
    assert removed == [COMPLETE, EVALUATED, "step000002"]
    monkeypatch.setattr(Location, "remove", real_remove)
    # What is left is an incomplete folder, never a complete checkpoint with objects missing.
    assert ckpt.files() and [i.complete for i in layout.list_checkpoints(run_uri)] == [True, False]
    assert layout.latest_complete(run_uri).step == 1


def test_rotation_on_a_store_and_abandoned_uploads(tmp_path, run_uri):
    for step in (1, 2, 3, 4):
        objectstore.upload_checkpoint(local_checkpoint(tmp_path, step), run_uri)
    with pytest.raises(RuntimeError):
        objectstore.upload_checkpoint(
            local_checkpoint(tmp_path, 5),
            run_uri,
            on_file=lambda rel, size: (_ for _ in ()).throw(RuntimeError("preempted")),
        )
    policy = RetentionPolicy(keep_last=2, keep_every=2)
    result = rotate(run_uri, policy)
    assert sorted(p.name for p in result.deleted) == ["step000001"]
    assert [i.step for i in layout.list_checkpoints(run_uri)] == [2, 3, 4, 5]
    assert "recently modified" in result.reasons[objectstore.step_location(run_uri, 5)]
    # An hour later nothing touched the half upload: it is collected.
    later = rotate(run_uri, policy, now=time.time() + 3601)
    assert [p.name for p in later.deleted] == ["step000005"]
    assert [i.step for i in layout.list_checkpoints(run_uri)] == [2, 3, 4]
    assert layout.read_latest_pointer(run_uri) == "step000004"


def test_rotation_repairs_a_latest_pointer_on_a_store(tmp_path, run_uri):
    objectstore.upload_checkpoint(local_checkpoint(tmp_path, 1), run_uri)
    objectstore.upload_checkpoint(local_checkpoint(tmp_path, 2), run_uri)
    objectstore.delete_checkpoint(objectstore.step_location(run_uri, 2))
    assert layout.read_latest_pointer(run_uri) == "step000002"
    rotate(run_uri, RetentionPolicy())
    assert layout.read_latest_pointer(run_uri) == "step000001"


def test_an_incomplete_local_checkpoint_is_never_uploaded(tmp_path, run_uri):
    temp = layout.prepare_temp_dir(tmp_path, 7)
    (temp / "x").write_bytes(b"x")
    with pytest.raises(ValueError, match="cannot upload"):
        objectstore.upload_checkpoint(temp, run_uri)
    assert layout.list_checkpoints(run_uri) == []
