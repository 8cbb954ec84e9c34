"""The tables a run writes and their vocabulary: the map phase's per-file table (``work/map``),
the per-document decisions (``work/tok``, then ``accounting/``), the stage names, and the
atomic writers every per-file output goes through (what makes a killed run resumable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from olmo.fileio import write_atomic

from ..config import SkippableStage

# Every stage in order: reading, the switchable stages (config.SkippableStage), then mixing.
STAGES = ("read", *get_args(SkippableStage), "mixing")
KEPT = "kept"

# One row per input item, in file order: where it is, the first stage that dropped it (null while
# kept), what language ID said, the dedup keys (null where a stage is off or skipped) and the text
# after quality and PII masking (null for a dropped document).
MAP_SCHEMA = pa.schema([
    ("pos", pa.int64()), ("id", pa.string()), ("loc", pa.string()),
    ("stage", pa.string()), ("reason", pa.string()),
    ("language", pa.string()), ("language_score", pa.float32()),
    ("url_hash", pa.binary()), ("text_hash", pa.binary()), ("minhash", pa.binary()),
    ("para_hashes", pa.list_(pa.binary())),
    ("text", pa.string()),
])  # fmt: skip
# One row per input item: the accounting (``tokens`` per copy with EOS, ``copies`` written).
DECISION_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("file", pa.string()), ("loc", pa.string()),
    ("stage", pa.string()), ("reason", pa.string()),
    ("tokens", pa.int64()), ("copies", pa.int64()),
])  # fmt: skip


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", write_statistics=False)
    return sink.getvalue().to_pybytes()


def write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, _table_bytes(table))


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
