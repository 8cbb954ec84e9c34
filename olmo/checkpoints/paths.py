"""Where everything of the checkpoint layout (DESIGN.md contract 3) lives: every file and folder
name under a run directory, and the functions that build the paths from a step.

The trainer writes these names, the operator, the eval worker and ``olmo-ckpt`` read them; each
is spelled here once. ``olmo.checkpoints.layout`` re-exports all of it (most callers write
``layout.final_dir(...)``). Standard library only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

StrPath = str | os.PathLike[str]

# The run directory.
CHECKPOINTS_DIR = "checkpoints"
"""``RUN_DIR/checkpoints/``: one ``stepNNNNNN`` folder per checkpoint."""
LATEST = "latest"
"""``RUN_DIR/checkpoints/latest``: the folder name of the newest complete checkpoint (a hint)."""
TEMP_PREFIX = ".tmp-"
"""``RUN_DIR/checkpoints/.tmp-stepNNNNNN``: a checkpoint while it is written (or deleted)."""
EVAL_DIR = "eval"
"""``RUN_DIR/eval/stepNNNNNN.json``: the eval worker's results."""
CONFIG_FILE = "config.yaml"
"""The training config, at ``RUN_DIR/config.yaml`` and inside every checkpoint."""
ATTEMPT_MARKER = "ATTEMPT"
"""``RUN_DIR/ATTEMPT``: JSON {job, attempt, claimed, host}: which attempt of which OLMoJob owns
the run directory (``olmo.checkpoints.fence``). Only trainers started by the operator write it."""
UNIVERSAL_CACHE = ".universal"
"""``RUN_DIR/.universal/stepNNNNNN/``: the trainer's temporary copy of a checkpoint converted
for a different number of processes (removed once loaded)."""

# The markers inside a checkpoint folder.
COMPLETE = "COMPLETE"
"""JSON {step, tokens, files: {path: sha256}, sizes: {path: bytes}, created}, written last by
the trainer (checkpoints written before ``sizes`` existed lack it)."""
EVALUATED = "EVALUATED"
"""JSON written by the eval worker once the checkpoint is evaluated."""

# What the trainer writes inside a checkpoint folder (besides CONFIG_FILE).
DEEPSPEED_TAG = "deepspeed"
"""The DeepSpeed ZeRO-3 shards (module states, fp32 master weights, AdamW moments per rank)."""
TRAINER_STATE = "trainer_state.json"
"""Step, tokens, instances consumed, world size, config, versions, data manifest hashes."""
RNG_DIR = "rng"
"""Each rank's RNG states, ``rng/rankN.pt``."""

_STEP_RE = re.compile(r"step([0-9]{6,})")


def checkpoints_dir(run_dir: StrPath) -> Path:
    """``RUN_DIR/checkpoints``."""
    return Path(run_dir) / CHECKPOINTS_DIR


def step_dir_name(step: int) -> str:
    """``123`` → ``"step000123"`` (more digits when step ≥ 10**6)."""
    check_count("step", step)
    return f"step{step:06d}"


def parse_step(name: str) -> int | None:
    """``"step000123"`` → 123; None for any other name (temp names, non-canonical padding)."""
    match = _STEP_RE.fullmatch(name)
    if match is None:
        return None
    step = int(match.group(1))
    # Only the canonical spelling counts, so one step can never have two folders.
    return step if step_dir_name(step) == name else None


def temp_dir(run_dir: StrPath, step: int) -> Path:
    """``RUN_DIR/checkpoints/.tmp-stepNNNNNN``: where a checkpoint is written before finalize."""
    return checkpoints_dir(run_dir) / f"{TEMP_PREFIX}{step_dir_name(step)}"


def replaced_dir(run_dir: StrPath, step: int) -> Path:
    """``RUN_DIR/checkpoints/.tmp-replaced-stepNNNNNN``: a complete ``stepN`` moved aside while a
    new save of the same step takes its name (``layout.finalize(replace=True)``)."""
    return checkpoints_dir(run_dir) / f"{TEMP_PREFIX}replaced-{step_dir_name(step)}"


def final_dir(run_dir: StrPath, step: int) -> Path:
    """``RUN_DIR/checkpoints/stepNNNNNN``."""
    return checkpoints_dir(run_dir) / step_dir_name(step)


def eval_result_path(run_dir: StrPath, step: int) -> Path:
    """``RUN_DIR/eval/stepNNNNNN.json``."""
    return Path(run_dir) / EVAL_DIR / f"{step_dir_name(step)}.json"


def is_count(value: object) -> bool:
    """A step or token count: a non-negative int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_count(what: str, value: object) -> None:
    if not is_count(value):
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
