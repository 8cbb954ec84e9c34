"""Quality filter of the Dolma-style pipeline: the Gopher document rules and the C4 line rule.

Dolma keeps web documents that pass the Gopher (MassiveText) heuristics and drops the lines that
do not end in terminal punctuation (the C4 rule). This module is that stage as one pure function,
``check_document``, so every document gets a keep/drop decision with a stable, machine-readable
reason and the statistics behind it. Every threshold lives in ``QualityConfig``; setting one to
``None`` (or ``c4_no_terminal_punctuation`` to false) switches that rule off.

Definitions (all on the text *after* the C4 line filter, see ``check_document``):

- Words: ``text.split()`` (runs of whitespace separate words; punctuation stays attached).
  "Word characters" is the sum of the words' lengths.
- Lines: ``text.split("\\n")``, stripped of surrounding whitespace; blank lines are paragraph
  separators and are not counted by the line rules.
- Symbol-to-word ratio: words containing ``#``, ``...`` or ``…`` over all words (a word counts
  once however many symbols it holds).
- Stop words: occurrences of the required words, compared lower-cased with surrounding
  punctuation stripped (so ``The`` and ``and,`` count).
- Duplicate lines: copies of a non-blank line beyond its first occurrence, as a fraction of the
  non-blank lines, and their characters as a fraction of all non-blank line characters.
- Top n-gram share (n = 2, 3, 4): ``count × characters(ngram) / word characters`` for the most
  frequent n-gram (overlapping occurrences are counted; among equally frequent n-grams the one
  with the most characters).
- Duplicated n-gram share (n = 5..10): characters of the words covered by at least one n-gram
  that occurs more than once, each covered word counted once, over word characters.

Rules run in the order of ``RULE_ORDER`` (cheap ones first) and stop at the first failure, so
``stats`` holds the values computed up to the deciding rule.

Implementation: the per-word statistics are computed once per *distinct* word (weighted by its
count), the per-line ones with C-level ``map``/``set`` calls, and the n-gram rules share their
work: the top n-gram rules count every 2-, 3- and 4-gram once, and a duplicated n-gram can only
start where the (n-1)-gram starting there and the one after it are both duplicated, so each
duplicated-n-gram size counts only those candidate positions. The results are exactly those of
the definitions above (integer counts, the same divisions); ``tests/dataprep/test_quality.py``
checks them against a direct implementation.

This module must not import torch.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate, compress, repeat
from operator import and_, methodcaller, not_, sub
from typing import Any

from pydantic import Field, model_validator

from olmo.config import Fraction, NonNegativeFloat, NonNegativeInt, StrictConfig

__all__ = [
    "BULLETS",
    "DEFAULT_STOP_WORDS",
    "DEFAULT_TERMINAL_PUNCTUATION",
    "DUP_NGRAM_SIZES",
    "RULE_ORDER",
    "SYMBOLS",
    "TOP_NGRAM_SIZES",
    "QualityConfig",
    "QualityResult",
    "c4_line_filter",
    "check_document",
]

DEFAULT_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
DEFAULT_TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "\u201d", "\u2019")  # + ” and ’
SYMBOLS = ("#", "...", "\u2026")
BULLETS = ("\u2022", "\u25cf", "\u25cb", "\u25a0", "-", "*", "\u2023", "\u2043")  # • ● ○ ■ - * ‣ ⁃
ELLIPSES = ("...", "\u2026")
TOP_NGRAM_SIZES = (2, 3, 4)
DUP_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)

# Reasons in evaluation order; the C4 reason can only come first (the line filter runs first).
RULE_ORDER = (
    "c4_no_terminal_punct_all_lines_removed",
    "gopher_min_words",
    "gopher_max_words",
    "gopher_min_median_word_length",
    "gopher_max_median_word_length",
    "gopher_symbol_ratio",
    "gopher_alpha_words",
    "gopher_stop_words",
    "gopher_bullet_lines",
    "gopher_ellipsis_lines",
    "gopher_dup_lines",
    "gopher_dup_line_chars",
    *(f"gopher_top_{n}gram_chars" for n in TOP_NGRAM_SIZES),
    *(f"gopher_dup_{n}gram_chars" for n in DUP_NGRAM_SIZES),
)

_ALPHA = re.compile(r"[^\W\d_]")  # any Unicode letter
_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026"


class QualityConfig(StrictConfig):
    """Thresholds of the quality stage (defaults: Dolma's Gopher rules); ``None`` disables one."""

    min_words: NonNegativeInt | None = 50
    max_words: NonNegativeInt | None = 100_000
    min_median_word_length: NonNegativeFloat | None = 3.0
    max_median_word_length: NonNegativeFloat | None = 10.0
    max_symbol_to_word_ratio: NonNegativeFloat | None = 0.1
    min_alpha_word_fraction: Fraction | None = 0.8
    stop_words: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP_WORDS))
    min_stop_words: NonNegativeInt | None = 2
    max_bullet_line_fraction: Fraction | None = 0.9
    max_ellipsis_line_fraction: Fraction | None = 0.3
    max_duplicate_line_fraction: Fraction | None = 0.3
    max_duplicate_line_char_fraction: Fraction | None = 0.3
    # Overlapping occurrences are counted, so the top n-gram share can exceed 1: not a Fraction.
    max_top_2gram_char_fraction: NonNegativeFloat | None = 0.20
    max_top_3gram_char_fraction: NonNegativeFloat | None = 0.18
    max_top_4gram_char_fraction: NonNegativeFloat | None = 0.16
    max_dup_5gram_char_fraction: Fraction | None = 0.15
    max_dup_6gram_char_fraction: Fraction | None = 0.14
    max_dup_7gram_char_fraction: Fraction | None = 0.13
    max_dup_8gram_char_fraction: Fraction | None = 0.12
    max_dup_9gram_char_fraction: Fraction | None = 0.11
    max_dup_10gram_char_fraction: Fraction | None = 0.10
    c4_no_terminal_punctuation: bool = True
    c4_terminal_punctuation: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TERMINAL_PUNCTUATION)
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> QualityConfig:
        lo_words, hi_words = self.min_words, self.max_words
        if lo_words is not None and hi_words is not None and lo_words > hi_words:
            raise ValueError(f"min_words ({lo_words}) must not exceed max_words ({hi_words})")
        lo, hi = self.min_median_word_length, self.max_median_word_length
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(
                f"min_median_word_length ({lo}) must not exceed max_median_word_length ({hi})"
            )
        if self.c4_no_terminal_punctuation and not any(self.c4_terminal_punctuation):
            raise ValueError(
                "c4_terminal_punctuation must list at least one non-empty mark while "
                "c4_no_terminal_punctuation is on"
            )
        if any(not w for w in self.stop_words):
            raise ValueError("stop_words must not contain empty strings")
        return self

    def top_ngram_limit(self, n: int) -> float | None:
        return getattr(self, f"max_top_{n}gram_char_fraction")

    def dup_ngram_limit(self, n: int) -> float | None:
        return getattr(self, f"max_dup_{n}gram_char_fraction")


@dataclass(frozen=True)
class QualityResult:
    """Decision for one document: ``text`` is what to emit when ``keep`` (C4-filtered)."""

    keep: bool
    reason: str | None
    text: str
    stats: dict[str, Any] = field(default_factory=dict)


def c4_line_filter(text: str, terminal: tuple[str, ...]) -> tuple[str, int, int]:
    """Drop non-blank lines that do not end in one of ``terminal`` (trailing space ignored).

    Returns (text, lines removed, non-blank lines kept). The text comes back unchanged when no
    line is removed; otherwise the kept lines are joined with ``\\n`` with runs of blank lines
    collapsed to one (paragraph breaks survive for the paragraph-level dedup) and no blank lines
    at either end.
    """
    lines = text.split("\n")
    nonblank = list(filter(None, map(str.rstrip, lines)))
    kept = sum(map(methodcaller("endswith", terminal), nonblank))
    if kept == len(nonblank):  # the common case: nothing to remove
        return text, 0, kept
    out: list[str] = []
    removed = 0
    for line in lines:
        stripped = line.rstrip()
        if not stripped:
            out.append("")
        elif stripped.endswith(terminal):
            out.append(line)
        else:
            removed += 1
    collapsed: list[str] = []
    for line in out:
        if line or (collapsed and collapsed[-1]):
            collapsed.append(line)
    while collapsed and not collapsed[-1]:
        collapsed.pop()
    return "\n".join(collapsed), removed, kept


def _median(values: list[int]) -> float:
    """The median of small non-negative integers (word lengths), from their counts: the values
    at sorted positions ``(n - 1) // 2`` and ``n // 2`` (one value when ``n`` is odd)."""
    if not values:
        return 0.0
    n = len(values)
    counts = Counter(values)
    seen = 0
    low = 0
    for value in sorted(counts):
        if seen <= (n - 1) // 2:
            low = value  # the lower middle is this value or a later one
        seen += counts[value]
        if seen > n // 2:
            return float(value) if n % 2 else (low + value) / 2
    raise AssertionError("unreachable: the counts add up to len(values)")


_SYMBOL_RE = re.compile("|".join(re.escape(s) for s in SYMBOLS))
_STRIP_PUNCT = methodcaller("strip", _PUNCT)
_MORE_THAN_ONCE = (1).__lt__


class _Ngrams:
    """The n-gram statistics of one document's words, sharing work between the sizes.

    ``prefix[i]`` is the number of characters of ``words[:i]``, so the characters of the n-gram
    starting at ``i`` are ``prefix[i + n] - prefix[i]``. The top n-gram rules' counts are kept;
    ``repeated[n][i]`` says whether the n-gram starting at ``i`` occurs more than once (kept for
    each duplicated-n-gram size that found one). A repeated n-gram's occurrences all start where
    the (n-1)-grams starting there and one word later are repeated too, so once the (n-1)-grams
    are counted, only those positions need counting for size n (and none when no (n-1)-gram
    repeats).
    """

    def __init__(self, words: list[str], lengths: list[int]) -> None:
        self.words = words
        self.prefix = [0, *accumulate(lengths)]
        self.counted: dict[int, Counter[tuple[str, ...]]] = {}
        self.repeated: dict[int, list[bool]] = {}

    def _grams(self, n: int) -> Iterator[tuple[str, ...]]:
        words = self.words
        return zip(*(words[i:] for i in range(n)), strict=False)

    def top_share(self, n: int, total_chars: int) -> float:
        """Count × characters of the most frequent n-gram (the longest of equally frequent
        ones) over ``total_chars``."""
        counts = Counter(self._grams(n))
        self.counted[n] = counts
        if not counts or total_chars == 0:
            return 0.0
        best = max(counts.values())
        if best == 1:  # every n-gram is a most frequent one
            prefix = self.prefix
            chars = max(map(sub, prefix[n:], prefix[:-n]))
        else:
            top = compress(counts, map(best.__eq__, counts.values()))
            chars = max(map(sum, map(map, repeat(len), top)))
        return best * chars / total_chars

    def _previous(self, n: int) -> list[bool] | None:
        """``repeated[n - 1]`` if known or counted, ``[]`` when nothing of size n - 1 repeats,
        None when unknown."""
        if n - 1 in self.repeated:
            return self.repeated[n - 1]
        if n - 1 in self.counted:
            counts = self.counted[n - 1]
            if not counts or max(counts.values()) == 1:
                return []
            return list(map(_MORE_THAN_ONCE, map(counts.__getitem__, self._grams(n - 1))))
        return None

    def _repeated_at(self, n: int) -> list[bool] | None:
        """``repeated[n]``, or None when no n-gram repeats."""
        words = self.words
        starts = len(words) - n + 1
        if starts <= 0:
            return None
        previous = self._previous(n)
        if previous is None:
            counts = Counter(self._grams(n))
            if max(counts.values()) == 1:
                return None
            return list(map(_MORE_THAN_ONCE, map(counts.__getitem__, self._grams(n))))
        candidates = list(compress(range(starts), map(and_, previous, previous[1:])))
        if not candidates:
            return None
        grams = [tuple(words[i : i + n]) for i in candidates]
        counts = Counter(grams)
        if max(counts.values()) == 1:
            return None
        flags = [False] * starts
        for i, gram in zip(candidates, grams, strict=True):
            if counts[gram] > 1:
                flags[i] = True
        return flags

    def dup_share(self, n: int, total_chars: int) -> float:
        """Characters of the words covered by a repeated n-gram over ``total_chars``."""
        flags = self._repeated_at(n)
        if flags is None or total_chars == 0:
            return 0.0
        self.repeated[n] = flags
        prefix = self.prefix
        covered_chars = 0
        covered_end = 0  # words[:covered_end] already counted
        for i in compress(range(len(flags)), flags):
            start = max(i, covered_end)
            covered_chars += prefix[i + n] - prefix[start]
            covered_end = i + n
        return covered_chars / total_chars


def check_document(text: str, config: QualityConfig) -> QualityResult:
    """Apply the C4 line filter, then the Gopher rules in ``RULE_ORDER``; first failure decides.

    The C4 filter runs first so the Gopher rules judge the text that would actually be emitted:
    a document must still have enough words, stop words, etc. once its menu/boilerplate lines are
    gone, and boilerplate the filter removes anyway does not count against the duplicate-line and
    n-gram rules. (One consequence: lines ending in ``…`` are removed by the default C4 marks
    before the ellipsis-line rule sees them; lines ending in ``...`` end in ``.`` and stay.)
    """
    stats: dict[str, Any] = {}

    def drop(reason: str) -> QualityResult:
        return QualityResult(keep=False, reason=reason, text=text, stats=stats)

    if config.c4_no_terminal_punctuation:
        text, removed, kept = c4_line_filter(text, tuple(config.c4_terminal_punctuation))
        stats["c4_lines_removed"] = removed
        if kept == 0:
            return drop("c4_no_terminal_punct_all_lines_removed")

    words = text.split()
    n_words = len(words)
    stats["words"] = n_words
    if config.min_words is not None and n_words < config.min_words:
        return drop("gopher_min_words")
    if config.max_words is not None and n_words > config.max_words:
        return drop("gopher_max_words")

    # Per-word statistics, computed once per distinct word and weighted by its count.
    stop_words = frozenset(w.lower() for w in config.stop_words)
    lengths = list(map(len, words))
    word_counts = Counter(words)
    distinct = list(word_counts)
    counts = list(word_counts.values())
    n_symbol = 0
    if _SYMBOL_RE.search(text) is not None:
        n_symbol = sum(compress(counts, map(_SYMBOL_RE.search, distinct)))
    # A word has a letter when it is all letters (``str.isalpha``, the common case) or when
    # ``[^\W\d_]`` finds one.
    alpha = list(map(str.isalpha, distinct))
    n_alpha = sum(compress(counts, alpha))
    if n_alpha < n_words:
        others = list(map(not_, alpha))
        n_alpha += sum(
            compress(compress(counts, others), map(_ALPHA.search, compress(distinct, others)))
        )
    n_stop = sum(
        compress(counts, map(stop_words.__contains__, map(str.lower, map(_STRIP_PUNCT, distinct))))
    )
    total_chars = sum(lengths)
    denom = max(n_words, 1)

    median = _median(lengths)
    stats["median_word_length"] = median
    if config.min_median_word_length is not None and median < config.min_median_word_length:
        return drop("gopher_min_median_word_length")
    if config.max_median_word_length is not None and median > config.max_median_word_length:
        return drop("gopher_max_median_word_length")
    stats["symbol_to_word_ratio"] = n_symbol / denom
    if (
        config.max_symbol_to_word_ratio is not None
        and stats["symbol_to_word_ratio"] > config.max_symbol_to_word_ratio
    ):
        return drop("gopher_symbol_ratio")
    stats["alpha_word_fraction"] = n_alpha / denom
    if (
        config.min_alpha_word_fraction is not None
        and stats["alpha_word_fraction"] < config.min_alpha_word_fraction
    ):
        return drop("gopher_alpha_words")
    stats["stop_words"] = n_stop
    if config.min_stop_words is not None and n_stop < config.min_stop_words:
        return drop("gopher_stop_words")

    # The non-blank lines, stripped; a copy counts beyond a line's first occurrence.
    lines = list(filter(None, map(str.strip, text.split("\n"))))
    n_lines = len(lines)
    line_chars = sum(map(len, lines))
    n_bullet = sum(map(methodcaller("startswith", BULLETS), lines))
    n_ellipsis = sum(map(methodcaller("endswith", ELLIPSES), lines))
    distinct_lines = set(lines)
    dup_lines = n_lines - len(distinct_lines)
    dup_chars = line_chars - sum(map(len, distinct_lines))
    line_rules = (
        ("bullet_line_fraction", n_bullet / max(n_lines, 1),
         config.max_bullet_line_fraction, "gopher_bullet_lines"),
        ("ellipsis_line_fraction", n_ellipsis / max(n_lines, 1),
         config.max_ellipsis_line_fraction, "gopher_ellipsis_lines"),
        ("duplicate_line_fraction", dup_lines / max(n_lines, 1),
         config.max_duplicate_line_fraction, "gopher_dup_lines"),
        ("duplicate_line_char_fraction", dup_chars / max(line_chars, 1),
         config.max_duplicate_line_char_fraction, "gopher_dup_line_chars"),
    )  # fmt: skip
    for key, value, limit, reason in line_rules:
        stats[key] = value
        if limit is not None and value > limit:
            return drop(reason)

    ngrams = _Ngrams(words, lengths)
    for n in TOP_NGRAM_SIZES:
        limit = config.top_ngram_limit(n)
        if limit is None:
            continue
        share = ngrams.top_share(n, total_chars)
        stats[f"top_{n}gram_char_fraction"] = share
        if share > limit:
            return drop(f"gopher_top_{n}gram_chars")
    share = 1.0
    for n in DUP_NGRAM_SIZES:
        limit = config.dup_ngram_limit(n)
        if limit is None:
            continue
        # Coverage never grows with n (a repeated (n+1)-gram holds repeated n-grams over the
        # same words), so once nothing repeats the longer sizes need no counting.
        share = ngrams.dup_share(n, total_chars) if share > 0 else 0.0
        stats[f"dup_{n}gram_char_fraction"] = share
        if share > limit:
            return drop(f"gopher_dup_{n}gram_chars")

    return QualityResult(keep=True, reason=None, text=text, stats=stats)
