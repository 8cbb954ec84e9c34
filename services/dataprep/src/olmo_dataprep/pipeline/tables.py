"""The tables a run writes and their vocabulary: the map phase's per-file table (``work/map``),
the per-document decisions (``work/tok``, then ``accounting/``), the stage names, and the
atomic writers every per-file output goes through (what makes a killed run resumable).

**Bounded memory.** No phase holds a whole file's rows: ``TableWriter`` writes a table one row
group at a time (at most ``GROUP_ROWS`` rows; the map phase also starts a new group past
``GROUP_TEXT_CHARS`` characters of text) to a hidden temporary name and renames it into place
when complete, and ``iter_batches`` reads a table back one row group (at most ``GROUP_ROWS``
rows) at a time, so a phase holds one group of rows, whatever the file's size.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from olmo.fileio import fsync_dir, write_atomic

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


# Rows per row group of every table a run writes, and per batch read back.
GROUP_ROWS = 1000
# Characters of text after which the map phase starts a new row group (at most 64 MiB of UTF-8).
GROUP_TEXT_CHARS = 16 << 20


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class TableWriter:
    """Write a Parquet table of ``schema`` to ``path`` one row group at a time (``write``).

    The rows go to a hidden temporary file next to ``path`` (``.NAME.tmp``), renamed into place
    by ``close`` (after an fsync), so a killed run never leaves a half table under the final
    name, and its re-run, writing the same table again, replaces the temporary file it left.
    Leaving the ``with`` block by an exception removes the temporary file. Compressed with zstd,
    without statistics.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        # One name per table (the file's owner is its only writer): a re-run after a kill
        # writes over what the killed run left there, so nothing stays behind.
        self._tmp = path.with_name(f".{path.name}.tmp")
        self._file: IO[bytes] | None = open(self._tmp, "wb")  # noqa: SIM115 (closed below)
        self._writer = pq.ParquetWriter(
            self._file, schema, compression="zstd", write_statistics=False
        )

    def write(self, columns: dict[str, Sequence[Any]]) -> None:
        """One row group: every column of the schema, as Python values."""
        table = pa.table({name: columns[name] for name in self.schema.names}, schema=self.schema)
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close(self) -> None:
        """Finish the table and rename it into place."""
        if self._file is None:
            return
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Discard the table (its temporary file is removed)."""
        if self._file is None:
            return
        with contextlib.suppress(Exception):
            self._writer.close()
        self._file.close()
        self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_batches(path: Path, columns: Sequence[str]) -> Iterator[dict[str, list[Any]]]:
    """The ``columns`` of a table as Python lists, one row group (at most ``GROUP_ROWS`` rows)
    at a time, in order."""
    with pq.ParquetFile(path) as parquet:
        for group in range(parquet.num_row_groups):
            for batch in parquet.iter_batches(
                batch_size=GROUP_ROWS, row_groups=[group], columns=list(columns), use_threads=False
            ):
                yield batch.to_pydict()
