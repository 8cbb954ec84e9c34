"""Near-duplicate stage: MinHash signatures of word shingles and the first-come LSH index."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest

from olmo.config import ConfigError, validate
from olmo_dataprep.minhash import (
    SIGNATURE_DTYPE,
    MinHashConfig,
    NearDuplicateIndex,
    estimated_jaccard,
    shingles,
    signature,
    signature_from_bytes,
    signature_to_bytes,
)

CONFIG = MinHashConfig(enabled=True)
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "fu", "go", "zi", "ri"]


def text_of(n_words: int, seed: int) -> str:
    """``n_words`` made-up words (three syllables each), reproducible from ``seed``."""
    rng = random.Random(seed)
    return " ".join("".join(rng.choice(SYLLABLES) for _ in range(3)) for _ in range(n_words))


def edit(text: str, positions: list[int]) -> str:
    words = text.split()
    for i in positions:
        words[i] = f"changed{i}"
    return " ".join(words)


BASE = text_of(300, seed=1)


def test_signature_shape_and_type() -> None:
    sig = signature(BASE, CONFIG)
    assert sig.shape == (CONFIG.num_perm,)
    assert sig.dtype == SIGNATURE_DTYPE
    assert signature(BASE, MinHashConfig(num_perm=64)).shape == (64,)


def test_shingles() -> None:
    assert shingles("A b c", 5) == {b"a b c"}  # shorter than ngram: one shingle of all words
    assert shingles("a b c d", 2) == {b"a b", b"b c", b"c d"}
    assert shingles("a a a", 2) == {b"a a"}
    assert shingles(" \n", 3) == set()
    # Case and whitespace layout do not matter.
    assert np.array_equal(signature("One two\nthree", CONFIG), signature("one  TWO three", CONFIG))


def test_identical_texts_are_duplicates() -> None:
    index = NearDuplicateIndex(CONFIG)
    sig = signature(BASE, CONFIG)
    assert index.seen_or_add("a", sig) is False
    assert index.seen_or_add("b", signature(BASE, CONFIG)) is True
    assert len(index) == 1 and "a" in index and "b" not in index


def test_one_word_changed_is_a_near_duplicate() -> None:
    copy = edit(BASE, [150])
    assert estimated_jaccard(signature(BASE, CONFIG), signature(copy, CONFIG)) >= 0.9
    index = NearDuplicateIndex(CONFIG)
    assert not index.seen_or_add("original", signature(BASE, CONFIG))
    assert index.seen_or_add("copy", signature(copy, CONFIG))
    assert index.find(signature(copy, CONFIG)) == "original"


def test_unrelated_texts_are_not_duplicates() -> None:
    index = NearDuplicateIndex(CONFIG)
    for seed in range(2, 12):
        assert not index.seen_or_add(f"doc{seed}", signature(text_of(300, seed), CONFIG))
    assert len(index) == 10


def test_first_occurrence_is_kept() -> None:
    copy = edit(BASE, [10])
    for first, second in ((BASE, copy), (copy, BASE)):
        index = NearDuplicateIndex(CONFIG)
        assert not index.seen_or_add("first", signature(first, CONFIG))
        assert index.seen_or_add("second", signature(second, CONFIG))
        assert "first" in index and "second" not in index


def test_verified_against_threshold() -> None:
    # Copies with more and more words changed: the index flags exactly those whose estimated
    # similarity to the original reaches the threshold (all of these are LSH candidates or far
    # below it), never one below.
    original = signature(BASE, CONFIG)
    for n_changed in (1, 3, 6, 10, 20, 40, 80):
        rng = random.Random(n_changed)
        copy = signature(edit(BASE, rng.sample(range(300), n_changed)), CONFIG)
        index = NearDuplicateIndex(CONFIG)
        index.seen_or_add("original", original)
        sim = estimated_jaccard(original, copy)
        flagged = index.seen_or_add("copy", copy)
        if flagged:
            assert sim >= CONFIG.threshold
        if sim >= 0.9 or sim < CONFIG.threshold:
            assert flagged == (sim >= CONFIG.threshold)


def test_short_and_empty_documents() -> None:
    index = NearDuplicateIndex(CONFIG)
    assert not index.seen_or_add("short", signature("just three words", CONFIG))
    assert index.seen_or_add("short2", signature("Just three words", CONFIG))
    assert not index.seen_or_add("other", signature("three other words", CONFIG))
    assert not index.seen_or_add("empty", signature("", CONFIG))
    assert index.seen_or_add("empty2", signature("  ", CONFIG))


def test_signature_bytes_round_trip() -> None:
    sig = signature(BASE, CONFIG)
    data = signature_to_bytes(sig)
    assert len(data) == 4 * CONFIG.num_perm
    back = signature_from_bytes(data)
    assert back.dtype == SIGNATURE_DTYPE
    assert np.array_equal(back, sig)
    assert np.array_equal(signature_from_bytes(signature_to_bytes(sig.astype(np.uint64))), sig)
    with pytest.raises(ValueError, match="multiple"):
        signature_from_bytes(data[:-1])


def test_index_rejects_bad_input() -> None:
    index = NearDuplicateIndex(CONFIG)
    index.seen_or_add("a", signature(BASE, CONFIG))
    with pytest.raises(ValueError, match="already"):
        index.seen_or_add("a", signature(text_of(50, 99), CONFIG))
    with pytest.raises(ValueError, match="num_perm"):
        index.seen_or_add("b", signature(BASE, MinHashConfig(num_perm=64)))
    with pytest.raises(ValueError, match="uint32"):
        index.seen_or_add("c", np.full(CONFIG.num_perm, 2**40, dtype=np.uint64))


def test_config_validation() -> None:
    config = validate(MinHashConfig, {"enabled": True, "threshold": 0.7, "ngram": 3})
    assert config.threshold == 0.7 and not MinHashConfig().enabled
    for bad in (
        {"threshold": 1.0},
        {"threshold": 0.0},
        {"num_perm": 1},
        {"ngram": 0},
        {"seed": -1},
        {"bands": 4},
    ):
        with pytest.raises(ConfigError):
            validate(MinHashConfig, bad)


def test_seed_changes_signature() -> None:
    assert not np.array_equal(
        signature(BASE, CONFIG), signature(BASE, MinHashConfig(enabled=True, seed=2))
    )


def test_deterministic_across_processes() -> None:
    code = (
        "import sys\n"
        "from olmo_dataprep.minhash import MinHashConfig, signature, signature_to_bytes\n"
        "sys.stdout.write(signature_to_bytes(signature(sys.stdin.read(), MinHashConfig())).hex())\n"
    )
    expected = signature_to_bytes(signature(BASE, MinHashConfig())).hex()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code],
            input=BASE,
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        assert out.stdout == expected


def test_datasketch_is_imported_on_first_use_only() -> None:
    # The pipeline's config imports this module in every process (scipy, which datasketch
    # imports, takes about half a second); the stage is off by default.
    code = (
        "import sys\n"
        "import olmo_dataprep.config, olmo_dataprep.minhash as m\n"
        "assert 'datasketch' not in sys.modules and 'scipy' not in sys.modules\n"
        "m.signature('a b c d e f', m.MinHashConfig())\n"
        "assert 'datasketch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
