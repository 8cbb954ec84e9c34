"""Which input files a data-prep source names: local files, folders and globs, or the same on an
object store (``s3://``, ``gs://``: listed with the store's glob through fsspec), sorted and
deduplicated; and which of them a worker of an Indexed Job reads (``shard_files``).
"""

from __future__ import annotations

import glob
import itertools
from collections.abc import Sequence
from pathlib import Path

from olmo.storage import Location, is_remote, location
from olmo_dataprep.readers import InputPath, _format_of, _is_supported


def _sort_key(path: InputPath) -> str:
    return path.as_posix() if isinstance(path, Path) else str(path)


def _remote_input_files(pattern: str) -> list[Location]:
    """The supported files a URI, a URI folder or a URI glob names (listed by the store)."""
    root = location(pattern.rstrip("/"))
    fs = root.fs
    protocol = root.protocol
    if any(ch in pattern for ch in "*?["):
        matches = [location(f"{protocol}://{m}") for m in sorted(fs.glob(root.path))]
    else:
        matches = [root]
    files: list[Location] = []
    for match in matches:
        if match.is_file():
            if match is root:
                _format_of(match)  # raises ValueError for an unsupported extension
            if _is_supported(match):
                files.append(match)
        else:
            files.extend(m for rel in match.files() if _is_supported(m := match / rel))
    return files


def iter_input_files(paths_or_globs: Sequence[str]) -> list[InputPath]:
    """Expand files, folders and glob patterns into a sorted, deduplicated list of input files.

    A folder is searched recursively and, like a glob, contributes only files with a supported
    extension (``SUPPORTED_SUFFIXES``); ``**`` in a pattern matches any depth. A file named
    directly must have a supported extension (``ValueError``). A path or pattern that yields no
    input file raises ``FileNotFoundError`` naming it. Paths are kept as given (not resolved),
    sorted by their POSIX string. A URI (``s3://bucket/prefix/*.jsonl.gz``) is listed on its
    store (fsspec's glob) the same way and comes back as a ``Location``.
    """
    if isinstance(paths_or_globs, str):
        raise TypeError("paths_or_globs must be a sequence of strings, not one string")
    if not paths_or_globs:
        raise ValueError("no input paths given")
    found: dict[str, InputPath] = {}
    for pattern in paths_or_globs:
        files: list[InputPath] = []
        if is_remote(pattern):
            files.extend(_remote_input_files(pattern))
        else:
            matches = [Path(m) for m in sorted(glob.glob(pattern, recursive=True))]
            if not any(ch in pattern for ch in "*?[") and Path(pattern).is_file():
                _format_of(Path(pattern))  # raises ValueError for an unsupported extension
            for match in matches:
                if match.is_dir():
                    files.extend(p for p in match.rglob("*") if p.is_file() and _is_supported(p))
                elif match.is_file() and _is_supported(match):
                    files.append(match)
        if not files:
            raise FileNotFoundError(f"no input files match {pattern!r}")
        found.update((_sort_key(f), f) for f in files)
    return [found[key] for key in sorted(found)]


def shard_files(files: Sequence[InputPath], worker_index: int, num_workers: int) -> list[InputPath]:
    """The files of worker ``worker_index`` out of ``num_workers``: round-robin over the sorted
    list, so every worker computes the same partition independently (Indexed Job workers pass
    their completion index). A worker may get no file when there are more workers than files.
    """
    for name, value in (("worker_index", worker_index), ("num_workers", num_workers)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, {num_workers}), got {worker_index}")
    ordered = sorted((f if isinstance(f, Location) else Path(f) for f in files), key=_sort_key)
    duplicates = {p for p, q in itertools.pairwise(ordered) if p == q}
    if duplicates:
        raise ValueError(f"duplicate input files: {sorted(str(p) for p in duplicates)}")
    return ordered[worker_index::num_workers]
