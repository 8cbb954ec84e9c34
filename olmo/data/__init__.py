"""Training data: the token-shard contract (writer, manifest, reader), instances and global order.

Torch-free (numpy + stdlib) on purpose: the data-prep service writes shards with the same code
the trainer reads them with.
"""

from olmo.data.dataset import InstanceDataset, InstanceDocument
from olmo.data.order import GlobalOrder, epoch_permutation, rank_slice
from olmo.data.shards import (
    DocumentSpan,
    Manifest,
    MissingIndexError,
    ShardFormatError,
    ShardInfo,
    ShardSet,
    ShardWriter,
    TokenShard,
    dtype_for_vocab,
    manifest_sha256,
    open_shards,
    read_manifest,
    write_manifest,
)

__all__ = [
    "DocumentSpan",
    "GlobalOrder",
    "InstanceDataset",
    "InstanceDocument",
    "Manifest",
    "MissingIndexError",
    "ShardFormatError",
    "ShardInfo",
    "ShardSet",
    "ShardWriter",
    "TokenShard",
    "dtype_for_vocab",
    "epoch_permutation",
    "manifest_sha256",
    "open_shards",
    "rank_slice",
    "read_manifest",
    "write_manifest",
]
