"""The token-shard format's constants, errors and token dtypes (shared by writer and readers)."""

from __future__ import annotations

from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TOKEN_DTYPES = ("uint16", "uint32")


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


def as_token_dtype(dtype: Any) -> np.dtype:
    """Normalise a token dtype (``"uint16"``, ``np.uint32``, ...); only uint16/uint32 are valid."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in TOKEN_DTYPES:
        raise ValueError(f"token dtype must be one of {', '.join(TOKEN_DTYPES)}, got {dtype!r}")
    return resolved.newbyteorder("<") if resolved.byteorder == ">" else resolved


def check_eos(eos_token_id: int, dtype: np.dtype) -> int:
    if isinstance(eos_token_id, bool) or not isinstance(eos_token_id, int | np.integer):
        raise ValueError(f"eos_token_id must be an integer, got {eos_token_id!r}")
    if not 0 <= eos_token_id <= np.iinfo(dtype).max:
        raise ValueError(
            f"eos_token_id {eos_token_id} does not fit {dtype.name} (ids 0..{np.iinfo(dtype).max})"
        )
    return int(eos_token_id)
