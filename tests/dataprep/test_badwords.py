"""Bad-words stage: better-profanity's list, whole-word and phrase matching, C4's rule.

Listed words are picked from the installed list at test time, so no offensive word is written in
this file; the behavioural tests mostly use made-up custom lists.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from olmo.config import ConfigError, validate
from olmo_dataprep.badwords import (
    REASON_BAD_WORDS,
    BadWordsConfig,
    BadWordsFilter,
    entry_words,
    license_text,
    packaged_word_list,
    split_words,
    word_list_identity,
)

CLEAN = (
    "The committee met on Tuesday to review the budget for the new railway station. After a "
    "long discussion, the members agreed to postpone the decision until the engineers had "
    "finished their survey of the site."
)


@pytest.fixture(scope="module")
def default_filter() -> BadWordsFilter:
    return BadWordsFilter()


@pytest.fixture(scope="module")
def listed(default_filter: BadWordsFilter) -> str:
    """A one-word entry of the packaged list (alphabetic, at least four letters)."""
    return next(w for w in sorted(default_filter.unigrams) if w.isalpha() and len(w) >= 4)


def custom(tmp_path: Path, lines: list[str], **kwargs: object) -> BadWordsFilter:
    path = tmp_path / "words.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return BadWordsFilter(BadWordsConfig(words_file=str(path), **kwargs))


def test_packaged_list_is_loaded(default_filter: BadWordsFilter) -> None:
    raw = packaged_word_list()
    assert len(raw) > 800
    assert len(default_filter) > 800
    assert default_filter.phrases  # the list has multi-word entries
    assert len(default_filter.words.skipped) < 20


def test_clean_text_kept(default_filter: BadWordsFilter) -> None:
    result = default_filter.check(CLEAN)
    assert result.keep and result.matches == 0 and result.first is None
    assert result.reason is None


def test_listed_word_dropped(default_filter: BadWordsFilter, listed: str) -> None:
    result = default_filter.check(f"{CLEAN} And then {listed}, he said.")
    assert not result.keep
    assert result.reason == REASON_BAD_WORDS
    assert (result.matches, result.first) == (1, listed)


def test_case_insensitive(default_filter: BadWordsFilter, listed: str) -> None:
    for variant in (listed.upper(), listed.title()):
        assert default_filter.find(f"one {variant} two") == [listed]


def test_substrings_of_longer_words_do_not_match(
    default_filter: BadWordsFilter, listed: str
) -> None:
    assert default_filter.find(f"zq{listed}zq {listed}zq zq{listed} {listed}9") == []
    # "_" is not a word character, so it separates words like "-" does.
    assert default_filter.find(f"{listed}_x") == [listed]
    # Ordinary words that contain a listed word (e.g. "class"): none of them matches.
    vocabulary = ["class", "classic", "passage", "assessment", "shell", "skill", "analysis"]
    vocabulary += ["grape", "therapist", "document", "title", "scunthorpe", "pottery", "dickens"]
    vocabulary = [w for w in vocabulary if w not in default_filter.unigrams]
    containing = [w for w in vocabulary if any(u in w for u in default_filter.unigrams)]
    assert len(containing) >= 5
    assert default_filter.find(" ".join(containing)) == []


def test_packaged_phrase(default_filter: BadWordsFilter) -> None:
    phrase = next(
        p
        for group in sorted(default_filter.phrases.values())
        for p in group
        if not any(w in default_filter.unigrams for w in p)
    )
    spaced = " ".join(phrase)
    assert default_filter.find(f"x {spaced.upper()} y") == [spaced]
    assert default_filter.find(f"x {'-'.join(phrase)} y") == [spaced]
    # The same words, not adjacent, are not the phrase.
    assert default_filter.find(" and ".join(phrase)) == []


def test_phrases_hyphens_and_dots(tmp_path: Path) -> None:
    f = custom(tmp_path, ["purple monkey", "tea-pot", "a.b.c.", "monkey"])
    assert f.find("A purple  monkey sat.") == ["purple monkey"]  # longest match, no overlap
    assert f.find("The monkey is purple.") == ["monkey"]
    assert f.find("Tea pot, TEA-POT and teapot.") == ["tea pot", "tea pot"]
    assert f.find("say A.B.C. or a b c but not abc") == ["a b c", "a b c"]
    assert f.find("purple") == []


def test_apostrophes(tmp_path: Path) -> None:
    f = custom(tmp_path, ["don't", "cat"])
    assert f.find("Don’t do that, don't.") == ["don't", "don't"]
    assert f.find("the cat's toy, 'cat'") == ["cat"]  # a possessive is another word
    assert split_words("It’s 'quoted' rock'n'roll, x_y") == [
        "it's",
        "quoted",
        "rock'n'roll",
        "x",
        "y",
    ]


def test_max_matches(tmp_path: Path) -> None:
    f = custom(tmp_path, ["zorblax"], max_matches=2)
    assert f.check("zorblax " * 2).keep
    result = f.check("zorblax " * 3)
    assert not result.keep and result.matches == 3 and result.first == "zorblax"
    c4 = custom(tmp_path, ["zorblax"], max_fraction=None)
    assert c4.check("no match").keep
    assert not c4.check("one zorblax").keep


def test_disabled_keeps_everything(listed: str) -> None:
    result = BadWordsFilter(BadWordsConfig(enabled=False)).check(listed)
    assert result.keep and result.matches == 0


def test_words_file_replaces_the_list(tmp_path: Path, listed: str) -> None:
    f = custom(tmp_path, ["# a comment", "", "  zorblax  # trailing comment", "fizz buzz"])
    assert len(f) == 2
    assert f.find(f"{listed} zorblax fizz buzz") == ["zorblax", "fizz buzz"]
    assert f.words.skipped == ()


def test_unusable_entries_are_skipped(tmp_path: Path) -> None:
    f = custom(tmp_path, ["zor+b", "fo!o", "glob*", "zorblax"])
    assert f.words.skipped == ("zor+b", "fo!o", "glob*")
    assert f.find("zor b fo o glob zorblax") == ["zorblax"]
    assert entry_words("sh-ort") == ("sh", "ort")
    assert entry_words("---") is None


def test_extra_and_allow_words(default_filter: BadWordsFilter, listed: str) -> None:
    f = BadWordsFilter(BadWordsConfig(extra_words=["zorblax", "Fizz Buzz"], allow_words=[listed]))
    assert len(f) == len(default_filter) + 1
    assert f.find(f"{listed} zorblax fizz buzz") == ["zorblax", "fizz buzz"]
    assert f.identity()["sha256"] != default_filter.identity()["sha256"]


def test_config_validation() -> None:
    assert validate(BadWordsConfig, {"max_matches": 3}).max_matches == 3
    for bad in (
        {"max_matches": -1},
        {"extra_words": ["!!!"]},
        {"allow_words": ["fo!o"]},
        {"extra_words": ["Zorblax"], "allow_words": ["zorblax"]},
        {"words_file": ""},
        {"badwords": []},
    ):
        with pytest.raises(ConfigError):
            validate(BadWordsConfig, bad)


def test_missing_words_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        BadWordsFilter(BadWordsConfig(words_file=str(tmp_path / "nope.txt")))


def test_identity_and_license() -> None:
    identity = word_list_identity()
    assert identity == word_list_identity(BadWordsConfig())
    assert identity["package"] == "better-profanity"
    assert identity["package_version"] == "0.7.0"
    assert identity["license"] == "MIT"
    assert identity["raw_entries"] == len(packaged_word_list())
    assert len(identity["sha256"]) == 64
    text = license_text()
    assert text.strip()
    # The shipped LICENSE is the MIT text without its title line.
    assert "MIT" in text or "Permission is hereby granted, free of charge" in text


def test_plain_technical_english_trips_the_any_match_rule(default_filter: BadWordsFilter) -> None:
    # The list holds everyday words; with C4's rule this ordinary sentence is dropped, and
    # allow_words is the escape hatch.
    text = "To get the number of items in a Python list, call len() on it."
    assert default_filter.find(text) == ["len"]
    assert not BadWordsFilter(BadWordsConfig(max_fraction=None)).check(text).keep
    assert BadWordsFilter(BadWordsConfig(allow_words=["len"], max_fraction=None)).check(text).keep


def test_density_rule(tmp_path: Path) -> None:
    """The default: more than max_matches matches AND more than max_fraction of the words."""
    f = custom(tmp_path, ["zorblax"], max_fraction=0.01)
    filler = "plain words " * 100  # 200 words
    assert f.check(filler + "zorblax " * 2).keep  # 2 matches in 202 words: 0.99%
    assert not f.check(filler + "zorblax " * 3).keep  # 3 in 203: 1.48%
    assert (
        custom(tmp_path, ["zorblax"], max_fraction=0.01, max_matches=5)
        .check(filler + "zorblax " * 3)
        .keep
    )
    assert not custom(tmp_path, ["zorblax"], max_fraction=None).check(filler + "zorblax").keep
    # The recipe default tolerates one match in 200 words, not one in 150.
    default = custom(tmp_path, ["zorblax"])
    assert default.check("plain words " * 100 + "zorblax").keep
    assert not default.check("plain words " * 75 + "zorblax").keep


def reference_find(words_filter: BadWordsFilter, text: str) -> list[str]:
    """The direct rule: left to right over every word, the longest entry starting there wins."""
    words = split_words(text)
    found, i = [], 0
    while i < len(words):
        match = next(
            (
                p
                for p in words_filter.phrases.get(words[i], ())
                if tuple(words[i : i + len(p)]) == p
            ),
            (words[i],) if words[i] in words_filter.unigrams else None,
        )
        if match is None:
            i += 1
        else:
            found.append(" ".join(match))
            i += len(match)
    return found


def test_find_and_check_match_the_direct_rule(tmp_path: Path) -> None:
    # Overlapping phrases, phrases cut off by the end of the text, unigrams inside phrases.
    lines = ["aa", "aa bb", "aa bb cc", "bb cc", "cc", "dd ee", "ee", "ff gg hh"]
    rng = random.Random(11)
    vocabulary = ["aa", "bb", "cc", "dd", "ee", "ff", "gg", "hh", "the", "and", "AA", "aa's"]
    for config in ({}, {"max_fraction": None}, {"max_matches": 2, "max_fraction": 0.3}):
        words_filter = custom(tmp_path, lines, **config)
        for _ in range(400):
            words = rng.choices(vocabulary, k=rng.randint(0, 30))
            text = rng.choice([" ", ", ", "-", ". "]).join(words)
            found = reference_find(words_filter, text)
            assert words_filter.find(text) == found
            result = words_filter.check(text)
            limit = words_filter.config.max_fraction
            keep = len(found) <= words_filter.config.max_matches or (
                limit is not None and len(found) <= limit * len(split_words(text))
            )
            assert (result.keep, result.matches) == (keep, len(found))
            assert result.first == (found[0] if found else None)
