"""The global training order: one permutation of all instances per epoch, from (seed, epoch).

Position ``p`` counts instances consumed since the start of training, across epochs; it maps to
epoch ``p // num_instances`` and instance ``permutation(epoch)[p % num_instances]``. Nothing depends
on the number of ranks: every rank computes the same global batch and takes its contiguous slice,
so training resumes on a different world size from "instances consumed" alone, and any batch can
be reconstructed offline from (seed, num_instances, position).

This module must not import torch.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["GlobalOrder", "epoch_permutation", "rank_slice"]


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def epoch_permutation(num_instances: int, seed: int, epoch: int) -> np.ndarray:
    """The order of instances in ``epoch``, identical in every process and run.

    ``Generator(PCG64([seed, epoch])).permutation``. NumPy's stream policy (NEP 19) lets a
    ``Generator`` method's output change between numpy releases, so reproducing an old run's order
    exactly assumes the same numpy major version; the tests pin a few values to notice a change.
    """
    num_instances = _check_int("num_instances", num_instances, 0)
    generator = np.random.Generator(
        np.random.PCG64([_check_int("seed", seed, 0), _check_int("epoch", epoch, 0)])
    )
    return generator.permutation(num_instances).astype(np.int64, copy=False)


class GlobalOrder:
    """Maps global positions (instances consumed since the start of training) to instance ids."""

    def __init__(self, num_instances: int, seed: int, *, cache_epochs: int = 2) -> None:
        self.num_instances = _check_int("num_instances", num_instances, 1)
        self.seed = _check_int("seed", seed, 0)
        self.cache_epochs = _check_int("cache_epochs", cache_epochs, 1)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __repr__(self) -> str:
        return f"GlobalOrder(num_instances={self.num_instances}, seed={self.seed})"

    def permutation(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s permutation (cached, read-only)."""
        perm = self._cache.get(epoch)
        if perm is None:
            perm = epoch_permutation(self.num_instances, self.seed, epoch)
            perm.flags.writeable = False
            self._cache[epoch] = perm
            while len(self._cache) > self.cache_epochs:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(epoch)
        return perm

    def epoch_of(self, position: int) -> int:
        return _check_int("position", position, 0) // self.num_instances

    def __getitem__(self, position: int) -> int:
        epoch, offset = divmod(_check_int("position", position, 0), self.num_instances)
        return int(self.permutation(epoch)[offset])

    def indices(self, start: int, count: int) -> np.ndarray:
        """Instance ids at positions ``[start, start + count)`` (spanning epochs as needed)."""
        start = _check_int("start", start, 0)
        count = _check_int("count", count, 0)
        out = np.empty(count, dtype=np.int64)
        filled = 0
        while filled < count:
            epoch, offset = divmod(start + filled, self.num_instances)
            take = min(self.num_instances - offset, count - filled)
            out[filled : filled + take] = self.permutation(epoch)[offset : offset + take]
            filled += take
        return out


def rank_slice(batch_indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous share of a global batch (a view; ranks in order rebuild it)."""
    world_size = _check_int("world_size", world_size, 1)
    rank = _check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank {rank} out of range for world_size {world_size}")
    batch = np.asarray(batch_indices)
    if batch.ndim != 1:
        raise ValueError(f"batch_indices must be 1-D, got shape {batch.shape}")
    if len(batch) % world_size:
        raise ValueError(
            f"global batch of {len(batch)} instances is not divisible by world_size {world_size}"
        )
    per_rank = len(batch) // world_size
    return batch[rank * per_rank : (rank + 1) * per_rank]
