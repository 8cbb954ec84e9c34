"""Rank classification: the four normalizations, winogrande's partial scoring, evaluate, in_loop."""

from __future__ import annotations

import json
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from olmo.eval import (
    HEADLINE,
    NORMALIZATIONS,
    EngineStats,
    PromptTokenizer,
    evaluate,
    in_loop,
    load_items,
)
from olmo.eval.downstream import (
    ChoiceScore,
    ItemScores,
    accuracies,
    item_requests,
    score_items,
)
from olmo.eval.engine import count_batches, score_requests_naive
from olmo.eval.tasks import Choice, Item, item_from_row

from .conftest import BigramModel, tiny_olmo, train_bpe, word_tokenizer

log = math.log


def bigram(words: list[str], rows: dict[str, dict[str, float]]) -> BigramModel:
    """P[prev, next] from ``rows`` (the rest of each row's mass spread evenly over the other
    words; rows not given are uniform)."""
    index = {w: i for i, w in enumerate(words)}
    probs = torch.full((len(words), len(words)), 1.0 / len(words), dtype=torch.float64)
    for prev, nexts in rows.items():
        rest = [w for w in words if w not in nexts]
        leftover = (1.0 - sum(nexts.values())) / len(rest)
        for w in words:
            probs[index[prev], index[w]] = nexts.get(w, leftover)
    return BigramModel(probs)


def test_normalizations_by_hand():
    a = ChoiceScore(logprob=-6.0, tokens=2, chars=4, unconditional=-1.0)
    b = ChoiceScore(logprob=-8.0, tokens=4, chars=20, unconditional=-7.5)
    item = ItemScores(Item("piqa", 0, (Choice("q", " a"), Choice("q", " b")), gold=1), (a, b))
    assert item.scores("none") == [-6.0, -8.0]
    assert item.scores("per_token") == [-3.0, -2.0]
    assert item.scores("per_char") == [-1.5, -0.4]
    assert item.scores("pmi") == [-5.0, -0.5]
    assert [item.prediction(n) for n in NORMALIZATIONS] == [0, 1, 1, 1]
    assert accuracies([item]) == {"none": 0.0, "per_token": 1.0, "per_char": 1.0, "pmi": 1.0}
    tie = ChoiceScore(logprob=-6.0, tokens=2, chars=4, unconditional=-1.0)
    assert ItemScores(item.item, (a, tie)).prediction("none") == 0  # ties go to the first
    with pytest.raises(ValueError, match="unknown normalization"):
        a.score("per_byte")


WORDS = ["<eos>", "ctx", "Answer:", "a", "bb", "c" * 19]
CHOICES = (" a a", " bb", " " + "c" * 19, " a a a")  # 2, 1, 1, 3 tokens; 4, 3, 20, 6 chars


def test_four_normalizations_end_to_end_match_hand_computed_scores():
    model = bigram(
        WORDS,
        {
            "ctx": {"a": 0.5, "bb": 0.2, "c" * 19: 0.1},
            "a": {"a": 0.8},
            "Answer:": {"a": 0.9, "bb": 0.01, "c" * 19: 0.05},
        },
    )
    ptok = PromptTokenizer(word_tokenizer(WORDS), eos_token_id=0)
    assert ptok.prefix == (0,)
    choices = tuple(Choice("ctx", c) for c in CHOICES)
    items = [Item("arc_easy", 0, choices, gold=1), Item("arc_easy", 1, choices, gold=0)]
    stats = EngineStats()
    scored = score_items(model, ptok, items, batch_size=3, stats=stats)

    expected_logprob = [log(0.5) + log(0.8), log(0.2), log(0.1), log(0.5) + 2 * log(0.8)]
    expected_uncond = [log(0.9) + log(0.8), log(0.01), log(0.05), log(0.9) + 2 * log(0.8)]
    for item in scored:
        assert [c.logprob for c in item.choices] == pytest.approx(expected_logprob, abs=1e-6)
        assert [c.unconditional for c in item.choices] == pytest.approx(expected_uncond, abs=1e-6)
        assert [c.tokens for c in item.choices] == [2, 1, 1, 3]
        assert [c.chars for c in item.choices] == [4, 3, 20, 6]
        assert item.scores("per_char") == pytest.approx(
            [expected_logprob[0] / 4, log(0.2) / 3, log(0.1) / 20, expected_logprob[3] / 6]
        )
        assert item.scores("pmi") == pytest.approx(
            [log(0.5 / 0.9), log(0.2 / 0.01), log(0.1 / 0.05), log(0.5 / 0.9)]
        )
        # Each normalization picks a different choice: none A, per_token D, per_char C, pmi B.
        assert [item.prediction(n) for n in NORMALIZATIONS] == [0, 3, 2, 1]
    assert accuracies(scored) == {"none": 0.5, "per_token": 0.0, "per_char": 0.0, "pmi": 0.5}
    # 8 conditional requests, 4 distinct; 4 distinct unconditional ones, shared by both items.
    assert stats.requests == 16 and stats.unique_requests == 8


def test_winogrande_partial_scoring_picks_the_context_that_explains_the_continuation():
    words = ["<eos>", "Sarah", "beat", "Maria", "so", "won", "easily", "Answer:"]
    model = bigram(words, {"Sarah": {"won": 0.6}, "Maria": {"won": 0.1}, "won": {"easily": 0.5}})
    ptok = PromptTokenizer(word_tokenizer(words), eos_token_id=0)
    row = {"sentence": "Sarah beat Maria so _ won easily", "option1": "Sarah",
           "option2": "Maria", "answer": "1"}  # fmt: skip
    item = item_from_row("winogrande", 0, row)
    assert item.choices == (
        Choice("Sarah beat Maria so Sarah", " won easily"),
        Choice("Sarah beat Maria so Maria", " won easily"),
    )
    stats = EngineStats()
    (scored,) = score_items(model, ptok, [item], stats=stats)
    assert [c.logprob for c in scored.choices] == pytest.approx(
        [log(0.6) + log(0.5), log(0.1) + log(0.5)], abs=1e-6
    )
    assert scored.choices[0].unconditional == scored.choices[1].unconditional
    assert all(scored.prediction(n) == 0 for n in NORMALIZATIONS) and scored.correct("per_token")
    assert stats.requests == 4 and stats.unique_requests == 3  # one shared unconditional
    flipped = item_from_row("winogrande", 0, {**row, "answer": "2"})
    assert not score_items(model, ptok, [flipped])[0].correct("per_token")


TASKS = ["boolq", "winogrande", "arc_easy", "hellaswag"]


@pytest.fixture(scope="module")
def small_results(bpe, olmo_model):
    return evaluate(olmo_model, bpe, tasks=TASKS, limit=4, batch_size=8)


def test_evaluate_results_are_json_ready_and_match_naive_scoring(small_results, bpe, olmo_model):
    results = json.loads(json.dumps(small_results))
    assert set(results) >= {"tasks", "continuations_scored", "seconds", "engine"}
    assert "perplexity" not in results
    assert list(results["tasks"]) == TASKS
    ptok = PromptTokenizer(bpe, eos_token_id=0)
    total_choices = 0
    for task, metrics in results["tasks"].items():
        items = load_items(task, 4)
        total_choices += sum(len(i.choices) for i in items)
        assert metrics["items"] == 4
        assert metrics["headline_metric"] == HEADLINE[task]
        assert metrics["headline"] == metrics["acc"][HEADLINE[task]]
        # Recompute every prediction from one-at-a-time scores.
        expected = dict.fromkeys(NORMALIZATIONS, 0)
        for item in items:
            scores = []
            for c in item.choices:
                cond = ptok.request(c.context, c.continuation)
                uncond = ptok.request("Answer:", c.continuation)
                lp, un = score_requests_naive(olmo_model, [cond, uncond])
                scores.append(ChoiceScore(lp, len(cond[1]), len(c.continuation), un))
            for norm in NORMALIZATIONS:
                expected[norm] += ItemScores(item, tuple(scores)).correct(norm)
        assert metrics["acc"] == {n: expected[n] / 4 for n in NORMALIZATIONS}
    assert results["continuations_scored"] == total_choices


def test_in_loop_single_process_matches_evaluate(small_results, bpe, olmo_model):
    olmo_model.train()
    metrics = in_loop(olmo_model, bpe, tasks=TASKS, limit=4, batch_size=8, device="cpu",
                      rank=0, world_size=1)  # fmt: skip
    assert olmo_model.training  # mode restored
    olmo_model.eval()
    expected = {}
    for task, m in small_results["tasks"].items():
        expected |= {f"eval/{task}/acc_{n}": m["acc"][n] for n in NORMALIZATIONS}
        expected[f"eval/{task}/headline"] = m["headline"]
    assert metrics == expected
    with pytest.raises(RuntimeError, match="initialised torch"):
        in_loop(olmo_model, bpe, tasks=TASKS, limit=4, batch_size=8, device="cpu",
                rank=0, world_size=2)  # fmt: skip


def _in_loop_worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, calls = tiny_olmo(), []
        model.blocks[0].register_forward_pre_hook(lambda module, args: calls.append(1))
        # 5 piqa items split 3/2 (12 vs 8 rows, 6 vs 4 batches): rank 1 must pad with dummy
        # forwards to make as many calls as rank 0, as ZeRO-3 requires.
        metrics = in_loop(model, train_bpe(), tasks=["piqa", "copa"], limit=5, batch_size=2,
                          device="cpu", rank=rank, world_size=world)  # fmt: skip
        queue.put((rank, metrics, len(calls)))
    finally:
        dist.destroy_process_group()


def test_in_loop_spreads_items_over_ranks_and_sums_counts():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_in_loop_worker, args=(2, port, queue), nprocs=2, start_method="spawn")
    results = sorted(queue.get() for _ in range(2))
    (_, m0, calls0), (_, m1, calls1) = results
    # Both ranks made as many forward calls as the busier rank needs, task by task.
    ptok = PromptTokenizer(train_bpe(), eos_token_id=0)
    busiest = 0
    for task in ("piqa", "copa"):
        items = load_items(task, 5)
        per_rank = [
            count_batches([r for rs in item_requests(items[rank::2], ptok) for r in rs], 64, 2)
            for rank in (0, 1)
        ]
        assert per_rank[0] != per_rank[1]
        busiest += max(per_rank)
    assert m0 == m1 and calls0 == calls1 == busiest
    single = in_loop(tiny_olmo(), train_bpe(), tasks=["piqa", "copa"], limit=5, batch_size=2,
                     device="cpu", rank=0, world_size=1)  # fmt: skip
    assert m0 == pytest.approx(single)
