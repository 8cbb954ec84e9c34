"""The run's tokenizer, settled between the dedup and tokenize phases: worker 0 writes
``tokenizer.json`` (a copy of the configured one, or a BPE trained on the kept text in global
order); every worker then loads that file, so all of them tokenize with the same bytes."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..config import PipelineConfig
from ..tokenizer import (
    OLMO_TOKENIZER,
    TextTokenizer,
    cached_olmo_tokenizer,
    resolve_tokenizer,
    train_bpe,
)
from .dedup_phase import FileDecisions, remove_paragraphs
from .plan import InputFile, Layout
from .tables import iter_batches

log = logging.getLogger("olmo_dataprep")

TRAINED_TOKENIZER_NAME = "bpe-trained-on-corpus"


def _kept_texts(
    layout: Layout, files: Sequence[InputFile], decisions: dict[int, FileDecisions]
) -> Iterator[str]:
    for f in files:
        dec = decisions[f.index]
        for table in iter_batches(layout.map_table(f), ["pos", "stage", "text"]):
            for pos, stage, text in zip(table["pos"], table["stage"], table["text"], strict=True):
                if stage is None and dec.drop(pos) is None and text is not None:
                    yield remove_paragraphs(text, dec.removed(pos))


def trains_tokenizer(config: PipelineConfig) -> bool:
    """Whether ``settle_tokenizer`` trains one (and so reads the kept text of every file)."""
    name = config.tokenizer.name
    return name == "train" or (name == "auto" and cached_olmo_tokenizer() is None)


def settle_tokenizer(
    layout: Layout,
    config: PipelineConfig,
    files: Sequence[InputFile],
    decisions: dict[int, FileDecisions],
    *,
    quiet: bool,
) -> None:
    """Worker 0: write the run's ``tokenizer.json`` (a copy of the chosen one, or trained)."""
    name = config.tokenizer.name
    if name == "auto":
        name = "olmo" if cached_olmo_tokenizer() is not None else "train"
    if name != "train":
        tokenizer = resolve_tokenizer(name)
        assert tokenizer is not None
        tokenizer.save(layout.tokenizer)
        return
    budget = config.tokenizer.train_max_chars

    def sample() -> Iterator[str]:
        used = 0
        for text in _kept_texts(layout, files, decisions):
            if used >= budget:
                return
            used += len(text)
            yield text

    if not quiet:
        log.info(
            "training a %d-token byte-level BPE on the kept text", config.tokenizer.train_vocab_size
        )
    trained = train_bpe(sample(), vocab_size=config.tokenizer.train_vocab_size)
    TextTokenizer.from_tokenizer(
        trained,
        eos_token_id=trained.token_to_id("<|endoftext|>"),
        pad_token_id=trained.token_to_id("<|padding|>"),
        name=TRAINED_TOKENIZER_NAME,
    ).save(layout.tokenizer)


def load_run_tokenizer(layout: Layout, config: PipelineConfig) -> TextTokenizer:
    """The run's ``tokenizer.json``, named after where it came from (OLMo's is recognised by
    its sha256; a trained one is ``bpe-trained-on-corpus``; a given file keeps its name)."""
    spec = config.tokenizer.name
    if spec in ("auto", "train", "olmo"):
        tokenizer = TextTokenizer.from_file(layout.tokenizer)
        if tokenizer.sha256 != OLMO_TOKENIZER.sha256:
            tokenizer = TextTokenizer.from_file(layout.tokenizer, name=TRAINED_TOKENIZER_NAME)
        return tokenizer
    return TextTokenizer.from_file(layout.tokenizer, name=Path(spec).name)
