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

**Object storage.** Inputs may be URIs (``s3://bucket/crawl/*.json.gz``, ``gs://...``):
``input_files.iter_input_files`` lists them with the store's glob (fsspec, through
``olmo.storage``) and returns them as ``olmo.storage.Location`` (local files stay ``Path``);
``read_documents``
streams them through ``Location.open`` (ranged reads; a file is never downloaded whole first).
``loc`` then starts with the URI.

Parquet files are read by ``parquet_input`` (pyarrow, imported when one is read); the file
listing is ``input_files``. Stdlib and ``olmo.storage`` (fsspec, imported only for a URI); must
not import torch.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from olmo.storage import Location, is_remote, location

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
    "InputPath",
    "ReadError",
    "generated_id",
    "max_line_bytes",
    "read_documents",
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

InputPath = Path | Location
"""An input file: a local path or a file on an object store."""

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


def _format_of(path: InputPath) -> str:
    name = path.name.lower()
    if name.endswith(_GZIP_SUFFIXES):
        return "gzip"
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise ValueError(f"unsupported input file {str(path)!r}: expected one of {SUPPORTED_SUFFIXES}")


def _is_supported(path: InputPath) -> bool:
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
    path: str | Path | Location,
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
    path = _input_path(path)
    fmt = _format_of(path)
    if fmt == "parquet":
        from olmo_dataprep.parquet_input import _read_parquet

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


def _input_path(path: str | Path | Location) -> InputPath:
    if isinstance(path, Location):
        return path
    return location(path) if is_remote(path) else Path(path)


def _open(path: InputPath) -> IO[bytes]:
    """A binary stream of an input file (a streaming, buffered reader for a URI)."""
    if isinstance(path, Location):
        return path.open("rb", block_size=_CHUNK_BYTES)
    return open(path, "rb")


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
    read = getattr(stream, "read1", None) or stream.read  # fsspec's files have no read1
    while True:
        chunk = read(_CHUNK_BYTES)
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
    path: InputPath, *, source: str, max_chars: int, max_file_bytes: int, gzipped: bool
) -> Iterator[Document | ReadError]:
    damaged: tuple[type[BaseException], ...] = (
        (EOFError, gzip.BadGzipFile, zlib.error) if gzipped else ()
    )
    line_limit = max_line_bytes(max_chars)
    with _open(path) as raw, gzip.open(raw, "rb") if gzipped else raw as stream:
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
