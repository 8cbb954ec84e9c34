"""The trainer on an object store (``--run-dir s3://…``), against moto's real S3 server: a
two-process ZeRO-3 run killed with SIGKILL during an upload resumes from the store with
bit-identical final weights, rotation on the store keeps its policy, and saves are asynchronous
(a save returns before its upload ends, the next save waits for it, SIGTERM finishes it)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time

import psutil
import pytest
import torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

from olmo.checkpoints import layout, objectstore
from olmo.checkpoints.paths import COMPLETE, DEEPSPEED_TAG
from olmo.storage import location
from olmo.train.callbacks import StepEnd
from olmo.train.callbacks.checkpointer import Checkpointer
from olmo.train.checkpointing import TrainerState
from olmo.train.preemption import GRACE_ENV, Preemption
from olmo.train.upload import ENV_FILE_DELAY, NodeInfo, Uploader, UploadError

from .callbacks.test_checkpointer import FakeEngine, Listener
from .conftest import run_trainer, small_config, train_config, trainer_command, trainer_env


def fp32_weights(checkpoint):
    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG)


def store_steps(run: str) -> dict[int, bool]:
    """Every step folder on the store → whether it is complete (COMPLETE trusted alone)."""
    return {s: objectstore.problem(ckpt) is None for s, ckpt in objectstore.step_locations(run)}


def test_sigkill_during_an_upload_resumes_from_the_store_bit_exactly(tmp_path, dataset, s3_bucket):
    config = small_config(
        tmp_path, dataset, **{"checkpoint.save_interval": 2, "checkpoint.keep_last": 2}
    )
    reference = tmp_path / "reference"
    run_trainer(config, reference, 2)
    run = f"{s3_bucket}/runs/tiny"
    # Uploads crawl (a pause after each file): kill both processes once step 4's upload is half
    # done: objects on the store, no COMPLETE.
    command = trainer_command(config, run, 2, "--staging-dir", str(tmp_path / "stage1"))
    proc = subprocess.Popen(
        command, env=trainer_env() | {ENV_FILE_DELAY: "0.4"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            half = objectstore.step_location(run, 4)
            if half.files() and not (half / COMPLETE).exists():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the trainer ended before step 4's upload was seen"
        # torchrun starts its workers in sessions of their own: kill each of them.
        for process in [
            *psutil.Process(proc.pid).children(recursive=True),
            psutil.Process(proc.pid),
        ]:
            process.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert store_steps(run) == {2: True, 4: False}  # the half upload is not trusted
    assert layout.latest_complete(run).step == 2

    # A fresh staging folder: the checkpoint must come from the store.
    result = run_trainer(
        config, run, 2, "--resume", "latest", "--staging-dir", str(tmp_path / "stage2")
    )
    assert "resumed from" in result.stderr and "step000002" in result.stderr
    # Rotation on the store kept the newest two; step 4 was saved again over the half upload.
    assert store_steps(run) == {6: True, 8: True}
    assert objectstore.read_latest_pointer(run) == "step000008"
    final = objectstore.download_checkpoint(objectstore.step_location(run, 8), tmp_path / "dl")
    ours, theirs = fp32_weights(final), fp32_weights(layout.final_dir(reference, 8))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    # metrics.jsonl on the store continues the first run and records every upload.
    metrics = location(run) / "metrics.jsonl"
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [m["step"] for m in lines if "loss" in m] == list(range(1, 9))
    uploads = [m for m in lines if "checkpoint/upload_bytes" in m]
    assert {m["checkpoint/upload_step"] for m in uploads} >= {4, 6, 8}
    assert all(m["checkpoint/upload_bytes"] > 0 for m in uploads)
    assert any("checkpoint/save_blocked_seconds" in m for m in lines)
    # The mirror keeps only the newest uploaded checkpoint.
    mirror = tmp_path / "stage2" / "runs" / "s3" / run.removeprefix("s3://")
    assert [c.step for c in layout.list_checkpoints(mirror)] == [8]


# ---- asynchronous saves, in one process with a fake engine --------------------------------------


class GatedUploader(Uploader):
    """Each upload waits for ``gate`` before it starts moving bytes; ``events`` records order."""

    def __init__(self, *args, events: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.gate, self.events = threading.Event(), events

    def _upload(self, job):
        self.events.append(f"upload {job.step} started")
        self.gate.wait()
        out = super()._upload(job)
        self.events.append(f"upload {job.step} finished")
        return out


class RecordingEngine(FakeEngine):
    def __init__(self, events: list[str]):
        self.events = events

    def save_checkpoint(self, path: str, tag: str, save_latest: bool) -> None:
        self.events.append(f"save {os.path.basename(path)} writes")
        super().save_checkpoint(path, tag, save_latest)


def async_checkpointer(tmp_path, dist, run: str, uploader_cls=GatedUploader, **kwargs):
    config = train_config(
        tmp_path, max_steps=100, **{"checkpoint.save_interval": 2, "checkpoint.keep_last": 2}
    )
    events: list[str] = []
    mirror = tmp_path / "mirror"
    uploader = uploader_cls(location(run), mirror, NodeInfo(), events=events, **kwargs)
    state, listener = TrainerState(world_size=1), Listener()
    ckpt = Checkpointer(
        config, mirror, RecordingEngine(events), state, dist, Preemption(dist.device), listener,
        None, uploader,
    )  # fmt: skip
    return ckpt, state, uploader, events


def step(ckpt, state, preempted=False):
    state.step += 1
    state.tokens += 512
    ckpt.on_step_end(StepEnd(state.step, {}, 0.1, preempted=preempted))


def test_a_save_returns_before_its_upload_and_the_next_save_waits(tmp_path, dist, s3_bucket):
    run = f"{s3_bucket}/run"
    ckpt, state, uploader, events = async_checkpointer(tmp_path, dist, run)
    step(ckpt, state)
    step(ckpt, state)  # saves step 2 and returns with the upload held at the gate
    events.append("save 2 returned")
    assert uploader.pending and store_steps(run) == {}
    step(ckpt, state)  # training goes on while the upload is pending
    threading.Timer(0.2, uploader.gate.set).start()
    step(ckpt, state)  # step 4's save waits for step 2's upload first
    uploader.wait()
    assert events == [
        "save .tmp-step000002 writes",
        "upload 2 started",
        "save 2 returned",
        "upload 2 finished",
        "save .tmp-step000004 writes",
        "upload 4 started",
        "upload 4 finished",
    ]
    assert store_steps(run) == {2: True, 4: True}


def test_sigterm_finishes_a_pending_upload_within_the_grace(tmp_path, dist, s3_bucket, monkeypatch):
    monkeypatch.setenv(GRACE_ENV, "30")
    run = f"{s3_bucket}/run"
    ckpt, state, uploader, _ = async_checkpointer(tmp_path, dist, run)
    ckpt.config.checkpoint.save_on_sigterm = False
    step(ckpt, state)
    step(ckpt, state)
    assert uploader.pending
    ckpt.preemption.received_at = time.monotonic()
    threading.Timer(0.2, uploader.gate.set).start()
    step(ckpt, state, preempted=True)  # the last step: waits for the upload
    assert not uploader.pending and store_steps(run) == {2: True}
    assert objectstore.read_latest_pointer(run) == "step000002"


def test_sigterm_leaves_an_upload_that_cannot_finish_before_sigkill(
    tmp_path, dist, s3_bucket, monkeypatch, caplog
):
    monkeypatch.setenv(GRACE_ENV, "2.5")  # 0.5 s to wait after the margin
    run = f"{s3_bucket}/run"
    ckpt, state, uploader, _ = async_checkpointer(tmp_path, dist, run)
    ckpt.config.checkpoint.save_on_sigterm = False
    step(ckpt, state)
    step(ckpt, state)
    ckpt.preemption.received_at = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="olmo.train"):
        step(ckpt, state, preempted=True)
    assert uploader.pending and "leaving the upload of step" in caplog.text
    assert store_steps(run) == {}  # nothing complete; the previous checkpoint would stand
    uploader.gate.set()
    uploader.wait()


class FailingUploader(Uploader):
    def __init__(self, *args, events: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.events = events

    def _upload(self, job):
        self.events.append("try")
        raise ConnectionError("store unreachable")


def test_a_failed_upload_is_retried_then_stops_the_run(tmp_path, dist, s3_bucket):
    run = f"{s3_bucket}/run"
    ckpt, state, uploader, events = async_checkpointer(
        tmp_path, dist, run, FailingUploader, retries=2, backoff=0.0
    )
    step(ckpt, state)
    step(ckpt, state)
    with pytest.raises(UploadError, match="failed 3 times; last error: ConnectionError"):
        while True:  # the next step after the failure stops the run
            uploader._job.done.wait()
            step(ckpt, state)
    assert events.count("try") == 3
    assert layout.quick_check_problem(layout.final_dir(tmp_path / "mirror", 2)) is None


def test_the_run_dir_fence_holds_on_the_store(s3_bucket):
    from olmo.checkpoints import fence
    from olmo.checkpoints.fence import Claim, FencedError

    run = f"{s3_bucket}/run"
    fence.claim(run, Claim("uid", 1))
    assert fence.read_marker(run) == Claim("uid", 1)
    assert (location(run) / "ATTEMPT").is_file()
    fence.claim(run, Claim("uid", 2))  # the next attempt takes the run directory over
    with pytest.raises(FencedError, match="newer attempt"):
        fence.check(run, Claim("uid", 1))


def test_training_on_token_shards_from_the_store_matches_local_data(
    tmp_path, dataset, validation_set, s3_bucket
):
    """data.paths and eval.validation_paths on s3, read both ways: shards downloaded into the
    bounded node cache (sha256-checked, prefetched), and (``data.remote_read=range``) instances
    fetched by ranged GETs into a memory buffer, nothing downloaded whole; the very same losses
    as from the local folders."""
    for name, folder in (("train", dataset), ("val", validation_set)):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            location(f"{s3_bucket}/tokens/{name}/{path.relative_to(folder)}").upload(path)
    common = {"max_steps": 4, "eval.interval": 2, "checkpoint.save_interval": 4}
    runs = ("local", "remote", "range")
    for d in runs:
        (tmp_path / d).mkdir()
    local = small_config(
        tmp_path / "local", dataset, **common, **{"eval.validation_paths": [str(validation_set)]}
    )
    run_trainer(local, tmp_path / "local" / "run")
    for d, mode in (("remote", "cache"), ("range", "range")):
        remote = small_config(
            tmp_path / d,
            dataset,
            **common,
            **{
                "data.paths": [f"{s3_bucket}/tokens/train"],
                "eval.validation_paths": [f"{s3_bucket}/tokens/val"],
                "data.cache_dir": str(tmp_path / f"{d}-cache"),
                "data.remote_read": mode,
            },
        )
        run_trainer(remote, tmp_path / d / "run")
    metrics = [
        [
            json.loads(line)
            for line in (tmp_path / d / "run" / "metrics.jsonl").read_text().splitlines()
        ]
        for d in runs
    ]
    keys = ("step", "loss", "batch_sha1", "eval/val_loss")
    assert [[{k: m.get(k) for k in keys} for m in run] for run in metrics[1:]] == [
        [{k: m.get(k) for k in keys} for m in metrics[0]]
    ] * 2
    assert any("eval/val_loss" in m for m in metrics[0])  # validation did run on all
    cached = {p.name for p in (tmp_path / "remote-cache").rglob("*.npy")}
    train, val = (json.loads((d / "manifest.json").read_text()) for d in (dataset, validation_set))
    named = {f"{s['sha256']}.npy" for m in (train, val) for s in m["shards"]}
    # Validation reads every one of its shards; training the shards its 4 steps touched.
    assert {f"{s['sha256']}.npy" for s in val["shards"]} <= cached <= named
    assert cached & {f"{s['sha256']}.npy" for s in train["shards"]}
    assert not (tmp_path / "range-cache").exists()  # range mode wrote nothing to disk
