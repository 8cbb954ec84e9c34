"""Next-token cross-entropy fused with the output projection, computed chunk by chunk.

The plain path materialises logits of shape (tokens, vocab) in fp32, then their log-softmax and
its gradient: at vocab 50304 that is the largest tensor of a training step (0.8 GB per
micro-batch of 4096 tokens) and, on small models, most of the step's time. Here the output
projection, the fp32 softmax, the loss and the gradients w.r.t. the hidden states and the
output weight are computed one block of tokens at a time in the forward pass, so the full
logits never exist. The math is the same as ``cross_entropy(hidden @ weight.T, labels)``
(mean over tokens whose label is not ``ignore_index``); tests hold the two equal.

Per chunk the softmax work is one ``log_softmax`` (a row-wise kernel: each 50304-wide row is
reduced and normalised while it sits in the core's cache, the same kernel the plain
``cross_entropy`` uses) and one in-place ``exp_`` for the probabilities. The chunk is sized so
that the output-weight matmuls stay efficient: on CPU 32 MiB of logits (166 tokens at vocab
50304); smaller chunks re-read the (vocab, d_model) weight and its fp32 gradient once per chunk
and pay a thread barrier per small op (at 8 MiB, 41 tokens, the loss took twice as long on two
cores; ``benchmarks/bench_model.py --profile`` prints the breakdown).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_entropy_loss", "linear_cross_entropy"]

# Bytes of fp32 logits per chunk: large enough that the per-chunk weight-gradient update
# (vocab × d_model) and the per-op overhead are paid only a few times per step (see above).
_CHUNK_BYTES = {"cuda": 2**30}
_DEFAULT_CHUNK_BYTES = 32 * 2**20


def cross_entropy_loss(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> torch.Tensor:
    """Mean next-token loss in fp32 from materialised logits (labels already aligned)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=ignore_index
    )


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    chunk_tokens: int | None = None,
) -> torch.Tensor:
    """``cross_entropy(hidden @ weight.T, labels)`` in fp32 without materialising the logits.

    ``hidden`` (..., d), ``weight`` (vocab, d), ``labels`` (...). Under autocast the matmuls run
    in the autocast dtype; softmax, loss and gradient accumulation are fp32.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1)
    if chunk_tokens is None:
        budget = _CHUNK_BYTES.get(hidden.device.type, _DEFAULT_CHUNK_BYTES)
        chunk_tokens = max(16, budget // (4 * weight.shape[0]))
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    if needs_grad:
        return _LinearCrossEntropy.apply(hidden, weight, labels, ignore_index, chunk_tokens)
    loss, _, _ = _forward_backward(hidden, weight, labels, ignore_index, chunk_tokens, False)
    return loss


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    device = t.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return t.dtype


def _forward_backward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    chunk_tokens: int,
    with_grads: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    dtype = _compute_dtype(hidden)
    w = weight.to(dtype)
    valid = labels != ignore_index
    any_ignored = not bool(valid.all())
    count = valid.sum().clamp(min=1).float()
    safe_labels = torch.where(valid, labels, 0)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden, dtype=dtype) if with_grads else None
    grad_weight: torch.Tensor | None = None
    with torch.autocast(hidden.device.type, enabled=False):
        for start in range(0, hidden.shape[0], chunk_tokens):
            end = start + chunk_tokens
            h = hidden[start:end].to(dtype)
            y = safe_labels[start:end, None]
            mask = valid[start:end]
            log_probs = torch.log_softmax((h @ w.t()).float(), dim=-1)
            target = log_probs.gather(1, y).squeeze(1)
            total -= (target * mask).sum() if any_ignored else target.sum()
            if not with_grads:
                continue
            # d loss_i / d logits_i = softmax_i - onehot(y_i), zero for ignored tokens.
            probs = log_probs.exp_()
            probs.scatter_add_(1, y, torch.full_like(target, -1.0)[:, None])
            if any_ignored:
                probs.mul_(mask[:, None])
            g = probs.to(dtype)
            grad_hidden[start:end] = g @ w
            if grad_weight is None:
                grad_weight = (g.t() @ h).float()
            elif dtype == torch.float32:
                grad_weight.addmm_(g.t(), h)
            else:
                grad_weight += g.t() @ h  # accumulates in fp32
    loss = total / count
    if with_grads and grad_weight is None:  # no tokens at all
        grad_weight = torch.zeros_like(weight, dtype=torch.float32)
    if with_grads:
        grad_hidden = grad_hidden.div_(count.to(dtype))
        grad_weight = grad_weight.div_(count)
    return loss, grad_hidden, grad_weight


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index, chunk_tokens):  # type: ignore[override]
        loss, grad_hidden, grad_weight = _forward_backward(
            hidden, weight, labels, ignore_index, chunk_tokens, True
        )
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        grad_output = grad_output.float()
        return (
            (grad_hidden.float() * grad_output).to(hidden_dtype)
            if ctx.needs_input_grad[0]
            else None,
            (grad_weight * grad_output).to(weight_dtype) if ctx.needs_input_grad[1] else None,
            None,
            None,
            None,
        )
