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
    is_count,
    parse_step,
    replaced_dir,
    step_dir_name,
    temp_dir,
)
from olmo.fileio import fsync_dir, sha256_file, write_atomic
from olmo.json_records import now_iso, read_json_object

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
    return _complete_as_problem(root, step, files="checksums" if verify else "marker")


def quick_check_problem(ckpt_dir: StrPath) -> str | None:
    """``completeness_problem`` plus: every file ``COMPLETE`` lists exists and, when the marker
    records sizes, has its recorded size. Reads no file contents, so a resume can afford it on
    every start; it catches the usual damage (a truncated or missing file) but not bit rot
    (``verify=True`` hashes every file for that)."""
    root = Path(ckpt_dir)
    step = parse_step(root.name)
    if step is None:
        return completeness_problem(root)
    return _complete_as_problem(root, step, files="sizes")


def _complete_as_problem(root: Path, step: int, files: str = "sizes") -> str | None:
    """Why ``root`` is not a complete checkpoint of ``step``, whatever its folder name.

    ``files``: "marker" checks only the marker, "sizes" also that every listed file exists with
    its recorded size, "checksums" also that every listed file has its recorded sha256.
    """
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
    listed = marker.get("files")
    if not isinstance(listed, dict):
        return f"checkpoint {root}: the {COMPLETE} marker has no file list"
    if files == "marker":
        return None
    sizes = marker.get("sizes") if isinstance(marker.get("sizes"), dict) else {}
    for rel, expected in sorted(listed.items()):
        path = safe_join(root, rel)
        if path is None or not isinstance(expected, str):
            return f"checkpoint {root}: {COMPLETE} lists an invalid entry {rel!r}"
        try:
            size = path.stat().st_size if path.is_file() else None
        except OSError:
            size = None
        if size is None:
            return f"checkpoint {root}: {rel} (listed in {COMPLETE}) is missing"
        # (With checksums a wrong size shows as a wrong sha256, the message callers know.)
        if files == "sizes" and is_count(sizes.get(rel)) and size != sizes[rel]:
            return (
                f"checkpoint {root}: {rel} has {size} bytes, {COMPLETE} recorded {sizes[rel]} "
                "(truncated or rewritten after the checkpoint was written)"
            )
        if files != "checksums":
            continue
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


def complete_checkpoints(run_dir: StrPath) -> list[Path]:
    """Every step folder with a valid ``COMPLETE`` marker, newest first (what ``--resume latest``
    tries, in order)."""
    return [path for _, path in reversed(_step_dirs(run_dir)) if is_complete(path)]


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
