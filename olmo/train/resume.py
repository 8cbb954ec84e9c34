"""Which checkpoint a resume loads: the newest usable one, verified first.

``--resume latest`` tries the COMPLETE checkpoints newest first. Each is checked cheaply before
it is loaded (``checkpoint_problem``: its ``COMPLETE`` marker, every file the marker lists
present with its recorded size, and the files the trainer needs), then loaded; a checkpoint that
fails the check or whose load raises is skipped, with a warning, for the previous one. The
skipped ones are reported (``Resumed.skipped``: the trainer sends them to the OLMoJob, which
posts a ``CheckpointSkipped`` Event). When none is usable the resume fails with every path
tried and why. An explicit ``--resume PATH`` is verified the same way but never replaced by
another checkpoint: the user asked for that one.

With a run directory on an object store the candidates are the store's complete checkpoints
(``remote_candidates``), each downloaded into the local mirror before it is checked and loaded
(``fetch``; a local copy with the same ``COMPLETE`` is reused); a download that fails (an object
missing, a sha256 that does not match) skips that checkpoint like a failed check.

Every rank must pick the same checkpoint: each decision (the check, then the load) goes through
``agree``, which in the trainer is ``any_rank`` (a checkpoint is skipped when any rank found it
unusable). A load that raises on some ranks only, in the middle of DeepSpeed's own collectives,
can still hang the others; the size check catches the usual cause (a truncated shard) before
any rank starts loading.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from olmo.checkpoints import layout, objectstore
from olmo.checkpoints.paths import CONFIG_FILE, DEEPSPEED_TAG, LATEST, TRAINER_STATE
from olmo.storage import Location

log = logging.getLogger("olmo.train")

T = TypeVar("T")

REQUIRED = (TRAINER_STATE, CONFIG_FILE)
"""Files a trainer checkpoint must hold besides the DeepSpeed folder (``DEEPSPEED_TAG``)."""


class NoUsableCheckpoint(ValueError):
    """``--resume`` found checkpoints but could load none of them."""


class ResumeAborted(Exception):
    """Raised by a loader for a failure that is not the checkpoint's (building the engine):
    the search stops and ``cause`` is raised instead of trying an older checkpoint."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class Skipped:
    path: Path | Location
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason}


@dataclass
class Resumed(Generic[T]):
    """What the loader returned for ``checkpoint`` (None: a fresh start), and what was skipped."""

    loaded: T | None
    checkpoint: Path | Location | None
    """What was loaded: a local folder, or the checkpoint's URI on an object store."""
    skipped: list[Skipped] = field(default_factory=list)


def candidates(run_dir: Path, spec: str | None) -> tuple[list[Path], bool]:
    """(checkpoints to try in order, whether falling back to the next one is allowed).

    No ``spec``: none. ``"latest"``: every complete checkpoint, newest first (none: a fresh
    start). A path: that one only (ValueError naming it when it is not a complete checkpoint).
    """
    if not spec:
        return [], False
    if spec == LATEST:
        return layout.complete_checkpoints(run_dir), True
    return [layout.resolve_checkpoint(run_dir, spec)], False


def remote_candidates(run_dir: Location, spec: str | None) -> tuple[list[Location], bool]:
    """``candidates`` for a run directory on an object store: complete checkpoints there (only
    ``COMPLETE`` is trusted), newest first; a step folder name or URI must be complete."""
    if not spec:
        return [], False
    if spec == LATEST:
        return objectstore.complete_checkpoints(run_dir), True
    found = objectstore.resolve_checkpoint(run_dir, spec)
    return ([] if found is None else [found]), False


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be loaded without reading it whole; None if it looks usable."""
    problem = layout.quick_check_problem(checkpoint)
    if problem is not None:
        return problem
    for name in REQUIRED:
        if not (checkpoint / name).is_file():
            return f"checkpoint {checkpoint}: {name} is missing"
    if not (checkpoint / DEEPSPEED_TAG).is_dir():
        return f"checkpoint {checkpoint}: the {DEEPSPEED_TAG}/ folder is missing"
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text())
    except (OSError, ValueError) as e:
        return f"checkpoint {checkpoint}: {TRAINER_STATE} is unreadable: {e}"
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        return f"checkpoint {checkpoint}: {TRAINER_STATE} holds no step"
    return None


def load_first_usable(
    tried: list[Path],
    load: Callable[[Path], T],
    *,
    fallback: bool,
    agree: Callable[[bool], bool] = lambda failed: failed,
    fetch: Callable[[Any], Path] | None = None,
) -> Resumed[T]:
    """Load the first of ``tried`` that passes ``checkpoint_problem`` and whose ``load`` does
    not raise. ``agree(failed)`` turns this rank's verdict into the gang's (any rank failed →
    every rank skips). Raises NoUsableCheckpoint listing every checkpoint and why, when none
    loads (or, without ``fallback``, when the first does not).

    ``fetch`` (a run directory on an object store): ``tried`` are checkpoints on the store and
    ``fetch`` returns each one's local copy (downloading it, sha256-checked); a failed download
    skips the checkpoint like a failed check."""
    skipped: list[Skipped] = []
    for checkpoint in tried:
        local, reason = checkpoint, None
        if fetch is not None:
            try:
                local = fetch(checkpoint)
            except Exception as e:
                reason = f"checkpoint {checkpoint}: download failed: {type(e).__name__}: {e}"
        reason = reason or checkpoint_problem(local)
        if not agree(reason is not None):
            loaded, error = None, None
            try:
                loaded = load(local)
            except ResumeAborted as e:
                raise e.cause from e
            except Exception as e:  # any load error makes the checkpoint unusable
                error = f"checkpoint {checkpoint}: loading failed: {type(e).__name__}: {e}"
            if not agree(error is not None):  # every rank calls it, loaded or not
                return Resumed(loaded, checkpoint, skipped)
            reason = error
        reason = reason or f"checkpoint {checkpoint}: unusable on another rank (see its log)"
        skipped.append(Skipped(checkpoint, reason))
        if not fallback:
            break
        log.warning("skipping %s", reason)
    if not skipped:
        return Resumed(None, None, [])
    listing = "\n".join(f"  - {s.reason}" for s in skipped)
    raise NoUsableCheckpoint(f"no usable checkpoint to resume from; tried:\n{listing}")
