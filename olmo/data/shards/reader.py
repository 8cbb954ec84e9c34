"""Reading shards: one shard's tokens (a read-only memmap) and document index (``TokenShard``),
and shards in order read as one concatenated token sequence (``ShardSet``)."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olmo.data.shards.format import MissingIndexError, ShardFormatError, as_token_dtype
from olmo.data.shards.manifest import Manifest

_NPY_MAGIC = b"\x93NUMPY"


def _check_shard(shard: TokenShard) -> Exception | None:
    try:
        shard.check()
    except (OSError, ShardFormatError) as e:
        return e
    return None


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
    The file's size is checked when the shard is made, or, with ``lazy=True`` (which needs
    ``expected_tokens``, the manifest's count), only when its tokens are first read or
    :meth:`check` is called: a dataset of 100,000 shards then opens without touching a file.
    """

    def __init__(
        self,
        path: str | Path,
        dtype: Any,
        *,
        index_path: str | Path | None = None,
        expected_tokens: int | None = None,
        lazy: bool = False,
    ) -> None:
        self.path = Path(path)
        self.dtype = as_token_dtype(dtype)
        self.index_path = (
            Path(index_path) if index_path is not None else self.path.with_suffix(".csv.gz")
        )
        self._checked = False
        if lazy:
            if expected_tokens is None:
                raise ValueError("a lazy TokenShard needs expected_tokens (the manifest's count)")
            self.num_tokens = int(expected_tokens)
        else:
            self.num_tokens = self._size_in_tokens(expected_tokens)
        self._tokens: np.ndarray | None = None
        self._array: np.ndarray | None = None
        self._index: tuple[np.ndarray, np.ndarray, list[str], list[str], list[str]] | None = None

    def _size_in_tokens(self, expected_tokens: int | None) -> int:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"token shard not found: {self.path}") from None
        if size % self.dtype.itemsize:
            raise ShardFormatError(
                f"{self.path}: size {size} bytes is not a multiple of the {self.dtype.name} "
                f"item size ({self.dtype.itemsize}); wrong dtype or a truncated file"
            )
        num_tokens = size // self.dtype.itemsize
        if expected_tokens is not None and expected_tokens != num_tokens:
            raise ShardFormatError(
                f"{self.path}: has {num_tokens} {self.dtype.name} tokens ({size} bytes) "
                f"but the manifest says {expected_tokens}"
            )
        self._checked = True
        return num_tokens

    def check(self) -> None:
        """Check the file exists with the expected size (done once; a no-op when made eagerly)."""
        if not self._checked:
            self._size_in_tokens(self.num_tokens)

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
            self.check()
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

    def _index_source(self) -> Any:
        """What the index is read from (a path, or a binary file object); FileNotFoundError when
        there is none."""
        return self.index_path

    def _load_index(self) -> tuple[np.ndarray, np.ndarray, list[str], list[str], list[str]]:
        if self._index is not None:
            return self._index
        starts: list[int] = []
        ends: list[int] = []
        ids: list[str] = []
        srcs: list[str] = []
        locs: list[str] = []
        try:
            with gzip.open(self._index_source(), "rt", encoding="utf-8", newline="") as f:
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


class ShardList(Sequence[TokenShard]):
    """Shards of one dtype, each made on first access (``lazy``) from its path, index path and
    token count: what a manifest of 100,000 shards costs before anything is read is three flat
    lists, not 100,000 objects and 100,000 ``stat`` calls."""

    holds_arrays = True
    """Whether a reader may keep a shard's array for good (a list reading from a bounded cache,
    ``remote.RemoteShardList``, wants to be asked every time)."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = as_token_dtype(dtype)
        self._paths: list[str] = []
        self._index_paths: list[str] = []
        self._sizes: list[int] = []
        self._made: dict[int, TokenShard] = {}

    def add(self, path: str | Path, index_path: str | Path, num_tokens: int) -> None:
        """A shard listed in a manifest (checked when first read)."""
        self._paths.append(str(path))
        self._index_paths.append(str(index_path))
        self._sizes.append(int(num_tokens))

    def add_shard(self, shard: TokenShard) -> None:
        """A shard already made (and checked)."""
        if shard.dtype != self.dtype:
            raise ShardFormatError(
                f"shards have different dtypes: {sorted({self.dtype.name, shard.dtype.name})}"
            )
        self._made[len(self._paths)] = shard
        self.add(shard.path, shard.index_path, shard.num_tokens)

    @property
    def sizes(self) -> list[int]:
        return self._sizes

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]  # negative indices, IndexError
        shard = self._made.get(i)
        if shard is None:
            shard = self._made[i] = TokenShard(
                self._paths[i],
                self.dtype,
                index_path=self._index_paths[i],
                expected_tokens=self._sizes[i],
                lazy=True,
            )
        return shard


class ShardSet:
    """Shards in a fixed order, read as one concatenated token sequence.

    ``shards`` is a sequence of :class:`TokenShard` or a :class:`ShardList` (whose shards are made,
    and their files checked, on first use; :meth:`check_files` checks them all at once).
    """

    def __init__(
        self,
        shards: Iterable[TokenShard] | ShardList,
        *,
        eos_token_id: int | None = None,
        inputs: Sequence[Any] = (),
        manifests: Sequence[Manifest | None] = (),
        manifest_sha256: Sequence[str | None] = (),
    ) -> None:
        if isinstance(shards, ShardList):
            self.shards: Sequence[TokenShard] = shards
            if not len(shards):
                raise ValueError("a ShardSet needs at least one shard")
            self.dtype = shards.dtype
            sizes = np.asarray(shards.sizes, dtype=np.int64)
        else:
            self.shards = tuple(shards)
            if not self.shards:
                raise ValueError("a ShardSet needs at least one shard")
            dtypes = {shard.dtype.name for shard in self.shards}
            if len(dtypes) != 1:
                raise ShardFormatError(f"shards have different dtypes: {sorted(dtypes)}")
            self.dtype = self.shards[0].dtype
            sizes = np.array([shard.num_tokens for shard in self.shards], dtype=np.int64)
        self.eos_token_id = eos_token_id
        self.inputs: tuple[Any, ...] = tuple(inputs)
        """The paths (``Path``, or ``olmo.storage.Location`` for a URI) the set was opened from."""
        self.manifests: tuple[Manifest | None, ...] = tuple(manifests)
        """Per input: its manifest, or None for manifest-less input."""
        self.manifest_sha256: tuple[str | None, ...] = tuple(manifest_sha256)
        """Per input: sha256 of its manifest file, or None for manifest-less input."""
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

    def check_files(self, workers: int = 16) -> None:
        """Check that every shard's file exists with the size its manifest gives (``stat`` only,
        ``workers`` at a time: cheap next to reading, and slow object-storage mounts benefit from
        the concurrency). Raises ``ShardFormatError`` (or ``FileNotFoundError`` when every problem
        is a missing file) naming the first few problems and how many there are."""
        problems: list[Exception] = []
        local: Sequence[TokenShard] = self.shards
        remote_check = getattr(self.shards, "check_files", None)
        if remote_check is not None:  # shards on a store: listed, not downloaded
            problems.extend(remote_check())
            shards = self.shards
            local = [shards[i] for i in range(len(shards)) if not shards.is_remote(i)]  # type: ignore[attr-defined]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for error in pool.map(_check_shard, local):
                if error is not None:
                    problems.append(error)
        if not problems:
            return
        shown = "; ".join(str(e) for e in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        message = f"{len(problems)} of {len(self.shards)} token shards are unusable: {shown}{more}"
        if all(isinstance(e, FileNotFoundError) for e in problems):
            raise FileNotFoundError(message)
        raise ShardFormatError(message)

    def prefetch(self, shard_indices: Iterable[int]) -> list[int]:
        """Fetch the listed shards ahead of their first read when they lie on an object store
        (``remote.RemoteShardList.prefetch``); a no-op for local shards. Returns those started."""
        prefetch = getattr(self.shards, "prefetch", None)
        return prefetch(shard_indices) if prefetch is not None else []

    def prefetch_ranges(self, spans: Iterable[tuple[int, int]]) -> list[int]:
        """Fetch the token ranges ``[start, end)`` of the concatenation (in the order they will be
        read) ahead of their reads when the shards are read by ranged GETs from an object store
        (``ranges.RangeShardList.prefetch_ranges``; a range spanning shards is split); a no-op
        otherwise. Returns the shards whose requests started."""
        prefetch = getattr(self.shards, "prefetch_ranges", None)
        if prefetch is None:
            return []
        sizes = self.sizes
        pieces: list[tuple[int, int, int]] = []
        for start, end in spans:
            pos = int(start)
            while pos < end:
                shard, local = self.locate(pos)
                take = min(int(end) - pos, int(sizes[shard]) - local)
                pieces.append((shard, local, local + take))
                pos += take
        return prefetch(pieces)

    def close(self) -> None:
        """Stop background prefetching and let go of cached shards and buffers (remote shards
        only)."""
        close = getattr(self.shards, "close", None)
        if close is not None:
            close()

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
