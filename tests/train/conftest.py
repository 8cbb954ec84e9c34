"""Fixtures for trainer tests: a small learnable token dataset, a small config, a helper that
runs ``olmo-train`` as real processes (1 process, or 2 under torchrun, gloo on CPU), and a
one-process group for tests of the trainer's parts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from olmo.data.shards import ShardWriter, write_manifest

VOCAB = 512
SEQ_LEN = 64
TINY_MODEL = {
    "preset": "tiny", "d_model": 64, "n_layers": 2, "n_heads": 4, "mlp_hidden_size": 256,
    "vocab_size": VOCAB, "embedding_size": VOCAB, "eos_token_id": 0, "pad_token_id": 1,
    "max_sequence_length": SEQ_LEN,
}  # fmt: skip
"""A two-layer model of the ``tiny`` preset on this vocabulary (EOS 0, pad 1), for tests that
train it in a pod: the image tests and the cluster path."""


def write_dataset(folder: Path, num_docs: int = 120, seed: int = 0) -> Path:
    """Documents made of repeated short phrases (learnable), EOS = 0, uint16, with manifest."""
    vocabulary = np.random.default_rng(0)  # the same phrases in every split
    phrases = [vocabulary.integers(2, VOCAB, size=vocabulary.integers(3, 8)) for _ in range(24)]
    rng = np.random.default_rng(seed)
    with ShardWriter(folder, dtype="uint16", eos_token_id=0, max_tokens_per_shard=4000) as w:
        for i in range(num_docs):
            parts = [phrases[j] for j in rng.integers(0, len(phrases), size=rng.integers(4, 20))]
            source = "web" if i % 3 else "books"
            w.add_document(np.concatenate(parts), doc_id=f"doc-{i:04d}", source=source)
    write_manifest(
        folder,
        shards=w.shards,
        dtype="uint16",
        eos_token_id=0,
        tokenizer={"name": "synthetic", "vocab_size": VOCAB},
        sources={"web": {}, "books": {}},
    )
    return folder


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "train")


@pytest.fixture(scope="session")
def validation_set(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "val", num_docs=30, seed=1)


def small_config(tmp_path: Path, data: Path, **extra) -> Path:
    config = {
        "run_name": "test",
        "seed": 1234,
        "model": {
            "preset": "tiny", "d_model": 64, "n_layers": 2, "n_heads": 4,
            "mlp_hidden_size": 256, "vocab_size": VOCAB, "embedding_size": VOCAB,
            "eos_token_id": 0, "pad_token_id": 1, "max_sequence_length": SEQ_LEN,
        },
        "optimizer": {"lr": 3e-3},
        "scheduler": {"name": "cosine", "warmup_steps": 2},
        "batch": {"global_batch_size": 8, "micro_batch_size": 2},
        "max_steps": 8,
        "data": {"paths": [str(data)]},
        "checkpoint": {"save_interval": 4, "keep_last": 2},
        "eval": {"interval": None},
        "wandb": {"mode": "disabled"},
    }  # fmt: skip
    for key, value in extra.items():
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trainer_command(config: Path, run_dir: Path, nproc: int, *args: str) -> list[str]:
    train = ["--config", str(config), "--run-dir", str(run_dir), *args]
    if nproc == 1:
        return [sys.executable, "-m", "olmo.train.cli", *train]
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
        f"--master-port={_free_port()}", "-m", "olmo.train.cli", *train,
    ]  # fmt: skip


def trainer_env() -> dict[str, str]:
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    return env


def run_trainer(
    config: Path,
    run_dir: Path,
    nproc: int = 1,
    *args: str,
    check_rc: int | None = 0,
    env: dict[str, str] | None = None,
):
    result = subprocess.run(
        trainer_command(config, run_dir, nproc, *args),
        env=trainer_env() | (env or {}), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if check_rc is not None and result.returncode != check_rc:
        raise AssertionError(
            f"olmo-train exited {result.returncode}, expected {check_rc}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-6000:]}"
        )
    return result


def train_config(tmp_path: Path, data: Path | None = None, **extra):
    """``small_config`` loaded as a ``TrainConfig`` (for tests that build trainer parts)."""
    from olmo.train.config import load_train_config

    return load_train_config(small_config(tmp_path, data or tmp_path / "no-data", **extra))


@pytest.fixture
def dist():
    """A one-process gloo group (the collectives work, with nobody else) and its DistInfo."""
    import torch
    import torch.distributed

    from olmo.train.distributed import DistInfo

    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    try:
        yield DistInfo(
            rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend="gloo"
        )
    finally:
        torch.distributed.destroy_process_group()


def losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(m["step"], m["loss"]) for m in map(json.loads, lines) if "loss" in m]
