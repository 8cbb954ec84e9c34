"""Parquet input files of the data-prep readers (``readers.read_documents`` dispatches here by
extension): columns ``id``, ``text`` and optionally ``source``, ``url``, ``added``, ``created``,
``metadata``, read in record batches so a file is never held whole; a text longer than the limit
is screened out by its byte length before it is decoded. Every row yields one ``Document`` or
``ReadError``, as the JSON Lines reader does. pyarrow is imported only when a Parquet file is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from olmo_dataprep.readers import (
    _PARQUET_BATCH_ROWS,
    _PARQUET_BUFFER_BYTES,
    _PARQUET_COLUMNS,
    REASON_CORRUPT_PARQUET,
    REASON_EMPTY_TEXT,
    REASON_INVALID_UTF8,
    REASON_TOO_LARGE,
    REASON_TOO_LONG,
    Document,
    InputPath,
    ReadError,
    _open,
    _record_id,
    _to_document,
)


def _batch_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    try:
        return batch.to_pylist()
    except (ValueError, UnicodeDecodeError, pa.ArrowException):
        pass
    # Some cell does not convert (e.g. invalid UTF-8 in a string column): go cell by cell.
    rows: list[dict[str, Any]] = [{} for _ in range(batch.num_rows)]
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        for i in range(batch.num_rows):
            try:
                rows[i][name] = column[i].as_py()
            except (ValueError, UnicodeDecodeError, pa.ArrowException):
                rows[i][name] = _BadCell()
    return rows


class _BadCell:
    """Stands for a Parquet cell that could not be converted to a Python value."""


def _screen_long_texts(
    batch: pa.RecordBatch, max_chars: int
) -> tuple[pa.RecordBatch, dict[int, tuple[str, str]]]:
    """Find the text cells of more than ``4 * max_chars`` bytes (so more than ``max_chars``
    characters) without converting them to Python. Returns the batch with those cells made null
    and, by row in the batch, their ``(reason, detail)``: ``too_long``, or ``invalid_utf8`` /
    ``empty_text`` as a shorter cell would get."""
    if "text" not in batch.schema.names:
        return batch, {}
    index = batch.schema.get_field_index("text")
    column = batch.column(index)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return batch, {}
    lengths = pc.binary_length(column)
    over = pc.fill_null(pc.greater(lengths, 4 * max_chars), False)
    rows = pc.indices_nonzero(over).to_pylist()
    if not rows:
        return batch, {}
    errors: dict[int, tuple[str, str]] = {}
    for row in rows:
        cell = column.slice(row, 1)
        try:
            cell.validate(full=True)  # the UTF-8 check a conversion would make
        except pa.ArrowInvalid as exc:
            errors[row] = (REASON_INVALID_UTF8, str(exc))
            continue
        if pc.utf8_is_space(cell)[0].as_py():
            errors[row] = (REASON_EMPTY_TEXT, "")
        else:
            detail = f"{lengths[row].as_py()} bytes, more than {max_chars} characters"
            errors[row] = (REASON_TOO_LONG, detail)
    # A take with null indices, not if_else, which sizes its output by the cells it drops.
    picks = pa.array([None if row in errors else row for row in range(len(column))], pa.int64())
    return batch.set_column(index, "text", column.take(picks)), errors


def _read_parquet(
    path: InputPath, *, source: str, max_chars: int, max_file_bytes: int
) -> Iterator[Document | ReadError]:
    with _open(path) as stream:  # I/O errors raise here; anything after is the content
        try:
            parquet = pq.ParquetFile(stream, buffer_size=_PARQUET_BUFFER_BYTES)
            num_rows = parquet.metadata.num_rows
            names = set(parquet.schema_arrow.names)
        except (pa.ArrowException, OSError, ValueError) as exc:
            yield ReadError(source, f"{path}:0", REASON_CORRUPT_PARQUET, detail=str(exc))
            return
        columns = [name for name in _PARQUET_COLUMNS if name in names]
        batches = parquet.iter_batches(
            batch_size=_PARQUET_BATCH_ROWS, columns=columns, use_threads=False
        )
        row = 0
        total = 0
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (pa.ArrowException, OSError, ValueError) as exc:
                for lost in range(row, max(num_rows, row + 1)):
                    yield ReadError(
                        source, f"{path}:{lost}", REASON_CORRUPT_PARQUET, detail=str(exc)
                    )
                return
            total += batch.nbytes
            if total > max_file_bytes:
                detail = f"more than {max_file_bytes} bytes of decoded data"
                for lost in range(row, max(num_rows, row + 1)):
                    yield ReadError(source, f"{path}:{lost}", REASON_TOO_LARGE, detail=detail)
                return
            batch, screened = _screen_long_texts(batch, max_chars)
            for i, record in enumerate(_batch_rows(batch)):
                loc = f"{path}:{row}"
                row += 1
                if i in screened:
                    reason, detail = screened[i]
                    own_id = _record_id(record.get("id"))
                    yield ReadError(source, loc, reason, id=own_id, detail=detail)
                    continue
                if isinstance(record.get("text"), _BadCell):
                    own_id = _record_id(record.get("id"))
                    yield ReadError(source, loc, REASON_INVALID_UTF8, id=own_id)
                    continue
                record = {k: (None if isinstance(v, _BadCell) else v) for k, v in record.items()}
                yield _to_document(record, source=source, loc=loc, max_chars=max_chars)
