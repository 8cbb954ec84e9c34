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

The contract in parts: ``format`` (constants, errors, token dtypes), ``writer``
(``ShardWriter``), ``manifest`` (``manifest.json`` and ``ShardInfo``), ``reader`` (``TokenShard``,
``ShardSet``), ``inputs`` (``open_shards``, Dolma folders included), and for folders on an
object store ``remote`` (``RemoteShardList``, prefetch; the two ways of reading and what each
verifies), ``cache`` (``ShardCache``, the node's bounded, verified local copy) and ``ranges``
(``RangeShardList``: ranged GETs into a bounded memory buffer). Import from here.

This package must not import torch: the data-prep image has none.
"""

from olmo.data.shards.cache import CacheFullError, ShardCache
from olmo.data.shards.format import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    TOKEN_DTYPES,
    MissingIndexError,
    ShardFormatError,
    dtype_for_vocab,
)
from olmo.data.shards.inputs import open_shards
from olmo.data.shards.manifest import (
    Manifest,
    ShardInfo,
    manifest_sha256,
    parse_manifest,
    read_manifest,
    write_manifest,
)
from olmo.data.shards.ranges import RangeShardList
from olmo.data.shards.reader import DocumentSpan, ShardSet, TokenShard
from olmo.data.shards.remote import RemoteShardList
from olmo.data.shards.writer import ShardWriter

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "TOKEN_DTYPES",
    "CacheFullError",
    "DocumentSpan",
    "Manifest",
    "MissingIndexError",
    "RangeShardList",
    "RemoteShardList",
    "ShardCache",
    "ShardFormatError",
    "ShardInfo",
    "ShardSet",
    "ShardWriter",
    "TokenShard",
    "dtype_for_vocab",
    "manifest_sha256",
    "open_shards",
    "parse_manifest",
    "read_manifest",
    "write_manifest",
]
