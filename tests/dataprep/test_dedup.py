"""Exact, Bloom-filter paragraph dedup and decontamination (``olmo_dataprep.dedup``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from olmo_dataprep.dedup import (
    REASON_DECONTAMINATED,
    REASON_DEDUP_ALL_PARAGRAPHS,
    BloomFilter,
    Decontaminator,
    ExactDedup,
    ParagraphDedup,
    normalize_text,
    normalize_url,
    text_hash,
    url_hash,
)

# --- normalisation and exact dedup ---------------------------------------------------------


def test_normalize_text() -> None:
    assert normalize_text("  Hello\t\tWORLD \n again  ") == "hello world again"
    # NFD "e" + combining acute == NFC "é"
    assert normalize_text("Caf\u0065\u0301") == normalize_text("caf\u00e9")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("HTTP://Example.COM/path/", "http://example.com/path"),
        ("https://example.com/a#section-2", "https://example.com/a"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://example.com:443/", "https://example.com"),
        ("  https://example.com/q?a=1#f  ", "https://example.com/q?a=1"),
    ],
)
def test_normalize_url_equivalences(a: str, b: str) -> None:
    assert normalize_url(a) == normalize_url(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.com/Path", "http://example.com/path"),  # path is case-sensitive
        ("http://example.com/a?x=1", "http://example.com/a?x=2"),
        ("http://example.com/a", "https://example.com/a"),
        ("http://example.com:8080/a", "http://example.com/a"),
    ],
)
def test_normalize_url_distinctions(a: str, b: str) -> None:
    assert normalize_url(a) != normalize_url(b)


def test_exact_url_dedup() -> None:
    urls = ExactDedup()
    assert not urls.seen_or_add(url_hash("https://Example.com/page/"))
    assert urls.seen_or_add(url_hash("https://example.com/page#comments"))
    assert not urls.seen_or_add(url_hash("https://example.com/other"))
    assert len(urls) == 2


def test_exact_document_dedup_catches_case_and_whitespace_variants() -> None:
    docs = ExactDedup()
    assert not docs.seen_or_add(text_hash("The quick brown fox.\nJumps over."))
    assert docs.seen_or_add(text_hash("  the QUICK   brown fox. jumps\tover.\n"))
    assert not docs.seen_or_add(text_hash("The quick brown fox jumps over."))
    assert len(text_hash("x")) == 16


def test_exact_dedup_save_load(tmp_path: Path) -> None:
    docs = ExactDedup()
    for i in range(100):
        docs.seen_or_add(f"doc {i}")
    docs.save(tmp_path / "seen.npy")
    loaded = ExactDedup.load(tmp_path / "seen.npy")
    assert len(loaded) == 100
    assert loaded.seen_or_add("doc 42")
    assert not loaded.seen_or_add("doc 100")


# --- Bloom filter ---------------------------------------------------------------------------


def test_bloom_sizing_formulas() -> None:
    bf = BloomFilter(capacity=1000, false_positive_rate=0.01)
    assert bf.num_bits == math.ceil(-1000 * math.log(0.01) / math.log(2) ** 2)  # 9586
    assert bf.num_hashes == 7
    assert bf.bits.dtype.name == "uint8"
    with pytest.raises(ValueError):
        BloomFilter(0, 0.01)
    with pytest.raises(ValueError):
        BloomFilter(10, 1.0)


def test_bloom_no_false_negatives_and_fp_rate() -> None:
    n, p = 10_000, 0.01
    bf = BloomFilter(n, p)
    for i in range(n):
        bf.add(f"item-{i}")
    assert all(f"item-{i}" in bf for i in range(n))
    false_pos = sum(f"unseen-{i}" in bf for i in range(n))
    assert false_pos / n <= 2 * p
    assert 0.4 < bf.fill_ratio() < 0.6  # ~0.5 at design load with optimal k
    assert bf.approx_count() == pytest.approx(n, rel=0.05)
    assert n * 0.97 <= bf.count <= n


def test_bloom_add_if_absent_and_bytes_vs_str() -> None:
    bf = BloomFilter(100, 0.001)
    assert not bf.add_if_absent("hello")
    assert bf.add_if_absent("hello")
    assert bf.add_if_absent(b"hello")  # str is hashed as its UTF-8 bytes
    assert bf.count == 1


def test_bloom_save_load_round_trip(tmp_path: Path) -> None:
    bf = BloomFilter(2000, 0.01)
    for i in range(1000):
        bf.add(f"k{i}")
    path = tmp_path / "bloom.npz"
    bf.save(path)
    loaded = BloomFilter.load(path)
    assert (loaded.num_bits, loaded.num_hashes, loaded.count) == (
        bf.num_bits,
        bf.num_hashes,
        bf.count,
    )
    assert (loaded.bits == bf.bits).all()
    assert all(f"k{i}" in loaded for i in range(1000))
    # a resumed worker continues where the saved one stopped
    assert not loaded.add_if_absent("new item")
    assert loaded.add_if_absent("k5")


def test_bloom_load_rejects_other_files(tmp_path: Path) -> None:
    ExactDedup().save(tmp_path / "x.npy")
    with pytest.raises(ValueError, match="not a Bloom filter"):
        BloomFilter.load(tmp_path / "x.npy")


@settings(max_examples=50, deadline=None)
@given(st.sets(st.binary(min_size=0, max_size=40), max_size=200))
def test_bloom_never_forgets(items: set[bytes]) -> None:
    bf = BloomFilter(256, 0.01)
    for item in items:
        bf.add(item)
    assert all(item in bf for item in items)


# --- paragraph dedup ------------------------------------------------------------------------


def test_paragraph_dedup_across_documents() -> None:
    pd = ParagraphDedup(BloomFilter(1000, 0.001))
    first = pd.process("Intro paragraph.\n\nShared footer text.\nUnique one.")
    assert first.keep
    assert (first.paragraphs_in, first.paragraphs_removed) == (3, 0)
    assert first.text == "Intro paragraph.\n\nShared footer text.\nUnique one."

    second = pd.process("Another intro.\n  shared   FOOTER text. \n\nUnique one.\nUnique two.")
    assert second.keep
    assert (second.paragraphs_in, second.paragraphs_removed) == (4, 2)
    assert second.text == "Another intro.\n\nUnique two."


def test_paragraph_dedup_repeat_within_document() -> None:
    pd = ParagraphDedup(BloomFilter(100, 0.001))
    result = pd.process("Same line.\nSame line.\nOther line.")
    assert (result.paragraphs_in, result.paragraphs_removed) == (3, 1)
    assert result.text == "Same line.\nOther line."


def test_paragraph_dedup_all_removed() -> None:
    pd = ParagraphDedup(BloomFilter(100, 0.001))
    pd.process("Alpha.\nBeta.")
    result = pd.process("beta.\n\n   \nALPHA.")
    assert not result.keep
    assert result.reason == REASON_DEDUP_ALL_PARAGRAPHS
    assert (result.paragraphs_in, result.paragraphs_removed) == (2, 2)
    assert result.text == ""


def test_paragraph_dedup_blank_document_is_kept() -> None:
    result = ParagraphDedup(BloomFilter(10, 0.01)).process(" \n\n")
    assert result.keep
    assert result.paragraphs_in == 0


# --- decontamination ------------------------------------------------------------------------

EVAL_13 = "The committee decided that the old bridge would be closed for repairs next spring."
EVAL_12 = "She walked to the market early and bought fresh bread for breakfast."


def test_word_counts_of_fixtures() -> None:
    assert len(EVAL_13.split()) == 14
    assert len(EVAL_12.split()) == 12


def test_decontamination_hits_long_paragraph_after_normalisation() -> None:
    deco = Decontaminator.from_paragraphs([f"Question header\n{EVAL_13}\n{EVAL_12}"])
    assert len(deco) == 1  # the header and the 12-word paragraph are too short to keep
    train = f"Some unrelated opening line.\n  {EVAL_13.upper()}  \nMore text."
    assert deco.check(train) == REASON_DECONTAMINATED


def test_decontamination_exactly_min_words() -> None:
    thirteen = " ".join(f"w{i}" for i in range(13))
    deco = Decontaminator.from_paragraphs([thirteen])
    assert deco.check(f"intro\n{thirteen}") == REASON_DECONTAMINATED


def test_decontamination_ignores_short_and_different_paragraphs() -> None:
    deco = Decontaminator.from_paragraphs([EVAL_13, EVAL_12])
    assert deco.check(f"Intro.\n{EVAL_12}\nOutro.") is None  # 12 words: below the minimum
    different = EVAL_13.replace("spring", "autumn")
    assert deco.check(different) is None
    # a long eval paragraph embedded inside a longer training line is not an exact match
    assert deco.check(f"Preface words here. {EVAL_13}") is None


def test_decontamination_min_words_configurable() -> None:
    deco = Decontaminator.from_paragraphs([EVAL_12], min_words=12)
    assert deco.check(EVAL_12) == REASON_DECONTAMINATED


def test_decontamination_from_file(tmp_path: Path) -> None:
    path = tmp_path / "eval_paragraphs.txt"
    path.write_text(f"{EVAL_13}\n{EVAL_12}\n\n", encoding="utf-8")
    deco = Decontaminator.from_file(path)
    assert len(deco) == 1
    assert deco.check(f"x\n{EVAL_13}") == REASON_DECONTAMINATED
    assert deco.check(EVAL_12) is None


def test_decontamination_keys_round_trip_through_add_hashes() -> None:
    deco = Decontaminator.from_paragraphs([EVAL_13, EVAL_12])
    assert deco.key(EVAL_12) is None  # too short to be a key
    assert deco.key(f"  {EVAL_13.upper()} ") == deco.sorted_hashes()[0]
    copy = Decontaminator()
    copy.add_hashes(deco.sorted_hashes())
    assert copy.sorted_hashes() == deco.sorted_hashes()
    assert copy.check(f"x\n{EVAL_13}") == REASON_DECONTAMINATED
    with pytest.raises(ValueError, match="16 bytes"):
        copy.add_hashes([b"short"])
