"""Reading raw documents for the Dolma-style pipeline: every input document accounted for.

The first stage of the pipeline turns input files into ``Document`` records. Input is messy (a
crawl shard cut short by a failed upload, a line of Latin-1, an object without text), and the
pipeline's accounting needs to say what happened to *every* input document, so
``read_documents`` never raises for bad content: it yields exactly one item per input document,
either a ``Document`` or a ``ReadError`` with a stable, machine-readable reason (``REASON_*``).
Only caller errors (an unsupported extension, a bad argument) and I/O errors (a missing or
unreadable file) raise.

Formats, chosen by extension (case-insensitive):

- ``.json.gz`` / ``.jsonl.gz``: gzip-compressed JSON Lines, the Dolma document format (fields
  ``id``, ``text``, ``source``, ``added``, ``created``, ``metadata``; the URL is a top-level
  ``url`` or ``metadata.url``);
- ``.jsonl`` / ``.json``: plain JSON Lines (a ``.json`` file is read as JSON Lines too, as in
  Dolma, not as one JSON value);
- ``.parquet``: columns ``id``, ``text`` and optionally ``source``, ``url``, ``added``,
  ``created``, ``metadata`` (a struct, a map or a JSON string), read in record batches.

JSON Lines: lines are split on ``\\n`` only (a raw U+2028 inside a JSON string is not a line
break), read as bytes and decoded as strict UTF-8. One non-blank line is one input document;
blank (whitespace-only) lines are skipped silently. ``loc`` is ``"path:line"`` with 1-based
physical line numbers (blank lines counted, as in an editor); for Parquet it is ``"path:row"``
with the 0-based row index in the file.

Truncated or corrupt gzip: the documents decoded before the damage come through, then one
``ReadError`` (``truncated_gzip`` when the compressed stream ends early, ``corrupt_gzip`` when
it is not valid gzip/deflate data or fails its CRC) stands for the rest of the file, located at
the first line that was not completely read. How many lines were lost is unknowable without the
missing bytes, so that single error may stand for zero, one or many documents (zero when the cut
fell exactly after a newline and only the gzip trailer is missing). A CRC failure is only seen at
the end of a gzip member, so lines decoded from damaged data before it may already have been
yielded. Corrupt Parquet: the row count is in the footer, so a file whose footer is unreadable
yields one ``corrupt_parquet`` error (at row 0), and a file that fails mid-way yields one
``corrupt_parquet`` error per row that could not be read.

Checks on a parsed record, in order: ``not_an_object`` (the line is valid JSON but not an
object), ``missing_text`` (no ``text`` or null), ``text_not_string``, ``empty_text`` (empty or
whitespace-only), ``too_long`` (more than ``max_chars`` characters), ``invalid_utf8`` (the text
holds a lone surrogate from a ``\\ud800``-style escape, which cannot be encoded as UTF-8).

Documents without an id (missing, null, empty or not a string/integer) get a stable generated id:
a hash of the ``source`` argument and ``loc``, so the same file read through the same path gives
the same ids. ``Document.source`` is always the ``source`` argument (the pipeline's name for the
input), not the record's own ``source`` field.

Stdlib and pyarrow only; must not import torch.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import itertools
import json
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "READ_ERROR_REASONS",
    "REASON_CORRUPT_GZIP",
    "REASON_CORRUPT_PARQUET",
    "REASON_EMPTY_TEXT",
    "REASON_INVALID_UTF8",
    "REASON_MALFORMED_JSON",
    "REASON_MISSING_TEXT",
    "REASON_NOT_AN_OBJECT",
    "REASON_TEXT_NOT_STRING",
    "REASON_TOO_LONG",
    "REASON_TRUNCATED_GZIP",
    "SUPPORTED_SUFFIXES",
    "Document",
    "ReadError",
    "generated_id",
    "iter_input_files",
    "read_documents",
    "shard_files",
]

REASON_MALFORMED_JSON = "malformed_json"
REASON_INVALID_UTF8 = "invalid_utf8"
REASON_MISSING_TEXT = "missing_text"
REASON_TEXT_NOT_STRING = "text_not_string"
REASON_EMPTY_TEXT = "empty_text"
REASON_TOO_LONG = "too_long"
REASON_TRUNCATED_GZIP = "truncated_gzip"
REASON_CORRUPT_GZIP = "corrupt_gzip"
REASON_CORRUPT_PARQUET = "corrupt_parquet"
REASON_NOT_AN_OBJECT = "not_an_object"

READ_ERROR_REASONS = (
    REASON_MALFORMED_JSON,
    REASON_INVALID_UTF8,
    REASON_MISSING_TEXT,
    REASON_TEXT_NOT_STRING,
    REASON_EMPTY_TEXT,
    REASON_TOO_LONG,
    REASON_TRUNCATED_GZIP,
    REASON_CORRUPT_GZIP,
    REASON_CORRUPT_PARQUET,
    REASON_NOT_AN_OBJECT,
)

_GZIP_SUFFIXES = (".json.gz", ".jsonl.gz")
_JSONL_SUFFIXES = (".jsonl", ".json")
_PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = _GZIP_SUFFIXES + _JSONL_SUFFIXES + _PARQUET_SUFFIXES

_PARQUET_COLUMNS = ("id", "text", "source", "url", "added", "created", "metadata")
_PARQUET_BATCH_ROWS = 1024
_CHUNK_BYTES = 1 << 20
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Document:
    """One raw input document; ``loc`` says where it came from (``path:line`` / ``path:row``)."""

    id: str
    text: str
    source: str
    loc: str
    url: str | None = None
    added: str | None = None
    created: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadError:
    """One input document (or, for a damaged gzip, the unreadable rest of a file) not read.

    ``reason`` is one of ``READ_ERROR_REASONS``; ``id`` is the record's own id when it could be
    parsed; ``detail`` is a human-readable message (not stable, for logs only).
    """

    source: str
    loc: str
    reason: str
    id: str | None = None
    detail: str = ""


def generated_id(source: str, loc: str) -> str:
    """The stable id given to a document without one: a hash of its source and location."""
    key = f"{source}\0{loc}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest()[:32]


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_GZIP_SUFFIXES):
        return "gzip"
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise ValueError(f"unsupported input file {str(path)!r}: expected one of {SUPPORTED_SUFFIXES}")


def _is_supported(path: Path) -> bool:
    return path.name.lower().endswith(SUPPORTED_SUFFIXES)


def read_documents(
    path: str | Path, *, source: str, max_chars: int = 10_000_000
) -> Iterator[Document | ReadError]:
    """Yield one ``Document`` or ``ReadError`` per input document of ``path`` (see module doc).

    Raises ``ValueError`` for an unsupported extension or a bad ``max_chars`` and ``OSError``
    for a missing or unreadable file (checked when iteration starts); never for bad content.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be a positive integer, got {max_chars!r}")
    path = Path(path)
    fmt = _format_of(path)
    if fmt == "parquet":
        return _read_parquet(path, source=source, max_chars=max_chars)
    return _read_jsonl(path, source=source, max_chars=max_chars, gzipped=fmt == "gzip")


def _iter_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(1-based line number, line without its newline)``; a partial line at a failed read is
    dropped (the read's exception propagates)."""
    pending: list[bytes] = []
    lineno = 0
    while True:
        chunk = stream.read1(_CHUNK_BYTES)  # type: ignore[attr-defined]
        if not chunk:
            break
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if start < len(chunk):
                    pending.append(chunk[start:])
                break
            piece = chunk[start:nl]
            if pending:
                pending.append(piece)
                piece = b"".join(pending)
                pending.clear()
            lineno += 1
            yield lineno, piece
            start = nl + 1
    if pending:
        yield lineno + 1, b"".join(pending)


def _read_jsonl(
    path: Path, *, source: str, max_chars: int, gzipped: bool
) -> Iterator[Document | ReadError]:
    damaged: tuple[type[BaseException], ...] = (
        (EOFError, gzip.BadGzipFile, zlib.error) if gzipped else ()
    )
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as stream:
        lines = _iter_lines(stream)  # type: ignore[arg-type]
        last = 0
        while True:
            try:
                lineno, raw = next(lines)
            except StopIteration:
                break
            except damaged as exc:
                reason = REASON_TRUNCATED_GZIP if isinstance(exc, EOFError) else REASON_CORRUPT_GZIP
                yield ReadError(source, f"{path}:{last + 1}", reason, detail=str(exc))
                break
            last = lineno
            if not raw.strip():
                continue
            yield _parse_line(
                raw, lineno == 1, source=source, loc=f"{path}:{lineno}", max_chars=max_chars
            )


def _parse_line(
    raw: bytes, first: bool, *, source: str, loc: str, max_chars: int
) -> Document | ReadError:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ReadError(source, loc, REASON_INVALID_UTF8, detail=str(exc))
    if first and line.startswith("\ufeff"):
        line = line[1:]
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, deep nesting
        return ReadError(source, loc, REASON_MALFORMED_JSON, detail=str(exc)[:200])
    if not isinstance(record, dict):
        return ReadError(source, loc, REASON_NOT_AN_OBJECT, detail=type(record).__name__)
    return _to_document(record, source=source, loc=loc, max_chars=max_chars)


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _record_id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):  # a Parquet map column: [(key, value), ...]
        try:
            return dict(value)
        except (TypeError, ValueError):
            return {}
    if isinstance(value, str):  # a Parquet column holding JSON text
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _to_document(
    record: dict[str, Any], *, source: str, loc: str, max_chars: int
) -> Document | ReadError:
    own_id = _record_id(record.get("id"))
    text = record.get("text")
    reason = None
    if text is None:
        reason = REASON_MISSING_TEXT
    elif not isinstance(text, str):
        reason = REASON_TEXT_NOT_STRING
    elif not text.strip():
        reason = REASON_EMPTY_TEXT
    elif len(text) > max_chars:
        reason = REASON_TOO_LONG
    elif _SURROGATE.search(text):
        reason = REASON_INVALID_UTF8
    if reason is not None:
        detail = f"{len(text)} characters" if reason == REASON_TOO_LONG else ""
        return ReadError(source, loc, reason, id=own_id, detail=detail)
    assert isinstance(text, str)
    metadata = _metadata(record.get("metadata"))
    url = record.get("url")
    if not (isinstance(url, str) and url):
        url = metadata.get("url")
    return Document(
        id=own_id if own_id is not None else generated_id(source, loc),
        text=text,
        source=source,
        loc=loc,
        url=url if isinstance(url, str) and url else None,
        added=_optional_str(record.get("added")),
        created=_optional_str(record.get("created")),
        metadata=metadata,
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


def _read_parquet(path: Path, *, source: str, max_chars: int) -> Iterator[Document | ReadError]:
    with open(path, "rb") as stream:  # I/O errors raise here; anything after is the content
        try:
            parquet = pq.ParquetFile(stream)
            num_rows = parquet.metadata.num_rows
            names = set(parquet.schema_arrow.names)
        except (pa.ArrowException, OSError, ValueError) as exc:
            yield ReadError(source, f"{path}:0", REASON_CORRUPT_PARQUET, detail=str(exc))
            return
        columns = [name for name in _PARQUET_COLUMNS if name in names]
        batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns)
        row = 0
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
            for record in _batch_rows(batch):
                loc = f"{path}:{row}"
                row += 1
                if isinstance(record.get("text"), _BadCell):
                    own_id = _record_id(record.get("id"))
                    yield ReadError(source, loc, REASON_INVALID_UTF8, id=own_id)
                    continue
                record = {k: (None if isinstance(v, _BadCell) else v) for k, v in record.items()}
                yield _to_document(record, source=source, loc=loc, max_chars=max_chars)


def iter_input_files(paths_or_globs: Sequence[str]) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted, deduplicated list of input files.

    A folder is searched recursively and, like a glob, contributes only files with a supported
    extension (``SUPPORTED_SUFFIXES``); ``**`` in a pattern matches any depth. A file named
    directly must have a supported extension (``ValueError``). A path or pattern that yields no
    input file raises ``FileNotFoundError`` naming it. Paths are kept as given (not resolved),
    sorted by their POSIX string.
    """
    if isinstance(paths_or_globs, str):
        raise TypeError("paths_or_globs must be a sequence of strings, not one string")
    if not paths_or_globs:
        raise ValueError("no input paths given")
    found: set[Path] = set()
    for pattern in paths_or_globs:
        matches = [Path(m) for m in sorted(glob.glob(pattern, recursive=True))]
        if not any(ch in pattern for ch in "*?[") and Path(pattern).is_file():
            _format_of(Path(pattern))  # raises ValueError for an unsupported extension
        files: list[Path] = []
        for match in matches:
            if match.is_dir():
                files.extend(p for p in match.rglob("*") if p.is_file() and _is_supported(p))
            elif match.is_file() and _is_supported(match):
                files.append(match)
        if not files:
            raise FileNotFoundError(f"no input files match {pattern!r}")
        found.update(files)
    return sorted(found, key=lambda p: p.as_posix())


def shard_files(files: Sequence[Path], worker_index: int, num_workers: int) -> list[Path]:
    """The files of worker ``worker_index`` out of ``num_workers``: round-robin over the sorted
    list, so every worker computes the same partition independently (Indexed Job workers pass
    their completion index). A worker may get no file when there are more workers than files.
    """
    for name, value in (("worker_index", worker_index), ("num_workers", num_workers)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, {num_workers}), got {worker_index}")
    ordered = sorted((Path(f) for f in files), key=lambda p: p.as_posix())
    duplicates = {p for p, q in itertools.pairwise(ordered) if p == q}
    if duplicates:
        raise ValueError(f"duplicate input files: {sorted(str(p) for p in duplicates)}")
    return ordered[worker_index::num_workers]
