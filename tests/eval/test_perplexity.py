"""Perplexity and bits per byte: closed-form answers, document isolation, window accounting."""

from __future__ import annotations

import gzip
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from olmo.data.shards import ShardWriter, write_manifest
from olmo.eval import PromptTokenizer, evaluate
from olmo.eval.perplexity import Document, evaluate_perplexity, score_documents, windows

from .conftest import FixedDistributionModel, uniform_model, word_tokenizer

WORDS = ["<eos>", *[f"w{i}" for i in range(1, 12)]]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text, "source": "ignored"}) + "\n")
    return path


def random_texts(n: int, seed: int = 0, longest: int = 50) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        " ".join(f"w{i}" for i in rng.integers(1, 12, size=rng.integers(1, longest)))
        for _ in range(n)
    ]


def test_windows_are_plain_non_overlapping_chunks():
    assert windows(1, 4) == []  # the prefix alone: nothing to predict
    assert windows(5, 4) == [(0, 4)]
    assert windows(6, 4) == [(0, 4), (4, 5)]
    assert windows(10, 4) == [(0, 4), (4, 8), (8, 9)]
    for n in range(2, 40):
        spans = windows(n, 7)
        assert spans[0][0] == 0 and spans[-1][1] == n - 1  # every input position, once
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert all(0 < end - begin <= 7 for begin, end in spans)


def test_uniform_model_has_perplexity_v(tmp_path, bpe):
    vocab = 320
    texts = ["Who proposed the theory of evolution? darwin " * k for k in (1, 3, 7)]
    texts.append("ünïcödé → bytes ≠ characters")
    path = write_jsonl(tmp_path / "docs.jsonl.gz", texts)
    ptok = PromptTokenizer(bpe, eos_token_id=0)
    result = evaluate_perplexity(uniform_model(vocab, 16), ptok, {"web": [path]}, batch_size=3)
    web = result["sources"]["web"]
    tokens = sum(len(bpe.encode(t).ids) for t in texts)
    num_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert tokens > 16 * 3  # several documents span more than one window
    assert (web["documents"], web["tokens"], web["bytes"]) == (4, tokens, num_bytes)
    assert web["perplexity"] == pytest.approx(vocab, rel=1e-6)
    assert web["bits_per_byte"] == pytest.approx(tokens * math.log2(vocab) / num_bytes, rel=1e-6)
    assert result["aggregate"] == web


def test_known_distribution_gives_closed_form_nll(tmp_path):
    q = torch.tensor([0.02] + [0.01 * i for i in range(1, 12)]) + 0.0
    q = q / q.sum()
    model = FixedDistributionModel(q, max_sequence_length=8)
    ptok = PromptTokenizer(word_tokenizer(WORDS), eos_token_id=0)
    texts = random_texts(12)
    sources = {
        "a": [write_jsonl(tmp_path / "a.jsonl", texts[:5])],
        "b": [write_jsonl(tmp_path / "b.jsonl", texts[5:])],
    }
    result = evaluate_perplexity(model, ptok, sources, batch_size=4)
    for name, chunk in (("a", texts[:5]), ("b", texts[5:])):
        ids = [WORDS.index(w) for text in chunk for w in text.split()]
        nll = -sum(math.log(q[i]) for i in ids)
        m = result["sources"][name]
        assert m["tokens"] == len(ids) and m["nll"] == pytest.approx(nll, rel=1e-6)
        assert m["perplexity"] == pytest.approx(math.exp(nll / len(ids)), rel=1e-6)
        num_bytes = sum(len(t.encode()) for t in chunk)
        assert m["bits_per_byte"] == pytest.approx(nll / num_bytes / math.log(2), rel=1e-6)
    a, b, agg = result["sources"]["a"], result["sources"]["b"], result["aggregate"]
    assert agg["tokens"] == a["tokens"] + b["tokens"] and agg["bytes"] == a["bytes"] + b["bytes"]
    pooled = (a["nll"] + b["nll"]) / (a["tokens"] + b["tokens"])  # token-weighted
    assert agg["perplexity"] == pytest.approx(math.exp(pooled), rel=1e-9)


def test_windows_never_cross_documents_and_never_overlap():
    vocab, length = 200, 16
    model = uniform_model(vocab, length, pad_token_id=vocab - 1)
    ptok = PromptTokenizer(word_tokenizer(WORDS), eos_token_id=0)
    sizes = {10: 40, 60: 5, 100: 16, 130: 33}  # first id → document length
    documents = [Document(tuple(range(first, first + n)), n) for first, n in sizes.items()]
    totals = score_documents(model, ptok, documents, batch_size=3)
    assert totals["tokens"] == sum(sizes.values())
    assert totals["nll"] == pytest.approx(sum(sizes.values()) * math.log(vocab), rel=1e-6)
    rows = [row[row != vocab - 1].tolist() for batch in model.calls for row in batch]
    assert all(len(row) <= length for row in rows)
    assert len(rows) == sum(math.ceil(n / length) for n in sizes.values())
    for row in rows:  # each row holds tokens of one document (plus the prefix, EOS = 0)
        owners = {first for first, n in sizes.items() for t in row if first <= t < first + n}
        assert len(owners) == 1 and all(t == 0 for t in row if t < 10)
    inputs = [t for row in rows for t in row if t != 0]
    # Non-overlapping: every document token is fed once, except each document's last token.
    expected = [t for first, n in sizes.items() for t in range(first, first + n - 1)]
    assert sorted(inputs) == sorted(expected)
    assert sum(row.count(0) for row in rows) == len(sizes)  # the prefix starts each document


def write_shards(folder: Path, texts: list[str], manifest: bool = True) -> Path:
    with ShardWriter(folder, dtype="uint16", eos_token_id=0, max_tokens_per_shard=60) as w:
        for i, text in enumerate(texts):
            w.add_document([WORDS.index(t) for t in text.split()], doc_id=str(i), source="x")
    if manifest:
        write_manifest(folder, shards=w.shards, dtype="uint16", eos_token_id=0,
                       tokenizer={"name": "words"}, sources={"x": {}})  # fmt: skip
    return folder


def test_token_shards_and_jsonl_of_the_same_texts_agree(tmp_path):
    q = torch.linspace(1, 2, len(WORDS))
    model = FixedDistributionModel(q / q.sum(), max_sequence_length=8)
    ptok = PromptTokenizer(word_tokenizer(WORDS), eos_token_id=0)
    texts = random_texts(15, seed=3)
    shards = write_shards(tmp_path / "tokens", texts)
    assert len(list(shards.glob("*.npy"))) > 1
    dolma = write_shards(tmp_path / "dolma", texts, manifest=False)  # no manifest: dtype inferred
    no_index = write_shards(tmp_path / "bare", texts, manifest=False)
    for index in no_index.glob("*.csv.gz"):
        index.unlink()  # documents then end at EOS
    jsonl = write_jsonl(tmp_path / "docs.jsonl", texts)
    result = evaluate_perplexity(
        model,
        ptok,
        {"shards": [shards], "dolma": [dolma], "bare": [no_index], "jsonl": [jsonl]},
        batch_size=4,
    )
    reference = result["sources"]["jsonl"]
    assert reference["documents"] == 15
    for name in ("shards", "dolma", "bare"):
        assert result["sources"][name] == pytest.approx(reference, rel=1e-9)


def test_evaluate_with_perplexity_only_and_input_errors(tmp_path):
    model = uniform_model(len(WORDS), 8)
    tokenizer = word_tokenizer(WORDS)
    jsonl = write_jsonl(tmp_path / "d.jsonl", random_texts(6))
    results = evaluate(model, tokenizer, tasks=[], perplexity={"web": [jsonl]},
                       perplexity_limit=4)  # fmt: skip
    assert results["tasks"] == {} and results["continuations_scored"] == 0
    assert results["perplexity"]["sources"]["web"]["documents"] == 4
    assert results["perplexity"]["aggregate"]["perplexity"] == pytest.approx(len(WORDS), rel=1e-6)
    ptok = PromptTokenizer(tokenizer, eos_token_id=0)
    with pytest.raises(FileNotFoundError, match="perplexity input not found"):
        evaluate_perplexity(model, ptok, {"web": [tmp_path / "missing.jsonl"]})
    (tmp_path / "bad.jsonl").write_text('{"txt": "w1"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: expected an object with a 'text'"):
        evaluate_perplexity(model, ptok, {"web": [tmp_path / "bad.jsonl"]})
    (tmp_path / "empty.jsonl").write_text('{"text": ""}\n')
    with pytest.raises(ValueError, match="no non-empty documents"):
        evaluate_perplexity(model, ptok, {"web": [tmp_path / "empty.jsonl"]})
