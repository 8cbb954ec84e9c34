"""Tokenizers of the data-prep pipeline: OLMo's released tokenizer (``olmo_tokenizer``: pinned,
cached, fetched), or a byte-level BPE trained on the corpus, behind one wrapper that turns text
into token-id arrays for the shard writer.

``train_bpe`` trains a GPT-NeoX-style byte-level BPE (ByteLevel pre-tokenizer without prefix
space, ByteLevel decoder, the 256 byte symbols as initial alphabet, so every string is encodable
and decodes back unchanged; unlike GPT-NeoX there is no NFC normalizer, which would not be
lossless). EOS is id 0 and padding id 1, as in GPT-NeoX-20B. Training is deterministic: the same
texts give a byte-identical tokenizer JSON in any process and with any ``RAYON_NUM_THREADS`` or
``TOKENIZERS_PARALLELISM`` (the trainer sums exact counts and breaks ties between equally frequent
pairs by token id; checked by the tests), so nothing is forced here.

``TextTokenizer`` is what the pipeline uses: ``encode_batch`` returns one array per text, of the
smallest dtype holding the vocabulary (``olmo.data.shards.dtype_for_vocab``), with no special
tokens added and *no EOS appended*: the shard contract has ``ShardWriter.add_document`` append it.
A special token spelled out in the text itself (``<|endoftext|>``, the PII placeholders) is
encoded as that token, as HF tokenizers and the Dolma toolkit do. Its identity (name, sha256 of
the JSON, vocab size, EOS and pad ids) goes into the dataset manifest.

This module must not import torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from olmo.data.shards import dtype_for_vocab
from olmo.fileio import write_atomic

from .olmo_tokenizer import (
    FETCH_HINT,
    OLMO_TOKENIZER,
    PinnedTokenizer,
    TokenizerChecksumError,
    TokenizerError,
    cached_olmo_tokenizer,
    default_cache_dir,
    fetch_olmo_tokenizer,
    olmo_tokenizer_path,
)

__all__ = [
    "DEFAULT_EOS_TOKEN",
    "DEFAULT_PAD_TOKEN",
    "OLMO_TOKENIZER",
    "PinnedTokenizer",
    "TextTokenizer",
    "TokenizerChecksumError",
    "TokenizerError",
    "cached_olmo_tokenizer",
    "default_cache_dir",
    "fetch_olmo_tokenizer",
    "olmo_tokenizer_path",
    "resolve_tokenizer",
    "train_bpe",
]

DEFAULT_EOS_TOKEN = "<|endoftext|>"
DEFAULT_PAD_TOKEN = "<|padding|>"


# ----------------------------------------------------------------------------------------------
# Training


def train_bpe(
    texts: Iterable[str],
    *,
    vocab_size: int,
    min_frequency: int = 2,
    eos_token: str = DEFAULT_EOS_TOKEN,
    pad_token: str = DEFAULT_PAD_TOKEN,
) -> Tokenizer:
    """Train a GPT-NeoX-style byte-level BPE on ``texts``.

    Ids: ``eos_token`` is 0 and ``pad_token`` is 1 (the special tokens come first, as in
    GPT-NeoX-20B), then the 256 byte symbols, then merges in the order learned. ``vocab_size``
    counts all of them; the vocabulary stays smaller when no pair left occurs ``min_frequency``
    times. There is no normalizer, so decoding an encoding gives back the text exactly, whatever
    its bytes. Deterministic: the same texts give a byte-identical ``to_str()`` in every process
    and with any thread count.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of documents, not one string")
    specials = [eos_token, pad_token]
    if not eos_token or not pad_token or eos_token == pad_token:
        raise ValueError(f"eos_token and pad_token must be distinct and non-empty, got {specials}")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(specials) + len(alphabet):
        raise ValueError(
            f"vocab_size must be at least {len(specials) + len(alphabet)} (2 special tokens and "
            f"{len(alphabet)} byte symbols), got {vocab_size}"
        )
    if min_frequency < 0:
        raise ValueError(f"min_frequency must not be negative, got {min_frequency}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


# ----------------------------------------------------------------------------------------------
# The wrapper the pipeline uses


def _check_token_id(what: str, value: Any, tokenizer: Tokenizer, vocab_size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not 0 <= value < vocab_size or tokenizer.id_to_token(int(value)) is None:
        raise ValueError(f"{what} {value} is not a token id of this tokenizer (size {vocab_size})")
    return int(value)


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with its EOS and pad ids, token dtype and identity.

    Build it with :meth:`from_file` or :meth:`from_tokenizer`. ``json_bytes`` is the JSON it is
    saved as (for :meth:`from_file`, the file's bytes unchanged) and ``sha256`` its hash, so a
    copy saved with :meth:`save` has the same identity. Truncation and padding configured in the
    JSON are switched off for encoding: a document is always encoded whole.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        json_bytes: bytes,
        *,
        eos_token_id: int,
        pad_token_id: int,
        name: str,
    ) -> None:
        self._tokenizer = tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._json_bytes = json_bytes
        self._sha256 = hashlib.sha256(json_bytes).hexdigest()
        self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        max_id = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
        self._dtype = dtype_for_vocab(max(self._vocab_size, max_id + 1))
        self._eos_token_id = _check_token_id("eos_token_id", eos_token_id, tokenizer, max_id + 1)
        self._pad_token_id = _check_token_id("pad_token_id", pad_token_id, tokenizer, max_id + 1)
        if not name:
            raise ValueError("a tokenizer needs a non-empty name")
        self._name = name
        # Same ids as encode_batch, without computing offsets (tokenizers >= 0.20).
        self._encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Tokenizer, *, eos_token_id: int, pad_token_id: int, name: str
    ) -> TextTokenizer:
        """Wrap an in-memory tokenizer (e.g. from :func:`train_bpe`); later changes to
        ``tokenizer`` do not affect the wrapper."""
        text = tokenizer.to_str(pretty=True)
        return cls(
            Tokenizer.from_str(text),
            text.encode("utf-8"),
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            name=name,
        )

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        eos_token: str = DEFAULT_EOS_TOKEN,
        pad_token: str = DEFAULT_PAD_TOKEN,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        name: str | None = None,
    ) -> TextTokenizer:
        """Load a ``tokenizer.json``.

        OLMo's file (recognised by its sha256) gets OLMo's ids and name. Otherwise the EOS id is
        ``eos_token_id`` or the id of the token ``eos_token`` (an error when the vocabulary has
        no such token); the pad id is ``pad_token_id`` or the id of ``pad_token``, falling back
        to the EOS id when there is no such token; the name defaults to the file name.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"tokenizer file {path} does not exist") from exc
        try:
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
            raise ValueError(f"{path} is not a valid tokenizer.json: {exc}") from exc
        if hashlib.sha256(data).hexdigest() == OLMO_TOKENIZER.sha256:
            if eos_token_id is None:
                eos_token_id = OLMO_TOKENIZER.eos_token_id
            if pad_token_id is None:
                pad_token_id = OLMO_TOKENIZER.pad_token_id
            name = name or OLMO_TOKENIZER.name
        if eos_token_id is None:
            eos_token_id = tokenizer.token_to_id(eos_token)
            if eos_token_id is None:
                raise ValueError(
                    f"{path}: the vocabulary has no token {eos_token!r}; pass eos_token= "
                    "(the end-of-document token's text) or eos_token_id="
                )
        if pad_token_id is None:
            pad_token_id = tokenizer.token_to_id(pad_token)
            if pad_token_id is None:
                pad_token_id = eos_token_id
        return cls(
            tokenizer,
            data,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            name=name or path.name,
        )

    # -- identity ------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Tokenizer:
        """The wrapped ``tokenizers.Tokenizer`` (do not reconfigure it)."""
        return self._tokenizer

    @property
    def name(self) -> str:
        return self._name

    @property
    def eos_token_id(self) -> int:
        return self._eos_token_id

    @property
    def pad_token_id(self) -> int:
        return self._pad_token_id

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return self._vocab_size

    @property
    def dtype(self) -> np.dtype:
        """The token dtype of the shards: uint16 up to 65536 ids, else uint32."""
        return self._dtype

    @property
    def json_bytes(self) -> bytes:
        """The tokenizer JSON exactly as :meth:`save` writes it."""
        return self._json_bytes

    @property
    def sha256(self) -> str:
        """Hex sha256 of :attr:`json_bytes`."""
        return self._sha256

    def identity(self) -> dict[str, Any]:
        """What a dataset manifest records about the tokenizer."""
        return {
            "name": self._name,
            "sha256": self._sha256,
            "vocab_size": self._vocab_size,
            "eos_token_id": self._eos_token_id,
            "pad_token_id": self._pad_token_id,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`json_bytes` to ``path`` atomically (parent folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self._json_bytes)
        return path

    # -- encoding ------------------------------------------------------------------------------

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of each text as a 1-D array of :attr:`dtype`: no special tokens added and no
        EOS appended (the shard writer appends it). An empty text gives an empty array."""
        if not texts:
            return []
        dtype = self._dtype
        return [
            np.array(encoding.ids, dtype=dtype)
            for encoding in self._encode(texts, add_special_tokens=False)
        ]

    def encode(self, text: str) -> np.ndarray:
        """Token ids of one text (see :meth:`encode_batch`)."""
        return self.encode_batch([text])[0]

    def decode(self, ids: Sequence[int] | np.ndarray, *, skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; special tokens (EOS included) are spelled out unless skipped."""
        values = ids.tolist() if isinstance(ids, np.ndarray) else [int(i) for i in ids]
        return self._tokenizer.decode(values, skip_special_tokens=skip_special_tokens)

    def __repr__(self) -> str:
        return (
            f"TextTokenizer(name={self._name!r}, vocab_size={self._vocab_size}, "
            f"eos_token_id={self._eos_token_id}, sha256={self._sha256[:12]}...)"
        )


# ----------------------------------------------------------------------------------------------
# Resolving a configured name


def resolve_tokenizer(
    spec: str, *, cache_dir: str | os.PathLike[str] | None = None
) -> TextTokenizer | None:
    """The tokenizer a config names.

    - ``"olmo"``: OLMo's tokenizer from the cache, fetched first when missing (a failed fetch
      raises :class:`TokenizerError` saying to run ``make tokenizer`` /
      ``olmo-dataprep fetch-tokenizer``).
    - ``"auto"``: OLMo's tokenizer when it is cached, else None (the caller trains one).
    - ``"train"``: None; the pipeline trains a BPE on the corpus with :func:`train_bpe`.
    - anything else: the path of a ``tokenizer.json`` (see :meth:`TextTokenizer.from_file`).
    """
    if spec == "train":
        return None
    if spec == "auto":
        cached = cached_olmo_tokenizer(cache_dir)
        return TextTokenizer.from_file(cached) if cached is not None else None
    if spec == "olmo":
        path = cached_olmo_tokenizer(cache_dir)
        if path is None:
            try:
                path = fetch_olmo_tokenizer(cache_dir)
            except TokenizerChecksumError:
                raise
            except TokenizerError as exc:
                raise TokenizerError(
                    f"OLMo's tokenizer is not in the cache ({olmo_tokenizer_path(cache_dir)}) and "
                    f"fetching it failed; {FETCH_HINT} (set OLMO_CACHE_DIR to share a cache).\n"
                    f"{exc}"
                ) from exc
        tokenizer = TextTokenizer.from_file(path)
        if tokenizer.sha256 != OLMO_TOKENIZER.sha256:  # replaced since it was checked
            raise TokenizerChecksumError(f"{path} changed while loading; fetch it again")
        return tokenizer
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"tokenizer {spec!r} is neither 'olmo', 'auto', 'train' nor an existing "
            "tokenizer.json file"
        )
    return TextTokenizer.from_file(path)
