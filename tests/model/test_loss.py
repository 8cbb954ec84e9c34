"""The fused output-projection + cross-entropy equals the plain computation."""

from __future__ import annotations

import pytest
import torch

from olmo.model.config import model_preset
from olmo.model.loss import cross_entropy_loss, linear_cross_entropy
from olmo.model.transformer import OLMo


@pytest.mark.parametrize("chunk", [1, 37, 4096])
def test_fused_loss_and_gradients_match_plain(chunk):
    torch.manual_seed(0)
    h = torch.randn(300, 64, requires_grad=True)
    w = (torch.randn(1000, 64) * 0.1).requires_grad_()
    y = torch.randint(0, 1000, (300,))
    y[::7] = -100  # ignored positions
    fused = linear_cross_entropy(h, w, y, chunk_tokens=chunk)
    (3 * fused).backward()
    grads = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    plain = cross_entropy_loss(h @ w.t(), y)
    (3 * plain).backward()
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(grads[0], h.grad)
    torch.testing.assert_close(grads[1], w.grad)


def test_fused_loss_under_bf16_autocast_is_fp32():
    torch.manual_seed(0)
    h = torch.randn(64, 32, requires_grad=True)
    w = (torch.randn(500, 32) * 0.1).requires_grad_()
    y = torch.randint(0, 500, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = linear_cross_entropy(h, w, y, chunk_tokens=10)
        plain = cross_entropy_loss(h @ w.t(), y)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, plain, atol=1e-4, rtol=1e-4)
    fused.backward()
    assert h.grad.dtype == torch.float32 and w.grad.dtype == torch.float32


def test_no_grad_path_matches():
    torch.manual_seed(0)
    h, w = torch.randn(50, 16), torch.randn(100, 16)
    y = torch.randint(0, 100, (50,))
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(h, w, y), cross_entropy_loss(h @ w.t(), y))


def test_model_labels_path_equals_logits_path():
    torch.manual_seed(0)
    model = OLMo(model_preset("tiny"))
    ids = torch.randint(0, 50280, (2, 32))
    labels = torch.roll(ids, -1, 1)
    labels[:, -1] = -100
    loss = model(ids, labels=labels)
    loss.backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    plain = cross_entropy_loss(model(ids), labels)
    plain.backward()
    torch.testing.assert_close(loss, plain)
    for a, p in zip(fused_grads, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-4)


def test_empty_input_has_zero_gradients():
    h = torch.zeros(0, 8, requires_grad=True)
    w = torch.randn(20, 8, requires_grad=True)
    loss = linear_cross_entropy(h, w, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(w.grad) == 0


def test_all_tokens_ignored_gives_zero_loss_and_gradients():
    h = torch.randn(6, 8, requires_grad=True)
    w = torch.randn(20, 8, requires_grad=True)
    loss = linear_cross_entropy(h, w, torch.full((6,), -100), chunk_tokens=4)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(h.grad) == 0 and torch.count_nonzero(w.grad) == 0
