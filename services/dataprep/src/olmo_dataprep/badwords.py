"""Bad-words filter in the spirit of C4: drop documents that contain words from a word list.

C4 removed every page containing any word of a published "bad words" list. This stage does the
same with a configurable tolerance: a document is dropped when it has more than ``max_matches``
matches *and* they are more than ``max_fraction`` of its words (defaults 0 and 0.005; with
``max_fraction: null`` it is C4's rule: any match drops the document). The list is the one shipped in the pinned ``better-profanity`` package
(``better_profanity/profanity_wordlist.txt``, MIT licensed); it is read from the installed
package at run time and never copied into this repository. ``license_text`` returns the package's
LICENSE file and ``word_list_identity`` records the list as used (source, version, sha256) for
the pipeline's manifest.

Matching rules:

- Text and list entries are normalised the same way: lower-cased, ``’`` read as ``'``, then split
  into words with ``[^\\W_]+(?:'[^\\W_]+)*`` (runs of Unicode letters and digits, with
  apostrophes allowed inside a word). Everything else (spaces, punctuation, ``-``, ``_``, ``.``)
  separates words.
- Matching is on whole words and word sequences, never substrings: the entry ``ass`` does not
  match ``class``. An entry of several words (``blow job``, and also ``doggy-style`` or
  ``s.o.b.``, which split into several words) matches that exact sequence of consecutive words.
- Entries holding characters other than letters, digits, apostrophes, whitespace and the
  separators ``-``, ``_``, ``.`` (leetspeak such as ``sh!t`` or ``shi+``, globs such as
  ``masterbat*``) are skipped: splitting them like text would change their meaning (``shi+``
  would become the common name ``shi``). ``word_list_identity`` counts them.
- Matches are counted left to right without overlap; at each position the longest entry
  starting there wins (``mother fucker`` is one match, not two).

The list is not tuned for ordinary prose: it contains common English words such as ``god``,
``kill``, ``hell``, ``fat``, ``ugly``, ``pot``, ``weed``, ``suck``, ``sex``, ``pawn`` and ``len``,
so with C4's any-match rule a lot of harmless text is dropped: hence the density condition by
default. Use ``allow_words`` to remove entries, or tune ``max_matches``/``max_fraction``.

Stdlib only; must not import torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from olmo.config import Fraction, NonNegativeInt, StrictConfig

__all__ = [
    "REASON_BAD_WORDS",
    "WORD_LIST_PACKAGE",
    "BadWordsConfig",
    "BadWordsFilter",
    "BadWordsResult",
    "WordList",
    "entry_words",
    "license_text",
    "load_word_list",
    "packaged_word_list",
    "parse_word_list",
    "split_words",
    "word_list_identity",
]

REASON_BAD_WORDS = "bad_words"
WORD_LIST_PACKAGE = "better-profanity"  # distribution name (import name: better_profanity)
WORD_LIST_RESOURCE = ("better_profanity", "profanity_wordlist.txt")

_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_ENTRY_CHARS_RE = re.compile(r"[\w\s'’.\-]+")  # \w includes "_"

Entry = tuple[str, ...]


def split_words(text: str) -> list[str]:
    """The normalised words of ``text`` (lower-cased; see the module docstring)."""
    return _WORD_RE.findall(text.lower().replace("\u2019", "'"))


def entry_words(entry: str) -> Entry | None:
    """An entry as the word sequence it matches, or None if it is blank or unsupported."""
    entry = entry.strip()
    if not entry or _ENTRY_CHARS_RE.fullmatch(entry) is None:
        return None
    words = tuple(split_words(entry))
    return words or None


def _check_entries(name: str, entries: list[str]) -> None:
    for entry in entries:
        if entry_words(entry) is None:
            raise ValueError(
                f"{name}: {entry!r} is not a usable entry (it must contain a letter or digit and "
                "only letters, digits, apostrophes, whitespace, '-', '_' and '.')"
            )


class BadWordsConfig(StrictConfig):
    """Settings of the bad-words stage (defaults: C4's rule with better-profanity's list)."""

    enabled: bool = True
    max_matches: NonNegativeInt = 0
    """Drop a document with more matches than this (0: any match drops it, as in C4) ..."""
    max_fraction: Fraction | None = 0.005
    """... and whose matches are more than this fraction of its words (``None``: no such
    condition, which with ``max_matches: 0`` is exactly C4's rule). The packaged list holds
    common words (``kill``, ``len``, ``hell``), so C4's any-match rule would drop much harmless
    prose and code; a density of one match per 200 words keeps those and still drops text that
    is dense with the list's words."""
    words_file: str | None = None
    """A newline-separated list (``#`` starts a comment) that replaces the packaged list."""
    extra_words: list[str] = Field(default_factory=list)
    """Entries added to the list (words or phrases)."""
    allow_words: list[str] = Field(default_factory=list)
    """Entries removed from the list (compared after normalisation)."""

    @model_validator(mode="after")
    def _check_words(self) -> BadWordsConfig:
        if self.words_file is not None and not self.words_file.strip():
            raise ValueError("words_file must be a path or null, not an empty string")
        _check_entries("extra_words", self.extra_words)
        _check_entries("allow_words", self.allow_words)
        both = {entry_words(w) for w in self.extra_words} & {
            entry_words(w) for w in self.allow_words
        }
        if both:
            listed = sorted(" ".join(e) for e in both if e is not None)
            raise ValueError(f"extra_words and allow_words both list {listed}")
        return self


@dataclass(frozen=True)
class BadWordsResult:
    """Decision for one document: ``matches`` counted, ``first`` the first matched entry."""

    keep: bool
    matches: int
    first: str | None

    @property
    def reason(self) -> str | None:
        return None if self.keep else REASON_BAD_WORDS


def parse_word_list(text: str) -> list[str]:
    """Raw entries of a list file: one per line, ``#`` to the end of the line is a comment."""
    entries = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            entries.append(entry)
    return entries


@lru_cache(maxsize=1)
def packaged_word_list() -> tuple[str, ...]:
    """The raw entries of better-profanity's list, as shipped."""
    package, resource = WORD_LIST_RESOURCE
    text = importlib.resources.files(package).joinpath(resource).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _package_license() -> str | None:
    meta = importlib.metadata.metadata(WORD_LIST_PACKAGE)
    expression = meta.get("License-Expression")
    if expression:
        return expression
    for classifier in meta.get_all("Classifier") or []:
        if classifier.startswith("License :: OSI Approved :: "):
            name = classifier.rsplit(" :: ", 1)[1]
            return name.removesuffix(" License")
    value = meta.get("License")
    return None if value in (None, "", "UNKNOWN") else value


def license_text() -> str:
    """The LICENSE file shipped in better-profanity's metadata (the list's license)."""
    text = importlib.metadata.distribution(WORD_LIST_PACKAGE).read_text("LICENSE")
    if not text:
        raise FileNotFoundError(f"{WORD_LIST_PACKAGE} ships no LICENSE file in its metadata")
    return text


@dataclass(frozen=True)
class WordList:
    """A loaded list: the usable entries (as word sequences) and what was read."""

    entries: frozenset[Entry]
    raw: int  # raw entries read (list + extra_words)
    skipped: tuple[str, ...]  # raw entries that could not be used


def load_word_list(config: BadWordsConfig) -> WordList:
    """The entries a filter built from ``config`` uses: list (or file) + extra - allow."""
    if config.words_file is not None:
        raw = parse_word_list(Path(config.words_file).read_text(encoding="utf-8"))
    else:
        raw = list(packaged_word_list())
    raw += config.extra_words
    entries: set[Entry] = set()
    skipped: list[str] = []
    for entry in raw:
        words = entry_words(entry)
        if words is None:
            skipped.append(entry)
        else:
            entries.add(words)
    entries.difference_update(entry_words(w) for w in config.allow_words)
    return WordList(entries=frozenset(entries), raw=len(raw), skipped=tuple(skipped))


def _digest(entries: Iterable[Entry]) -> str:
    lines = sorted(" ".join(e) for e in entries)
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode("utf-8")).hexdigest()


def word_list_identity(config: BadWordsConfig | None = None) -> dict[str, Any]:
    """What to record in the pipeline manifest about the list ``config`` makes.

    ``sha256`` is over the entries as used: normalised (words joined by one space), sorted, one
    per line with a trailing newline.
    """
    config = config or BadWordsConfig()
    words = load_word_list(config)
    identity: dict[str, Any] = {}
    if config.words_file is None:
        identity.update(
            source="package",
            package=WORD_LIST_PACKAGE,
            package_version=importlib.metadata.version(WORD_LIST_PACKAGE),
            license=_package_license(),
        )
    else:
        identity.update(source="file", words_file=config.words_file, license=None)
    identity.update(
        raw_entries=words.raw,
        skipped_entries=len(words.skipped),
        extra_words=len(config.extra_words),
        allow_words=len(config.allow_words),
        entries=len(words.entries),
        sha256=_digest(words.entries),
    )
    return identity


class BadWordsFilter:
    """Whole-word matcher over a word list: a set of one-word entries plus the multi-word
    entries keyed by their first word (longest first)."""

    def __init__(self, config: BadWordsConfig | None = None) -> None:
        self.config = config or BadWordsConfig()
        self.words = load_word_list(self.config)
        self.unigrams: frozenset[str] = frozenset(e[0] for e in self.words.entries if len(e) == 1)
        phrases: dict[str, list[Entry]] = {}
        for entry in self.words.entries:
            if len(entry) > 1:
                phrases.setdefault(entry[0], []).append(entry)
        for group in phrases.values():
            group.sort(key=lambda e: (-len(e), e))
        self.phrases: dict[str, tuple[Entry, ...]] = {k: tuple(v) for k, v in phrases.items()}
        self._starts = self.unigrams | frozenset(self.phrases)

    def __len__(self) -> int:
        return len(self.words.entries)

    def identity(self) -> dict[str, Any]:
        return word_list_identity(self.config)

    def find(self, text: str) -> list[str]:
        """Matched entries (normalised, words joined by a space) in text order."""
        return self._find(split_words(text))

    def _find(self, words: list[str]) -> list[str]:
        if self._starts.isdisjoint(words):  # the common case, decided in C
            return []
        found: list[str] = []
        n = len(words)
        i = 0  # words[:i] are matched or passed
        # A match can only start at a word that starts an entry: visit just those, in order.
        for start in compress(range(n), map(self._starts.__contains__, words)):
            if start < i:  # inside the previous match
                continue
            word = words[start]
            match: Entry | None = None
            for phrase in self.phrases.get(word, ()):
                end = start + len(phrase)
                if end <= n and tuple(words[start:end]) == phrase:
                    match = phrase
                    break
            if match is None and word in self.unigrams:
                match = (word,)
            if match is not None:
                found.append(" ".join(match))
                i = start + len(match)
        return found

    def _keep(self, matches: int, words: int) -> bool:
        if matches <= self.config.max_matches:
            return True
        limit = self.config.max_fraction
        return limit is not None and matches <= limit * words

    def check(self, text: str) -> BadWordsResult:
        """Keep ``text`` unless it has more than ``max_matches`` matches (or the stage is off)."""
        if not self.config.enabled:
            return BadWordsResult(keep=True, matches=0, first=None)
        words = split_words(text)  # split once: for the matches and for their density
        found = self._find(words)
        return BadWordsResult(
            keep=self._keep(len(found), len(words)),
            matches=len(found),
            first=found[0] if found else None,
        )
