"""Dolma-style data preparation: raw documents → filtered, deduplicated, mixed token shards.

``olmo-dataprep run PIPELINE.yaml`` (``cli``) runs ``pipeline.run_pipeline``: read (``readers``)
→ language ID (``langid``) → exact URL / document dedup and paragraph dedup (``dedup``) →
near-duplicates (``minhash``) → Gopher and C4 quality rules (``quality``) → bad words
(``badwords``) → PII (``content``) → decontamination (``dedup``) → mixing → tokenization
(``tokenizer``) into the shards of ``olmo.data.shards``, every document accounted for.
``corpus`` builds the embedded corpus. No module here imports torch.
"""

__version__ = "0.1.0"
