"""``manifest.json``: what a dataset folder holds (tokenizer, dtype, EOS id, every shard with its
token count and sha256, sources, pipeline), and its sha256, the dataset's identity in checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olmo.data.shards.format import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    TOKEN_DTYPES,
    ShardFormatError,
    as_token_dtype,
    check_eos,
)
from olmo.fileio import fsync_dir, write_atomic


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One finished shard, as listed in the manifest (paths relative to the dataset folder)."""

    path: str
    index: str
    num_tokens: int
    num_documents: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "shard") -> ShardInfo:
        if not isinstance(data, dict):
            raise ShardFormatError(f"{where}: expected an object, got {type(data).__name__}")
        types = {"path": str, "index": str, "num_tokens": int, "num_documents": int, "sha256": str}
        for key, kind in types.items():
            value = data.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ShardFormatError(f"{where}: {key!r} must be a {kind.__name__}, got {value!r}")
        if data["num_tokens"] < 0 or data["num_documents"] < 0:
            raise ShardFormatError(f"{where}: negative num_tokens or num_documents")
        return cls(**{key: data[key] for key in types})


@dataclass(frozen=True)
class Manifest:
    """The contents of a dataset folder's ``manifest.json``."""

    format_version: int
    dtype: str
    eos_token_id: int
    tokenizer: dict[str, Any]
    shards: list[ShardInfo]
    total_tokens: int
    total_documents: int
    sources: dict[str, Any]
    pipeline_config_hash: str | None = None
    stage_counts: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "dtype": self.dtype,
            "eos_token_id": self.eos_token_id,
            "tokenizer": self.tokenizer,
            "shards": [shard.to_dict() for shard in self.shards],
            "total_tokens": self.total_tokens,
            "total_documents": self.total_documents,
            "sources": self.sources,
            "pipeline_config_hash": self.pipeline_config_hash,
            "stage_counts": self.stage_counts,
        }


def write_manifest(
    out_dir: str | Path,
    *,
    shards: Sequence[ShardInfo],
    dtype: Any,
    eos_token_id: int,
    tokenizer: dict[str, Any],
    sources: dict[str, Any],
    pipeline_config_hash: str | None = None,
    stage_counts: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/manifest.json`` atomically and return its path."""
    token_dtype = as_token_dtype(dtype)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        dtype=token_dtype.name,
        eos_token_id=check_eos(eos_token_id, token_dtype),
        tokenizer=dict(tokenizer),
        shards=list(shards),
        total_tokens=sum(shard.num_tokens for shard in shards),
        total_documents=sum(shard.num_documents for shard in shards),
        sources=dict(sources),
        pipeline_config_hash=pipeline_config_hash,
        stage_counts=None if stage_counts is None else dict(stage_counts),
    )
    path = Path(out_dir) / MANIFEST_NAME
    text = json.dumps(manifest.to_dict(), indent=2, allow_nan=False) + "\n"
    write_atomic(path, text.encode("utf-8"))
    fsync_dir(path.parent)
    return path


def _manifest_path(folder: str | Path) -> Path:
    path = Path(folder)
    return path if path.name == MANIFEST_NAME and not path.is_dir() else path / MANIFEST_NAME


def read_manifest(folder: str | Path) -> Manifest:
    """Read and check ``folder/manifest.json`` (a path to the file itself also works)."""
    path = _manifest_path(folder)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no {MANIFEST_NAME} at {path}") from None
    return parse_manifest(data, where=str(path))


def parse_manifest(raw: bytes, *, where: str) -> Manifest:
    """Check and parse the bytes of a ``manifest.json`` (``where`` names it in errors: a path or
    the URI of a manifest on an object store)."""
    path = where
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardFormatError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ShardFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ShardFormatError(
            f"{path}: unknown format_version {version!r} (this reader knows {FORMAT_VERSION})"
        )
    required = {
        "dtype": str,
        "eos_token_id": int,
        "tokenizer": dict,
        "shards": list,
        "total_tokens": int,
        "total_documents": int,
        "sources": dict,
    }
    for key, kind in required.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ShardFormatError(
                f"{path}: {key!r} must be a {kind.__name__}, got {data.get(key)!r}"
            )
    for key, kind in (("pipeline_config_hash", str), ("stage_counts", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise ShardFormatError(f"{path}: {key!r} must be a {kind.__name__} or null")
    if data["dtype"] not in TOKEN_DTYPES:
        raise ShardFormatError(
            f"{path}: dtype must be one of {', '.join(TOKEN_DTYPES)}, got {data['dtype']!r}"
        )
    try:
        check_eos(data["eos_token_id"], np.dtype(data["dtype"]))
    except ValueError as e:
        raise ShardFormatError(f"{path}: {e}") from None
    shards = [
        ShardInfo.from_dict(item, where=f"{path}: shards[{i}]")
        for i, item in enumerate(data["shards"])
    ]
    for what, total in (("num_tokens", "total_tokens"), ("num_documents", "total_documents")):
        if sum(getattr(shard, what) for shard in shards) != data[total]:
            raise ShardFormatError(f"{path}: {total} does not equal the sum of the shards' {what}")
    return Manifest(
        format_version=version,
        dtype=data["dtype"],
        eos_token_id=data["eos_token_id"],
        tokenizer=data["tokenizer"],
        shards=shards,
        total_tokens=data["total_tokens"],
        total_documents=data["total_documents"],
        sources=data["sources"],
        pipeline_config_hash=data.get("pipeline_config_hash"),
        stage_counts=data.get("stage_counts"),
    )


def manifest_sha256(folder: str | Path) -> str:
    """sha256 of the manifest file's bytes: the dataset's identity, stored in checkpoints."""
    path = _manifest_path(folder)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise FileNotFoundError(f"no {MANIFEST_NAME} at {path}") from None
