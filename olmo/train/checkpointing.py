"""Saving and restoring the whole training state as one checkpoint (DESIGN contract 3).

A checkpoint folder holds the DeepSpeed ZeRO-3 shards (``deepspeed/``: bf16 module states,
fp32 master weights and AdamW moments per rank), ``trainer_state.json`` (step, tokens,
instances consumed, world size, config, versions, git commit, data manifest hashes),
``config.yaml`` and each rank's RNG states (``rng/rankN.pt``); these names are part of the layout
contract (``olmo.checkpoints.paths``). Every rank writes its shard into the same temporary
folder (a shared filesystem on multi-node runs); rank 0 then writes the trainer state and
``olmo.checkpoints.layout.finalize`` adds ``COMPLETE`` last and renames.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from olmo.checkpoints import layout
from olmo.checkpoints.paths import (
    CONFIG_FILE,
    DEEPSPEED_TAG,
    RNG_DIR,
    TRAINER_STATE,
    UNIVERSAL_CACHE,
)
from olmo.config import dump_yaml
from olmo.train.config import TrainConfig
from olmo.train.distributed import DistInfo, barrier
from olmo.train.fencing import RunDirFence


@dataclass
class TrainerState:
    """Where training stands; everything needed to continue exactly."""

    step: int = 0
    """Optimizer steps taken."""
    tokens: int = 0
    """Training tokens consumed."""
    instances_consumed: int = 0
    """Global position in the data order (across epochs), independent of world size."""
    world_size: int = 1
    data_manifest_sha256: list[str | None] = field(default_factory=list)
    data_order: str | None = None
    """The data order's kind (``olmo.data.order``); None in checkpoints made before it was
    recorded, which were all trained in ``pcg64-shuffle``."""
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    saved_at: float = 0.0

    @classmethod
    def read(cls, checkpoint: Path) -> TrainerState:
        data = json.loads((checkpoint / TRAINER_STATE).read_text())
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("olmo-k8s", "torch", "deepspeed", "numpy", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the source tree the package runs from (None outside a git checkout)."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(
    engine,
    run_dir: Path,
    state: TrainerState,
    config: TrainConfig,
    dist: DistInfo,
    fence: RunDirFence | None = None,
    *,
    node_local: bool = False,
    before_write: Callable[[int], None] | None = None,
) -> Path:
    """Collective: every rank calls it. Returns the final checkpoint folder.

    ``node_local``: the run directory is a node-local mirror (a run directory on an object
    store, several nodes): the local rank 0 of each node prepares its node's temporary folder,
    and only the first node's is finalized (the others' files are uploaded from the temporary
    folder: ``olmo.train.upload``). ``before_write(step)`` runs on rank 0 before any rank writes.

    ``fence`` (the attempt's claim on the run directory) is checked before anything is written
    and again before the rename that publishes the checkpoint: a fenced trainer raises
    FencedError on every rank and leaves the owner's checkpoints alone. Saving a step that is
    already complete (a resumed run saving it again) replaces it atomically.
    """
    if fence is not None:
        fence.check(f"save step {state.step}")
    temp = layout.temp_dir(run_dir, state.step)
    if dist.is_main and before_write is not None:
        before_write(state.step)
    if dist.is_main or (node_local and dist.local_rank == 0):
        layout.prepare_temp_dir(run_dir, state.step)  # clears a crashed save of this step
    barrier()
    engine.save_checkpoint(str(temp), tag=DEEPSPEED_TAG, save_latest=False)
    (temp / RNG_DIR).mkdir(exist_ok=True)
    torch.save(_rng_state(), temp / RNG_DIR / f"rank{dist.rank}.pt")
    barrier()
    if fence is not None:
        fence.check(f"publish step {state.step}")
    final = layout.final_dir(run_dir, state.step)
    if dist.is_main:
        state.saved_at = time.time()
        (temp / TRAINER_STATE).write_text(json.dumps(asdict(state), indent=2, default=str))
        (temp / CONFIG_FILE).write_text(dump_yaml(config))
        # replace: only after resuming from an older checkpoint (on purpose, or because the
        # newer ones were unusable) does this step exist already; this run's history wins.
        final = layout.finalize(run_dir, temp, step=state.step, tokens=state.tokens, replace=True)
    barrier()
    return final


def needs_reshard(checkpoint: Path, dist: DistInfo) -> bool:
    """True when ``checkpoint`` was written by a different number of processes."""
    return TrainerState.read(checkpoint).world_size != dist.world_size


def universal_dir(run_dir: Path, checkpoint: Path) -> Path:
    return Path(run_dir) / UNIVERSAL_CACHE / checkpoint.name


def convert_to_universal(checkpoint: Path, run_dir: Path, dist: DistInfo) -> Path:
    """Collective. Rewrite the per-rank ZeRO-3 shards of ``checkpoint`` as DeepSpeed's
    "universal" per-parameter layout (once, cached under RUN_DIR/.universal), which any number
    of processes can load. The checkpoint itself is left untouched."""
    target = universal_dir(run_dir, checkpoint)
    done = target / "CONVERTED"
    if dist.is_main and not done.exists():
        import argparse

        from deepspeed.checkpoint import ds_to_universal

        if target.exists():
            shutil.rmtree(target)
        ds_to_universal.main(
            argparse.Namespace(
                input_folder=str(checkpoint / DEEPSPEED_TAG),
                output_folder=str(target / DEEPSPEED_TAG),
                num_extract_workers=1,
                num_merge_workers=1,
                keep_temp_folder=False,
                strict=True,
                inject_missing_state=False,
            )
        )
        done.write_text(str(checkpoint))
    barrier()
    return target


def load_checkpoint(
    engine, checkpoint: Path, dist: DistInfo, universal: Path | None = None
) -> TrainerState:
    """Restore module, optimizer and trainer state from a COMPLETE checkpoint.

    ``universal``: the converted copy to load instead when the world size changed (the engine
    must then have been created with ``checkpoint.load_universal``).
    """
    if not layout.is_complete(checkpoint):
        raise ValueError(f"{checkpoint} is not a complete checkpoint (no valid COMPLETE marker)")
    state = TrainerState.read(checkpoint)
    if state.world_size != dist.world_size and universal is None:
        raise ValueError(
            f"{checkpoint} was written by {state.world_size} processes but this run has "
            f"{dist.world_size}; convert it first (convert_to_universal)"
        )
    source = universal if universal is not None else checkpoint
    load_path, _ = engine.load_checkpoint(str(source), tag=DEEPSPEED_TAG)
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load {source / DEEPSPEED_TAG}")
    rng_file = checkpoint / RNG_DIR / f"rank{dist.rank}.pt"
    if rng_file.exists() and universal is None:
        _restore_rng(torch.load(rng_file, weights_only=False))
    state.world_size = dist.world_size
    return state
