"""Optional near-duplicate removal: MinHash signatures of word shingles, indexed with LSH.

Exact dedup (``dedup``) only catches byte-identical documents and paragraphs; this stage also
catches copies that differ in a few words (boilerplate edits, mirrors, templated pages). It is off
by default (``MinHashConfig.enabled``). Rules:

- Shingles: the text is lower-cased and split on whitespace; every run of ``ngram`` consecutive
  words, joined by one space, is a shingle (a set: repeats count once). A document with fewer than
  ``ngram`` words has one shingle of all its words; an empty document has none (its signature is
  the empty-set signature, so all empty documents are duplicates of each other).
- Signature: datasketch's ``MinHash`` with ``num_perm`` permutations drawn from ``seed``, its
  default permutation scheme (``affine32``) and its default hash function (SHA-1 of the shingle's
  UTF-8 bytes, first 32 bits). Nothing depends on Python's salted ``hash``, so a signature is the
  same in every process, run and machine (for the pinned datasketch version). Hash values are
  ``uint32`` (the scheme's native width; datasketch < 2.0 used ``uint64``).
- Index (``NearDuplicateIndex``): documents arrive in a fixed order; a document is a near
  duplicate when an *earlier* document's estimated Jaccard similarity with it (the fraction of
  equal hash values) is at least ``threshold``. Duplicates are not inserted, so the first copy is
  kept and later ones are dropped. LSH (``MinHashLSH``) only proposes candidates; every candidate
  is verified against its stored signature, so the answer is exact with respect to the estimate,
  and independent of the order in which LSH returns candidates. The LSH bands are tuned towards
  recall (weights 0.1 false positives / 0.9 false negatives): at ``threshold`` 0.8 and 128
  permutations a pair at similarity 0.8 becomes a candidate with probability ~0.87, at 0.85 ~0.97,
  at 0.9 ~0.999. Pairs that LSH misses are missed; the result is precise, not exhaustive.

The index is in memory (one signature, ``4 * num_perm`` bytes, plus LSH buckets per kept
document); shard by source or run it per worker for very large corpora.

datasketch (which imports scipy, about half a second) is imported on first use, not with this
module: the pipeline's configuration imports ``MinHashConfig`` in every process, and the stage is
off by default. (A signature's cost is mostly SHA-1, about 0.5 µs per shingle.)

Must not import torch.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from olmo.config import StrictConfig

if TYPE_CHECKING:
    from datasketch import LeanMinHash

__all__ = [
    "LSH_WEIGHTS",
    "REASON_NEAR_DUPLICATE",
    "SCHEME",
    "SIGNATURE_DTYPE",
    "MinHashConfig",
    "NearDuplicateIndex",
    "estimated_jaccard",
    "shingles",
    "signature",
    "signature_from_bytes",
    "signature_to_bytes",
]

REASON_NEAR_DUPLICATE = "near_duplicate"
SCHEME = "affine32"  # datasketch 2.x default permutation scheme
SIGNATURE_DTYPE = np.dtype(np.uint32)
_WIRE_DTYPE = np.dtype("<u4")  # fixed byte order for signature_to_bytes
LSH_WEIGHTS = (0.1, 0.9)  # (false positive, false negative) weights: candidates are verified


class MinHashConfig(StrictConfig):
    """Settings of the near-duplicate stage (off by default)."""

    enabled: bool = False
    num_perm: int = Field(default=128, ge=16, le=4096)
    threshold: float = Field(default=0.8, gt=0.0, lt=1.0)
    """Estimated Jaccard similarity at or above which a later document is a near duplicate."""
    ngram: int = Field(default=5, ge=1)
    """Words per shingle."""
    seed: int = Field(default=1, ge=0, lt=2**32)
    """Seed of the permutations; signatures from different seeds cannot be compared."""


def shingles(text: str, ngram: int) -> set[bytes]:
    """The UTF-8 encoded word ``ngram``-shingles of ``text`` (see the module docstring)."""
    words = text.lower().split()
    if not words:
        return set()
    if len(words) < ngram:
        grams = [" ".join(words)]
    else:
        grams = [" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1)]
    return {g.encode("utf-8", "surrogatepass") for g in grams}


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> np.ndarray:
    from datasketch import MinHash

    perms = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    perms.setflags(write=False)
    return perms


def signature(text: str, config: MinHashConfig) -> np.ndarray:
    """MinHash hash values (``uint32``, length ``num_perm``) of the shingles of ``text``."""
    from datasketch import MinHash

    m = MinHash(
        num_perm=config.num_perm,
        seed=config.seed,
        permutations=_permutations(config.num_perm, config.seed),
        scheme=SCHEME,
    )
    m.update_batch(shingles(text, config.ngram))
    return np.asarray(m.hashvalues, dtype=SIGNATURE_DTYPE)


def signature_to_bytes(hashvalues: np.ndarray) -> bytes:
    """Little-endian ``uint32`` bytes of a signature (``4 * num_perm`` bytes)."""
    return _as_signature(hashvalues).astype(_WIRE_DTYPE, copy=False).tobytes()


def signature_from_bytes(data: bytes) -> np.ndarray:
    """Inverse of ``signature_to_bytes``."""
    if len(data) % _WIRE_DTYPE.itemsize:
        raise ValueError(
            f"signature bytes must be a multiple of {_WIRE_DTYPE.itemsize} long, got {len(data)}"
        )
    return np.frombuffer(data, dtype=_WIRE_DTYPE).astype(SIGNATURE_DTYPE)


def _as_signature(hashvalues: np.ndarray) -> np.ndarray:
    values = np.asarray(hashvalues)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ValueError(f"a signature is a 1-D integer array, got {values.dtype} {values.shape}")
    if values.size and (int(values.min()) < 0 or int(values.max()) > np.iinfo(np.uint32).max):
        raise ValueError("signature values must fit in uint32")
    return values.astype(SIGNATURE_DTYPE, copy=False)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of equal hash values: MinHash's estimate of the shingle sets' Jaccard."""
    if len(a) != len(b):
        raise ValueError(f"signatures differ in length: {len(a)} vs {len(b)}")
    return float(np.count_nonzero(a == b)) / len(a)


class NearDuplicateIndex:
    """First-come index of kept documents' signatures; see the module docstring."""

    def __init__(self, config: MinHashConfig) -> None:
        from datasketch import MinHashLSH

        self.config = config
        self._lsh = MinHashLSH(
            threshold=config.threshold, num_perm=config.num_perm, weights=LSH_WEIGHTS
        )
        self._signatures: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def __contains__(self, key: object) -> bool:
        return key in self._signatures

    @property
    def bands(self) -> tuple[int, int]:
        """LSH (bands, rows per band)."""
        return self._lsh.b, self._lsh.r

    def find(self, hashvalues: np.ndarray) -> str | None:
        """Key of an indexed document at least ``threshold`` similar, or None.

        Of several, the most similar one, ties broken by the smaller key (deterministic).
        """
        values = self._check(hashvalues)
        best: tuple[float, str] | None = None
        for key in self._lsh.query(self._lean(values)):
            sim = estimated_jaccard(values, self._signatures[key])
            if sim >= self.config.threshold and (
                best is None or sim > best[0] or (sim == best[0] and key < best[1])
            ):
                best = (sim, key)
        return None if best is None else best[1]

    def seen_or_add(self, key: str, hashvalues: np.ndarray) -> bool:
        """True when the document is a near duplicate of one added earlier (it is then not
        added); otherwise add it under ``key`` and return False."""
        if key in self._signatures:
            raise ValueError(f"key {key!r} is already in the index")
        values = self._check(hashvalues)
        if self.find(values) is not None:
            return True
        values = values.copy()
        values.setflags(write=False)
        self._lsh.insert(key, self._lean(values), check_duplication=False)
        self._signatures[key] = values
        return False

    def _check(self, hashvalues: np.ndarray) -> np.ndarray:
        values = _as_signature(hashvalues)
        if len(values) != self.config.num_perm:
            raise ValueError(
                f"signature has {len(values)} values, the index expects num_perm="
                f"{self.config.num_perm}"
            )
        return values

    def _lean(self, values: np.ndarray) -> LeanMinHash:
        from datasketch import LeanMinHash

        return LeanMinHash(seed=self.config.seed, hashvalues=values, scheme=SCHEME)
