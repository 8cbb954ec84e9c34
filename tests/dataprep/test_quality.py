"""Quality stage: every Gopher rule and the C4 line rule, on both sides of its threshold.

Documents are built from made-up but alphabetic words (syllable combinations) that never repeat
unless a test repeats them on purpose, so each document trips only the rule under test; the
asserted reason is that rule's, which (rules run in a fixed order) means every earlier rule
passed, and each "kept" twin passes them all.
"""

from __future__ import annotations

import random
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olmo.config import ConfigError, validate
from olmo_dataprep import quality
from olmo_dataprep.quality import (
    BULLETS,
    DUP_NGRAM_SIZES,
    RULE_ORDER,
    SYMBOLS,
    TOP_NGRAM_SIZES,
    QualityConfig,
    check_document,
)

from .conftest import english_docs

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "fu", "go", "zi", "ri"]
SYLLABLES += ["mo", "xa"]
DEFAULT = QualityConfig()


class Words:
    """Fresh, never-repeating alphabetic words; ``next()`` gives 6-letter ones (3 syllables)."""

    def __init__(self) -> None:
        self.i = 256  # base-16 index with 3 digits → 3 syllables → 6 letters

    def next(self) -> str:
        i, self.i = self.i, self.i + 1
        out = []
        while i:
            i, d = divmod(i, 16)
            out.append(SYLLABLES[d])
        return "".join(reversed(out))

    def take(self, k: int) -> list[str]:
        return [self.next() for _ in range(k)]


def line(words: list[str], end: str = ".") -> str:
    return " ".join(words) + end


def plain_lines(n_words: int, per_line: int = 10, src: Words | None = None) -> list[str]:
    """``n_words`` words (two of them stop words) in lines of ``per_line`` ending with '.'."""
    src = src or Words()
    words = ["the", "and", *src.take(n_words - 2)]
    return [line(words[i : i + per_line]) for i in range(0, n_words, per_line)]


def plain(n_words: int, per_line: int = 10) -> str:
    return "\n".join(plain_lines(n_words, per_line))


def check(text: str, config: QualityConfig = DEFAULT):
    return check_document(text, config)


def assert_dropped(text: str, reason: str, config: QualityConfig = DEFAULT):
    result = check(text, config)
    assert (result.keep, result.reason) == (False, reason), result.stats
    return result


def assert_kept(text: str, config: QualityConfig = DEFAULT):
    result = check(text, config)
    assert (result.keep, result.reason) == (True, None), result.stats
    return result


# --- documents that pass everything -------------------------------------------------------------

# Web text: one paragraph per line (C4's rule is per line; hard-wrapped prose would lose lines).
ENGLISH = "\n\n".join(
    [
        ("Home | About | Contact"),
        (
            "The history of the lighthouse on the northern cape goes back to the early years of the"
            " last century, when a small group of fishermen asked the harbour board to build a "
            "light that would guide their boats home through the winter storms."
        ),
        (
            "The first tower was made of timber and stood for less than a decade. After a fire "
            "destroyed it, the board decided to build a stone tower with a rotating lamp that could"
            " be seen from twenty miles out at sea. Work began in the spring and was finished two "
            "years later."
        ),
        (
            "Today the lighthouse is run by a volunteer trust. Visitors can climb the narrow stairs"
            " to the gallery, look at the old lens, and read the keepers' logbooks, which record "
            'every ship that passed and every storm that kept them awake at night. "It is the best '
            'view on the coast," one of the volunteers told us. '
        ),
    ]
)


def test_normal_english_document_is_kept_and_loses_only_its_menu_line():
    result = assert_kept(ENGLISH)
    assert result.stats["c4_lines_removed"] == 1
    assert "Home | About" not in result.text
    assert result.text.startswith("The history of the lighthouse")
    assert "\n\nThe first tower" in result.text  # paragraph breaks survive
    assert set(result.stats) >= {"words", "median_word_length", "dup_10gram_char_fraction"}


def test_untouched_document_text_is_returned_unchanged():
    text = plain(60) + "\n\n\n"
    assert assert_kept(text).text == text


def test_rule_order_is_documented_and_complete():
    assert RULE_ORDER[0] == "c4_no_terminal_punct_all_lines_removed"
    assert RULE_ORDER[1:3] == ("gopher_min_words", "gopher_max_words")
    assert RULE_ORDER[-1] == "gopher_dup_10gram_chars"
    assert len(RULE_ORDER) == len(set(RULE_ORDER)) == 21


# --- word count --------------------------------------------------------------------------------


def test_min_words():
    assert_dropped(plain(49), "gopher_min_words")
    assert assert_kept(plain(50)).stats["words"] == 50


def test_max_words():
    # Words grow from 6 to 10 letters past index 4096/65536; the median stays inside [3, 10].
    assert_dropped(plain(100_001, per_line=20), "gopher_max_words")
    assert assert_kept(plain(100_000, per_line=20)).stats["words"] == 100_000


# --- median word length ------------------------------------------------------------------------


def two_letter_words(k: int) -> list[str]:
    letters = "bcdfghjklmnprstvwz"
    words = [a + b for a in letters for b in "aeiou"]
    words = [w for w in words if w not in {"be", "to", "of"}]
    assert k <= len(words)
    return words[:k]


def test_min_median_word_length():
    # 60 two-letter words + the/and; line ends add a '.' → 8 words of 3 chars, 54 of 2.
    short = ["the", "and", *two_letter_words(60)]
    text = "\n".join(line(short[i : i + 10]) for i in range(0, len(short), 10))
    assert assert_dropped(text, "gopher_min_median_word_length").stats["median_word_length"] == 2
    # Same shape with 3-letter words in the majority: median exactly 3.
    three = [s + c for s in SYLLABLES for c in "bdgkmnprst"][:40]  # distinct 3-letter words
    mixed = ["the", "and", *two_letter_words(30), *three[:30]]
    text = "\n".join(line(mixed[i : i + 10]) for i in range(0, len(mixed), 10))
    assert assert_kept(text).stats["median_word_length"] == 3


def test_max_median_word_length():
    src = Words()
    long = [w + "ation" for w in src.take(60)]  # 11 letters
    text = "\n".join(line(["the", "and", *long[:8]])) + "\n" + line(long[8:])
    assert assert_dropped(text, "gopher_max_median_word_length").stats["median_word_length"] == 11
    ten = [w + "tion" for w in src.take(60)]  # 10 letters
    text = line(["the", "and", *ten[:8]]) + "\n" + line(ten[8:])
    assert assert_kept(text).stats["median_word_length"] == 10


# --- symbols, alphabetic words, stop words ------------------------------------------------------


def doc_with_marked_words(k: int, mark) -> str:
    """100 words in 10 lines; ``k`` of them (never the last of a line) replaced by ``mark(w)``."""
    src = Words()
    words = ["the", "and", *src.take(98)]
    slots = [i for i in range(2, 100) if i % 10 != 9][:k]
    for i in slots:
        words[i] = mark(words[i], i)
    return "\n".join(line(words[i : i + 10]) for i in range(0, 100, 10))


def symbolise(word: str, i: int) -> str:
    return ["#" + word, word + "...", word + "\u2026" + word, "#" + word + "..."][i % 4]


def test_symbol_to_word_ratio():
    dropped = assert_dropped(doc_with_marked_words(11, symbolise), "gopher_symbol_ratio")
    assert dropped.stats["symbol_to_word_ratio"] == pytest.approx(0.11)
    kept = assert_kept(doc_with_marked_words(10, symbolise))
    assert kept.stats["symbol_to_word_ratio"] == pytest.approx(0.10)


def test_alpha_word_fraction():
    def number(word: str, i: int) -> str:
        return str(1000 + i)

    dropped = assert_dropped(doc_with_marked_words(21, number), "gopher_alpha_words")
    assert dropped.stats["alpha_word_fraction"] == pytest.approx(0.79)
    kept = assert_kept(doc_with_marked_words(20, number))
    assert kept.stats["alpha_word_fraction"] == pytest.approx(0.80)


def test_stop_words():
    src = Words()
    one = ["the", *src.take(59)]
    text = "\n".join(line(one[i : i + 10]) for i in range(0, 60, 10))
    assert assert_dropped(text, "gopher_stop_words").stats["stop_words"] == 1
    two = ["The", "and,", *src.take(58)]  # case and attached punctuation do not matter
    text = "\n".join(line(two[i : i + 10]) for i in range(0, 60, 10))
    assert assert_kept(text).stats["stop_words"] == 2


# --- line rules --------------------------------------------------------------------------------


def test_bullet_lines():
    bullets = ["- ", "\u2022 ", "  * ", "\u25cf ", "\u25cb ", "\u25a0 ", "\u2023 ", "\u2043 "]

    def doc(k: int) -> str:
        lines = plain_lines(70, per_line=7)
        return "\n".join(
            (bullets[i % len(bullets)] if i < k else "") + text for i, text in enumerate(lines)
        )

    assert assert_dropped(doc(10), "gopher_bullet_lines").stats["bullet_line_fraction"] == 1.0
    assert assert_kept(doc(9)).stats["bullet_line_fraction"] == pytest.approx(0.9)


def test_ellipsis_lines():
    def doc(k: int) -> str:
        lines = plain_lines(80, per_line=8)
        return "\n".join(text[:-1] + "..." if i < k else text for i, text in enumerate(lines))

    dropped = assert_dropped(doc(4), "gopher_ellipsis_lines")
    assert dropped.stats["ellipsis_line_fraction"] == pytest.approx(0.4)
    assert assert_kept(doc(3)).stats["ellipsis_line_fraction"] == pytest.approx(0.3)


def test_unicode_ellipsis_lines_count_when_c4_is_off():
    lines = plain_lines(120, per_line=12)
    text = "\n".join(t[:-1] + "\u2026" if 1 <= i <= 4 else t for i, t in enumerate(lines))
    config = QualityConfig(c4_no_terminal_punctuation=False)
    assert_dropped(text, "gopher_ellipsis_lines", config)
    # With C4 on (the default), those lines are removed first and the rest is kept.
    assert assert_kept(text).stats["c4_lines_removed"] == 4


def interleave(unique: list[str], repeated: str, copies: int) -> str:
    """unique[0], repeated, unique[1], repeated, ... with ``copies`` repeated lines in all."""
    out: list[str] = []
    for i, text in enumerate(unique):
        out.append(text)
        if i < copies:
            out.append(repeated)
    assert out.count(repeated) == copies
    return "\n".join(out)


def test_duplicate_lines():
    unique = plain_lines(60, per_line=10)  # 6 lines
    # 5 "Reply." lines: 4 are copies → 4/11 of the lines are duplicates.
    dropped = assert_dropped(interleave(unique, "Reply.", 5), "gopher_dup_lines")
    assert dropped.stats["duplicate_line_fraction"] == pytest.approx(4 / 11)
    kept = assert_kept(interleave(unique, "Reply.", 4))  # 3/10
    assert kept.stats["duplicate_line_fraction"] == pytest.approx(0.3)


def test_duplicate_line_characters():
    # One very long single-word line (no repeated n-grams inside it) repeated between short
    # unique lines: few duplicate lines by count, many by characters.
    unique = plain_lines(56, per_line=4)  # 14 lines of 28 characters
    long = "Pneumonoultramicroscopicsilicovolcanoconiosis."  # 46 characters
    dropped = assert_dropped(interleave(unique, long, 7), "gopher_dup_line_chars")
    assert dropped.stats["duplicate_line_fraction"] <= 0.3
    assert 0.3 < dropped.stats["duplicate_line_char_fraction"] < 0.4
    kept = assert_kept(interleave(unique, long, 5))
    assert 0.28 < kept.stats["duplicate_line_char_fraction"] <= 0.3


# --- n-gram rules ------------------------------------------------------------------------------


def ngram_doc(n: int, repeats: int, share: float) -> str:
    """One line: fillers with an n-gram of 6-letter words repeated ``repeats`` times, sized so
    that the repeated n-gram's characters are about ``share`` of all word characters."""
    src = Words()
    gram = src.take(n)
    total = 6 * n * repeats / share
    fillers = round((total - 6 * n * repeats - 6 - 1) / 6)  # - "the", "and" and the final '.'
    groups = [src.take(fillers // (repeats + 1)) for _ in range(repeats)]
    groups.append(src.take(fillers - sum(map(len, groups))))
    words = ["the", *groups[0]]
    for group in groups[1:]:
        words += [*gram, *group]
    words.insert(len(words) - 1, "and")
    return line(words)


TOP_LIMITS = {2: 0.20, 3: 0.18, 4: 0.16}
DUP_LIMITS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


@pytest.mark.parametrize("n", sorted(TOP_LIMITS))
def test_top_ngram_character_share(n: int):
    limit, key = TOP_LIMITS[n], f"top_{n}gram_char_fraction"
    dropped = assert_dropped(ngram_doc(n, 10, limit + 0.006), f"gopher_top_{n}gram_chars")
    assert limit < dropped.stats[key] <= limit + 0.01
    kept = assert_kept(ngram_doc(n, 10, limit - 0.004))
    assert limit - 0.01 < kept.stats[key] <= limit


@pytest.mark.parametrize("n", sorted(DUP_LIMITS))
def test_duplicated_ngram_character_share(n: int):
    # A repeated n-gram also repeats all its shorter sub-n-grams over the same words, so its
    # share is the same for every size 5..n: it must sit between limit(n) and limit(n - 1).
    limit, key = DUP_LIMITS[n], f"dup_{n}gram_char_fraction"
    dropped = assert_dropped(ngram_doc(n, 2, limit + 0.005), f"gopher_dup_{n}gram_chars")
    assert limit < dropped.stats[key] <= limit + 0.01
    kept = assert_kept(ngram_doc(n, 2, limit - 0.004))
    assert limit - 0.01 < kept.stats[key] <= limit


def test_duplicated_ngram_counts_each_word_once():
    # Three back-to-back copies of a 5-gram: 15 covered words, not 5 × (number of dup windows).
    src = Words()
    gram = src.take(5)
    words = ["the", "and", *src.take(200), *gram, *gram, *gram, *src.take(200)]
    result = check(line(words), QualityConfig(max_dup_5gram_char_fraction=None))
    total = sum(len(w) for w in words) + 1
    assert result.stats["dup_6gram_char_fraction"] == pytest.approx(15 * 6 / total)


# --- C4 ----------------------------------------------------------------------------------------


def test_c4_all_lines_without_terminal_punctuation():
    lines = [t[:-1] for t in plain_lines(60)]  # strip the final '.'
    result = assert_dropped("\n".join(lines), "c4_no_terminal_punct_all_lines_removed")
    assert result.stats["c4_lines_removed"] == 6


def test_c4_one_line_with_terminal_punctuation_survives():
    menu = ["Home", "About us", "Contact: 555 0100", "Share this page \u2192"]
    body = " ".join(["the", "and", *Words().take(58)])
    for end in [".", "!", "?", '"', "'", "\u201d", "\u2019"]:
        result = assert_kept("\n".join([*menu, body + end + "  ", *menu]))
        assert result.text == body + end + "  "
        assert result.stats["c4_lines_removed"] == 8


def test_c4_runs_before_the_gopher_rules():
    # 60 words, but only 40 of them in lines that end in punctuation.
    lines = plain_lines(60)
    text = "\n".join(t if i < 4 else t[:-1] for i, t in enumerate(lines))
    result = assert_dropped(text, "gopher_min_words")
    assert result.stats == {"c4_lines_removed": 2, "words": 40}


# --- switching rules off -----------------------------------------------------------------------


def test_disabled_rules_let_their_violations_through():
    assert_kept(plain(49), QualityConfig(min_words=None))
    assert_kept(doc_with_marked_words(30, symbolise), QualityConfig(max_symbol_to_word_ratio=None))
    assert_kept(ngram_doc(2, 10, 0.3), QualityConfig(max_top_2gram_char_fraction=None))
    assert_kept(ngram_doc(7, 2, 0.135), QualityConfig(max_dup_7gram_char_fraction=None))
    no_punct = "\n".join(t[:-1] for t in plain_lines(60))
    result = assert_kept(no_punct, QualityConfig(c4_no_terminal_punctuation=False))
    assert result.text == no_punct
    assert "c4_lines_removed" not in result.stats


def test_every_gopher_rule_can_be_disabled():
    fields = QualityConfig.model_fields
    for name in fields:
        if name.startswith(("min_", "max_")):
            assert fields[name].annotation is not None
            QualityConfig(**{name: None})  # accepted


# --- config validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"min_words": -1}, "min_words: Input should be greater than or equal to 0"),
        ({"max_symbol_to_word_ratio": -0.1}, "max_symbol_to_word_ratio: Input should be greater"),
        ({"max_dup_5gram_char_fraction": 1.5}, "max_dup_5gram_char_fraction: Input should be less"),
        ({"min_words": 100, "max_words": 10}, "min_words (100) must not exceed max_words (10)"),
        (
            {"min_median_word_length": 12.0},
            "min_median_word_length (12.0) must not exceed max_median_word_length (10.0)",
        ),
        ({"c4_terminal_punctuation": []}, "c4_terminal_punctuation must list at least one"),
        ({"min_word": 10}, "min_word: unknown key"),
        ({"min_words": "50"}, "min_words: Input should be a valid integer"),
    ],
)
def test_config_rejects_bad_values(data: dict, message: str):
    with pytest.raises(ConfigError) as err:
        validate(QualityConfig, data, source="quality config")
    assert message in str(err.value)


def test_config_defaults_follow_the_dolma_notes():
    c = QualityConfig()
    assert (c.min_words, c.max_words) == (50, 100_000)
    assert (c.min_median_word_length, c.max_median_word_length) == (3, 10)
    assert (c.max_symbol_to_word_ratio, c.min_alpha_word_fraction, c.min_stop_words) == (
        0.1,
        0.8,
        2,
    )
    assert c.stop_words == ["the", "be", "to", "of", "and", "that", "have", "with"]
    assert [c.top_ngram_limit(n) for n in (2, 3, 4)] == [0.20, 0.18, 0.16]
    assert [c.dup_ngram_limit(n) for n in range(5, 11)] == [0.15, 0.14, 0.13, 0.12, 0.11, 0.10]
    assert validate(QualityConfig, {"min_median_word_length": 2}).min_median_word_length == 2


# --- the fast implementation against the definitions ---------------------------------------------
#
# ``check_document`` computes the statistics per distinct word, with C-level iterators and with
# n-gram work shared between the sizes. ``reference_check`` below is the direct implementation
# of the module's definitions (one loop per statistic, every n-gram counted): both must agree on
# the decision, the text and every statistic, exactly.


def _reference_c4(text: str, terminal: tuple[str, ...]) -> tuple[str, int, int]:
    out, removed, kept = [], 0, 0
    for raw in text.split("\n"):
        stripped = raw.rstrip()
        if not stripped:
            out.append("")
        elif stripped.endswith(terminal):
            out.append(raw)
            kept += 1
        else:
            removed += 1
    if removed == 0:
        return text, 0, kept
    collapsed: list[str] = []
    for raw in out:
        if raw or (collapsed and collapsed[-1]):
            collapsed.append(raw)
    while collapsed and not collapsed[-1]:
        collapsed.pop()
    return "\n".join(collapsed), removed, kept


def _reference_top(words: list[str], n: int, total: int) -> float:
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    if not counts or total == 0:
        return 0.0
    best = max(counts.values())
    return best * max(sum(map(len, g)) for g, c in counts.items() if c == best) / total


def _reference_dup(words: list[str], n: int, total: int) -> float:
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = [False] * len(words)
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            covered[i : i + n] = [True] * n
    return sum(len(w) for w, c in zip(words, covered, strict=True) if c) / total if total else 0.0


def reference_check(text: str, config: QualityConfig) -> tuple[bool, str | None, str, dict]:
    stats: dict = {}

    def drop(reason: str) -> tuple[bool, str | None, str, dict]:
        return False, reason, text, stats

    if config.c4_no_terminal_punctuation:
        text, removed, kept = _reference_c4(text, tuple(config.c4_terminal_punctuation))
        stats["c4_lines_removed"] = removed
        if kept == 0:
            return drop("c4_no_terminal_punct_all_lines_removed")
    words = text.split()
    stats["words"] = len(words)
    if config.min_words is not None and len(words) < config.min_words:
        return drop("gopher_min_words")
    if config.max_words is not None and len(words) > config.max_words:
        return drop("gopher_max_words")
    lengths = sorted(len(w) for w in words)
    mid = len(lengths) // 2
    median = (
        0.0
        if not lengths
        else float(lengths[mid])
        if len(lengths) % 2
        else (lengths[mid - 1] + lengths[mid]) / 2
    )
    stats["median_word_length"] = median
    if config.min_median_word_length is not None and median < config.min_median_word_length:
        return drop("gopher_min_median_word_length")
    if config.max_median_word_length is not None and median > config.max_median_word_length:
        return drop("gopher_max_median_word_length")
    denom = max(len(words), 1)
    stats["symbol_to_word_ratio"] = sum(any(s in w for s in SYMBOLS) for w in words) / denom
    limit = config.max_symbol_to_word_ratio
    if limit is not None and stats["symbol_to_word_ratio"] > limit:
        return drop("gopher_symbol_ratio")
    alpha = sum(w.isalpha() or quality._ALPHA.search(w) is not None for w in words)
    stats["alpha_word_fraction"] = alpha / denom
    limit = config.min_alpha_word_fraction
    if limit is not None and stats["alpha_word_fraction"] < limit:
        return drop("gopher_alpha_words")
    stop = {w.lower() for w in config.stop_words}
    stats["stop_words"] = sum(w.strip(quality._PUNCT).lower() in stop for w in words)
    if config.min_stop_words is not None and stats["stop_words"] < config.min_stop_words:
        return drop("gopher_stop_words")
    lines = [t.strip() for t in text.split("\n") if t.strip()]
    seen: set[str] = set()
    dups = [t for t in lines if t in seen or seen.add(t)]
    chars = sum(map(len, lines))
    for key, value, limit, reason in (
        ("bullet_line_fraction", sum(t.startswith(BULLETS) for t in lines) / max(len(lines), 1),
         config.max_bullet_line_fraction, "gopher_bullet_lines"),
        ("ellipsis_line_fraction", sum(t.endswith(("...", "\u2026")) for t in lines)
         / max(len(lines), 1), config.max_ellipsis_line_fraction, "gopher_ellipsis_lines"),
        ("duplicate_line_fraction", len(dups) / max(len(lines), 1),
         config.max_duplicate_line_fraction, "gopher_dup_lines"),
        ("duplicate_line_char_fraction", sum(map(len, dups)) / max(chars, 1),
         config.max_duplicate_line_char_fraction, "gopher_dup_line_chars"),
    ):  # fmt: skip
        stats[key] = value
        if limit is not None and value > limit:
            return drop(reason)
    total = sum(map(len, words))
    for n in TOP_NGRAM_SIZES:
        if (limit := config.top_ngram_limit(n)) is not None:
            stats[f"top_{n}gram_char_fraction"] = share = _reference_top(words, n, total)
            if share > limit:
                return drop(f"gopher_top_{n}gram_chars")
    for n in DUP_NGRAM_SIZES:
        if (limit := config.dup_ngram_limit(n)) is not None:
            stats[f"dup_{n}gram_char_fraction"] = share = _reference_dup(words, n, total)
            if share > limit:
                return drop(f"gopher_dup_{n}gram_chars")
    return True, None, text, stats


# Every rule evaluated: nothing can fail, so every statistic is computed and compared.
PERMISSIVE = QualityConfig(
    min_words=None,
    max_words=None,
    min_median_word_length=None,
    max_median_word_length=None,
    max_symbol_to_word_ratio=None,
    min_alpha_word_fraction=None,
    min_stop_words=None,
    max_bullet_line_fraction=None,
    max_ellipsis_line_fraction=None,
    max_duplicate_line_fraction=None,
    max_duplicate_line_char_fraction=None,
    **{f"max_top_{n}gram_char_fraction": 1e9 for n in TOP_NGRAM_SIZES},
    **{f"max_dup_{n}gram_char_fraction": 1.0 for n in DUP_NGRAM_SIZES},
)
EQUIVALENCE_CONFIGS = [
    DEFAULT,
    PERMISSIVE,
    PERMISSIVE.model_copy(update={"c4_no_terminal_punctuation": False}),
    # Sizes switched off in between: the shared n-gram work must not skip or reuse wrongly.
    PERMISSIVE.model_copy(
        update={
            "max_top_4gram_char_fraction": None,
            "max_dup_6gram_char_fraction": None,
            "max_dup_9gram_char_fraction": None,
        }
    ),
    PERMISSIVE.model_copy(update={"max_top_3gram_char_fraction": None}),
    PERMISSIVE.model_copy(update={"c4_terminal_punctuation": ["", "."], "stop_words": ["The"]}),
]
# Few distinct words, so that n-grams and lines repeat; symbols, bullets, digits, punctuation,
# apostrophes, non-ASCII letters and digits, and every kind of line break and blank.
TOKENS = [
    "the", "and", "of", "The", "AND,", "to.", "mill", "river", "wheel", "stone", "(the)",
    "x#", "#", "...", "well...", "\u2026", "a\u2026b", "-", "*", "\u2022", "\u2043", "12", "3.5",
    "_", "__init__", "don't", "\u201cquoted\u201d", "caf\u00e9", "\u0663\u0664", "\u65e5\u672c",
    "\u00bd", "x\u00b2", "\u216b",
    "!", "?", ".", "'", "\u2019",
]  # fmt: skip
SEPARATORS = [" ", " ", " ", " ", "\n", "\n\n", " \n", "\n \n", "\t", "  ", "\u3000"]


@st.composite
def quality_texts(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(st.sampled_from(TOKENS), max_size=160))
    if draw(st.booleans()):  # a repeated run: duplicated n-grams and lines
        start = draw(st.integers(0, max(len(tokens) - 1, 0)))
        run = tokens[start : start + draw(st.integers(1, 15))]
        tokens[start:start] = run * draw(st.integers(1, 4))
    separators = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(tokens)))
    return "".join(t + s for t, s in zip(tokens, separators, strict=False)) + draw(
        st.sampled_from(["", ".", "\n", " !", "\n\n"])
    )


def assert_same_as_reference(text: str) -> None:
    for config in EQUIVALENCE_CONFIGS:
        result = check_document(text, config)
        keep, reason, out, stats = reference_check(text, config)
        assert (result.keep, result.reason, result.text) == (keep, reason, out)
        assert list(result.stats.items()) == list(stats.items())  # values and order


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quality_texts())
def test_matches_the_reference_implementation(text: str):
    assert_same_as_reference(text)


def test_matches_the_reference_on_documents_of_every_kind():
    rng = random.Random(7)
    docs = [ENGLISH, plain(60), *english_docs(20, seed=3, paragraphs=3)]
    docs += [ngram_doc(n, 3, 0.2) for n in (*TOP_LIMITS, *DUP_LIMITS)]
    docs += ["", " ", "\n\n", "word", "- a\n- b\n- c", "a b a b a b a b a b a b a b"]
    for doc in list(docs):  # menus, repeated paragraphs, shuffled lines
        lines = doc.split("\n")
        docs.append("\n".join([*lines, "Home | About", *lines[:2]]))
        rng.shuffle(lines)
        docs.append("\n".join(lines))
    for doc in docs:
        assert_same_as_reference(doc)


def test_a_word_that_is_all_letters_has_a_letter_by_the_regex():
    # The per-word statistics count ``str.isalpha`` words without running the regex on them.
    letters = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isalpha()]
    assert all(quality._ALPHA.fullmatch(c) for c in letters)
