"""The checkpoint layout contract (DESIGN.md contract 3), defined here and nowhere else.

The trainer writes checkpoints, the operator resumes from and rotates them, the eval worker
evaluates and marks them; all of them agree on this on-disk layout under a run directory::

    RUN_DIR/checkpoints/step000123/          a checkpoint (arbitrary files written by the trainer)
    RUN_DIR/checkpoints/step000123/COMPLETE  JSON {step, tokens, files: {path: sha256}, created}
    RUN_DIR/checkpoints/step000123/EVALUATED JSON written by the eval worker
    RUN_DIR/checkpoints/.tmp-step000123/     the same checkpoint while it is being written
    RUN_DIR/checkpoints/latest               text: folder name of the newest complete checkpoint
    RUN_DIR/eval/step000123.json             eval results

A checkpoint is written under its temporary name (deterministic, so that every rank of a
multi-node job writes into the same folder), ``COMPLETE`` is written inside it last, then the
folder is renamed to its final name. Only folders with a valid ``COMPLETE`` marker are ever loaded
or counted. ``latest`` is only a hint: a scan of the folder always wins.

Every name and path builder of the layout is in ``olmo.checkpoints.paths``, the file-system
mechanics (hashing, sizes, removal) in ``olmo.checkpoints.folders``; this module holds what the
files mean (writing, completeness, scanning) and re-exports both, so that ``layout`` is the one
name callers import. Standard library only: the operator and the eval worker import this
without torch.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from olmo.checkpoints.folders import (
    hash_and_sync,
    payload_files,
    remove_tree,
    safe_join,
    same_path,
    tree_stats,
)
from olmo.checkpoints.paths import (
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
    is_count,
    parse_step,
    step_dir_name,
    temp_dir,
)
from olmo.fileio import fsync_dir, sha256_file, write_atomic
from olmo.json_records import now_iso, read_json_object

__all__ = [
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
    "read_complete",
    "read_evaluated",
    "read_latest_pointer",
    "remove_tree",
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
    files = {rel: hash_and_sync(root / rel) for rel in payload_files(root)}
    content = {"step": step, "tokens": tokens, "files": files, "created": now_iso()}
    write_atomic(root / COMPLETE, json.dumps(content, indent=1, sort_keys=True) + "\n")
    return content


def finalize(run_dir: StrPath, temp: StrPath, *, step: int, tokens: int) -> Path:
    """Turn a fully written temporary folder into the complete checkpoint for ``step``.

    Writes ``COMPLETE`` in ``temp``, renames it to ``final_dir(run_dir, step)`` and points
    ``latest`` at it unless ``latest`` already names a complete checkpoint at least as new.
    An existing complete final folder raises FileExistsError (nothing is changed); an existing
    incomplete one (a crashed earlier attempt) is removed first.
    """
    temp = Path(temp)
    final = final_dir(run_dir, step)
    if not temp.is_dir():
        raise FileNotFoundError(f"temporary checkpoint folder {temp} does not exist")
    if same_path(temp, final):
        raise ValueError(f"{temp} is already the final folder; write under temp_dir() instead")
    if is_complete(final):
        raise FileExistsError(f"checkpoint {final} already exists and is complete")
    write_complete(temp, step=step, tokens=tokens)
    if final.exists() or final.is_symlink():
        if is_complete(final):  # appeared while we were hashing
            raise FileExistsError(f"checkpoint {final} already exists and is complete")
        remove_tree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(temp, final)
    fsync_dir(final.parent)
    _advance_latest(run_dir, step)
    return final


def mark_evaluated(ckpt_dir: StrPath, info: dict[str, Any]) -> None:
    """Write the ``EVALUATED`` marker: ``info`` plus ``created``. The folder must exist."""
    root = Path(ckpt_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"checkpoint folder {root} does not exist")
    content = {**info, "created": now_iso()}
    write_atomic(root / EVALUATED, json.dumps(content, indent=1, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# Reading


def read_complete(ckpt_dir: StrPath) -> dict[str, Any] | None:
    """The ``COMPLETE`` marker's content; None if it is missing or not a JSON object."""
    return read_json_object(Path(ckpt_dir) / COMPLETE)


def read_evaluated(ckpt_dir: StrPath) -> dict[str, Any] | None:
    """The ``EVALUATED`` marker's content; None if it is missing or not a JSON object."""
    return read_json_object(Path(ckpt_dir) / EVALUATED)


def is_evaluated(ckpt_dir: StrPath) -> bool:
    return read_evaluated(ckpt_dir) is not None


def is_complete(ckpt_dir: StrPath, verify: bool = False) -> bool:
    """Whether ``ckpt_dir`` is a complete checkpoint.

    The folder must have a final step name (``stepNNNNNN``) and a ``COMPLETE`` marker that parses
    and names the same step. With ``verify=True`` every file the marker lists must also exist
    and still have the recorded sha256 (unlisted extra files are allowed).
    """
    return completeness_problem(ckpt_dir, verify=verify) is None


def completeness_problem(ckpt_dir: StrPath, verify: bool = False) -> str | None:
    """None when ``is_complete(ckpt_dir, verify)`` holds; else why not, in words (for logs,
    failure records and errors)."""
    root = Path(ckpt_dir)
    step = parse_step(root.name)
    if step is None:
        return (
            f"{root} is not a checkpoint folder (expected a name like step000123; temporary "
            f"{TEMP_PREFIX}* folders are never loaded)"
        )
    if not root.is_dir():
        return f"checkpoint {root} does not exist"
    if not (root / COMPLETE).exists():
        return (
            f"checkpoint {root} has no {COMPLETE} marker: it is incomplete or still being written"
        )
    marker = read_complete(root)
    if marker is None:
        return f"checkpoint {root}: the {COMPLETE} marker is not a JSON object"
    if not is_count(marker.get("step")) or marker["step"] != step:
        return f"checkpoint {root}: the {COMPLETE} marker names step {marker.get('step')!r}, not {step}"
    files = marker.get("files")
    if not isinstance(files, dict):
        return f"checkpoint {root}: the {COMPLETE} marker has no file list"
    if not verify:
        return None
    for rel, expected in sorted(files.items()):
        path = safe_join(root, rel)
        if path is None or not isinstance(expected, str):
            return f"checkpoint {root}: {COMPLETE} lists an invalid entry {rel!r}"
        if not path.is_file():
            return f"checkpoint {root}: {rel} (listed in {COMPLETE}) is missing"
        try:
            actual = sha256_file(path)
        except OSError as e:
            return f"checkpoint {root}: {rel} is unreadable: {e}"
        if actual != expected:
            return (
                f"checkpoint {root}: sha256 of {rel} does not match {COMPLETE} "
                "(the file was modified or corrupted after the checkpoint was written)"
            )
    return None


@dataclass(frozen=True)
class CheckpointInfo:
    """One final step folder, complete or not, as seen by a scan."""

    step: int
    path: Path
    complete: bool
    evaluated: bool
    tokens: int | None
    size_bytes: int
    mtime: float  # newest modification time of the folder or anything inside it

    @property
    def name(self) -> str:
        return self.path.name

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``path`` as a string)."""
        return {**asdict(self), "path": str(self.path)}


def checkpoint_info(path: StrPath) -> CheckpointInfo:
    """Scan one final step folder (raises ValueError if its name is not ``stepNNNNNN``)."""
    path = Path(path)
    step = parse_step(path.name)
    if step is None:
        raise ValueError(f"{path} is not a checkpoint folder (expected a name like step000123)")
    complete = is_complete(path)
    tokens = None
    if complete:
        marker = read_complete(path) or {}
        tokens = marker.get("tokens") if is_count(marker.get("tokens")) else None
    size, mtime = tree_stats(path)
    return CheckpointInfo(
        step=step,
        path=path,
        complete=complete,
        evaluated=is_evaluated(path),
        tokens=tokens,
        size_bytes=size,
        mtime=mtime,
    )


def list_checkpoints(run_dir: StrPath) -> list[CheckpointInfo]:
    """Every final step folder (complete or not), sorted by step; [] if there are none."""
    infos = []
    for _, path in _step_dirs(run_dir):
        try:
            infos.append(checkpoint_info(path))
        except FileNotFoundError:  # removed concurrently (another rotation)
            continue
    return infos


def list_temp_dirs(run_dir: StrPath) -> list[Path]:
    """Folders under the checkpoints dir whose name starts with ``.tmp-``, sorted by name."""
    root = checkpoints_dir(run_dir)
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        root / e.name
        for e in entries
        if e.name.startswith(TEMP_PREFIX) and e.is_dir(follow_symlinks=False)
    )


def read_latest_pointer(run_dir: StrPath) -> str | None:
    """The folder name the ``latest`` file holds (a hint only), or None."""
    try:
        text = (checkpoints_dir(run_dir) / LATEST).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def latest_complete(run_dir: StrPath) -> CheckpointInfo | None:
    """The newest complete checkpoint by step, found by scanning (``latest`` is not trusted)."""
    for _, path in reversed(_step_dirs(run_dir)):
        if is_complete(path):
            try:
                return checkpoint_info(path)
            except FileNotFoundError:
                continue
    return None


def resolve_checkpoint(run_dir: StrPath, spec: str) -> Path | None:
    """Resolve a ``--resume``/``--checkpoint`` argument to a complete checkpoint folder.

    ``"latest"`` → the newest complete checkpoint, or None when there is none. Anything else is a
    path, absolute or relative to ``RUN_DIR/checkpoints``, that must be a complete checkpoint;
    otherwise ValueError with a message naming the path and what is wrong with it.
    """
    if spec == LATEST:
        info = latest_complete(run_dir)
        return None if info is None else info.path
    if not spec:
        raise ValueError("empty checkpoint spec: give 'latest' or a checkpoint folder")
    path = Path(spec)
    if not path.is_absolute():
        path = checkpoints_dir(run_dir) / path
    if not path.exists():
        raise ValueError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"checkpoint {path} is not a directory")
    if parse_step(path.name) is None:
        raise ValueError(
            f"{path} is not a checkpoint folder: expected a name like step000123 "
            "(temporary .tmp-* folders are never loaded)"
        )
    if not (path / COMPLETE).exists():
        raise ValueError(
            f"checkpoint {path} has no {COMPLETE} marker: it is incomplete or still being "
            "written, and only complete checkpoints can be loaded"
        )
    if not is_complete(path):
        raise ValueError(
            f"checkpoint {path} has an invalid {COMPLETE} marker (unparsable, or its step "
            "does not match the folder name)"
        )
    return path


# --------------------------------------------------------------------------------------------
# The latest pointer and the folder scan


def write_latest_pointer(run_dir: StrPath, name: str | None) -> None:
    """Atomically set ``latest`` to ``name``; None removes it."""
    path = checkpoints_dir(run_dir) / LATEST
    if name is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fsync_dir(path.parent)
        return
    if parse_step(name) is None:
        raise ValueError(f"latest must name a step folder, not {name!r}")
    write_atomic(path, name + "\n")


def _advance_latest(run_dir: StrPath, step: int) -> None:
    current = read_latest_pointer(run_dir)
    current_step = parse_step(current) if current else None
    if (
        current_step is not None
        and current_step >= step
        and is_complete(checkpoints_dir(run_dir) / current)
    ):
        return  # never move latest backwards to an older checkpoint
    write_latest_pointer(run_dir, step_dir_name(step))


def _step_dirs(run_dir: StrPath) -> list[tuple[int, Path]]:
    root = checkpoints_dir(run_dir)
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        step = parse_step(entry.name)
        if step is not None and entry.is_dir(follow_symlinks=False):
            found.append((step, root / entry.name))
    return sorted(found)
