"""Saving and restoring the whole training state as one checkpoint (DESIGN contract 3).

A checkpoint folder holds the DeepSpeed ZeRO shards (``deepspeed/``: bf16 module states,
fp32 master weights and AdamW moments per rank, in the layout of the run's ZeRO stage), ``trainer_state.json`` (step, tokens,
instances consumed, world size, config, versions, git commit, data manifest hashes),
``config.yaml`` and each rank's RNG states (``rng/rankN.pt``); these names are part of the layout
contract (``olmo.checkpoints.paths``). Every rank writes its shard into the same temporary
folder (a shared filesystem on multi-node runs); rank 0 then writes the trainer state and
``olmo.checkpoints.layout.finalize`` adds ``COMPLETE`` last and renames.
"""

from __future__ import annotations

import json
import os
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

ZERO3_MODEL_STATES = "zero_pp_rank_0_mp_rank_00_model_states.pt"
ZERO12_MODEL_STATES = "mp_rank_00_model_states.pt"
"""DeepSpeed's module-states file of the first rank at ZeRO-3, and of every ZeRO-1/2 run."""


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
    zero_stage: int | None = None
    """The ZeRO stage that wrote the DeepSpeed shards; None in checkpoints made before it was
    recorded, which were all ZeRO-3."""
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


def saved_stage(state: TrainerState) -> int:
    """The ZeRO stage of a checkpoint's shards (3 for checkpoints that predate the setting)."""
    return 3 if state.zero_stage is None else state.zero_stage


def needs_reshard(checkpoint: Path, dist: DistInfo, zero_stage: int = 3) -> bool:
    """True when ``checkpoint``'s shards cannot be loaded as they are: written by a different
    number of processes or at a different ZeRO stage than ``zero_stage``."""
    state = TrainerState.read(checkpoint)
    return state.world_size != dist.world_size or saved_stage(state) != zero_stage


def universal_dir(run_dir: Path, checkpoint: Path) -> Path:
    return Path(run_dir) / UNIVERSAL_CACHE / checkpoint.name


def convert_to_universal(checkpoint: Path, run_dir: Path, dist: DistInfo) -> Path:
    """Collective. Rewrite the per-rank ZeRO shards of ``checkpoint`` (any stage) as DeepSpeed's
    "universal" per-parameter layout (once, cached under RUN_DIR/.universal), which any number
    of processes can load at any ZeRO stage. The checkpoint itself is left untouched."""
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
                # ZeRO-1/2 shards carry no universal-format metadata unless the client added
                # it: DeepSpeed then records the default (no tensor-parallel patterns).
                inject_missing_state=True,
            )
        )
        _loadable_at_every_stage(target / DEEPSPEED_TAG)
        done.write_text(str(checkpoint))
    barrier()
    return target


def _loadable_at_every_stage(folder: Path) -> None:
    """Rewrite a universal checkpoint into the one layout that DeepSpeed's ZeRO-1/2 and ZeRO-3
    loaders both read (DeepSpeed 0.19 converts each stage into its own dialect):

    - per parameter, ``fp32``/``exp_avg``/``exp_avg_sq`` as ``{"param": tensor of the
      parameter's shape, "cat_dim": 0}`` (ZeRO-3 writes flat tensors, which ZeRO-1/2 cannot
      reshape) and ``step.pt`` (ZeRO-3 writes none);
    - ``zero/optimizer_state.pt`` with both the ZeRO-3 ``optimizer_state_dict`` (its step and
      param groups) and the DeepSpeed version ZeRO-1/2 checks;
    - the module-states file (only metadata is read from it when loading a universal
      checkpoint) under both stage-dependent names: ZeRO-3's
      ``zero_pp_rank_0_mp_rank_00_model_states.pt`` and ZeRO-1/2's ``mp_rank_00_model_states.pt``.
    """
    import deepspeed
    from deepspeed.checkpoint.constants import DS_VERSION, OPTIMIZER_STATE_DICT, PARAM

    stage3, stage12 = folder / ZERO3_MODEL_STATES, folder / ZERO12_MODEL_STATES
    model_states = torch.load(
        stage3 if stage3.exists() else stage12, map_location="cpu", mmap=True, weights_only=False
    )
    shapes = {
        name: shape for group in model_states["param_shapes"] for name, shape in group.items()
    }
    optimizer_state = folder / "zero" / "optimizer_state.pt"
    state = torch.load(optimizer_state, map_location="cpu", weights_only=False)
    step = None
    if OPTIMIZER_STATE_DICT in state:  # from ZeRO-3
        step = next(iter(state[OPTIMIZER_STATE_DICT]["state"].values()))["step"]
    for name, shape in shapes.items():
        param_dir = folder / "zero" / name
        for key in ("fp32", "exp_avg", "exp_avg_sq"):
            value = torch.load(param_dir / f"{key}.pt", map_location="cpu", weights_only=False)
            if isinstance(value, torch.Tensor):
                torch.save({PARAM: value.view(shape), "cat_dim": 0}, param_dir / f"{key}.pt")
        if (param_dir / "step.pt").exists():
            step = torch.load(param_dir / "step.pt", weights_only=False)
        elif step is not None:
            torch.save(step, param_dir / "step.pt")
    state.setdefault(
        OPTIMIZER_STATE_DICT, {"state": {0: {"step": step}}, "param_groups": state["param_groups"]}
    )
    state[DS_VERSION] = state.get(DS_VERSION) or deepspeed.__version__
    torch.save(state, optimizer_state)
    for source, alias in ((stage3, stage12), (stage12, stage3)):
        if source.exists() and not alias.exists():
            try:
                os.link(source, alias)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(source, alias)


def load_checkpoint(
    engine,
    checkpoint: Path,
    dist: DistInfo,
    universal: Path | None = None,
    zero_stage: int = 3,
) -> TrainerState:
    """Restore module, optimizer and trainer state from a COMPLETE checkpoint into an engine
    at ``zero_stage``.

    ``universal``: the converted copy to load instead when the world size or the ZeRO stage
    changed (the engine must then have been created with ``checkpoint.load_universal``). Each
    rank's RNG state is restored whenever the number of processes is the same.
    """
    if not layout.is_complete(checkpoint):
        raise ValueError(f"{checkpoint} is not a complete checkpoint (no valid COMPLETE marker)")
    state = TrainerState.read(checkpoint)
    if state.world_size != dist.world_size and universal is None:
        raise ValueError(
            f"{checkpoint} was written by {state.world_size} processes but this run has "
            f"{dist.world_size}; convert it first (convert_to_universal)"
        )
    if saved_stage(state) != zero_stage and universal is None:
        raise ValueError(
            f"{checkpoint} was written at ZeRO stage {saved_stage(state)} but this run uses "
            f"stage {zero_stage}; convert it first (convert_to_universal)"
        )
    source = universal if universal is not None else checkpoint
    load_path, _ = engine.load_checkpoint(str(source), tag=DEEPSPEED_TAG)
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load {source / DEEPSPEED_TAG}")
    rng_file = checkpoint / RNG_DIR / f"rank{dist.rank}.pt"
    if rng_file.exists() and state.world_size == dist.world_size:
        _restore_rng(torch.load(rng_file, weights_only=False))
    state.world_size, state.zero_stage = dist.world_size, zero_stage
    return state
