"""The checkpoint layout contract (DESIGN.md contract 3) on an object store, where nothing can be
renamed.

The names are those of the local layout (``olmo.checkpoints.paths``), under a run directory
URI such as ``s3://bucket/runs/olmo-1b``::

    RUN/checkpoints/stepNNNNNN/...        the checkpoint's files, uploaded first (in parallel)
    RUN/checkpoints/stepNNNNNN/COMPLETE   uploaded last: the same JSON as on disk, with the
                                          sha256 and size of every object
    RUN/checkpoints/latest                then: the name of the newest complete checkpoint (a hint)
    RUN/checkpoints/stepNNNNNN/EVALUATED  written by the eval worker
    RUN/eval/stepNNNNNN.json              eval results

Rules, since an upload or a delete can die at any object:

- **Readers trust only COMPLETE.** A step folder is complete when its ``COMPLETE`` parses, names
  its step, and every object it lists is there with the recorded size (sha256 on ``verify``).
- **Uploads**: every file first, then ``COMPLETE``, then ``latest``. A checkpoint is uploaded from
  a complete local checkpoint, whose ``COMPLETE`` is the one uploaded. Uploading a step that is
  already complete with the same files is a no-op; with other files, its ``COMPLETE`` is deleted
  before anything is overwritten.
- **Deletes**: ``COMPLETE`` (and ``EVALUATED``) first, the rest after, so a half-deleted
  checkpoint is never taken for a complete one.
- **Abandoned uploads**: a step folder without ``COMPLETE`` is incomplete; once nothing in it has
  changed for the retention grace period (an hour by default) rotation deletes it
  (``olmo.checkpoints.retention``: the same rule as for local temporary folders).

A checkpoint is loaded from a local copy (``download_checkpoint``: into a local checkpoints
folder, every file's sha256 checked, ``COMPLETE`` written last, then renamed into place, so a
copy is either whole or absent). Standard library and fsspec only (no torch).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmo.checkpoints.folders import remove_tree
from olmo.checkpoints.paths import (
    CHECKPOINTS_DIR,
    COMPLETE,
    EVALUATED,
    LATEST,
    TEMP_PREFIX,
    is_count,
    parse_step,
    step_dir_name,
)
from olmo.checkpoints.scan import marker_problem
from olmo.json_records import now_iso
from olmo.storage import Location, StrPath, location, modified_time

_HASH_CHUNK = 8 << 20


def checkpoints_location(run_dir: StrPath | Location) -> Location:
    """``RUN/checkpoints`` on the store."""
    return location(run_dir) / CHECKPOINTS_DIR


def step_location(run_dir: StrPath | Location, step: int) -> Location:
    """``RUN/checkpoints/stepNNNNNN`` on the store."""
    return checkpoints_location(run_dir) / step_dir_name(step)


def _json_object(loc: Location) -> dict[str, Any] | None:
    try:
        value = json.loads(loc.read_bytes())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_complete(ckpt: StrPath | Location) -> dict[str, Any] | None:
    """The ``COMPLETE`` marker's content; None if it is missing or not a JSON object."""
    return _json_object(location(ckpt) / COMPLETE)


def read_evaluated(ckpt: StrPath | Location) -> dict[str, Any] | None:
    """The ``EVALUATED`` marker's content; None if it is missing or not a JSON object."""
    return _json_object(location(ckpt) / EVALUATED)


def mark_evaluated(ckpt: StrPath | Location, info: dict[str, Any]) -> None:
    """Write the ``EVALUATED`` marker: ``info`` plus ``created``. The checkpoint must exist."""
    ckpt = location(ckpt)
    if read_complete(ckpt) is None:
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist (no {COMPLETE} marker)")
    content = {**info, "created": now_iso()}
    (ckpt / EVALUATED).write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")


def problem(
    ckpt: StrPath | Location,
    *,
    files: str = "sizes",
    listing: dict[str, dict[str, Any]] | None = None,
) -> str | None:
    """None when ``ckpt`` is a complete checkpoint; else why not, in words.

    ``files``: "marker" checks only ``COMPLETE``, "sizes" also that every listed object exists
    with its recorded size (one listing), "checksums" also every object's sha256 (reads them).
    """
    ckpt = location(ckpt)
    step = parse_step(ckpt.name)
    if step is None:
        return f"{ckpt} is not a checkpoint folder (expected a name like step000123)"
    marker = read_complete(ckpt)
    if marker is None and not (ckpt / COMPLETE).exists():
        return f"checkpoint {ckpt} has no {COMPLETE} marker: it is incomplete or still uploading"
    why = marker_problem(ckpt, marker, step)
    if why is not None or files == "marker":
        return why
    return _objects_problem(ckpt, marker, ckpt.files() if listing is None else listing, files)


def _objects_problem(
    ckpt: Location, marker: dict[str, Any], listing: dict[str, dict[str, Any]], files: str
) -> str | None:
    """Why the objects under ``ckpt`` are not those ``marker`` (a ``COMPLETE``) lists."""
    sizes = marker.get("sizes") if isinstance(marker.get("sizes"), dict) else {}
    for rel, expected in sorted(marker["files"].items()):
        if rel not in listing:
            return f"checkpoint {ckpt}: {rel} (listed in {COMPLETE}) is missing"
        size = int(listing[rel].get("size", -1))
        if is_count(sizes.get(rel)) and size != sizes[rel]:
            return f"checkpoint {ckpt}: {rel} has {size} bytes, {COMPLETE} recorded {sizes[rel]}"
        if files == "checksums" and _sha256(ckpt / rel) != expected:
            return (
                f"checkpoint {ckpt}: sha256 of {rel} does not match {COMPLETE} (the object was "
                "modified or corrupted after the checkpoint was written)"
            )
    return None


def _sha256(loc: Location) -> str:
    digest = hashlib.sha256()
    with loc.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_info(ckpt: StrPath | Location):  # -> layout.CheckpointInfo
    """Scan one step folder on the store (one listing and one read of ``COMPLETE``)."""
    from olmo.checkpoints.layout import CheckpointInfo

    ckpt = location(ckpt)
    step = parse_step(ckpt.name)
    if step is None:
        raise ValueError(f"{ckpt} is not a checkpoint folder (expected a name like step000123)")
    listing = ckpt.files()
    if not listing:
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist")
    complete = problem(ckpt, listing=listing) is None
    marker = read_complete(ckpt) if complete else None
    tokens = marker.get("tokens") if marker and is_count(marker.get("tokens")) else None
    times = [t for info in listing.values() if (t := modified_time(info)) is not None]
    return CheckpointInfo(
        step=step,
        path=ckpt,
        complete=complete,
        evaluated=EVALUATED in listing,
        tokens=tokens,
        size_bytes=sum(int(info.get("size", 0)) for info in listing.values()),
        mtime=max(times, default=0.0),
    )


def step_locations(run_dir: StrPath | Location) -> list[tuple[int, Location]]:
    """(step, location) of every step folder on the store, sorted by step."""
    root = checkpoints_location(run_dir)
    found = []
    for name, is_dir in root.children():
        step = parse_step(name)
        if step is not None and is_dir:
            found.append((step, root / name))
    return sorted(found, key=lambda item: item[0])


def list_checkpoints(run_dir: StrPath | Location) -> list:  # list[CheckpointInfo]
    """Every step folder (complete or not), sorted by step; [] if there are none."""
    infos = []
    for _, ckpt in step_locations(run_dir):
        try:
            infos.append(checkpoint_info(ckpt))
        except FileNotFoundError:  # deleted concurrently
            continue
    return infos


def complete_checkpoints(run_dir: StrPath | Location) -> list[Location]:
    """Every complete step folder, newest first."""
    return [ckpt for _, ckpt in reversed(step_locations(run_dir)) if problem(ckpt) is None]


def latest_complete(run_dir: StrPath | Location):  # -> CheckpointInfo | None
    """The newest complete checkpoint by step, found by listing (``latest`` is not trusted)."""
    for _, ckpt in reversed(step_locations(run_dir)):
        if problem(ckpt) is None:
            try:
                return checkpoint_info(ckpt)
            except FileNotFoundError:
                continue
    return None


def resolve_checkpoint(run_dir: StrPath | Location, spec: str) -> Location | None:
    """``"latest"`` → the newest complete checkpoint (None when there is none); a step folder
    name or a full URI → that checkpoint, which must be complete (ValueError otherwise)."""
    if spec == LATEST:
        info = latest_complete(run_dir)
        return None if info is None else info.path
    if not spec:
        raise ValueError("empty checkpoint spec: give 'latest' or a checkpoint folder")
    ckpt = location(spec) if "://" in spec else checkpoints_location(run_dir) / spec
    why = problem(ckpt)
    if why is not None:
        raise ValueError(f"{why}; only complete checkpoints can be loaded")
    return ckpt


def read_latest_pointer(run_dir: StrPath | Location) -> str | None:
    """The folder name ``latest`` holds (a hint only), or None."""
    try:
        text = (checkpoints_location(run_dir) / LATEST).read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text or None


def write_latest_pointer(run_dir: StrPath | Location, name: str | None) -> None:
    """Set ``latest`` to ``name``; None removes it."""
    pointer = checkpoints_location(run_dir) / LATEST
    if name is None:
        pointer.remove()
        return
    if parse_step(name) is None:
        raise ValueError(f"latest must name a step folder, not {name!r}")
    pointer.write_text(name + "\n")


def advance_latest(run_dir: StrPath | Location, step: int) -> None:
    """Point ``latest`` at ``step`` unless it names a complete checkpoint at least as new."""
    current = read_latest_pointer(run_dir)
    current_step = parse_step(current) if current else None
    newer = current_step is not None and current_step >= step
    if newer and problem(checkpoints_location(run_dir) / current, files="marker") is None:
        return  # never move latest backwards to an older checkpoint
    write_latest_pointer(run_dir, step_dir_name(step))


def delete_checkpoint(ckpt: StrPath | Location) -> None:
    """Delete a step folder: ``COMPLETE`` and ``EVALUATED`` first, then everything else, so a
    delete that dies half-way leaves an incomplete folder (collected later), never a checkpoint
    that looks complete with objects missing."""
    ckpt = location(ckpt)
    (ckpt / COMPLETE).remove()
    (ckpt / EVALUATED).remove()
    ckpt.remove()


@dataclass(frozen=True)
class UploadStats:
    """What one ``upload_checkpoint`` moved."""

    location: Location
    step: int
    files: int
    bytes: int
    seconds: float
    skipped: bool = False  # the same checkpoint was complete on the store already


def upload_checkpoint(
    local_ckpt: StrPath,
    run_dir: StrPath | Location,
    *,
    on_file: Callable[[str, int], None] | None = None,
) -> UploadStats:
    """Upload the complete local checkpoint ``local_ckpt`` (a ``stepNNNNNN`` folder) to the run
    directory ``run_dir`` on a store, by the rules of this module's docstring.

    ``on_file(relative_path, bytes)`` is called after each file (progress). Returns what was
    moved. Raises ValueError when ``local_ckpt`` is not a complete checkpoint, and whatever the
    store raises (the checkpoint is then incomplete on the store: no ``COMPLETE``).
    """
    from olmo.checkpoints import layout

    local = Path(local_ckpt)
    why = layout.quick_check_problem(local)
    if why is not None:
        raise ValueError(f"cannot upload {local}: {why}")
    marker_bytes = (local / COMPLETE).read_bytes()
    marker = json.loads(marker_bytes)
    step = int(marker["step"])
    dest = step_location(run_dir, step)
    started = time.monotonic()
    existing = read_complete(dest)
    if existing is not None and existing.get("files") == marker["files"] and problem(dest) is None:
        return UploadStats(dest, step, 0, 0, time.monotonic() - started, skipped=True)
    # Whatever lies there (a complete older save of this step, or an abandoned upload) stops
    # being complete before any of its objects is overwritten.
    delete_checkpoint(dest)
    total = 0
    for rel in sorted(marker["files"]):
        size = (local / rel).stat().st_size
        (dest / rel).upload(local / rel)
        total += size
        if on_file is not None:
            on_file(rel, size)
    why = _objects_problem(dest, marker, dest.files(), "sizes")
    if why is not None:
        raise OSError(f"upload of {local} to {dest} did not take: {why}")
    (dest / COMPLETE).write_bytes(marker_bytes)
    advance_latest(run_dir, step)
    return UploadStats(dest, step, len(marker["files"]), total, time.monotonic() - started)


def _same_copy(local: Path, marker_bytes: bytes) -> bool:
    """Whether ``local`` is already a whole local copy of the checkpoint ``marker_bytes`` names."""
    from olmo.checkpoints import layout

    marker = local / COMPLETE
    return (
        marker.is_file()
        and marker.read_bytes() == marker_bytes
        and layout.quick_check_problem(local) is None
    )


def download_checkpoint(ckpt: StrPath | Location, local_checkpoints: StrPath) -> Path:
    """A local copy of the complete checkpoint ``ckpt`` under the folder ``local_checkpoints``
    (``local_checkpoints/stepNNNNNN``), for loading. An existing complete local copy with the same
    ``COMPLETE`` is reused. Each file's sha256 is checked against ``COMPLETE``; the copy is built
    under a ``.tmp-`` name, its ``COMPLETE`` written last, then renamed into place.
    """
    from olmo.checkpoints import layout

    ckpt = location(ckpt)
    why = problem(ckpt)
    if why is not None:
        raise ValueError(why)
    marker_bytes = (ckpt / COMPLETE).read_bytes()
    marker = json.loads(marker_bytes)
    root = Path(local_checkpoints)
    final = root / ckpt.name
    if _same_copy(final, marker_bytes):
        return final
    temp = root / f"{TEMP_PREFIX}download-{ckpt.name}"
    if temp.exists():
        remove_tree(temp)
    temp.mkdir(parents=True)
    try:
        for rel, expected in sorted(marker["files"].items()):
            dest = (ckpt / rel).download(temp / rel)
            actual = layout.sha256_file(dest)
            if actual != expected:
                raise ValueError(
                    f"checkpoint {ckpt}: sha256 of {rel} is {actual}, {COMPLETE} recorded "
                    f"{expected} (the object was modified or corrupted after it was written)"
                )
    except BaseException:  # a bad object, a checkpoint rotated away mid-download, a kill
        remove_tree(temp)
        raise
    (temp / COMPLETE).write_bytes(marker_bytes)
    if final.exists() or final.is_symlink():
        remove_tree(final)
    temp.rename(final)
    return final
