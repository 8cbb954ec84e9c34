"""The global training order: one permutation of all instances per epoch, from (seed, epoch).

Position ``p`` counts instances consumed since the start of training, across epochs; it maps to
epoch ``p // num_instances`` and instance ``permutation(epoch)[p % num_instances]``. Nothing depends
on the number of ranks: every rank computes the same global batch and takes its contiguous slice,
so training resumes on a different world size from "instances consumed" alone, and any batch can
be reconstructed offline from (seed, num_instances, position).

Two kinds of permutation, named in ``data.order`` and recorded in every checkpoint (``ORDERS``):

- ``feistel`` (the default for new runs): a seeded bijection of ``[0, num_instances)`` evaluated
  per position, so nothing proportional to the number of instances is ever built. A balanced
  Feistel network (``FEISTEL_ROUNDS`` rounds, each round function a SplitMix64 finaliser keyed by
  a BLAKE2b hash of (seed, epoch, round)) permutes the smallest ``2^(2h) >= num_instances``
  domain; values that land outside ``[0, num_instances)`` are encrypted again until they land
  inside ("cycle walking", which keeps it a bijection of the smaller range; the domain is at most
  4× the range, so a few walks on average). Pure integer arithmetic on uint64: the same order on
  any machine and numpy release. Per rank it costs O(batch) memory and time, where a
  materialised ``int64`` permutation of Dolma's ~1.1 billion 2048-token instances is ~9 GB.
- ``pcg64-shuffle``: the order of runs started before ``feistel`` existed,
  ``Generator(PCG64([seed, epoch])).permutation(num_instances)`` built whole per epoch (and cached).
  A checkpoint that records no order was made with it, so such a run resumes in its own order.

This module must not import torch.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Literal, get_args

import numpy as np

__all__ = [
    "DEFAULT_ORDER",
    "FEISTEL_ROUNDS",
    "LEGACY_ORDER",
    "ORDERS",
    "FeistelPermutation",
    "GlobalOrder",
    "OrderKind",
    "epoch_permutation",
    "rank_slice",
    "resolve_order",
]

OrderKind = Literal["feistel", "pcg64-shuffle"]
ORDERS: tuple[str, ...] = get_args(OrderKind)
DEFAULT_ORDER: OrderKind = "feistel"
LEGACY_ORDER: OrderKind = "pcg64-shuffle"
"""What a checkpoint without a recorded order used."""
FEISTEL_ROUNDS = 8

_U64 = np.uint64
# SplitMix64's finaliser (Steele, Lea and Flood 2014): a bijective 64-bit mixer.
_MIX1, _MIX2 = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB)
_S30, _S27, _S31 = _U64(30), _U64(27), _U64(31)


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def epoch_permutation(num_instances: int, seed: int, epoch: int) -> np.ndarray:
    """The ``pcg64-shuffle`` order of instances in ``epoch``, identical in every process and run.

    ``Generator(PCG64([seed, epoch])).permutation``. NumPy's stream policy (NEP 19) lets a
    ``Generator`` method's output change between numpy releases, so reproducing an old run's order
    exactly assumes the same numpy major version; the tests pin a few values to notice a change.
    """
    num_instances = _check_int("num_instances", num_instances, 0)
    generator = np.random.Generator(
        np.random.PCG64([_check_int("seed", seed, 0), _check_int("epoch", epoch, 0)])
    )
    return generator.permutation(num_instances).astype(np.int64, copy=False)


def _key_bytes(seed: int, epoch: int, round_: int) -> bytes:
    return hashlib.blake2b(
        f"olmo-feistel-v1:{seed}:{epoch}:{round_}".encode(), digest_size=8
    ).digest()


class FeistelPermutation:
    """A seeded bijection of ``[0, size)`` evaluated per index (see the module doc)."""

    MAX_SIZE = 1 << 62

    def __init__(self, size: int, seed: int, epoch: int, rounds: int = FEISTEL_ROUNDS) -> None:
        self.size = _check_int("size", size, 1)
        if self.size > self.MAX_SIZE:
            raise ValueError(f"size must be <= 2**62, got {self.size}")
        self.seed = _check_int("seed", seed, 0)
        self.epoch = _check_int("epoch", epoch, 0)
        rounds = _check_int("rounds", rounds, 2)
        bits = max(2, (self.size - 1).bit_length())
        self.half_bits = (bits + 1) // 2
        self._half = _U64(self.half_bits)
        self._mask = _U64((1 << self.half_bits) - 1)
        self._keys = [
            _U64(int.from_bytes(_key_bytes(self.seed, self.epoch, i), "little"))
            for i in range(rounds)
        ]

    def __repr__(self) -> str:
        return f"FeistelPermutation(size={self.size}, seed={self.seed}, epoch={self.epoch})"

    def _round(self, right: np.ndarray, key: np.uint64) -> np.ndarray:
        z = right + key
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        return (z ^ (z >> _S31)) & self._mask

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self._half, x & self._mask
        for key in self._keys:
            left, right = right, left ^ self._round(right, key)
        return (left << self._half) | right

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        """The images of ``indices`` (each in ``[0, size)``) as an int64 array."""
        x = np.asarray(indices)
        if x.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {x.dtype}")
        x = np.atleast_1d(x)
        if x.size and (int(x.min()) < 0 or int(x.max()) >= self.size):
            raise IndexError(f"indices out of range [0, {self.size})")
        with np.errstate(over="ignore"):
            out = self._encrypt(x.astype(_U64))
            outside = np.flatnonzero(out >= _U64(self.size))
            while outside.size:
                walked = self._encrypt(out[outside])
                out[outside] = walked
                outside = outside[walked >= _U64(self.size)]
        return out.astype(np.int64)


class GlobalOrder:
    """Maps global positions (instances consumed since the start of training) to instance ids."""

    def __init__(
        self,
        num_instances: int,
        seed: int,
        *,
        kind: OrderKind = DEFAULT_ORDER,
        cache_epochs: int = 2,
    ) -> None:
        self.num_instances = _check_int("num_instances", num_instances, 1)
        self.seed = _check_int("seed", seed, 0)
        if kind not in ORDERS:
            raise ValueError(f"unknown data order {kind!r}: expected one of {', '.join(ORDERS)}")
        self.kind: OrderKind = kind
        self.cache_epochs = _check_int("cache_epochs", cache_epochs, 1)
        self._cache: OrderedDict[int, np.ndarray | FeistelPermutation] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"GlobalOrder(num_instances={self.num_instances}, seed={self.seed}, kind={self.kind!r})"
        )

    def _epoch(self, epoch: int) -> np.ndarray | FeistelPermutation:
        cached = self._cache.get(epoch)
        if cached is None:
            if self.kind == "feistel":
                cached = FeistelPermutation(self.num_instances, self.seed, epoch)
            else:
                cached = epoch_permutation(self.num_instances, self.seed, epoch)
                cached.flags.writeable = False
            self._cache[epoch] = cached
            while len(self._cache) > self.cache_epochs:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(epoch)
        return cached

    def _take(self, epoch: int, offset: int, count: int) -> np.ndarray:
        perm = self._epoch(epoch)
        if isinstance(perm, FeistelPermutation):
            return perm(np.arange(offset, offset + count, dtype=np.int64))
        return perm[offset : offset + count]

    def permutation(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s whole permutation (materialised: for inspection and small sets)."""
        perm = self._epoch(_check_int("epoch", epoch, 0))
        if isinstance(perm, FeistelPermutation):
            return perm(np.arange(self.num_instances, dtype=np.int64))
        return perm

    def epoch_of(self, position: int) -> int:
        return _check_int("position", position, 0) // self.num_instances

    def __getitem__(self, position: int) -> int:
        epoch, offset = divmod(_check_int("position", position, 0), self.num_instances)
        return int(self._take(epoch, offset, 1)[0])

    def indices(self, start: int, count: int) -> np.ndarray:
        """Instance ids at positions ``[start, start + count)`` (spanning epochs as needed)."""
        start = _check_int("start", start, 0)
        count = _check_int("count", count, 0)
        out = np.empty(count, dtype=np.int64)
        filled = 0
        while filled < count:
            epoch, offset = divmod(start + filled, self.num_instances)
            take = min(self.num_instances - offset, count - filled)
            out[filled : filled + take] = self._take(epoch, offset, take)
            filled += take
        return out


def resolve_order(configured: str | None, recorded: str | None, resuming: bool) -> OrderKind:
    """The order a run uses: a new run takes ``configured`` (default ``DEFAULT_ORDER``); a resumed
    one keeps the order its checkpoint ``recorded`` (``LEGACY_ORDER`` when it records none), and a
    configured order that differs from it is an error rather than a silent change of data order."""
    for name, value in (("data.order", configured), ("the checkpoint's data order", recorded)):
        if value is not None and value not in ORDERS:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(ORDERS)}")
    if not resuming:
        return configured or DEFAULT_ORDER  # type: ignore[return-value]
    previous = recorded or LEGACY_ORDER
    if configured is not None and configured != previous:
        raise ValueError(
            f"data.order is {configured!r} but the run being resumed was trained in the "
            f"{previous!r} order; set data.order: {previous} (or leave it unset) to continue it, "
            "or start a new run to change the order"
        )
    return previous  # type: ignore[return-value]


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
