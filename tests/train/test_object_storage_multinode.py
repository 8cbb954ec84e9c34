"""The trainer's multi-node upload (``olmo.train.upload``) against moto's real S3 server: two
"nodes" on this machine, each a ``torchrun --nnodes 2`` with one process and its own node-local
staging folder, save a ZeRO-3 run to ``s3://``. Each node's local rank 0 uploads its node's files
and ``stepN/.nodes/nodeK.json``; global rank 0 writes ``COMPLETE`` with the union. One node is
killed (SIGKILL) in the middle of its upload: nothing on the store looks complete that is not.
Both nodes then resume from the store with fresh staging folders and run to the end: every
checkpoint on the store lists both nodes' files (sha256 right), no ``.nodes`` objects are left,
rotation applied, and the final weights are bit-identical to an uninterrupted single-node
two-process run."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

from olmo.checkpoints import layout, objectstore
from olmo.train.upload import ENV_FILE_DELAY, NODES_DIR

from .conftest import _free_port, run_trainer, small_config, trainer_env
from .test_object_storage import fp32_weights, store_steps

NODES = 2
TIMEOUT = 180.0


def start_nodes(config: Path, run: str, staging: Path, *args: str, delays=(0.0, 0.0)):
    """Start the two nodes (torchrun each, static rendezvous on 127.0.0.1): the processes and
    their log files. ``delays``: seconds each node's upload sleeps after every file."""
    port = _free_port()
    nodes = []
    for node in range(NODES):
        command = [
            sys.executable, "-m", "torch.distributed.run", f"--nnodes={NODES}",
            f"--node-rank={node}", "--nproc-per-node=1", "--master-addr=127.0.0.1",
            f"--master-port={port}", "-m", "olmo.train.cli", "--config", str(config),
            "--run-dir", run, "--staging-dir", str(staging / f"node{node}"), *args,
        ]  # fmt: skip
        log = staging / f"node{node}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            env = trainer_env() | {ENV_FILE_DELAY: str(delays[node])}
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        nodes.append((proc, log))
    return nodes


def wait_nodes(nodes) -> str:
    """Wait for both nodes to exit 0; their logs (for the assertions on what was resumed)."""
    logs = []
    for proc, log in nodes:
        try:
            rc = proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            rc = "timeout"
        logs.append(log.read_text())
        assert rc == 0, f"node {len(logs) - 1} exited {rc}:\n{logs[-1][-6000:]}"
    return "\n".join(logs)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a node: torchrun and its worker (which runs in a session of its own)."""
    try:
        tree = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        tree = []
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    proc.wait(30)


def wait_until(predicate, what: str, nodes, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        dead = [log.read_text()[-3000:] for proc, log in nodes if proc.poll() is not None]
        assert not dead and time.monotonic() < deadline, f"waiting for {what}:\n{dead}"
        time.sleep(0.05)


def check_store_checkpoint(ckpt, reference_files: set[str]) -> None:
    """Complete, sha256 right, both nodes' files listed (those a single-node run lists), and
    no ``.nodes`` objects left."""
    assert objectstore.problem(ckpt, files="checksums") is None
    marker = objectstore.read_complete(ckpt)
    assert set(marker["files"]) == reference_files
    assert not [rel for rel in ckpt.files() if rel.startswith(NODES_DIR)]


def test_two_nodes_upload_their_own_files_and_resume_from_the_store(tmp_path, dataset, s3_bucket):
    config = small_config(
        tmp_path, dataset, **{"checkpoint.save_interval": 2, "checkpoint.keep_last": 2}
    )
    reference = tmp_path / "reference"
    run_trainer(config, reference, 2)  # one node, two processes, uninterrupted
    ref_marker = layout.read_complete(layout.final_dir(reference, 8))
    reference_files = set(ref_marker["files"])
    assert {"rng/rank0.pt", "rng/rank1.pt"} <= reference_files
    run = f"{s3_bucket}/runs/tiny"

    # Node 1's upload crawls (a pause after each file): kill it once some of its files of step
    # 4 are on the store but not its .nodes object. Node 0 (global rank 0) uploaded its own files
    # and waits for node 1's: it must not write COMPLETE.
    nodes = start_nodes(config, run, tmp_path / "first", delays=(0.0, 0.5))
    step4 = objectstore.step_location(run, 4)
    node1_file = "rng/rank1.pt"
    try:
        wait_until(lambda: node1_file in step4.files(), "node 1 uploading step 4", nodes)
        assert f"{NODES_DIR}/node1.json" not in step4.files()
        kill_tree(nodes[1][0])
        wait_until(
            lambda: f"{NODES_DIR}/node0.json" in step4.files() or nodes[0][0].poll() is not None,
            "node 0's upload of step 4", nodes[:1],
        )  # fmt: skip
        time.sleep(1.5)  # more than global rank 0's poll of the .nodes objects
        assert store_steps(run) == {2: True, 4: False}  # the half upload is not trusted
    finally:
        for proc, _ in nodes:
            kill_tree(proc)
    assert layout.latest_complete(run).step == 2
    assert objectstore.read_latest_pointer(run) == "step000002"
    check_store_checkpoint(objectstore.step_location(run, 2), reference_files)

    # Both nodes resume from the store with fresh staging folders: the checkpoint comes from it.
    log = wait_nodes(start_nodes(config, run, tmp_path / "second", "--resume", "latest"))
    assert "resumed from" in log and "step000002" in log
    # Step 4 was saved again over the half upload; rotation kept the newest two.
    assert store_steps(run) == {6: True, 8: True}
    assert objectstore.read_latest_pointer(run) == "step000008"
    for step in (6, 8):
        check_store_checkpoint(objectstore.step_location(run, step), reference_files)
    # Node 1 keeps nothing in its staging folder; node 0's mirror only the newest checkpoint.
    staging = tmp_path / "second"
    assert not list((staging / "node1").rglob("*.pt"))
    mirror = staging / "node0" / "runs" / "s3" / run.removeprefix("s3://")
    assert [c.step for c in layout.list_checkpoints(mirror)] == [8]

    final = objectstore.download_checkpoint(objectstore.step_location(run, 8), tmp_path / "dl")
    ours, theirs = fp32_weights(final), fp32_weights(layout.final_dir(reference, 8))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
