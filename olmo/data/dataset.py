"""Training instances: the shards concatenated in order and cut into fixed-length sequences.

Instance ``i`` is tokens ``[i * seq_len, (i + 1) * seq_len)`` of the concatenation of all shards
(it may span a shard boundary; documents are not aligned to instances, as in OLMo). The remainder
shorter than ``seq_len`` at the end of the whole set is dropped. Which documents an instance holds
is recoverable from the shards' indexes, so any batch can be explained offline.

This module must not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from olmo.data.shards import ShardSet

__all__ = ["InstanceDataset", "InstanceDocument"]


@dataclass(frozen=True, slots=True)
class InstanceDocument:
    """A document overlapping an instance.

    ``start``/``end`` is the whole document's span in its shard (EOS included);
    ``instance_start``/``instance_end`` the part of the instance it fills (0-based, end exclusive).
    """

    id: str
    src: str
    shard: str
    """The shard's file name."""
    start: int
    end: int
    instance_start: int
    instance_end: int
    loc: str = ""
    shard_index: int = 0
    """Position of the shard in the ShardSet (file names can repeat across input folders)."""


class InstanceDataset:
    """Fixed-length token instances over a :class:`ShardSet`, read as int64 arrays."""

    def __init__(self, shards: ShardSet, seq_len: int) -> None:
        if isinstance(seq_len, bool) or not isinstance(seq_len, int | np.integer) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
        self.shards = shards
        self.seq_len = int(seq_len)
        self._len = shards.total_tokens // self.seq_len
        # Per shard: plain ndarray views (opened on first use) and sizes, as Python lists for speed.
        self._arrays: list[np.ndarray | None] = [None] * len(shards)
        self._sizes: list[int] = [int(size) for size in shards.sizes]
        # Shards read through a bounded cache are asked for every time (they may be let go).
        self._hold = bool(getattr(shards.shards, "holds_arrays", True))
        # Shards read by ranged GETs (``shards.ranges``): prefetched instance by instance.
        self._by_range = hasattr(shards.shards, "prefetch_ranges")

    def __len__(self) -> int:
        return self._len

    def __getstate__(self) -> dict[str, object]:
        # The memmap views would pickle as copies of the data; they are reopened on first use.
        return {**self.__dict__, "_arrays": [None] * len(self._arrays)}

    def __repr__(self) -> str:
        return f"InstanceDataset({self._len} instances of {self.seq_len} tokens, {self.shards!r})"

    @property
    def dropped_tokens(self) -> int:
        """Tokens at the end of the set that do not fill a whole instance."""
        return self.shards.total_tokens - self._len * self.seq_len

    def _check_index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"instance index must be an integer, got {type(i).__name__}")
        if not 0 <= i < self._len:
            raise IndexError(f"instance index {i} out of range [0, {self._len})")
        return int(i)

    def _array(self, shard: int) -> np.ndarray:
        array = self._arrays[shard]
        if array is None:
            array = self.shards[shard].array
            if self._hold:
                self._arrays[shard] = array
        return array

    def shards_of(self, indices: Sequence[int] | np.ndarray) -> list[int]:
        """The shards instances ``indices`` read, in order of first use, each once (an instance
        spanning a shard boundary names both)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not idx.size:
            return []
        if (idx < 0).any() or (idx >= self._len).any():
            raise IndexError(f"instance indices out of range [0, {self._len})")
        first, _ = self.shards.locate_many(idx * self.seq_len)
        last, _ = self.shards.locate_many(idx * self.seq_len + (self.seq_len - 1))
        out: dict[int, None] = {}
        for a, b in zip(first.tolist(), last.tolist(), strict=True):
            for shard in range(a, b + 1):
                out[shard] = None
        return list(out)

    def prefetch(self, indices: Sequence[int] | np.ndarray) -> list[int]:
        """Fetch, in the background, what the upcoming instances ``indices`` (in the order they
        will be read) need when their shards lie on an object store, so their reads do not wait:
        in ``cache`` mode the shards they fall in, a bounded number ahead
        (``data.prefetch_shards``), into the node's cache; in ``range`` mode their own tokens, by
        ranged GETs (``data.prefetch_requests`` at a time) into a bounded in-memory buffer. A no-op
        for local shards. Returns the shards whose downloads or requests started."""
        if not self._by_range:
            return self.shards.prefetch(self.shards_of(indices))
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if (idx < 0).any() or (idx >= self._len).any():
            raise IndexError(f"instance indices out of range [0, {self._len})")
        starts = (idx * self.seq_len).tolist()
        return self.shards.prefetch_ranges((s, s + self.seq_len) for s in starts)

    def __getitem__(self, i: int) -> np.ndarray:
        """Instance ``i`` as an int64 array of ``seq_len`` token ids."""
        out = np.empty(self.seq_len, dtype=np.int64)
        self._fill(out, self._check_index(i) * self.seq_len)
        return out

    def _fill(self, out: np.ndarray, start: int) -> None:
        shard, local = self.shards.locate(start)
        filled = 0
        while filled < self.seq_len:
            array = self._array(shard)
            take = min(self.seq_len - filled, self._sizes[shard] - local)
            out[filled : filled + take] = array[local : local + take]
            filled += take
            shard, local = shard + 1, 0

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Instances ``indices`` stacked as an int64 array of shape ``(len(indices), seq_len)``."""
        idx = np.asarray(indices)
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
        if idx.size and idx.dtype.kind not in "iu":
            raise TypeError(f"instance indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False)
        out = np.empty((len(idx), self.seq_len), dtype=np.int64)
        if not idx.size:
            return out
        bad = (idx < 0) | (idx >= self._len)
        if bad.any():
            raise IndexError(f"instance index {int(idx[bad][0])} out of range [0, {self._len})")
        if self._by_range:  # what was not prefetched is fetched concurrently, then read
            self.prefetch(idx)
        starts = idx * self.seq_len
        shard_of, local_of = self.shards.locate_many(starts)
        seq_len, sizes, arrays = self.seq_len, self._sizes, self._arrays
        for row, (shard, local, start) in enumerate(
            zip(shard_of.tolist(), local_of.tolist(), starts.tolist(), strict=True)
        ):
            if local + seq_len <= sizes[shard]:
                array = arrays[shard]
                if array is None:
                    array = self._array(shard)
                out[row] = array[local : local + seq_len]
            else:  # spans a shard boundary
                self._fill(out[row], start)
        return out

    def documents(self, i: int) -> list[InstanceDocument]:
        """Every document overlapping instance ``i``, in order, with the spans they occupy.

        Needs the shards' ``.csv.gz`` indexes (``MissingIndexError`` otherwise).
        """
        start = self._check_index(i) * self.seq_len
        end = start + self.seq_len
        found: list[InstanceDocument] = []
        pos = start
        while pos < end:
            shard_index, local = self.shards.locate(pos)
            shard = self.shards[shard_index]
            local_end = min(shard.num_tokens, local + (end - pos))
            base = pos - start - local  # instance position of the shard's token 0
            for doc in shard.documents_overlapping(local, local_end):
                found.append(
                    InstanceDocument(
                        id=doc.id,
                        src=doc.src,
                        shard=shard.name,
                        start=doc.start,
                        end=doc.end,
                        instance_start=base + max(doc.start, local),
                        instance_end=base + min(doc.end, local_end),
                        loc=doc.loc,
                        shard_index=shard_index,
                    )
                )
            pos += local_end - local
        return found
