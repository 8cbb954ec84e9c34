"""The batched engine computes exactly what one-at-a-time scoring does, with less work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from olmo.eval import EngineStats, PromptTokenizer, load_items
from olmo.eval.downstream import item_requests
from olmo.eval.engine import (
    can_skip_head,
    count_batches,
    plan_requests,
    score_requests,
    score_requests_naive,
)

from .conftest import BPE_VOCAB, tiny_olmo


class Recorder(nn.Module):
    """Wraps a model and records every input batch it is called with."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config
        self.calls: list[torch.Tensor] = []

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(input_ids.clone())
        return self.model(input_ids)


def real_requests(bpe, tasks=("boolq", "hellaswag", "winogrande", "copa", "arc_easy"), limit=3):
    """Requests of real items (boolq's long passages get truncated by the 64-token window)."""
    ptok = PromptTokenizer(bpe, eos_token_id=0)
    items = [item for task in tasks for item in load_items(task, limit)]
    return [r for rs in item_requests(items, ptok) for r in rs]


@pytest.mark.parametrize("full_forward", [False, True], ids=["head-on-targets", "full-logits"])
def test_batched_scores_equal_naive_scores(bpe, olmo_model, full_forward):
    requests = real_requests(bpe)
    assert len(set(requests)) < len(requests)  # duplicates (unconditional ones) are present
    assert can_skip_head(olmo_model) and not can_skip_head(Recorder(olmo_model))
    stats = EngineStats()
    batched = score_requests(
        olmo_model, requests, batch_size=5, stats=stats, full_forward=full_forward
    )
    naive = score_requests_naive(olmo_model, requests)
    np.testing.assert_allclose([batched[r] for r in requests], naive, rtol=1e-5, atol=1e-4)
    assert stats.requests == len(requests)
    assert stats.unique_requests == len(set(requests))
    assert stats.rows < stats.unique_requests  # boolq's " yes"/" no" share one row
    assert stats.batches == count_batches(requests, 64, 5)


def test_rows_are_sorted_longest_first_and_right_padded(bpe, olmo_model):
    requests = real_requests(bpe, tasks=("piqa", "sciq"), limit=4)
    recorder = Recorder(olmo_model)
    score_requests(recorder, requests, batch_size=4)
    lengths = []
    for batch in recorder.calls:
        real = [(row != 1).nonzero().max().item() + 1 for row in batch]  # pad id is 1
        assert real[0] == batch.shape[1]  # the batch is as wide as its longest row
        assert real == sorted(real, reverse=True)
        lengths += real
    assert lengths == sorted(lengths, reverse=True)
    _, rows, _ = plan_requests(requests, 64)
    assert len(lengths) == len(rows) and len(recorder.calls) == -(-len(rows) // 4)


def test_each_distinct_request_is_computed_once_and_prefixes_share_rows(olmo_model):
    ctx = (0, 5, 6, 7)
    requests = [
        (ctx, (8,)),
        (ctx, (9,)),  # same model input as the first: one row
        (ctx, (8, 10, 11)),  # its input (ctx, 8, 10) extends the first two: the same row again
        (ctx, (8,)),  # duplicate
        ((0, 5), (12, 13)),  # input (0, 5, 12) is not a prefix of the others: own row
    ]
    recorder = Recorder(olmo_model)
    stats = EngineStats()
    scores = score_requests(recorder, requests, batch_size=8, stats=stats)
    assert stats.unique_requests == 4 and stats.rows == 2 and stats.batches == 1
    rows = sorted(map(tuple, recorder.calls[0].tolist()))
    assert rows == [(0, 5, 6, 7, 8, 10), (0, 5, 12, 1, 1, 1)]  # right-padded with pad id 1
    naive = score_requests_naive(olmo_model, requests)
    np.testing.assert_allclose([scores[r] for r in requests], naive, rtol=1e-5, atol=1e-5)


def test_long_contexts_are_truncated_from_the_left():
    model = tiny_olmo(BPE_VOCAB, max_sequence_length=16)
    context = tuple(range(2, 40))
    continuation = (50, 51, 52)
    scores = score_requests(model, [(context, continuation)], batch_size=2)
    # Only the last max_sequence_length + 1 tokens take part: the same as a short context.
    kept = (context + continuation)[-17:-3]
    same = score_requests(model, [(kept, continuation)], batch_size=2)
    assert scores[(context, continuation)] == pytest.approx(same[(kept, continuation)], abs=1e-5)
    (naive,) = score_requests_naive(model, [(context, continuation)])
    assert scores[(context, continuation)] == pytest.approx(naive, abs=1e-4)
    # A continuation longer than the window: only its last max_sequence_length tokens count.
    too_long = ((0, 1), tuple(range(2, 22)))
    scores = score_requests(model, [too_long])
    tail = (too_long[1][:4], too_long[1][4:])
    assert scores[too_long] == pytest.approx(score_requests(model, [tail])[tail], abs=1e-5)
    assert scores[too_long] == pytest.approx(score_requests_naive(model, [too_long])[0], abs=1e-4)


def test_token_ids_outside_the_model_are_an_error(olmo_model):
    with pytest.raises(ValueError, match="tokenizer does not belong to this model"):
        score_requests(olmo_model, [((0, BPE_VOCAB), (3,))])


def test_min_forwards_pads_with_dummy_calls(olmo_model):
    recorder = Recorder(olmo_model)
    stats = EngineStats()
    score_requests(recorder, [((0, 3), (4,))], batch_size=4, min_forwards=3, stats=stats)
    assert len(recorder.calls) == 3 and stats.batches == 3
    assert [tuple(c.shape) for c in recorder.calls[1:]] == [(1, 1), (1, 1)]
    score_requests(recorder, [], batch_size=4, min_forwards=2)  # a rank with no items
    assert len(recorder.calls) == 5
