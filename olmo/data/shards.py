"""The token-shard format, defined once: data-prep writes it, the trainer and eval read it.

A dataset folder holds shards ``part-00000.npy``, ``part-00001.npy``, ...: each a raw, header-less
array of token ids (what ``np.memmap`` and ``ndarray.tofile`` read and write, as OLMo and the Dolma
toolkit do; *not* ``np.save`` format), with EOS appended to every document. Next to each shard a
``.csv.gz`` index has one ``start,end,id,src,loc`` row per document (token offsets within the
shard, end exclusive and including the EOS; no header row, as Dolma writes it). ``manifest.json``
names the tokenizer, dtype, EOS id, every shard with its token count and sha256, the sources and
the pipeline that produced them; its own sha256 identifies the dataset in checkpoints.

Folders written by the Dolma toolkit's ``dolma tokens`` have no manifest; they are read unchanged
when the dtype is given explicitly. Files appear under their final names only once complete.

This module must not import torch: the data-prep image has none.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olmo.fileio import fsync_dir, sha256_file, write_atomic

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "DocumentSpan",
    "Manifest",
    "MissingIndexError",
    "ShardFormatError",
    "ShardInfo",
    "ShardSet",
    "ShardWriter",
    "TokenShard",
    "dtype_for_vocab",
    "manifest_sha256",
    "open_shards",
    "read_manifest",
    "write_manifest",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TOKEN_DTYPES = ("uint16", "uint32")
_NPY_MAGIC = b"\x93NUMPY"
_HASH_CHUNK = 1 << 24  # bytes read at a time when hashing a shard


class ShardFormatError(ValueError):
    """Shards or a manifest that do not follow the format (message names the file)."""


class MissingIndexError(FileNotFoundError):
    """A shard has no ``.csv.gz`` document index, so document information is unavailable."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """The smallest token dtype holding every id below ``vocab_size``: uint16 up to 65536 ids."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    if vocab_size <= 1 << 32:
        return np.dtype(np.uint32)
    raise ValueError(f"vocab_size {vocab_size} does not fit uint32 token ids")


def _token_dtype(dtype: Any) -> np.dtype:
    """Normalise a token dtype (``"uint16"``, ``np.uint32``, ...); only uint16/uint32 are valid."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in TOKEN_DTYPES:
        raise ValueError(f"token dtype must be one of {', '.join(TOKEN_DTYPES)}, got {dtype!r}")
    return resolved.newbyteorder("<") if resolved.byteorder == ">" else resolved


def _check_eos(eos_token_id: int, dtype: np.dtype) -> int:
    if isinstance(eos_token_id, bool) or not isinstance(eos_token_id, int | np.integer):
        raise ValueError(f"eos_token_id must be an integer, got {eos_token_id!r}")
    if not 0 <= eos_token_id <= np.iinfo(dtype).max:
        raise ValueError(
            f"eos_token_id {eos_token_id} does not fit {dtype.name} (ids 0..{np.iinfo(dtype).max})"
        )
    return int(eos_token_id)


# ----------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
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


class ShardWriter:
    """Append documents (token ids) to numbered shards in ``out_dir``; EOS follows every document.

    Use as a context manager, or call :meth:`close`, which returns the finished shards. A shard is
    written under a hidden temporary name and renamed when finished, so a crash never leaves a
    partial file under a final name; leaving the ``with`` block by an exception discards the shard
    in progress (finished shards stay).
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        dtype: Any,
        eos_token_id: int,
        max_tokens_per_shard: int = 1 << 28,
        prefix: str = "part",
    ) -> None:
        self.out_dir = Path(out_dir)
        self.dtype = _token_dtype(dtype)
        self.eos_token_id = _check_eos(eos_token_id, self.dtype)
        if max_tokens_per_shard < 1:
            raise ValueError(f"max_tokens_per_shard must be positive, got {max_tokens_per_shard}")
        if not prefix or "/" in prefix or prefix.startswith("."):
            raise ValueError(f"prefix must be a plain, non-hidden file name part, got {prefix!r}")
        self.max_tokens_per_shard = int(max_tokens_per_shard)
        self.prefix = prefix
        self.flush_tokens = 1 << 22  # buffered tokens per write to the temporary file
        self._max_id = int(np.iinfo(self.dtype).max)
        self._shards: list[ShardInfo] = []
        self._closed = False
        # The shard in progress.
        self._file: io.BufferedWriter | None = None
        self._tmp_path: Path | None = None
        self._digest = hashlib.sha256()
        self._chunks: list[np.ndarray] = []
        self._buffered = 0
        self._shard_tokens = 0
        self._rows: list[tuple[int, int, str, str, str]] = []
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def shards(self) -> list[ShardInfo]:
        """Shards finished so far."""
        return list(self._shards)

    def _name(self, index: int) -> str:
        return f"{self.prefix}-{index:05d}"

    def add_document(
        self, tokens: Sequence[int] | np.ndarray, *, doc_id: str, source: str, loc: str = ""
    ) -> None:
        """Append one document's token ids (EOS is added here, not by the caller)."""
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        array = np.asarray(tokens)
        if array.ndim != 1:
            raise ValueError(f"document {doc_id!r}: tokens must be 1-D, got shape {array.shape}")
        if array.size:
            if array.dtype.kind not in "iu":
                raise ValueError(
                    f"document {doc_id!r}: token ids must be integers, got dtype {array.dtype}"
                )
            low, high = array.min(), array.max()
            if low < 0 or high > self._max_id:
                bad = int(low) if low < 0 else int(high)
                raise ValueError(
                    f"document {doc_id!r}: token id {bad} is outside the range of "
                    f"{self.dtype.name} (0..{self._max_id})"
                )
        length = array.size + 1
        if self._shard_tokens and self._shard_tokens + length > self.max_tokens_per_shard:
            self._finish_shard()
        if self._file is None:
            self._start_shard()
        chunk = np.empty(length, dtype=self.dtype)
        chunk[:-1] = array
        chunk[-1] = self.eos_token_id
        self._chunks.append(chunk)
        self._buffered += length
        start = self._shard_tokens
        self._shard_tokens += length
        self._rows.append((start, self._shard_tokens, str(doc_id), str(source), str(loc)))
        if self._buffered >= self.flush_tokens:
            self._flush()

    def _start_shard(self) -> None:
        name = self._name(len(self._shards))
        self._tmp_path = self.out_dir / f".{name}.npy.tmp"
        self._file = open(self._tmp_path, "wb")  # noqa: SIM115 (closed in _finish_shard/abort)
        self._digest = hashlib.sha256()
        self._shard_tokens = 0
        self._rows = []

    def _flush(self) -> None:
        if not self._chunks:
            return
        assert self._file is not None
        data = self._chunks[0] if len(self._chunks) == 1 else np.concatenate(self._chunks)
        self._digest.update(data)
        self._file.write(data.data)
        self._chunks = []
        self._buffered = 0

    def _finish_shard(self) -> None:
        assert self._file is not None and self._tmp_path is not None
        self._flush()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

        name = self._name(len(self._shards))
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(self._rows)
        index_tmp = self.out_dir / f".{name}.csv.gz.tmp"
        with open(index_tmp, "wb") as f:
            f.write(gzip.compress(text.getvalue().encode("utf-8"), mtime=0))
            f.flush()
            os.fsync(f.fileno())
        # Index first: a reader listing *.npy never sees a shard without its index.
        os.replace(index_tmp, self.out_dir / f"{name}.csv.gz")
        os.replace(self._tmp_path, self.out_dir / f"{name}.npy")
        fsync_dir(self.out_dir)
        self._tmp_path = None
        self._shards.append(
            ShardInfo(
                path=f"{name}.npy",
                index=f"{name}.csv.gz",
                num_tokens=self._shard_tokens,
                num_documents=len(self._rows),
                sha256=self._digest.hexdigest(),
            )
        )
        self._rows = []
        self._shard_tokens = 0

    def close(self) -> list[ShardInfo]:
        """Finish the shard in progress and return every shard written, in order."""
        if not self._closed:
            if self._file is not None:
                self._finish_shard()
            self._closed = True
        return list(self._shards)

    def abort(self) -> None:
        """Discard the shard in progress (its temporary file is removed); finished shards stay."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp_path is not None:
            self._tmp_path.unlink(missing_ok=True)
            self._tmp_path = None
        self._chunks, self._rows = [], []
        self._closed = True


# ----------------------------------------------------------------------------------------------
# Manifest


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
    token_dtype = _token_dtype(dtype)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        dtype=token_dtype.name,
        eos_token_id=_check_eos(eos_token_id, token_dtype),
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
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"no {MANIFEST_NAME} at {path}") from None
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
        _check_eos(data["eos_token_id"], np.dtype(data["dtype"]))
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


# ----------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True, slots=True)
class DocumentSpan:
    """One row of a shard's index: the document's tokens are ``shard[start:end]`` (EOS included)."""

    start: int
    end: int
    id: str
    src: str
    loc: str


class TokenShard:
    """One shard: its tokens as a read-only memmap and, when present, its document index.

    Both are opened lazily (the memmap holds a file descriptor; the index takes time to parse).
    """

    def __init__(
        self,
        path: str | Path,
        dtype: Any,
        *,
        index_path: str | Path | None = None,
        expected_tokens: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.dtype = _token_dtype(dtype)
        self.index_path = (
            Path(index_path) if index_path is not None else self.path.with_suffix(".csv.gz")
        )
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"token shard not found: {self.path}") from None
        if size % self.dtype.itemsize:
            raise ShardFormatError(
                f"{self.path}: size {size} bytes is not a multiple of the {self.dtype.name} "
                f"item size ({self.dtype.itemsize}); wrong dtype or a truncated file"
            )
        self.num_tokens = size // self.dtype.itemsize
        if expected_tokens is not None and expected_tokens != self.num_tokens:
            raise ShardFormatError(
                f"{self.path}: has {self.num_tokens} {self.dtype.name} tokens ({size} bytes) "
                f"but the manifest says {expected_tokens}"
            )
        self._tokens: np.ndarray | None = None
        self._array: np.ndarray | None = None
        self._index: tuple[np.ndarray, np.ndarray, list[str], list[str], list[str]] | None = None

    def __repr__(self) -> str:
        return f"TokenShard({str(self.path)!r}, {self.dtype.name}, num_tokens={self.num_tokens})"

    def __getstate__(self) -> dict[str, Any]:
        # Pickling an np.memmap copies its data: send the path, reopen lazily on the other side.
        return {**self.__dict__, "_tokens": None, "_array": None}

    def __len__(self) -> int:
        return self.num_tokens

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def tokens(self) -> np.ndarray:
        """The token ids as a read-only ``np.memmap`` (an empty array for an empty shard)."""
        if self._tokens is None:
            if self.num_tokens == 0:
                self._tokens = np.empty(0, dtype=self.dtype)
            else:
                self._tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        return self._tokens

    @property
    def array(self) -> np.ndarray:
        """The same tokens as a plain ndarray view: slicing it skips np.memmap's overhead."""
        if self._array is None:
            self._array = self.tokens.view(np.ndarray)
        return self._array

    def has_npy_header(self) -> bool:
        """Whether the file starts with an ``np.save`` header (it then is not a raw shard)."""
        with open(self.path, "rb") as f:
            head = f.read(10)
        return head[:6] == _NPY_MAGIC and head[6:7] in (b"\x01", b"\x02", b"\x03")

    @property
    def has_index(self) -> bool:
        return self._index is not None or self.index_path.is_file()

    def _load_index(self) -> tuple[np.ndarray, np.ndarray, list[str], list[str], list[str]]:
        if self._index is not None:
            return self._index
        starts: list[int] = []
        ends: list[int] = []
        ids: list[str] = []
        srcs: list[str] = []
        locs: list[str] = []
        try:
            with gzip.open(self.index_path, "rt", encoding="utf-8", newline="") as f:
                for line, row in enumerate(csv.reader(f), start=1):
                    if len(row) != 5:
                        raise ShardFormatError(
                            f"{self.index_path}:{line}: expected 5 columns "
                            f"start,end,id,src,loc, got {len(row)}"
                        )
                    try:
                        starts.append(int(row[0]))
                        ends.append(int(row[1]))
                    except ValueError:
                        raise ShardFormatError(
                            f"{self.index_path}:{line}: start/end are not integers: {row[:2]}"
                        ) from None
                    ids.append(row[2])
                    srcs.append(row[3])
                    locs.append(row[4])
        except FileNotFoundError:
            raise MissingIndexError(
                f"{self.path}: no document index ({self.index_path.name} is missing), "
                "so document ids and spans are unavailable for this shard"
            ) from None
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
            raise ShardFormatError(f"{self.index_path}: unreadable index: {e}") from None
        start_array = np.asarray(starts, dtype=np.int64)
        end_array = np.asarray(ends, dtype=np.int64)
        if len(starts) and (
            start_array[0] < 0
            or end_array[-1] > self.num_tokens
            or np.any(end_array <= start_array)
            or np.any(start_array[1:] < end_array[:-1])
        ):
            raise ShardFormatError(
                f"{self.index_path}: document spans must be non-empty, in order, "
                f"non-overlapping and within the shard's {self.num_tokens} tokens"
            )
        self._index = (start_array, end_array, ids, srcs, locs)
        return self._index

    @property
    def starts(self) -> np.ndarray:
        return self._load_index()[0]

    @property
    def ends(self) -> np.ndarray:
        return self._load_index()[1]

    @property
    def ids(self) -> list[str]:
        return self._load_index()[2]

    @property
    def srcs(self) -> list[str]:
        return self._load_index()[3]

    @property
    def locs(self) -> list[str]:
        return self._load_index()[4]

    @property
    def num_documents(self) -> int:
        return len(self._load_index()[0])

    def document(self, i: int) -> DocumentSpan:
        starts, ends, ids, srcs, locs = self._load_index()
        return DocumentSpan(int(starts[i]), int(ends[i]), ids[i], srcs[i], locs[i])

    def documents(self) -> Iterator[DocumentSpan]:
        """Every document in the shard, in order."""
        for i in range(self.num_documents):
            yield self.document(i)

    def documents_overlapping(self, start: int, end: int) -> list[DocumentSpan]:
        """The documents with at least one token in ``[start, end)``, in order."""
        starts, ends, *_ = self._load_index()
        first = int(np.searchsorted(ends, start, side="right"))
        last = int(np.searchsorted(starts, end, side="left"))
        return [self.document(i) for i in range(first, last)]


class ShardSet:
    """Shards in a fixed order, read as one concatenated token sequence."""

    def __init__(
        self,
        shards: Iterable[TokenShard],
        *,
        eos_token_id: int | None = None,
        inputs: Sequence[Path] = (),
        manifests: Sequence[Manifest | None] = (),
        manifest_sha256: Sequence[str | None] = (),
    ) -> None:
        self.shards: tuple[TokenShard, ...] = tuple(shards)
        if not self.shards:
            raise ValueError("a ShardSet needs at least one shard")
        dtypes = {shard.dtype.name for shard in self.shards}
        if len(dtypes) != 1:
            raise ShardFormatError(f"shards have different dtypes: {sorted(dtypes)}")
        self.dtype = self.shards[0].dtype
        self.eos_token_id = eos_token_id
        self.inputs: tuple[Path, ...] = tuple(inputs)
        """The paths the set was opened from."""
        self.manifests: tuple[Manifest | None, ...] = tuple(manifests)
        """Per input: its manifest, or None for manifest-less input."""
        self.manifest_sha256: tuple[str | None, ...] = tuple(manifest_sha256)
        """Per input: sha256 of its manifest file, or None for manifest-less input."""
        sizes = np.array([shard.num_tokens for shard in self.shards], dtype=np.int64)
        self.sizes = sizes
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        """offsets[i] is the global offset of shard i's first token; offsets[-1] the total."""
        self.total_tokens = int(self.offsets[-1])

    def __len__(self) -> int:
        return len(self.shards)

    def __iter__(self) -> Iterator[TokenShard]:
        return iter(self.shards)

    def __getitem__(self, i: int) -> TokenShard:
        return self.shards[i]

    def __repr__(self) -> str:
        return f"ShardSet({len(self.shards)} shards, {self.total_tokens} {self.dtype.name} tokens)"

    def locate(self, offset: int) -> tuple[int, int]:
        """``(shard_index, offset_in_shard)`` of a global token offset (empty shards skipped)."""
        if not 0 <= offset < self.total_tokens:
            raise IndexError(f"token offset {offset} out of range [0, {self.total_tokens})")
        shard = int(np.searchsorted(self.offsets, offset, side="right")) - 1
        return shard, int(offset - self.offsets[shard])

    def locate_many(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`locate` for in-range offsets (the caller checks the range)."""
        shard = np.searchsorted(self.offsets, offsets, side="right") - 1
        return shard, offsets - self.offsets[shard]

    def read(self, start: int, end: int, out: np.ndarray | None = None) -> np.ndarray:
        """Tokens ``[start, end)`` of the concatenation (may span shards), into ``out`` if given."""
        if not 0 <= start <= end <= self.total_tokens:
            raise IndexError(f"token range [{start}, {end}) out of [0, {self.total_tokens})")
        if out is None:
            out = np.empty(end - start, dtype=self.dtype)
        elif len(out) != end - start:
            raise ValueError(f"out has length {len(out)}, expected {end - start}")
        filled, pos = 0, start
        while pos < end:
            index, local = self.locate(pos)
            array = self.shards[index].array
            take = min(end - pos, len(array) - local)
            out[filled : filled + take] = array[local : local + take]
            filled += take
            pos += take
        return out


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


def open_shards(
    paths: Sequence[str | Path] | str | Path,
    dtype: Any = "auto",
    verify: bool = False,
) -> ShardSet:
    """Open token shards for reading, in order.

    Each path is a dataset folder with ``manifest.json`` (shards in manifest order, sizes checked;
    ``verify`` also checks every shard's sha256), a folder without one (all ``*.npy`` in sorted
    name order, e.g. ``dolma tokens`` output; dtype required), or a single ``.npy`` file (dtype
    required). ``dtype="auto"`` takes it from the manifests; an explicit dtype that conflicts with a
    manifest is an error.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not paths:
        raise ValueError("open_shards: no paths given")
    explicit = None if isinstance(dtype, str) and dtype == "auto" else _token_dtype(dtype)
    shards: list[TokenShard] = []
    inputs: list[Path] = []
    manifests: list[Manifest | None] = []
    hashes: list[str | None] = []
    for raw in paths:
        path = Path(raw)
        inputs.append(path)
        if path.is_dir() and (path / MANIFEST_NAME).is_file():
            manifest = read_manifest(path)
            manifest_dtype = np.dtype(manifest.dtype)
            if explicit is not None and explicit != manifest_dtype:
                raise ShardFormatError(
                    f"{path}: dtype {explicit.name} was requested but the manifest says "
                    f"{manifest.dtype}"
                )
            for info in manifest.shards:
                shard = TokenShard(
                    path / info.path,
                    manifest_dtype,
                    index_path=path / info.index,
                    expected_tokens=info.num_tokens,
                )
                if verify and (actual := sha256_file(shard.path, _HASH_CHUNK)) != info.sha256:
                    raise ShardFormatError(
                        f"{shard.path}: sha256 {actual} does not match the manifest's "
                        f"{info.sha256}; the shard was modified or corrupted"
                    )
                shards.append(shard)
            manifests.append(manifest)
            hashes.append(manifest_sha256(path))
        elif path.is_dir():
            files = sorted(p for p in path.glob("*.npy") if p.is_file())
            if not files:
                raise ShardFormatError(f"{path}: no {MANIFEST_NAME} and no *.npy shards")
            folder_dtype = _need_dtype(path, "folder", explicit)
            shards.extend(_check_raw(TokenShard(file, folder_dtype)) for file in files)
            manifests.append(None)
            hashes.append(None)
        elif path.is_file():
            shards.append(_check_raw(TokenShard(path, _need_dtype(path, "file", explicit))))
            manifests.append(None)
            hashes.append(None)
        else:
            raise FileNotFoundError(f"no such token shard file or folder: {path}")

    dtypes = {shard.dtype.name for shard in shards}
    if len(dtypes) > 1:
        raise ShardFormatError(f"inputs have different dtypes ({sorted(dtypes)}): {inputs}")
    eos_ids = {m.eos_token_id for m in manifests if m is not None}
    if len(eos_ids) > 1:
        raise ShardFormatError(f"manifests disagree on eos_token_id: {sorted(eos_ids)}")
    if not shards:
        raise ShardFormatError(f"no shards in {[str(p) for p in inputs]}")
    return ShardSet(
        shards,
        eos_token_id=eos_ids.pop() if eos_ids else None,
        inputs=inputs,
        manifests=manifests,
        manifest_sha256=hashes,
    )
