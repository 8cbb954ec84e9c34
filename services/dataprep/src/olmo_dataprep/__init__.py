"""Dolma-style data preparation: raw documents → filtered, deduplicated token shards.

Work in progress (issue 4): the per-stage building blocks land first (``quality``: Gopher and
C4 rules; ``content``: PII masking; ``dedup``: exact and paragraph-level dedup and
decontamination); the pipeline, CLI, tokenization, accounting and embedded corpus follow.
"""

__version__ = "0.1.0"
