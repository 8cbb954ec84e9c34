"""The embedded corpus's sources and conversion settings. Every setting is recorded with each
source in ``corpus.json`` (``build.conversion_settings``), so changing one rebuilds the corpus."""

from __future__ import annotations

# The sources, in build order; each has a converter in ``documents.CONVERTERS``.
SOURCES = ("books", "docs", "code")

# Bump when the conversion changes: a corpus.json with another format is rebuilt.
CORPUS_FORMAT = "olmo-embedded-corpus/1"
CORPUS_ADDED = "2025-01-01T00:00:00.000Z"
MANIFEST_NAME = "corpus.json"
MAX_DOCS_PER_FILE = 250

GLOSSARY_DOC_WORDS = 300
MIN_SECTION_WORDS = 50
CODE_MIN_CHARS = 1_000
CODE_MAX_CHARS = 16_000
