"""Deduplication and decontamination stages of the Dolma-style pipeline.

* exact URL dedup and exact document dedup: a set of 16-byte hashes (``ExactDedup``) of the
  normalised URL (``normalize_url``) or the normalised text (``text_hash``);
* exact paragraph dedup: paragraphs (lines) whose normalised hash is already in a Bloom filter
  are removed (``ParagraphDedup``); the filter is our own small numpy implementation so that a
  worker can save it and a resumed worker can continue with it;
* decontamination: a training document is removed when any of its paragraphs of at least 13 words
  appears, normalised, among the paragraphs of an eval set (``Decontaminator``; which eval sets,
  built and cached how: ``olmo_dataprep.decontam``).

Stdlib and numpy only; must not import torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from olmo.fileio import write_atomic

__all__ = [
    "REASON_DECONTAMINATED",
    "REASON_DEDUP_ALL_PARAGRAPHS",
    "BloomFilter",
    "Decontaminator",
    "ExactDedup",
    "ParagraphDedup",
    "ParagraphDedupResult",
    "normalize_text",
    "normalize_url",
    "split_paragraphs",
    "text_hash",
    "url_hash",
]

REASON_DEDUP_ALL_PARAGRAPHS = "dedup_all_paragraphs"
REASON_DECONTAMINATED = "decontaminated"

_DIGEST_SIZE = 16
_MASK64 = (1 << 64) - 1
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def normalize_text(text: str) -> str:
    """Unicode NFC, lowercase, whitespace runs collapsed to one space, stripped."""
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


def _digest(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.blake2b(data, digest_size=_DIGEST_SIZE).digest()


def text_hash(text: str) -> bytes:
    """16-byte blake2b hash of ``normalize_text(text)``: the key for exact document dedup."""
    return _digest(normalize_text(text))


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def normalize_url(url: str) -> str:
    """Canonical form of a URL for exact URL dedup.

    Lowercases the scheme and host (not the user info, path or query, which are case-sensitive),
    drops a default port, the fragment and a trailing slash of the path.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    userinfo, at, hostport = parts.netloc.rpartition("@")
    hostport = hostport.lower()
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port and hostport.endswith(":" + default_port):
        hostport = hostport[: -len(default_port) - 1]
    netloc = f"{userinfo}{at}{hostport}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def url_hash(url: str) -> bytes:
    """16-byte blake2b hash of ``normalize_url(url)``: the key for exact URL dedup."""
    return _digest(normalize_url(url))


class ExactDedup:
    """Exact dedup: a set of 16-byte hashes of the keys seen so far.

    Keys are hashed once more on the way in, so any ``str``/``bytes`` works; pass
    ``url_hash(url)`` or ``text_hash(text)`` (or the normalised strings) for the two uses.
    """

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def seen_or_add(self, key: bytes | str) -> bool:
        """True when ``key`` was seen before; otherwise remember it and return False."""
        h = _digest(key)
        if h in self._seen:
            return True
        self._seen.add(h)
        return False

    def __contains__(self, key: bytes | str) -> bool:
        return _digest(key) in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def save(self, path: str | Path) -> None:
        """Persist the hashes (``.npy`` of shape ``(n, 16)`` uint8) for a resumed worker."""
        arr = np.frombuffer(b"".join(sorted(self._seen)), dtype=np.uint8)
        buf = io.BytesIO()
        np.save(buf, arr.reshape(-1, _DIGEST_SIZE))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> ExactDedup:
        arr = np.load(Path(path), allow_pickle=False)
        if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != _DIGEST_SIZE:
            raise ValueError(f"{path}: not an ExactDedup file (got {arr.dtype} {arr.shape})")
        out = cls()
        out._seen = {row.tobytes() for row in arr}
        return out


class BloomFilter:
    """A Bloom filter on a numpy bit array with ``k`` blake2b-derived hash functions.

    Sized by the standard formulas: ``m = ceil(-n ln p / (ln 2)^2)`` bits and
    ``k = round(m / n * ln 2)`` hashes for ``n = capacity`` items at false-positive rate
    ``p``. Positions come from double hashing: the 128-bit blake2b digest of the item gives
    ``h1, h2`` and hash ``i`` is ``(h1 + i * h2) mod 2^64 mod m``.
    """

    _FORMAT = "olmo-dataprep-bloom-v1"

    def __init__(self, capacity: int, false_positive_rate: float) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0.0 < false_positive_rate < 1.0:
            raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
        self.capacity = int(capacity)
        self.false_positive_rate = float(false_positive_rate)
        self.num_bits = max(
            8, math.ceil(-capacity * math.log(false_positive_rate) / (math.log(2) ** 2))
        )
        self.num_hashes = max(1, round(self.num_bits / capacity * math.log(2)))
        self.count = 0
        """Items added that were not (probably) present before."""
        self._buf = bytearray((self.num_bits + 7) // 8)

    @property
    def bits(self) -> np.ndarray:
        """The bit array as uint8 (bit ``j`` is ``bits[j >> 3] >> (j & 7) & 1``), a view."""
        return np.frombuffer(self._buf, dtype=np.uint8)

    def _positions(self, item: bytes | str) -> list[int]:
        d = _digest(item)
        h1 = int.from_bytes(d[:8], "little")
        h2 = int.from_bytes(d[8:], "little") | 1
        m = self.num_bits
        return [((h1 + i * h2) & _MASK64) % m for i in range(self.num_hashes)]

    def __contains__(self, item: bytes | str) -> bool:
        buf = self._buf
        return all(buf[p >> 3] >> (p & 7) & 1 for p in self._positions(item))

    def add_if_absent(self, item: bytes | str) -> bool:
        """Add ``item``; True when it was (probably) present already."""
        buf = self._buf
        present = True
        for p in self._positions(item):
            byte, bit = p >> 3, 1 << (p & 7)
            if not buf[byte] & bit:
                present = False
                buf[byte] |= bit
        if not present:
            self.count += 1
        return present

    def add(self, item: bytes | str) -> None:
        self.add_if_absent(item)

    def fill_ratio(self) -> float:
        """Fraction of bits set."""
        return int(_POPCOUNT[self.bits].sum(dtype=np.int64)) / self.num_bits

    def approx_count(self) -> float:
        """Estimated number of distinct items: ``-m/k ln(1 - fill)`` (Swamidass & Baldi)."""
        fill = self.fill_ratio()
        if fill >= 1.0:
            return math.inf
        return -self.num_bits / self.num_hashes * math.log1p(-fill)

    def _header(self) -> dict[str, object]:
        return {
            "format": self._FORMAT,
            "capacity": self.capacity,
            "false_positive_rate": self.false_positive_rate,
            "num_bits": self.num_bits,
            "num_hashes": self.num_hashes,
            "count": self.count,
        }

    def save(self, path: str | Path) -> None:
        """One ``.npz`` file: ``bits`` (uint8) and ``header`` (JSON); written atomically."""
        buf = io.BytesIO()
        np.savez(buf, bits=self.bits, header=np.array(json.dumps(self._header())))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> BloomFilter:
        loaded = np.load(Path(path), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a Bloom filter file (expected .npz)")
        with loaded as z:
            if set(z.files) != {"bits", "header"}:
                raise ValueError(f"{path}: not a Bloom filter file (arrays {z.files})")
            header = json.loads(str(z["header"]))
            bits = z["bits"]
        if header.get("format") != cls._FORMAT:
            raise ValueError(f"{path}: not a Bloom filter file (format {header.get('format')!r})")
        bf = cls(header["capacity"], header["false_positive_rate"])
        if (bf.num_bits, bf.num_hashes) != (header["num_bits"], header["num_hashes"]):
            raise ValueError(f"{path}: header sizes do not match capacity and rate")
        if bits.dtype != np.uint8 or bits.shape != (len(bf._buf),):
            raise ValueError(f"{path}: bit array has {bits.dtype} {bits.shape}")
        bf._buf[:] = bits.tobytes()
        bf.count = int(header["count"])
        return bf


def split_paragraphs(text: str) -> list[str]:
    """The paragraphs of ``text``: its lines (split on ``\\n``) that are not blank."""
    return [line for line in text.split("\n") if line.strip()]


@dataclass(frozen=True)
class ParagraphDedupResult:
    """Outcome of paragraph dedup for one document.

    ``text`` is the document without its removed paragraph lines (other lines, blank ones
    included, stay as they were). ``keep`` is False with reason ``dedup_all_paragraphs`` when
    the document had paragraphs and every one of them was removed.
    """

    keep: bool
    reason: str | None
    text: str
    paragraphs_in: int
    paragraphs_removed: int


class ParagraphDedup:
    """Exact paragraph dedup against a Bloom filter shared across documents.

    Each non-blank line is a paragraph; its key is ``text_hash`` (normalised text). A paragraph
    whose key is already in the filter is removed, otherwise its key is added, so a repeat later
    in the same document is removed too.
    """

    def __init__(self, bloom: BloomFilter) -> None:
        self.bloom = bloom

    def process(self, text: str) -> ParagraphDedupResult:
        kept: list[str] = []
        n_in = n_removed = 0
        for line in text.split("\n"):
            if not line.strip():
                kept.append(line)
                continue
            n_in += 1
            if self.bloom.add_if_absent(text_hash(line)):
                n_removed += 1
            else:
                kept.append(line)
        if n_in and n_removed == n_in:
            return ParagraphDedupResult(False, REASON_DEDUP_ALL_PARAGRAPHS, "", n_in, n_removed)
        return ParagraphDedupResult(True, None, "\n".join(kept), n_in, n_removed)


class Decontaminator:
    """Removes training documents that contain an eval-set paragraph.

    Built from eval texts split into paragraphs (lines); only paragraphs of at least
    ``min_words`` words (after ``normalize_text``) are kept, as 16-byte hashes. A training
    document is contaminated when any of its paragraphs with at least ``min_words`` words,
    normalised, is among them.
    """

    def __init__(self, hashes: Iterable[bytes] = (), min_words: int = 13) -> None:
        if min_words < 1:
            raise ValueError(f"min_words must be >= 1, got {min_words}")
        self.min_words = min_words
        self._hashes: set[bytes] = set(hashes)

    def _key(self, paragraph: str) -> bytes | None:
        norm = normalize_text(paragraph)
        if len(norm.split()) < self.min_words:
            return None
        return _digest(norm)

    def add_text(self, text: str) -> None:
        """Add the long-enough paragraphs of one eval text."""
        for paragraph in split_paragraphs(text):
            key = self._key(paragraph)
            if key is not None:
                self._hashes.add(key)

    @classmethod
    def from_paragraphs(cls, texts: Iterable[str], min_words: int = 13) -> Decontaminator:
        """From eval texts; each is split into paragraphs on newlines."""
        out = cls(min_words=min_words)
        for text in texts:
            out.add_text(text)
        return out

    @classmethod
    def from_file(cls, path: str | Path, min_words: int = 13) -> Decontaminator:
        """From a paragraphs file: UTF-8 text, one eval paragraph per line."""
        with open(path, encoding="utf-8") as f:
            return cls.from_paragraphs((line.rstrip("\n") for line in f), min_words=min_words)

    def add_hashes(self, hashes: Iterable[bytes]) -> None:
        """Add paragraph keys computed elsewhere (16-byte blake2b of the normalised paragraph, as
        ``key`` gives them), e.g. those of a cached decontamination set."""
        for h in hashes:
            if len(h) != _DIGEST_SIZE:
                raise ValueError(f"a paragraph key has {_DIGEST_SIZE} bytes, got {len(h)}")
            self._hashes.add(bytes(h))

    def key(self, paragraph: str) -> bytes | None:
        """The key of one paragraph (None when it has fewer than ``min_words`` words)."""
        return self._key(paragraph)

    def sorted_hashes(self) -> list[bytes]:
        """Every key, sorted: the canonical (order-free) content of this decontaminator."""
        return sorted(self._hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    def check(self, text: str) -> str | None:
        """``"decontaminated"`` when ``text`` shares a long paragraph with the eval set, else None."""
        if not self._hashes:
            return None
        for paragraph in split_paragraphs(text):
            key = self._key(paragraph)
            if key is not None and key in self._hashes:
                return REASON_DECONTAMINATED
        return None
