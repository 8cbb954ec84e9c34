"""Per-item parity with OLMo's own evaluator: ai2-olmo-eval 0.9.0 with its own dependencies, in
its own venv (``benchmarks/olmo_eval_ref``, built from ``locks/olmo-eval-ref.txt`` on first use
and cached), against ``olmo.eval`` on one fixed model.

The model is the tiny preset with seeded weights and a byte-level BPE trained on the items, saved
as one HF directory: the reference runs it through transformers' ``OlmoForCausalLM`` with its
own task classes (``build_task``: prompts, tokenization, truncation to the model's context),
collate function and ``ICLMetric``; we load it with ``olmo.eval.load_model``. The reference is
configured with ``bos_token_id`` = EOS, our document prefix (a deliberate difference of
configuration, see ``olmo.eval``). For the first ``LIMIT`` items of all nine core tasks, per item:
the same request tokens, log-likelihoods within 1e-4 under ``acc`` (Σ log p, our ``none``) and
``len_norm`` (÷ characters, our ``per_char``), the same chosen answer, and the same accuracy as
the reference's ``compute()``. PMI is not compared: the reference's ``pmi_dc`` is a different
quantity (documented in ``olmo.eval.downstream``), though its conditional part is the ``acc``
log-likelihood checked here.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from olmo.eval import CORE_TASKS, PromptTokenizer, load_items, load_model, load_tokenizer
from olmo.eval.downstream import item_requests, score_items

from ..conftest import REPO_ROOT

LIMIT = 6
TOLERANCE = 1e-4
METRICS = {"acc": "none", "len_norm": "per_char"}  # reference metric type → our normalization


def _reference_module():
    folder = REPO_ROOT / "benchmarks" / "olmo_eval_ref"
    spec = importlib.util.spec_from_file_location(
        "olmo_eval_ref", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("olmo_eval_ref", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(reference result, {task: (items, our scores, our requests)}) for the fixed model."""
    ref = _reference_module()
    python = ref.ensure_venv()  # built once per lock (ReferenceEnvError says what failed)
    items = {task: load_items(task, LIMIT) for task in CORE_TASKS}
    fixture = ref.build_fixture(
        tmp_path_factory.mktemp("model"), [i for task in items.values() for i in task]
    )
    spec = fixture.spec(list(CORE_TASKS), LIMIT, batch_size=16, metrics=list(METRICS), threads=2)
    reference = ref.run_reference(python, spec)
    loaded = load_model(fixture.folder)
    tokenizer = PromptTokenizer(load_tokenizer(fixture.folder), loaded.config.eos_token_id)
    ours = {}
    for task, task_items in items.items():
        scored = score_items(loaded.model, tokenizer, task_items, batch_size=16)
        requests = [r[0::2] for r in item_requests(task_items, tokenizer)]  # conditional ones
        ours[task] = (task_items, scored, requests)
    return reference, ours, fixture


def test_reference_scored_every_item_of_every_task(both):
    reference, ours, _ = both
    assert set(reference["tasks"]) == set(CORE_TASKS)
    for task, (items, _, _) in ours.items():
        docs = reference["tasks"][task]["docs"]
        assert [d["doc_id"] for d in docs] == list(range(LIMIT)), task
        assert [d["label"] for d in docs] == [item.gold for item in items], task


def test_same_request_tokens(both):
    """Prompts, the context/continuation boundary, the prefix: the same token ids."""
    reference, ours, _ = both
    for task, (_, _, requests) in ours.items():
        for doc, item_requests_ in zip(reference["tasks"][task]["docs"], requests, strict=True):
            theirs = [(tuple(ctx), tuple(cont)) for ctx, cont in doc["requests"]]
            assert item_requests_ == theirs, f"{task} item {doc['doc_id']}"


def test_truncation_to_the_model_context_is_exercised(both):
    """Some boolq passages exceed the tiny model's context: both sides cut them from the left."""
    _, ours, fixture = both
    _, _, requests = ours["boolq"]
    longest = max(len(ctx) + len(cont) for item in requests for ctx, cont in item)
    assert longest > fixture.max_sequence_length + 1


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_same_loglikelihoods_and_choices_per_item(both, metric):
    reference, ours, _ = both
    normalization = METRICS[metric]
    for task, (_, scored, _) in ours.items():
        docs = reference["tasks"][task]["docs"]
        for doc, item in zip(docs, scored, strict=True):
            mine, theirs = item.scores(normalization), doc[metric]
            where = f"{task} item {doc['doc_id']} ({metric})"
            assert mine == pytest.approx(theirs, abs=TOLERANCE), where
            assert item.prediction(normalization) == theirs.index(max(theirs)), where
        correct = sum(item.correct(normalization) for item in scored)
        assert correct / LIMIT == pytest.approx(reference["tasks"][task]["accuracy"][metric])
