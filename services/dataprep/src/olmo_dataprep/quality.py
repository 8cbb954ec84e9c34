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

This module must not import torch.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field
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
    out: list[str] = []
    removed = 0
    kept = 0
    for line in lines:
        stripped = line.rstrip()
        if not stripped:
            out.append("")
        elif stripped.endswith(terminal):
            out.append(line)
            kept += 1
        else:
            removed += 1
    if removed == 0:
        return text, 0, kept
    collapsed: list[str] = []
    for line in out:
        if line or (collapsed and collapsed[-1]):
            collapsed.append(line)
    while collapsed and not collapsed[-1]:
        collapsed.pop()
    return "\n".join(collapsed), removed, kept


def _median(values: list[int]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2


def _ngrams(words: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(zip(*(words[i:] for i in range(n)), strict=False))


def _top_ngram_share(words: list[str], n: int, total_chars: int) -> float:
    counts = _ngrams(words, n)
    if not counts or total_chars == 0:
        return 0.0
    best = max(counts.values())
    chars = max(sum(map(len, g)) for g, c in counts.items() if c == best)
    return best * chars / total_chars


def _dup_ngram_share(words: list[str], lengths: list[int], n: int, total_chars: int) -> float:
    counts = _ngrams(words, n)
    if total_chars == 0:
        return 0.0
    covered_chars = 0
    covered_end = 0  # words[:covered_end] already counted
    for i, gram in enumerate(zip(*(words[j:] for j in range(n)), strict=False)):
        if counts[gram] > 1:
            start = max(i, covered_end)
            covered_chars += sum(lengths[start : i + n])
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

    # One pass over the words for the per-word statistics.
    stop_words = frozenset(w.lower() for w in config.stop_words)
    lengths: list[int] = []
    n_symbol = n_alpha = n_stop = 0
    for w in words:
        lengths.append(len(w))
        if "#" in w or "..." in w or "\u2026" in w:
            n_symbol += 1
        if w.isalpha() or _ALPHA.search(w) is not None:
            n_alpha += 1
        if w.strip(_PUNCT).lower() in stop_words:
            n_stop += 1
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

    # One pass over the non-blank lines.
    n_lines = n_bullet = n_ellipsis = line_chars = dup_lines = dup_chars = 0
    seen: set[str] = set()
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        n_lines += 1
        line_chars += len(line)
        if line.startswith(BULLETS):
            n_bullet += 1
        if line.endswith(ELLIPSES):
            n_ellipsis += 1
        if line in seen:
            dup_lines += 1
            dup_chars += len(line)
        else:
            seen.add(line)
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

    for n in TOP_NGRAM_SIZES:
        limit = config.top_ngram_limit(n)
        if limit is None:
            continue
        share = _top_ngram_share(words, n, total_chars)
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
        share = _dup_ngram_share(words, lengths, n, total_chars) if share > 0 else 0.0
        stats[f"dup_{n}gram_char_fraction"] = share
        if share > limit:
            return drop(f"gopher_dup_{n}gram_chars")

    return QualityResult(keep=True, reason=None, text=text, stats=stats)
