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

**Bounded memory.** Whatever the input, a reader holds at most one line (or one Parquet batch)
plus a fixed buffer, never a whole file:

- The stream is read in chunks of 1 MiB. A line of more than ``max_line_bytes(max_chars)`` bytes
  (12 bytes per allowed character, the most one character can take in JSON, as a ``\\ud83d\\ude00``
  pair of escapes, plus 1 MiB for the other fields) is discarded *while it is read*, up to its
  newline, and yields one ``too_long`` error at its line, without an id (it is never parsed, so
  its id, and whether it was valid JSON at all, are unknown). Such a line could not have held an
  acceptable document unless its other fields take more than 1 MiB; a shorter line is parsed and
  its text checked against ``max_chars`` exactly (``too_long`` then carries the record's id).
  An over-long line of whitespace only is a blank line, as before.
- At most ``max_file_bytes`` bytes are read from a file (decompressed bytes for gzip: a gzip
  bomb stops there). The lines completed within the cap come through, then one ``too_large``
  error stands for the rest of the file, located at the first line not completely read, like a
  truncated gzip. For Parquet the cap counts the decoded Arrow data of the batches read; the
  rows of the batch that passes it and of every later batch are each a ``too_large`` error
  (Parquet knows its row count).
- Parquet is read in batches of 1024 rows with buffered column-chunk reads. The format cannot
  stream a single value: pyarrow decodes a huge text cell whole, holding it two or three times
  while it does (decompressed page, dictionary, decoded array: a 300 MiB cell costs about
  0.6-0.9 GiB), which is the bound for Parquet input. The reader adds no copy of its own: a cell
  of more than ``4 * max_chars`` bytes (so certainly more than ``max_chars`` characters) is
  rejected from the Arrow buffer without being converted to a Python string: ``too_long``, or
  ``invalid_utf8`` / ``empty_text`` when the cell is not valid UTF-8 / only whitespace, as a
  shorter cell would be.

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

Errors for a whole file's rest: ``truncated_gzip``, ``corrupt_gzip`` (above) and ``too_large``
(more than ``max_file_bytes`` bytes read; see *Bounded memory*).

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
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "READ_ERROR_REASONS",
    "REASON_CORRUPT_GZIP",
    "REASON_CORRUPT_PARQUET",
    "REASON_EMPTY_TEXT",
    "REASON_INVALID_UTF8",
    "REASON_MALFORMED_JSON",
    "REASON_MISSING_TEXT",
    "REASON_NOT_AN_OBJECT",
    "REASON_TEXT_NOT_STRING",
    "REASON_TOO_LARGE",
    "REASON_TOO_LONG",
    "REASON_TRUNCATED_GZIP",
    "SUPPORTED_SUFFIXES",
    "Document",
    "ReadError",
    "generated_id",
    "iter_input_files",
    "max_line_bytes",
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
REASON_TOO_LARGE = "too_large"

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
    REASON_TOO_LARGE,
)

_GZIP_SUFFIXES = (".json.gz", ".jsonl.gz")
_JSONL_SUFFIXES = (".jsonl", ".json")
_PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = _GZIP_SUFFIXES + _JSONL_SUFFIXES + _PARQUET_SUFFIXES

_PARQUET_COLUMNS = ("id", "text", "source", "url", "added", "created", "metadata")
_PARQUET_BATCH_ROWS = 1024
_PARQUET_BUFFER_BYTES = 1 << 20
_CHUNK_BYTES = 1 << 20
# The most bytes one character can take in a JSON string: a supplementary-plane character
# written as a pair of escapes, ``\\ud83d\\ude00``.
_MAX_JSON_BYTES_PER_CHAR = 12
_LINE_SLACK_BYTES = 1 << 20  # the record's other fields (id, url, metadata, ...)
DEFAULT_MAX_FILE_BYTES = 64 << 30
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


def max_line_bytes(max_chars: int) -> int:
    """The longest JSON line read whole for a ``max_chars`` limit (see the module doc): longer
    lines are skipped as they are read, as ``too_long``."""
    return _MAX_JSON_BYTES_PER_CHAR * max_chars + _LINE_SLACK_BYTES


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def read_documents(
    path: str | Path,
    *,
    source: str,
    max_chars: int = 10_000_000,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Iterator[Document | ReadError]:
    """Yield one ``Document`` or ``ReadError`` per input document of ``path`` (see module doc).

    Raises ``ValueError`` for an unsupported extension or a bad ``max_chars`` /
    ``max_file_bytes`` and ``OSError`` for a missing or unreadable file (checked when iteration
    starts); never for bad content.
    """
    _positive_int("max_chars", max_chars)
    _positive_int("max_file_bytes", max_file_bytes)
    path = Path(path)
    fmt = _format_of(path)
    if fmt == "parquet":
        return _read_parquet(
            path, source=source, max_chars=max_chars, max_file_bytes=max_file_bytes
        )
    return _read_jsonl(
        path,
        source=source,
        max_chars=max_chars,
        max_file_bytes=max_file_bytes,
        gzipped=fmt == "gzip",
    )


class _TooLarge(Exception):
    """More than ``max_file_bytes`` bytes in a file (raised by ``_iter_lines``)."""


def _is_blank(data: bytes) -> bool:
    return not data or data.isspace()


def _iter_lines(
    stream: IO[bytes], *, max_line_bytes: int, max_file_bytes: int
) -> Iterator[tuple[int, bytes | None]]:
    """``(1-based line number, line without its newline)``, read ``_CHUNK_BYTES`` at a time.

    A line of more than ``max_line_bytes`` bytes is dropped as it is read, never held whole:
    it comes as ``(line number, None)``, or as an empty line when it is whitespace only. A
    partial line at a failed read is dropped (the read's exception propagates). Past
    ``max_file_bytes`` bytes, the lines completed within them come through, then ``_TooLarge``
    is raised.
    """
    pending: list[bytes] = []  # the start of the line being read
    pending_bytes = 0
    skipping = False  # the line being read is too long: discarded up to its newline
    skipped_blank = True  # ... and whitespace only so far
    lineno = 0
    total = 0
    while True:
        chunk = stream.read1(_CHUNK_BYTES)  # type: ignore[attr-defined]
        if not chunk:
            break
        total += len(chunk)
        over = total > max_file_bytes
        if over:
            chunk = chunk[: len(chunk) - (total - max_file_bytes)]
        start = 0
        while start <= len(chunk):
            nl = chunk.find(b"\n", start)
            end = len(chunk) if nl < 0 else nl
            if not skipping and pending_bytes + end - start > max_line_bytes:
                skipping = True
                skipped_blank = all(_is_blank(p) for p in pending)
                pending.clear()
                pending_bytes = 0
            if skipping:
                skipped_blank = skipped_blank and _is_blank(chunk[start:end])
            elif end > start:
                pending.append(chunk[start:end])
                pending_bytes += end - start
            if nl < 0:
                break
            lineno += 1
            if skipping:
                yield lineno, (b"" if skipped_blank else None)
                skipping = False
            else:
                yield lineno, (b"".join(pending) if len(pending) != 1 else pending[0])
                pending.clear()
                pending_bytes = 0
            start = nl + 1
        if over:
            raise _TooLarge(f"more than {max_file_bytes} bytes")
    if skipping:
        yield lineno + 1, (b"" if skipped_blank else None)
    elif pending:
        yield lineno + 1, b"".join(pending)


def _read_jsonl(
    path: Path, *, source: str, max_chars: int, max_file_bytes: int, gzipped: bool
) -> Iterator[Document | ReadError]:
    damaged: tuple[type[BaseException], ...] = (
        (EOFError, gzip.BadGzipFile, zlib.error) if gzipped else ()
    )
    line_limit = max_line_bytes(max_chars)
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as stream:
        lines = _iter_lines(
            stream,  # type: ignore[arg-type]
            max_line_bytes=line_limit,
            max_file_bytes=max_file_bytes,
        )
        last = 0
        while True:
            try:
                lineno, raw = next(lines)
            except StopIteration:
                break
            except _TooLarge as exc:
                yield ReadError(source, f"{path}:{last + 1}", REASON_TOO_LARGE, detail=str(exc))
                break
            except damaged as exc:
                reason = REASON_TRUNCATED_GZIP if isinstance(exc, EOFError) else REASON_CORRUPT_GZIP
                yield ReadError(source, f"{path}:{last + 1}", reason, detail=str(exc))
                break
            last = lineno
            if raw is None:
                detail = f"a line of more than {line_limit} bytes, skipped unread"
                yield ReadError(source, f"{path}:{lineno}", REASON_TOO_LONG, detail=detail)
                continue
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
    path: Path, *, source: str, max_chars: int, max_file_bytes: int
) -> Iterator[Document | ReadError]:
    with open(path, "rb") as stream:  # I/O errors raise here; anything after is the content
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
