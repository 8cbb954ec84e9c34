"""Documents per source: each package's selected files through its source's converter
(``books``: ``jargon``; ``docs``: ``html_text``; ``code``: below), as Dolma records.

``code``: Python modules from pinned pure-Python wheels, one document per ``.py`` file of
``CODE_MIN_CHARS`` to ``CODE_MAX_CHARS`` characters that defines or imports something (tiny
re-export modules, huge monolithic ones and data-only ones are skipped); a package's
``max_files`` caps its share deterministically (the files whose ``sha256(name, path)`` sort
first).

A record is ``{"id", "text", "source", "added", "created", "metadata": {"package", "version",
"path", "license", ...}}``, with ids ``<source>-000000``, ... in build order, ``added`` the
constant ``CORPUS_ADDED`` and ``created`` the package's release date.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .archives import selected_members
from .html_text import html_to_sections
from .jargon import jargon_documents
from .packages import CorpusPackage
from .settings import CODE_MAX_CHARS, CODE_MIN_CHARS, CORPUS_ADDED

_GZIP_LEVEL = 6


@dataclass(frozen=True)
class SourceDoc:
    """One converted document before it gets its id: its package, path and (optional) title."""

    pkg: CorpusPackage
    path: str
    text: str
    title: str | None = None


def books_docs(pkg: CorpusPackage, files: dict[str, bytes]) -> Iterator[SourceDoc]:
    for path in selected_members(pkg, files):
        data = files[path]
        if path.endswith(".gz"):
            data = gzip.decompress(data)
        for title, text in jargon_documents(data.decode("utf-8")):
            yield SourceDoc(pkg, path, text, title)


def docs_docs(pkg: CorpusPackage, files: dict[str, bytes]) -> Iterator[SourceDoc]:
    for path in selected_members(pkg, files):
        html = files[path].decode("utf-8", "replace")
        for title, text in html_to_sections(html):
            yield SourceDoc(pkg, path, text, title or None)


def has_code(text: str) -> bool:
    """Whether a module defines or imports anything (data-only modules are skipped)."""
    return "def " in text or "import " in text


def code_docs(pkg: CorpusPackage, files: dict[str, bytes]) -> Iterator[SourceDoc]:
    chosen: list[tuple[str, str]] = []
    for path in selected_members(pkg, files):
        try:
            text = files[path].decode("utf-8")
        except UnicodeDecodeError:
            continue
        text = text.replace("\r\n", "\n")
        if CODE_MIN_CHARS <= len(text) <= CODE_MAX_CHARS and has_code(text):
            chosen.append((path, text))
    if pkg.max_files is not None and len(chosen) > pkg.max_files:

        def rank(item: tuple[str, str]) -> str:
            return hashlib.sha256(f"{pkg.name}\0{item[0]}".encode()).hexdigest()

        chosen = sorted(sorted(chosen, key=rank)[: pkg.max_files])
    for path, text in chosen:
        yield SourceDoc(pkg, path, text)


CONVERTERS = {"books": books_docs, "docs": docs_docs, "code": code_docs}


def dolma_record(source: str, index: int, doc: SourceDoc) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "package": doc.pkg.name,
        "version": doc.pkg.version,
        "path": doc.path,
        "license": doc.pkg.license,
    }
    if doc.title:
        metadata["title"] = doc.title
    return {
        "id": f"{source}-{index:06d}",
        "text": doc.text,
        "source": source,
        "added": CORPUS_ADDED,
        "created": doc.pkg.created,
        "metadata": metadata,
    }


def gzip_bytes(payload: bytes) -> bytes:
    """Gzip with mtime 0 and no file name: the same bytes in every build."""
    buf = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=_GZIP_LEVEL
    ) as gz:
        gz.write(payload)
    return buf.getvalue()
