"""Zero-shot rank classification: score every choice, pick the best under each normalization.

For a choice with continuation ``c`` after context ``x`` (``log p`` summed over the
continuation's tokens):

- ``none``:      log p(c | x)
- ``per_token``: log p(c | x) / (tokens of c)
- ``per_char``:  log p(c | x) / (characters of c, the leading space included)
- ``pmi``:       log p(c | x) − log p(c | "Answer:")   (pointwise mutual information, with
  ``"Answer:"`` as the neutral prompt for every task: the prompt OLMo's evaluator uses as the
  unconditional "domain" prompt for most tasks; one fixed string keeps the unconditional scores
  shared across items and tasks)

The prediction is the first choice with the highest score; accuracy is the fraction of items
whose prediction is the gold choice. Winogrande's choices share one continuation under different
contexts, so its ``pmi`` subtracts the same number from both and equals ``none``, and
``per_token``/``per_char`` divide both by the same length (unless a BPE merge straddles one
context's boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from olmo.eval.engine import EngineStats, PromptTokenizer, Request, score_requests
from olmo.eval.tasks import HEADLINE, NORMALIZATIONS, UNCONDITIONAL_PROMPT, Item

__all__ = [
    "ChoiceScore",
    "ItemScores",
    "accuracies",
    "correct_counts",
    "item_requests",
    "score_items",
    "task_metrics",
]


@dataclass(frozen=True)
class ChoiceScore:
    """The numbers behind one choice's four normalized scores."""

    logprob: float
    """Σ log p(continuation | context)."""
    tokens: int
    """Continuation tokens."""
    chars: int
    """Continuation characters."""
    unconditional: float
    """Σ log p(continuation | "Answer:")."""

    def score(self, normalization: str) -> float:
        if normalization == "none":
            return self.logprob
        if normalization == "per_token":
            return self.logprob / self.tokens
        if normalization == "per_char":
            return self.logprob / self.chars
        if normalization == "pmi":
            return self.logprob - self.unconditional
        raise ValueError(
            f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}"
        )


@dataclass(frozen=True)
class ItemScores:
    """One item with the scores of its choices."""

    item: Item
    choices: tuple[ChoiceScore, ...]

    def scores(self, normalization: str) -> list[float]:
        return [c.score(normalization) for c in self.choices]

    def prediction(self, normalization: str) -> int:
        """Index of the first choice with the highest score."""
        scores = self.scores(normalization)
        return scores.index(max(scores))

    def correct(self, normalization: str) -> bool:
        return self.prediction(normalization) == self.item.gold


def item_requests(items: Sequence[Item], tokenizer: PromptTokenizer) -> list[list[Request]]:
    """Per item: for every choice its conditional request, then its unconditional one."""
    out = []
    for item in items:
        requests = []
        for choice in item.choices:
            requests.append(tokenizer.request(choice.context, choice.continuation))
            requests.append(tokenizer.request(UNCONDITIONAL_PROMPT, choice.continuation))
        out.append(requests)
    return out


def score_items(
    model: Any,
    tokenizer: PromptTokenizer,
    items: Sequence[Item],
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    min_forwards: int = 0,
    stats: EngineStats | None = None,
    full_forward: bool = False,
) -> list[ItemScores]:
    """Score every choice of every item (one engine call for all of them)."""
    per_item = item_requests(items, tokenizer)
    flat = [r for requests in per_item for r in requests]
    logprobs = score_requests(
        model,
        flat,
        batch_size=batch_size,
        device=device,
        min_forwards=min_forwards,
        stats=stats,
        full_forward=full_forward,
    )
    scored = []
    for item, requests in zip(items, per_item, strict=True):
        choices = []
        for i, choice in enumerate(item.choices):
            conditional, unconditional = requests[2 * i], requests[2 * i + 1]
            choices.append(
                ChoiceScore(
                    logprob=logprobs[conditional],
                    tokens=len(conditional[1]),
                    chars=len(choice.continuation),
                    unconditional=logprobs[unconditional],
                )
            )
        scored.append(ItemScores(item, tuple(choices)))
    return scored


def correct_counts(scored: Sequence[ItemScores]) -> dict[str, int]:
    """Number of correctly answered items per normalization."""
    return {norm: sum(s.correct(norm) for s in scored) for norm in NORMALIZATIONS}


def accuracies(scored: Sequence[ItemScores]) -> dict[str, float]:
    """Accuracy per normalization (0.0 for no items)."""
    counts = correct_counts(scored)
    return {norm: counts[norm] / len(scored) if scored else 0.0 for norm in NORMALIZATIONS}


def task_metrics(task: str, items: int, acc: dict[str, float]) -> dict[str, Any]:
    """The JSON block of one task in ``evaluate``'s results."""
    headline = HEADLINE[task]
    return {
        "items": items,
        "headline_metric": headline,
        "headline": acc[headline],
        "acc": {norm: acc[norm] for norm in NORMALIZATIONS},
    }
