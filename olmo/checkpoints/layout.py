"""The checkpoint layout contract (DESIGN.md contract 3), defined here and nowhere else.

The trainer writes checkpoints, the operator resumes from and rotates them, the eval worker
evaluates and marks them; all of them agree on this on-disk layout under a run directory::

    RUN_DIR/checkpoints/step000123/          a checkpoint (arbitrary files written by the trainer)
    RUN_DIR/checkpoints/step000123/COMPLETE  JSON {step, tokens, files: {path: sha256},
                                             sizes: {path: bytes}, created}
    RUN_DIR/checkpoints/step000123/EVALUATED JSON written by the eval worker
    RUN_DIR/checkpoints/.tmp-step000123/     the same checkpoint while it is being written
    RUN_DIR/checkpoints/.tmp-replaced-step000123/  a complete step000123 while a new save of
                                             the same step replaces it
    RUN_DIR/checkpoints/latest               text: folder name of the newest complete checkpoint
    RUN_DIR/ATTEMPT                          which attempt owns the run dir (``fence``)
    RUN_DIR/eval/step000123.json             eval results

A checkpoint is written under its temporary name (deterministic, so that every rank of a
multi-node job writes into the same folder), ``COMPLETE`` is written inside it last, then the
folder is renamed to its final name. Only folders with a valid ``COMPLETE`` marker are ever loaded
or counted. ``latest`` is only a hint: a scan of the folder always wins. Saving a step that
exists already (a resumed run saving it again) moves the old folder aside and the new one into
place, and ``recover_interrupted_saves`` finishes that after a crash.

Every name and path builder of the layout is in ``olmo.checkpoints.paths``, the file-system
mechanics (hashing, sizes, removal) in ``olmo.checkpoints.folders``, reading (completeness,
scanning, ``latest``) in ``olmo.checkpoints.scan``, the same contract on an object store in
``olmo.checkpoints.objectstore``; this module holds writing and re-exports the rest, so that
``layout`` is the one name callers import. Standard library only: the operator and the eval worker import this
without torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from olmo.checkpoints.folders import (
    hash_and_sync,
    payload_files,
    remove_tree,
    same_path,
    tree_stats,
)
from olmo.checkpoints.paths import (
    ATTEMPT_MARKER,
    CHECKPOINTS_DIR,
    COMPLETE,
    CONFIG_FILE,
    DEEPSPEED_TAG,
    EVAL_DIR,
    EVALUATED,
    LATEST,
    RNG_DIR,
    TEMP_PREFIX,
    TRAINER_STATE,
    UNIVERSAL_CACHE,
    StrPath,
    check_count,
    checkpoints_dir,
    eval_result_path,
    final_dir,
    parse_step,
    replaced_dir,
    step_dir_name,
    temp_dir,
)
from olmo.checkpoints.scan import (
    CheckpointInfo,
    _advance_latest,
    _complete_as_problem,
    checkpoint_info,
    complete_checkpoints,
    completeness_problem,
    is_complete,
    is_evaluated,
    latest_complete,
    list_checkpoints,
    list_temp_dirs,
    quick_check_problem,
    read_complete,
    read_evaluated,
    read_latest_pointer,
    resolve_checkpoint,
    write_latest_pointer,
)
from olmo.fileio import fsync_dir, sha256_file, write_atomic
from olmo.json_records import now_iso
from olmo.storage import Location, is_remote

__all__ = [
    "ATTEMPT_MARKER",
    "CHECKPOINTS_DIR",
    "COMPLETE",
    "CONFIG_FILE",
    "DEEPSPEED_TAG",
    "EVALUATED",
    "EVAL_DIR",
    "LATEST",
    "RNG_DIR",
    "TEMP_PREFIX",
    "TRAINER_STATE",
    "UNIVERSAL_CACHE",
    "CheckpointInfo",
    "StrPath",
    "checkpoint_info",
    "checkpoints_dir",
    "complete_checkpoints",
    "completeness_problem",
    "eval_result_path",
    "final_dir",
    "finalize",
    "is_complete",
    "is_evaluated",
    "latest_complete",
    "list_checkpoints",
    "list_temp_dirs",
    "mark_evaluated",
    "parse_step",
    "prepare_temp_dir",
    "quick_check_problem",
    "read_complete",
    "read_evaluated",
    "read_latest_pointer",
    "recover_interrupted_saves",
    "remove_tree",
    "replaced_dir",
    "resolve_checkpoint",
    "sha256_file",
    "step_dir_name",
    "temp_dir",
    "tree_stats",
    "write_complete",
    "write_latest_pointer",
]


# --------------------------------------------------------------------------------------------
# Writing


def prepare_temp_dir(run_dir: StrPath, step: int) -> Path:
    """Create an empty ``temp_dir(run_dir, step)``, removing leftovers of a crashed attempt.

    The temporary name is deterministic, so a save of the same step that died half-way leaves
    files that ``write_complete`` would otherwise hash into the new checkpoint. In a multi-node
    job exactly one rank calls this, before the barrier after which all ranks write.
    """
    path = temp_dir(run_dir, step)
    if path.exists():
        remove_tree(path)
    path.mkdir(parents=True)
    return path


def write_complete(ckpt_dir: StrPath, *, step: int, tokens: int) -> dict[str, Any]:
    """Hash every file in ``ckpt_dir`` and write its ``COMPLETE`` marker atomically.

    Each file is fsynced as it is hashed, so the marker is never durable before the data it
    vouches for. Returns the marker's content.
    """
    check_count("step", step)
    check_count("tokens", tokens)
    root = Path(ckpt_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"checkpoint folder {root} does not exist")
    files, sizes = {}, {}
    for rel in payload_files(root):
        files[rel] = hash_and_sync(root / rel)
        sizes[rel] = (root / rel).stat().st_size
    # ``sizes`` is the cheap check a resume runs on every start (a truncated or missing file
    # shows without reading terabytes); ``files`` (sha256) is the thorough one (``verify``).
    content = {"step": step, "tokens": tokens, "files": files, "sizes": sizes, "created": now_iso()}
    write_atomic(root / COMPLETE, json.dumps(content, indent=1, sort_keys=True) + "\n")
    return content


def finalize(
    run_dir: StrPath, temp: StrPath, *, step: int, tokens: int, replace: bool = False
) -> Path:
    """Turn a fully written temporary folder into the complete checkpoint for ``step``.

    Writes ``COMPLETE`` in ``temp``, renames it to ``final_dir(run_dir, step)`` and points
    ``latest`` at it unless ``latest`` already names a complete checkpoint at least as new.
    An existing incomplete final folder (a crashed earlier attempt) is removed first. An existing
    complete one raises FileExistsError (nothing is changed) unless ``replace``: then it is
    replaced without a moment where neither a complete old nor a complete new checkpoint of
    ``step`` exists (``_replace``).
    """
    temp = Path(temp)
    final = final_dir(run_dir, step)
    if not temp.is_dir():
        raise FileNotFoundError(f"temporary checkpoint folder {temp} does not exist")
    if same_path(temp, final):
        raise ValueError(f"{temp} is already the final folder; write under temp_dir() instead")
    if is_complete(final) and not replace:
        raise FileExistsError(f"checkpoint {final} already exists and is complete")
    write_complete(temp, step=step, tokens=tokens)
    final.parent.mkdir(parents=True, exist_ok=True)
    if is_complete(final):
        if not replace:  # appeared while we were hashing
            raise FileExistsError(f"checkpoint {final} already exists and is complete")
        _replace(run_dir, temp, final, step)
    else:
        if final.exists() or final.is_symlink():
            remove_tree(final)
        os.rename(temp, final)
        fsync_dir(final.parent)
    _advance_latest(run_dir, step)
    return final


def _replace(run_dir: StrPath, temp: Path, final: Path, step: int) -> None:
    """Replace the complete ``final`` by the complete ``temp``: move the old one aside, move the
    new one into place, then delete the old one.

    Between the two renames no folder has the final name, but both checkpoints are complete
    under their temporary names; ``recover_interrupted_saves`` (run by the trainer before it
    resumes) finishes whatever a crash interrupted, so every crash point leaves a loadable
    ``stepN``: the old one before the first rename, the new one after it.
    """
    aside = replaced_dir(run_dir, step)
    if aside.exists() or aside.is_symlink():
        remove_tree(aside)  # debris of an earlier replace that crashed after its second rename
    os.rename(final, aside)
    os.rename(temp, final)
    fsync_dir(final.parent)
    remove_tree(aside)


def recover_interrupted_saves(run_dir: StrPath) -> list[Path]:
    """Finish saves that a crash interrupted after their checkpoint was complete; returns the
    step folders put in place.

    For every step without a complete final folder: a complete ``.tmp-stepN`` (the new
    checkpoint, its ``COMPLETE`` written, not renamed yet) is moved into place, else a complete
    ``.tmp-replaced-stepN`` (the old one, moved aside by a replace) is moved back. A moved-aside
    folder whose step is complete is then deleted. Only the run directory's owner may call this
    (the trainer, after claiming it, before it resumes): it renames folders that a concurrent
    save of the same step would be writing.
    """
    steps = set()
    for leftover in list_temp_dirs(run_dir):
        name = leftover.name.removeprefix(TEMP_PREFIX).removeprefix("replaced-")
        step = parse_step(name)
        if step is not None:
            steps.add(step)
    placed = []
    for step in sorted(steps):
        final, aside = final_dir(run_dir, step), replaced_dir(run_dir, step)
        if not is_complete(final):
            for source in (temp_dir(run_dir, step), aside):  # the newer checkpoint first
                if _complete_as_problem(source, step) is None:
                    if final.exists() or final.is_symlink():
                        remove_tree(final)
                    os.rename(source, final)
                    fsync_dir(final.parent)
                    _advance_latest(run_dir, step)
                    placed.append(final)
                    break
        if is_complete(final) and (aside.exists() or aside.is_symlink()):
            remove_tree(aside)
    return placed


def mark_evaluated(ckpt_dir: StrPath | Location, info: dict[str, Any]) -> None:
    """Write the ``EVALUATED`` marker: ``info`` plus ``created``. The folder must exist."""
    if is_remote(str(ckpt_dir)):
        from olmo.checkpoints import objectstore

        objectstore.mark_evaluated(ckpt_dir, info)
        return
    root = Path(ckpt_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"checkpoint folder {root} does not exist")
    content = {**info, "created": now_iso()}
    write_atomic(root / EVALUATED, json.dumps(content, indent=1, sort_keys=True) + "\n")
