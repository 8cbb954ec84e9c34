"""Reading the checkpoint layout (DESIGN.md contract 3): markers, completeness, the scan of a run
directory and the ``latest`` pointer. ``olmo.checkpoints.layout`` re-exports all of it.

Every function takes a local path or a run directory URI (``s3://``, ``gs://``): for a URI it
answers from the object store by the same contract (``olmo.checkpoints.objectstore``), so the
eval worker, ``olmo-ckpt`` and rotation read both alike. ``CheckpointInfo.path`` is a ``Path``
for a local checkpoint and an ``olmo.storage.Location`` for one on a store (both have ``name``
and print as their path). Standard library only, except fsspec for a URI.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from olmo.checkpoints.folders import safe_join, tree_stats
from olmo.checkpoints.paths import (
    COMPLETE,
    EVALUATED,
    LATEST,
    TEMP_PREFIX,
    StrPath,
    checkpoints_dir,
    is_count,
    parse_step,
    step_dir_name,
)
from olmo.fileio import fsync_dir, sha256_file, write_atomic
from olmo.json_records import read_json_object
from olmo.storage import Location, is_remote


def _store():
    from olmo.checkpoints import objectstore

    return objectstore


def read_complete(ckpt_dir: StrPath | Location) -> dict[str, Any] | None:
    """The ``COMPLETE`` marker's content; None if it is missing or not a JSON object."""
    if is_remote(str(ckpt_dir)):
        return _store().read_complete(ckpt_dir)
    return read_json_object(Path(ckpt_dir) / COMPLETE)


def read_evaluated(ckpt_dir: StrPath | Location) -> dict[str, Any] | None:
    """The ``EVALUATED`` marker's content; None if it is missing or not a JSON object."""
    if is_remote(str(ckpt_dir)):
        return _store().read_evaluated(ckpt_dir)
    return read_json_object(Path(ckpt_dir) / EVALUATED)


def is_evaluated(ckpt_dir: StrPath | Location) -> bool:
    return read_evaluated(ckpt_dir) is not None


def is_complete(ckpt_dir: StrPath | Location, verify: bool = False) -> bool:
    """Whether ``ckpt_dir`` is a complete checkpoint.

    The folder must have a final step name (``stepNNNNNN``) and a ``COMPLETE`` marker that parses
    and names the same step. With ``verify=True`` every file the marker lists must also exist
    and still have the recorded sha256 (unlisted extra files are allowed).
    """
    return completeness_problem(ckpt_dir, verify=verify) is None


def completeness_problem(ckpt_dir: StrPath | Location, verify: bool = False) -> str | None:
    """None when ``is_complete(ckpt_dir, verify)`` holds; else why not, in words (for logs,
    failure records and errors)."""
    if is_remote(str(ckpt_dir)):
        return _store().problem(ckpt_dir, files="checksums" if verify else "marker")
    root = Path(ckpt_dir)
    step = parse_step(root.name)
    if step is None:
        return (
            f"{root} is not a checkpoint folder (expected a name like step000123; temporary "
            f"{TEMP_PREFIX}* folders are never loaded)"
        )
    return _complete_as_problem(root, step, files="checksums" if verify else "marker")


def quick_check_problem(ckpt_dir: StrPath | Location) -> str | None:
    """``completeness_problem`` plus: every file ``COMPLETE`` lists exists and, when the marker
    records sizes, has its recorded size. Reads no file contents, so a resume can afford it on
    every start; it catches the usual damage (a truncated or missing file) but not bit rot
    (``verify=True`` hashes every file for that)."""
    if is_remote(str(ckpt_dir)):
        return _store().problem(ckpt_dir, files="sizes")
    root = Path(ckpt_dir)
    step = parse_step(root.name)
    if step is None:
        return completeness_problem(root)
    return _complete_as_problem(root, step, files="sizes")


def marker_problem(where: object, marker: dict[str, Any] | None, step: int) -> str | None:
    """Why ``marker`` (a parsed ``COMPLETE`` of the checkpoint ``where``, None when unparsable) is
    not a valid marker of ``step``; the same words for a folder and for a store."""
    if marker is None:
        return f"checkpoint {where}: the {COMPLETE} marker is not a JSON object"
    if not is_count(marker.get("step")) or marker["step"] != step:
        return f"checkpoint {where}: the {COMPLETE} marker names step {marker.get('step')!r}, not {step}"
    if not isinstance(marker.get("files"), dict):
        return f"checkpoint {where}: the {COMPLETE} marker has no file list"
    return None


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
    why = marker_problem(root, marker, step)
    if why is not None or files == "marker":
        return why
    listed = marker["files"]
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
    path: Path | Location
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


def checkpoint_info(path: StrPath | Location) -> CheckpointInfo:
    """Scan one final step folder (raises ValueError if its name is not ``stepNNNNNN``)."""
    if is_remote(str(path)):
        return _store().checkpoint_info(path)
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


def list_checkpoints(run_dir: StrPath | Location) -> list[CheckpointInfo]:
    """Every final step folder (complete or not), sorted by step; [] if there are none."""
    if is_remote(str(run_dir)):
        return _store().list_checkpoints(run_dir)
    infos = []
    for _, path in _step_dirs(run_dir):
        try:
            infos.append(checkpoint_info(path))
        except FileNotFoundError:  # removed concurrently (another rotation)
            continue
    return infos


def list_temp_dirs(run_dir: StrPath | Location) -> list[Path]:
    """Folders under the checkpoints dir whose name starts with ``.tmp-``, sorted by name (none on
    an object store: an upload in progress is an incomplete step folder there)."""
    if is_remote(str(run_dir)):
        return []
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


def read_latest_pointer(run_dir: StrPath | Location) -> str | None:
    """The folder name the ``latest`` file holds (a hint only), or None."""
    if is_remote(str(run_dir)):
        return _store().read_latest_pointer(run_dir)
    try:
        text = (checkpoints_dir(run_dir) / LATEST).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def latest_complete(run_dir: StrPath | Location) -> CheckpointInfo | None:
    """The newest complete checkpoint by step, found by scanning (``latest`` is not trusted)."""
    if is_remote(str(run_dir)):
        return _store().latest_complete(run_dir)
    for _, path in reversed(_step_dirs(run_dir)):
        if is_complete(path):
            try:
                return checkpoint_info(path)
            except FileNotFoundError:
                continue
    return None


def complete_checkpoints(run_dir: StrPath | Location) -> list[Path] | list[Location]:
    """Every step folder with a valid ``COMPLETE`` marker, newest first (what ``--resume latest``
    tries, in order)."""
    if is_remote(str(run_dir)):
        return _store().complete_checkpoints(run_dir)
    return [path for _, path in reversed(_step_dirs(run_dir)) if is_complete(path)]


def resolve_checkpoint(run_dir: StrPath | Location, spec: str) -> Path | Location | None:
    """Resolve a ``--resume``/``--checkpoint`` argument to a complete checkpoint folder.

    ``"latest"`` → the newest complete checkpoint, or None when there is none. Anything else is a
    path, absolute or relative to ``RUN_DIR/checkpoints``, that must be a complete checkpoint;
    otherwise ValueError with a message naming the path and what is wrong with it.
    """
    if is_remote(str(run_dir)) or is_remote(spec):
        return _store().resolve_checkpoint(run_dir, spec)
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


def write_latest_pointer(run_dir: StrPath | Location, name: str | None) -> None:
    """Atomically set ``latest`` to ``name``; None removes it."""
    if is_remote(str(run_dir)):
        _store().write_latest_pointer(run_dir, name)
        return
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
