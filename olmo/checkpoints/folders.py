"""File-system work on checkpoint folders: listing and hashing what a checkpoint holds, its size
and age, and removing it while other processes may be removing it too.

These are the mechanics under ``olmo.checkpoints.layout`` (which decides what the files mean)
and ``olmo.checkpoints.retention``. Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

from olmo.checkpoints.paths import COMPLETE, EVALUATED, StrPath

__all__ = ["hash_and_sync", "payload_files", "remove_tree", "safe_join", "same_path", "tree_stats"]

_MARKERS = frozenset({COMPLETE, EVALUATED})
# Temporary files of our own atomic writes: ".COMPLETE.tmp-<pid>-<hex>" and the like.
_ATOMIC_TMP_RE = re.compile(r"\..+\.tmp-[0-9]+-[0-9a-f]+")
_CHUNK = 1 << 20


def tree_stats(path: StrPath) -> tuple[int, float]:
    """(total bytes of regular files, newest mtime of the folder or anything in it).

    Symlinks are not followed. Entries that vanish during the walk are skipped.
    """
    root = Path(path)
    st = root.lstat()  # FileNotFoundError if the folder itself is gone
    size, mtime = 0, st.st_mtime
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            try:
                entry = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            mtime = max(mtime, entry.st_mtime)
            if name in filenames and stat.S_ISREG(entry.st_mode):
                size += entry.st_size
    return size, mtime


def remove_tree(path: StrPath) -> None:
    """Remove a folder; already gone (or going, removed concurrently) is fine."""

    def ignore_missing(func: Any, p: str, exc: Any) -> None:
        err = exc[1] if isinstance(exc, tuple) else exc
        if not isinstance(err, FileNotFoundError):
            raise err

    path = Path(path)
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=ignore_missing)
    else:
        shutil.rmtree(path, onerror=ignore_missing)


def payload_files(root: Path) -> list[str]:
    """Relative posix paths of every file in a checkpoint except the markers."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        top = Path(dirpath) == root
        for name in sorted(filenames):
            if top and (name in _MARKERS or _ATOMIC_TMP_RE.fullmatch(name)):
                continue
            path = Path(dirpath) / name
            if path.is_file():
                out.append(path.relative_to(root).as_posix())
    return out


def hash_and_sync(path: Path) -> str:
    """Hex sha256 of a file, fsynced on the way (so a marker naming it is never durable first)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())
    return digest.hexdigest()


def safe_join(root: Path, rel: object) -> Path | None:
    """``root / rel`` for a relative path that stays inside ``root``; else None."""
    if not isinstance(rel, str) or not rel:
        return None
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts:
        return None
    return root.joinpath(*parts)


def same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
