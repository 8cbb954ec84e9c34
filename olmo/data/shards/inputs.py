"""``open_shards``: the inputs a trainer or an evaluation names, opened as one ``ShardSet``.

An input is a dataset folder with ``manifest.json``, or, for compatibility with the Dolma
toolkit, a folder of ``*.npy`` shards that ``dolma tokens`` wrote (no manifest, so the dtype must
be given), or a single ``.npy`` shard. A dataset folder may also be a URI on an object store
(``s3://bucket/tokens``, ``gs://...``): its shards are then read through the node's bounded local
cache (``remote``, ``cache``) or by ranged GETs (``ranges``), as ``remote_read`` says.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from olmo.data.shards.cache import DEFAULT_MAX_BYTES, ShardCache, format_bytes
from olmo.data.shards.format import MANIFEST_NAME, ShardFormatError, as_token_dtype
from olmo.data.shards.manifest import Manifest, ShardInfo, manifest_sha256, read_manifest
from olmo.data.shards.ranges import DEFAULT_BUFFER_BYTES, DEFAULT_PREFETCH_REQUESTS, RangeShardList
from olmo.data.shards.reader import ShardList, ShardSet, TokenShard
from olmo.data.shards.remote import (
    DEFAULT_PREFETCH_SHARDS,
    RemoteShardList,
    StoreShardList,
    read_remote_manifest,
)
from olmo.fileio import sha256_file
from olmo.storage import Location, is_remote, location

_HASH_CHUNK = 1 << 24  # bytes read at a time when hashing a shard
REMOTE_READ_MODES = ("auto", "cache", "range")

log = logging.getLogger(__name__)


def _check_raw(shard: TokenShard) -> TokenShard:
    if shard.num_tokens and shard.has_npy_header():
        raise ShardFormatError(
            f"{shard.path}: starts with an np.save header; token shards are raw, header-less "
            "arrays (write them with ndarray.tofile or np.memmap, not np.save)"
        )
    return shard


def _need_dtype(path: Path, what: str, dtype: np.dtype | None) -> np.dtype:
    if dtype is None:
        raise ShardFormatError(
            f"{path}: {what} has no {MANIFEST_NAME}, so its token dtype is unknown; pass "
            "dtype='uint16' (what `dolma tokens` writes for vocabularies of up to 65536 ids) "
            "or dtype='uint32' explicitly"
        )
    return dtype


def _manifest_shards(
    folder: Path | Location, manifest: Manifest, explicit: np.dtype | None
) -> list[tuple[Path | Location, ShardInfo, np.dtype]]:
    manifest_dtype = np.dtype(manifest.dtype)
    if explicit is not None and explicit != manifest_dtype:
        raise ShardFormatError(
            f"{folder}: dtype {explicit.name} was requested but the manifest says {manifest.dtype}"
        )
    return [(folder, info, manifest_dtype) for info in manifest.shards]


def open_shards(
    paths: Sequence[str | Path] | str | Path,
    dtype: Any = "auto",
    verify: bool = False,
    *,
    cache_dir: str | Path | None = None,
    cache_max_bytes: int | None = None,
    prefetch_shards: int | None = None,
    remote_read: str = "auto",
    prefetch_requests: int | None = None,
    range_buffer_bytes: int | None = None,
) -> ShardSet:
    """Open token shards for reading, in order.

    Each path is a dataset folder with ``manifest.json`` (shards in manifest order, sizes checked;
    ``verify`` also checks every shard's sha256), a folder without one (all ``*.npy`` in sorted
    name order, e.g. ``dolma tokens`` output; dtype required), or a single ``.npy`` file (dtype
    required). ``dtype="auto"`` takes it from the manifests; an explicit dtype that conflicts with a
    manifest is an error.

    A folder given as a URI (``s3://``, ``gs://``) must hold ``manifest.json``; its shards are
    downloaded on first use into the cache at ``cache_dir`` (default ``$OLMO_DATA_CACHE_DIR``,
    else ``~/.cache/olmo/shards``) holding at most ``cache_max_bytes`` (default 64 GiB), and
    ``prefetch_shards`` (default 4) at a time are fetched ahead by ``InstanceDataset.prefetch``.
    ``verify`` does not apply to them: every download is checked against the manifest's sha256.
    That is ``remote_read="cache"``; ``"range"`` reads each instance's tokens by ranged GETs
    instead (``prefetch_requests``, default 8, at a time, ahead of the data order, into an
    in-memory buffer of at most ``range_buffer_bytes``, default 256 MiB; nothing downloaded whole,
    no sha256 check: see ``remote``); ``"auto"`` (the default) takes ``cache`` when the remote
    shards fit ``cache_max_bytes``, else ``range``.
    """
    if remote_read not in REMOTE_READ_MODES:
        raise ValueError(f"remote_read must be one of {REMOTE_READ_MODES}, got {remote_read!r}")
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not paths:
        raise ValueError("open_shards: no paths given")
    explicit = None if isinstance(dtype, str) and dtype == "auto" else as_token_dtype(dtype)
    made: list[TokenShard | tuple[Path | Location, ShardInfo, np.dtype]] = []
    inputs: list[Path | Location] = []
    manifests: list[Manifest | None] = []
    hashes: list[str | None] = []
    for raw in paths:
        if is_remote(raw):
            folder = location(raw)
            inputs.append(folder)
            manifest, digest = read_remote_manifest(folder)
            made.extend(_manifest_shards(folder, manifest, explicit))
            manifests.append(manifest)
            hashes.append(digest)
            continue
        path = Path(raw)
        inputs.append(path)
        if path.is_dir() and (path / MANIFEST_NAME).is_file():
            manifest = read_manifest(path)
            made.extend(_manifest_shards(path, manifest, explicit))
            manifests.append(manifest)
            hashes.append(manifest_sha256(path))
        elif path.is_dir():
            files = sorted(p for p in path.glob("*.npy") if p.is_file())
            if not files:
                raise ShardFormatError(f"{path}: no {MANIFEST_NAME} and no *.npy shards")
            folder_dtype = _need_dtype(path, "folder", explicit)
            made.extend(_check_raw(TokenShard(file, folder_dtype)) for file in files)
            manifests.append(None)
            hashes.append(None)
        elif path.is_file():
            made.append(_check_raw(TokenShard(path, _need_dtype(path, "file", explicit))))
            manifests.append(None)
            hashes.append(None)
        else:
            raise FileNotFoundError(f"no such token shard file or folder: {path}")

    dtypes = {(item.dtype if isinstance(item, TokenShard) else item[2]).name for item in made}
    if len(dtypes) > 1:
        raise ShardFormatError(f"inputs have different dtypes ({sorted(dtypes)}): {inputs}")
    eos_ids = {m.eos_token_id for m in manifests if m is not None}
    if len(eos_ids) > 1:
        raise ShardFormatError(f"manifests disagree on eos_token_id: {sorted(eos_ids)}")
    if not made:
        raise ShardFormatError(f"no shards in {[str(p) for p in inputs]}")
    shards: ShardList
    if any(isinstance(p, Location) for p in inputs):
        max_bytes = DEFAULT_MAX_BYTES if cache_max_bytes is None else cache_max_bytes
        mode = _remote_mode(remote_read, made, inputs, max_bytes)
        if mode == "range":
            shards = RangeShardList(
                dtypes.pop(),
                prefetch_requests=(
                    DEFAULT_PREFETCH_REQUESTS if prefetch_requests is None else prefetch_requests
                ),
                buffer_bytes=(
                    DEFAULT_BUFFER_BYTES if range_buffer_bytes is None else range_buffer_bytes
                ),
            )
        else:
            shards = RemoteShardList(
                dtypes.pop(),
                ShardCache(cache_dir, max_bytes),
                prefetch_shards=(
                    DEFAULT_PREFETCH_SHARDS if prefetch_shards is None else prefetch_shards
                ),
            )
    else:
        shards = ShardList(dtypes.pop())
    for item in made:
        if isinstance(item, TokenShard):
            shards.add_shard(item)
            continue
        folder, info, _ = item
        if isinstance(folder, Location):
            assert isinstance(shards, StoreShardList)
            shards.add_remote(folder / info.path, folder / info.index, info.num_tokens, info.sha256)
            continue
        shards.add(folder / info.path, folder / info.index, info.num_tokens)
        if verify:
            shard = shards[len(shards) - 1]
            shard.check()
            if (actual := sha256_file(shard.path, _HASH_CHUNK)) != info.sha256:
                raise ShardFormatError(
                    f"{shard.path}: sha256 {actual} does not match the manifest's "
                    f"{info.sha256}; the shard was modified or corrupted"
                )
    return ShardSet(
        shards,
        eos_token_id=eos_ids.pop() if eos_ids else None,
        inputs=inputs,
        manifests=manifests,
        manifest_sha256=hashes,
    )


def _remote_mode(
    requested: str,
    made: Sequence[TokenShard | tuple[Path | Location, ShardInfo, np.dtype]],
    inputs: Sequence[Path | Location],
    cache_max_bytes: int,
) -> str:
    """``cache`` or ``range`` for the remote shards of ``made`` (``requested`` may be ``auto``);
    the choice is logged with its reason."""
    remote = [
        item[1].num_tokens * item[2].itemsize
        for item in made
        if not isinstance(item, TokenShard) and isinstance(item[0], Location)
    ]
    total = sum(remote)
    where = ", ".join(str(p) for p in inputs if isinstance(p, Location))
    size = f"{len(remote)} shards, {format_bytes(total)}"
    bound = f"data.cache_max_bytes {format_bytes(cache_max_bytes)}"
    if requested != "auto":
        log.info("token shards on %s (%s): remote_read=%s", where, size, requested)
        return requested
    mode = "cache" if total <= cache_max_bytes else "range"
    why = "fit" if mode == "cache" else "exceed"
    log.info(
        "token shards on %s (%s) %s the shard cache (%s): remote_read=auto chose %s",
        where, size, why, bound, mode,
    )  # fmt: skip
    return mode
