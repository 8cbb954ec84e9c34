"""Log-likelihood scoring with a causal LM: prompt tokenization and the batched engine.

Tokenization (``PromptTokenizer``):

- **Document prefix.** Every scored sequence starts the way a document does. If the tokenizer's
  post-processor adds special tokens in front of a text (a BOS), those are the prefix. OLMo's
  GPT-NeoX tokenizer adds none; then the prefix is the EOS token, which is what precedes every
  document in OLMo's training stream (EOS is appended to each document). Special tokens a
  post-processor appends at the end are never used.
- **Context/continuation boundary.** Trailing whitespace of the context moves to the front of
  the continuation (``"Answer: " + "yes"`` is scored as ``"Answer:" + " yes"``), then
  ``context + continuation`` is encoded once; the context's tokens are the longest common prefix
  of that encoding and ``encode(context)``, the continuation's tokens are everything after it.
  So ``context_tokens + continuation_tokens == encode(context + continuation)`` always holds, and
  when a BPE merge straddles the boundary, the straddling token is scored as continuation.

Engine (``score_requests``): a request is (context tokens, continuation tokens); its score is
Σ log p(continuation token | everything before it). Identical requests are computed once. The
model input of a request is ``(context + continuation)[:-1]``; when one request's input is a
prefix of another's (single-token continuations of one context, like boolq's `` yes``/`` no``,
or a continuation that is a prefix of another) both are read from the same forward row. Rows are
sorted longest first, cut into batches, right-padded (causal attention: padding never affects real
positions) and run one forward per batch; log-probs are computed in fp32 for the continuation
positions only. For a plain (unsharded) OLMo module even the output projection is applied to
those positions only (``can_skip_head``): on small models it is most of the work, and the
(batch × length × vocabulary) logits never exist. Other modules, and OLMo under ZeRO-3, are
called as ``model(input_ids)``. A sequence longer than ``max_sequence_length + 1`` loses context tokens from the
left; a continuation longer than ``max_sequence_length`` (pathological: a model with a very short
context) has only its last ``max_sequence_length`` tokens scored. (Sharing a context's forward between continuations that differ at their first token would
need a KV cache or tree attention masks, which the plain OLMo module does not have.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "EngineStats",
    "PromptTokenizer",
    "Request",
    "RowTargets",
    "can_skip_head",
    "check_token_ids",
    "count_batches",
    "document_prefix",
    "model_config",
    "plan_requests",
    "score_requests",
    "score_requests_naive",
    "score_rows",
]

Request = tuple[tuple[int, ...], tuple[int, ...]]
"""(context token ids including the document prefix, continuation token ids)."""

_PREFIX_PROBE = "a"
_CHUNK_BYTES = 1 << 28  # fp32 logits materialised at a time when gathering log-probs


def document_prefix(tokenizer: Any, eos_token_id: int) -> tuple[int, ...]:
    """The tokens that start every scored sequence: what the tokenizer's post-processor puts in
    front of a text (a BOS), or ``(eos_token_id,)`` when it adds nothing in front."""
    plain = tokenizer.encode(_PREFIX_PROBE, add_special_tokens=False).ids
    full = tokenizer.encode(_PREFIX_PROBE, add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            if start:
                return tuple(full[:start])
            break
    return (int(eos_token_id),)


class PromptTokenizer:
    """A ``tokenizers.Tokenizer`` plus the document prefix and the context/continuation split."""

    def __init__(self, tokenizer: Any, eos_token_id: int):
        self.tokenizer = tokenizer
        self.eos_token_id = int(eos_token_id)
        self.prefix = document_prefix(tokenizer, eos_token_id)
        self._cache: dict[str, tuple[int, ...]] = {}

    def encode(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` with no special tokens added."""
        ids = self._cache.get(text)
        if ids is None:
            ids = tuple(self.tokenizer.encode(text, add_special_tokens=False).ids)
            if len(self._cache) < 100_000:
                self._cache[text] = ids
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def split(self, context: str, continuation: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(context ids, continuation ids) without the prefix; see the module docstring."""
        if not continuation:
            raise ValueError(f"empty continuation for context {context[-80:]!r}")
        stripped = context.rstrip()
        continuation = context[len(stripped) :] + continuation
        whole = self.encode(stripped + continuation)
        ctx = self.encode(stripped)
        k = 0
        limit = min(len(whole), len(ctx))
        while k < limit and whole[k] == ctx[k]:
            k += 1
        if k == len(whole):
            raise ValueError(f"continuation {continuation!r} encodes to no tokens")
        return whole[:k], whole[k:]

    def request(self, context: str, continuation: str) -> Request:
        """The scoring request for ``continuation`` after ``context`` (prefix included)."""
        ctx, cont = self.split(context, continuation)
        return self.prefix + ctx, cont


def model_config(model: Any) -> Any:
    """The ``ModelConfig`` of an OLMo module (or of a wrapper holding one as ``.module``)."""
    for candidate in (model, getattr(model, "module", None)):
        config = getattr(candidate, "config", None)
        if config is not None and hasattr(config, "max_sequence_length"):
            return config
    raise TypeError(
        f"{type(model).__name__} has no OLMo ModelConfig as .config; pass the OLMo module"
    )


@dataclass
class EngineStats:
    """What the engine did (summed over calls with ``+=``)."""

    requests: int = 0
    """Requests asked for, duplicates included."""
    unique_requests: int = 0
    rows: int = 0
    """Sequences run through the model (after sharing)."""
    batches: int = 0
    """Forward calls, padding calls for distributed evaluation included."""
    input_tokens: int = 0
    """Real (unpadded) tokens fed to the model."""
    scored_tokens: int = 0

    def __iadd__(self, other: EngineStats) -> EngineStats:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RowTargets:
    """What to read from one forward row: log p(``targets[i]``) at ``positions[i]``, added into
    the sum of segment ``segments[i]``."""

    positions: np.ndarray
    targets: np.ndarray
    segments: np.ndarray


def _forward_logits(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    out = model(input_ids)
    return out.logits if hasattr(out, "logits") else out


def can_skip_head(model: Any) -> bool:
    """Whether the output projection can be applied to the scored positions only: a plain,
    unsharded OLMo module (ZeRO-3 partitioned parameters carry a ``ds_id``; those models, and
    any other module, go through their own ``forward``)."""
    from olmo.model.transformer import OLMo

    return type(model) is OLMo and not any(hasattr(p, "ds_id") for p in model.parameters())


def _gather_logprobs(
    source: torch.Tensor, head: Any, index: torch.Tensor, chosen: torch.Tensor
) -> torch.Tensor:
    """log p(``chosen[i]``) at row ``index[i]`` of ``source`` (hidden states or logits, flattened
    over batch × position), ``head`` turning selected rows into logits; fp32, in chunks."""
    out = []
    vocab = source.shape[-1] if head is None else head.shape[0]
    step = max(16, _CHUNK_BYTES // (4 * vocab))
    for begin in range(0, len(index), step):
        rows = source.index_select(0, index[begin : begin + step])
        logits = (rows if head is None else F.linear(rows, head)).float()
        picked = logits.gather(1, chosen[begin : begin + step, None]).squeeze(1)
        out.append(picked - logits.logsumexp(-1))
    return torch.cat(out) if out else torch.zeros(0, device=source.device)


@torch.no_grad()
def score_rows(
    model: Any,
    rows: Sequence[Sequence[int]],
    targets: Sequence[RowTargets],
    num_segments: int,
    *,
    batch_size: int,
    device: str | torch.device = "cpu",
    min_forwards: int = 0,
    stats: EngineStats | None = None,
    full_forward: bool = False,
) -> np.ndarray:
    """Run ``rows`` (model inputs) through ``model`` and return per-segment sums of log p.

    Rows go longest first in batches of ``batch_size``, right-padded, one forward per batch.
    For a plain OLMo module the output projection is applied to the scored positions only
    (the same numbers as the full logits; most of a small model's work is that projection);
    ``full_forward`` forces ``model(input_ids)`` and its full logits, as any other model gets.
    ``min_forwards``: keep calling forward on a one-token dummy input until this many calls were
    made (ranks of a ZeRO-3 model must call forward the same number of times).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    config = model_config(model)
    device = torch.device(device)
    skip_head = not full_forward and can_skip_head(model)
    totals = np.zeros(num_segments, dtype=np.float64)
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i]), i))
    forwards = 0
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        width = len(rows[batch[0]])
        ids = torch.full((len(batch), width), config.pad_token_id, dtype=torch.long)
        for j, i in enumerate(batch):
            ids[j, : len(rows[i])] = torch.as_tensor(rows[i], dtype=torch.long)
        ids = ids.to(device)
        if skip_head:
            source, head = model.hidden_states(ids), model.output_weight
        else:
            source, head = _forward_logits(model, ids), None
        forwards += 1
        flat = np.concatenate([j * width + targets[i].positions for j, i in enumerate(batch)])
        chosen = np.concatenate([targets[i].targets for i in batch])
        logp = _gather_logprobs(
            source.reshape(-1, source.shape[-1]),
            head,
            torch.as_tensor(flat, dtype=torch.long, device=device),
            torch.as_tensor(chosen, dtype=torch.long, device=device),
        )
        values = logp.double().cpu().numpy()
        np.add.at(totals, np.concatenate([targets[i].segments for i in batch]), values)
        if stats is not None:
            stats.input_tokens += sum(len(rows[i]) for i in batch)
            stats.scored_tokens += len(values)
    dummy = torch.full((1, 1), config.pad_token_id, dtype=torch.long, device=device)
    while forwards < min_forwards:
        _forward_logits(model, dummy)
        forwards += 1
    if stats is not None:
        stats.rows += len(rows)
        stats.batches += forwards
    return totals


def _model_input(request: Request, max_length: int) -> tuple[tuple[int, ...], int]:
    """(model input, position of the first continuation token's logits) for one request."""
    context, continuation = request
    if not continuation:
        raise ValueError("a request needs at least one continuation token")
    if not context:
        raise ValueError("a request needs at least one context token (the document prefix)")
    full = context + continuation
    full = full[-(max_length + 1) :]  # truncate the context from the left
    model_input = full[:-1]
    return model_input, max(0, len(model_input) - len(continuation))


def plan_requests(
    requests: Sequence[Request], max_length: int
) -> tuple[list[Request], list[tuple[int, ...]], list[RowTargets]]:
    """Unique requests, the forward rows that serve them, and what to read from each row."""
    unique = list(dict.fromkeys(requests))
    inputs = [_model_input(r, max_length) for r in unique]
    # A request whose input is a prefix of another's is read from that row: in lexicographic
    # order, every input having x as a prefix directly follows x, so one backward pass suffices.
    order = sorted(range(len(unique)), key=lambda r: inputs[r][0])
    row_of = [0] * len(unique)
    rows: list[tuple[int, ...]] = []
    successor: tuple[int, ...] | None = None
    successor_request = -1
    for r in reversed(order):
        tokens = inputs[r][0]
        if successor is not None and successor[: len(tokens)] == tokens:
            row_of[r] = row_of[successor_request]
        else:
            row_of[r] = len(rows)
            rows.append(tokens)
        successor, successor_request = tokens, r
    per_row: list[list[int]] = [[] for _ in rows]
    for r in range(len(unique)):
        per_row[row_of[r]].append(r)
    targets = []
    for members in per_row:
        positions, tokens, segments = [], [], []
        for r in members:
            start, cont = inputs[r][1], unique[r][1]
            cont = cont[len(cont) - (len(inputs[r][0]) - start) :]  # what fits (see docstring)
            positions.extend(range(start, start + len(cont)))
            tokens.extend(cont)
            segments.extend([r] * len(cont))
        targets.append(RowTargets(np.asarray(positions), np.asarray(tokens), np.asarray(segments)))
    return unique, rows, targets


def check_token_ids(rows: Iterable[Sequence[int]], embedding_size: int) -> None:
    top = max((max(row) for row in rows if row), default=0)
    if top >= embedding_size:
        raise ValueError(
            f"token id {top} is outside the model's {embedding_size} embeddings: the tokenizer "
            "does not belong to this model"
        )


def score_requests(
    model: Any,
    requests: Sequence[Request],
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    min_forwards: int = 0,
    stats: EngineStats | None = None,
    full_forward: bool = False,
) -> dict[Request, float]:
    """Σ log p(continuation | context) for every request (each distinct one computed once)."""
    config = model_config(model)
    unique, rows, targets = plan_requests(requests, config.max_sequence_length)
    check_token_ids((r[0] + r[1] for r in unique), config.embedding_size)
    sums = score_rows(
        model,
        rows,
        targets,
        len(unique),
        batch_size=batch_size,
        device=device,
        min_forwards=min_forwards,
        stats=stats,
        full_forward=full_forward,
    )
    if stats is not None:
        stats.requests += len(requests)
        stats.unique_requests += len(unique)
    return {r: float(s) for r, s in zip(unique, sums, strict=True)}


def count_batches(requests: Sequence[Request], max_length: int, batch_size: int) -> int:
    """How many forward calls ``score_requests`` makes for these requests."""
    _, rows, _ = plan_requests(requests, max_length)
    return math.ceil(len(rows) / batch_size)


@torch.no_grad()
def score_requests_naive(
    model: Any, requests: Sequence[Request], *, device: str | torch.device = "cpu"
) -> list[float]:
    """The reference: every request on its own, one unpadded forward each, no sharing."""
    config = model_config(model)
    out = []
    for context, continuation in requests:
        full = (context + continuation)[-(config.max_sequence_length + 1) :]
        ids = torch.tensor([full[:-1]], dtype=torch.long, device=device)
        logp = torch.log_softmax(_forward_logits(model, ids)[0].float(), dim=-1)
        n = min(len(continuation), len(full) - 1)
        positions = torch.arange(len(full) - 1 - n, len(full) - 1, device=device)
        chosen = torch.tensor(continuation[-n:], dtype=torch.long, device=device)
        out.append(float(logp[positions, chosen].sum()))
    return out
