"""``ShardWriter``: documents (token ids) into numbered raw shards and their ``.csv.gz`` indexes."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from olmo.data.shards.format import as_token_dtype, check_eos
from olmo.data.shards.manifest import ShardInfo
from olmo.fileio import fsync_dir


class _IndexWriter:
    """A shard's ``.csv.gz`` index written row by row as documents come, never held whole: the
    same bytes as ``gzip.compress(all rows, mtime=0)`` (its header, one raw deflate stream at
    level 9, CRC-32 and size), so a shard's index does not depend on how it was written."""

    _FLUSH_CHARS = 1 << 16

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._file = open(path, "wb")  # noqa: SIM115 (closed in finish/abort)
        self._file.write(gzip.compress(b"", mtime=0)[:10])  # the header gzip.compress writes
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._size = 0
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\n")

    def writerow(self, row: tuple[int, int, str, str, str]) -> None:
        self._csv.writerow(row)
        self.rows += 1
        if self._text.tell() >= self._FLUSH_CHARS:
            self._compress()

    def _compress(self) -> None:
        data = self._text.getvalue().encode("utf-8")
        self._text.seek(0)
        self._text.truncate()
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._file.write(self._deflate.compress(data))

    def finish(self) -> None:
        """Write the rest and the trailer; fsync and close the file."""
        self._compress()
        self._file.write(self._deflate.flush())
        self._file.write(struct.pack("<LL", self._crc, self._size & 0xFFFFFFFF))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


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
        self.dtype = as_token_dtype(dtype)
        self.eos_token_id = check_eos(eos_token_id, self.dtype)
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
        self._index: _IndexWriter | None = None
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
        assert self._index is not None
        self._index.writerow((start, self._shard_tokens, str(doc_id), str(source), str(loc)))
        if self._buffered >= self.flush_tokens:
            self._flush()

    def _start_shard(self) -> None:
        name = self._name(len(self._shards))
        self._tmp_path = self.out_dir / f".{name}.npy.tmp"
        self._file = open(self._tmp_path, "wb")  # noqa: SIM115 (closed in _finish_shard/abort)
        self._digest = hashlib.sha256()
        self._shard_tokens = 0
        self._index = _IndexWriter(self.out_dir / f".{name}.csv.gz.tmp")

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
        assert self._index is not None
        index, self._index = self._index, None
        index.finish()
        index_tmp = index.path
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
                num_documents=index.rows,
                sha256=self._digest.hexdigest(),
            )
        )
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
        if self._index is not None:
            self._index.abort()
            self._index = None
        self._chunks = []
        self._closed = True
