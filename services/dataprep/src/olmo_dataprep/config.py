"""The pipeline file of ``olmo-dataprep run PIPELINE.yaml``: one strict schema, recipe defaults.

Every stage has a section and an ``enabled`` switch; the thresholds default to the OLMo/Dolma
recipe (``shared/notes/olmo-recipe.md``). Unknown keys and wrong types are errors naming the
key. Relative paths in the file (sources, decontamination files, tokenizer, output) are resolved
against the folder of the pipeline file, so a pipeline can be run from anywhere.

Minimal example::

    output: ../../data/tokens/local
    sources:
      - name: books
        paths: [corpus/books/*.jsonl.gz]
      - name: code
        paths: [corpus/code]
        weight: 0.5            # mixing: keep about half of the code documents
    tokenizer:
      name: auto               # OLMo's tokenizer when cached, else a BPE trained on the corpus

This module must not import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from olmo.config import (
    ConfigError,
    NonNegativeFloat,
    PositiveInt,
    StrictConfig,
    apply_overrides,
    load_yaml,
    validate,
)
from olmo.storage import StorageError, check_uri, is_remote

from .badwords import BadWordsConfig
from .content import PiiConfig
from .langid import LangIdConfig
from .minhash import MinHashConfig
from .quality import QualityConfig
from .readers import DEFAULT_MAX_FILE_BYTES

__all__ = [
    "DecontaminationConfig",
    "DedupConfig",
    "ParagraphDedupConfig",
    "PiiStageConfig",
    "PipelineConfig",
    "QualityStageConfig",
    "SourceConfig",
    "TokenizerConfig",
    "config_hash",
    "load_pipeline_config",
]


SkippableStage = Literal[
    "langid",
    "url_dedup",
    "doc_dedup",
    "near_dedup",
    "quality",
    "bad_words",
    "pii",
    "paragraph_dedup",
    "decontamination",
]


class SourceConfig(StrictConfig):
    """One named input source and its mixing rule.

    ``weight`` is the expected number of copies of each kept document in the output (0.5 keeps
    about half, 2.0 doubles every document, 2.5 doubles each and adds a third copy of about
    half); ``target_tokens`` instead asks for about that many output tokens from this source
    (the rate is computed from the source's kept tokens). The choice per document is a seeded
    hash of (seed, source, document), so it is the same however the work is split.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    paths: list[str] = Field(min_length=1)
    weight: NonNegativeFloat = 1.0
    target_tokens: PositiveInt | None = None
    skip: list[SkippableStage] = Field(default_factory=list)
    """Stages this source bypasses: a code source skips ``langid``, ``quality``, ``bad_words``
    and ``paragraph_dedup`` (prose rules would drop code; repeated lines are normal in it)."""

    @model_validator(mode="after")
    def _one_rule(self) -> SourceConfig:
        if self.target_tokens is not None and self.weight != 1.0:
            raise ValueError(f"source {self.name!r}: give either weight or target_tokens, not both")
        return self


class ReadConfig(StrictConfig):
    max_chars: PositiveInt = 1_000_000
    """Longer documents are dropped as ``too_long`` (a huge document is usually junk). A JSON
    line too long to hold such a document (``readers.max_line_bytes``: 12 bytes per character
    and 1 MiB) is skipped as it is read, never held whole."""
    max_file_bytes: PositiveInt = DEFAULT_MAX_FILE_BYTES
    """At most this many bytes are read from one input file (decompressed, for gzip): the rest
    of a larger file is one ``too_large`` read error (a gzip bomb stops here). Memory does not
    depend on it (files are streamed); it bounds the work and the disk one file can take. The
    default, 64 GiB, leaves wide headroom over real shards (corpora like Dolma come as many gzip
    files of a few hundred MiB, and text compresses about 3-5x) while stopping a bomb long before
    what a small file can expand to (deflate reaches about 1000x: 1 GiB of gzip can hold 1 TiB).
    A real file over the cap loses its tail, counted as ``too_large`` in the summary."""


class ParagraphDedupConfig(StrictConfig):
    enabled: bool = True
    capacity: PositiveInt = 10_000_000
    """Expected number of distinct paragraphs; with ``false_positive_rate`` it sizes the filter."""
    false_positive_rate: float = Field(default=1e-6, gt=0.0, lt=1.0)


class DedupConfig(StrictConfig):
    urls: bool = True
    documents: bool = True
    paragraphs: ParagraphDedupConfig = Field(default_factory=ParagraphDedupConfig)
    minhash: MinHashConfig = Field(default_factory=MinHashConfig)
    partitions: int = Field(default=64, ge=1, le=65536)
    """Key partitions of the exact dedup state (URL and document hashes, paragraph Bloom
    filters), split over the workers (worker w keeps partitions w, w+n, ...): memory per worker
    falls as workers are added. Changing it changes which paragraphs a Bloom false positive
    removes, so it is part of the pipeline's identity; the number of workers is not."""


class QualityStageConfig(QualityConfig):
    enabled: bool = True


class PiiStageConfig(PiiConfig):
    enabled: bool = True


class DecontaminationConfig(StrictConfig):
    """What the ``decontamination`` stage compares each training paragraph with (the union of
    ``set``, ``paragraph_files`` and ``perplexity_sets``; see ``olmo_dataprep.decontam``)."""

    enabled: bool = True
    set: str = Field(default="default", min_length=1)
    """``default``: the paragraphs of the nine core downstream tasks' installed eval data
    (``olmo-dataprep decontam-set build``; built on first use and cached); ``none``: no set; or
    the path of a set file written by ``olmo-dataprep decontam-set build --out PATH``."""
    paragraph_files: list[str] = Field(default_factory=list)
    """UTF-8 files with one eval paragraph per line (e.g. exported from the eval sets)."""
    perplexity_sets: list[str] = Field(default_factory=list)
    """Held-out perplexity sets, as ``olmo-eval --perplexity`` takes them: JSONL files
    (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.json.gz``) of ``{"text": ...}`` records, or token-shard
    folders written by data-prep (decoded with the ``tokenizer.json`` beside their manifest)."""
    min_words: PositiveInt = 13
    """Paragraphs (lines) shorter than this many words are neither stored nor compared."""


class TokenizerConfig(StrictConfig):
    name: str = "auto"
    """``olmo`` (OLMo's GPT-NeoX tokenizer, fetched into the cache), a path to a
    ``tokenizer.json``, ``train`` (a byte-level BPE trained on the kept text) or ``auto``
    (``olmo`` when it is in the cache, else ``train``)."""
    train_vocab_size: PositiveInt = 8192
    train_max_chars: PositiveInt = 50_000_000
    """At most this many characters of kept text, in document order, train the BPE."""
    batch_size: PositiveInt = 256


class OutputConfig(StrictConfig):
    max_tokens_per_shard: PositiveInt = 1 << 28


class PipelineConfig(StrictConfig):
    sources: list[SourceConfig] = Field(min_length=1)
    output: str | None = None
    """The output folder, or a URI on an object store (``s3://bucket/tokens``: the run works in
    a local staging folder and uploads each finished shard, ``manifest.json`` last); ``--output``
    on the command line overrides it."""
    seed: int = 0
    read: ReadConfig = Field(default_factory=ReadConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    quality: QualityStageConfig = Field(default_factory=QualityStageConfig)
    bad_words: BadWordsConfig = Field(default_factory=BadWordsConfig)
    pii: PiiStageConfig = Field(default_factory=PiiStageConfig)
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    shards: OutputConfig = Field(default_factory=OutputConfig)
    processes: PositiveInt | None = None
    """Processes per worker for the map phase (files in parallel); default: the CPUs this
    process may use. Does not change the output."""
    barrier_timeout_s: PositiveInt = 24 * 3600
    """How long a worker waits for the other workers' slices before giving up."""

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return sources


def _uri(value: str) -> str:
    try:
        return check_uri(value)
    except StorageError as e:
        raise ConfigError(str(e)) from None


def _resolve(base: Path, value: str) -> str:
    if is_remote(value):  # a URI (s3://, gs://) is taken as it is
        return _uri(value)
    path = Path(value).expanduser()
    return os.path.normpath(path if path.is_absolute() else base / path)


def load_pipeline_config(
    path: str | Path, overrides: list[str] | None = None, *, output: str | None = None
) -> PipelineConfig:
    """Load and validate a pipeline file; relative paths become relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pipeline file not found: {path}")
    data: dict[str, Any] = load_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides, PipelineConfig)
    config = validate(PipelineConfig, data, source=str(path))
    base = path.resolve().parent
    for source in config.sources:
        source.paths = [_resolve(base, p) for p in source.paths]
    decon = config.decontamination
    decon.paragraph_files = [_resolve(base, p) for p in decon.paragraph_files]
    decon.perplexity_sets = [_resolve(base, p) for p in decon.perplexity_sets]
    if decon.set not in ("default", "none"):
        decon.set = _resolve(base, decon.set)
    if config.tokenizer.name not in ("auto", "olmo", "train"):
        config.tokenizer.name = _resolve(base, config.tokenizer.name)
    if output is not None:
        config.output = (
            _uri(output) if is_remote(output) else str(Path(output).expanduser().resolve())
        )
    elif config.output is not None:
        config.output = _resolve(base, config.output)
    else:
        raise ConfigError(f"{path}: no output folder (set `output:` or pass --output)")
    return config


def config_hash(config: PipelineConfig) -> str:
    """sha256 of everything that decides the output (not where the output goes)."""
    data = config.model_dump(mode="json", exclude={"output", "processes", "barrier_timeout_s"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
