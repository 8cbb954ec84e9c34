"""The architecture the OLMo paper describes: no biases, non-parametric LayerNorm, SwiGLU,
RoPE, SDPA attention, mitchell init, weight tying per preset, activation checkpointing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from olmo.model.config import PRESETS, model_preset
from olmo.model.transformer import OLMo

from ..conftest import top_level_modules_after_import


def meta_model(preset: str) -> OLMo:
    with torch.device("meta"):
        return OLMo(PRESETS[preset])


@pytest.fixture
def tiny() -> OLMo:
    torch.manual_seed(0)
    return OLMo(model_preset("tiny"))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_no_bias_and_no_norm_parameters(preset):
    model = meta_model(preset)
    for name, param in model.named_parameters():
        assert "bias" not in name and "norm" not in name, name
        assert param.dim() == 2, f"{name} has shape {tuple(param.shape)}: bias- or gain-like"
    for module in model.modules():
        assert getattr(module, "bias", None) is None, module


@pytest.mark.parametrize(
    ("preset", "tied"), [("tiny", True), ("1b", True), ("7b", False), ("65b", False)]
)
def test_weight_tying_per_preset(preset, tied):
    model = meta_model(preset)
    names = {name for name, _ in model.named_parameters()}
    assert ("lm_head.weight" not in names) == tied
    assert (model.output_weight is model.embed.weight) == tied


def test_parameter_shapes_7b():
    model = meta_model("7b")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes["embed.weight"] == (50304, 4096)
    assert shapes["lm_head.weight"] == (50304, 4096)
    assert shapes["blocks.0.attn.qkv.weight"] == (3 * 4096, 4096)
    assert shapes["blocks.0.attn.out.weight"] == (4096, 4096)
    assert shapes["blocks.0.mlp.in_proj.weight"] == (2 * 11008, 4096)  # SwiGLU: up | gate
    assert shapes["blocks.0.mlp.out.weight"] == (4096, 11008)
    assert len(model.blocks) == 32


def test_layer_norm_is_non_parametric_and_fp32(tiny):
    norm = tiny.blocks[0].attn_norm
    assert list(norm.parameters()) == []
    x = torch.randn(2, 3, 128, dtype=torch.bfloat16) * 5 + 3
    y = norm(x)
    assert y.dtype == torch.bfloat16
    ref = F.layer_norm(x.float(), (128,), eps=1e-5)
    torch.testing.assert_close(y.float(), ref, atol=1e-2, rtol=1e-2)


def test_swiglu_is_silu_gate_times_up(tiny):
    mlp = tiny.blocks[0].mlp
    x = torch.randn(2, 5, 128)
    up, gate = (x @ mlp.in_proj.weight.t()).chunk(2, dim=-1)
    expected = (F.silu(gate) * up) @ mlp.out.weight.t()
    torch.testing.assert_close(mlp(x), expected)


def test_rope_uses_theta_and_preserves_norms():
    config = model_preset("tiny").model_copy(update={"rope_theta": 500000.0})
    model = OLMo(config)
    rope = model.blocks[0].attn.rope
    assert rope.theta == 500000.0
    q = torch.randn(1, 4, 16, config.head_dim)
    rq, rk = rope(q, q.clone())
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))  # rotations
    torch.testing.assert_close(rq[:, :, 0], q[:, :, 0])  # position 0 is not rotated
    # Relative: <R_m q, R_n k> depends only on m - n.
    k = torch.randn(1, 4, 1, config.head_dim).expand(1, 4, 16, config.head_dim).contiguous()
    q1 = torch.randn(1, 4, 1, config.head_dim).expand_as(k).contiguous()
    rq, rk = rope(q1, k)
    dots = (rq[:, :, 5] * rk[:, :, 2]).sum(-1), (rq[:, :, 9] * rk[:, :, 6]).sum(-1)
    torch.testing.assert_close(dots[0], dots[1], atol=1e-4, rtol=1e-4)


def test_attention_goes_through_sdpa_and_is_causal(tiny, monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    ids = torch.randint(0, 50280, (1, 12))
    with torch.no_grad():
        logits = tiny(ids)
        changed = ids.clone()
        changed[0, 8:] = (changed[0, 8:] + 1) % 50280
        logits2 = tiny(changed)
    assert len(calls) == 2 * tiny.config.n_layers
    assert all(c.get("is_causal") for c in calls)
    torch.testing.assert_close(logits[0, :8], logits2[0, :8])  # the future does not leak
    assert not torch.allclose(logits[0, 8:], logits2[0, 8:])


def test_mitchell_init():
    torch.manual_seed(0)
    config = model_preset("tiny").model_copy(update={"d_model": 256, "mlp_hidden_size": 1024})
    model = OLMo(config)
    d = 256

    def check(weight, std):
        assert weight.abs().max() <= 3 * std + 1e-7  # truncated at 3σ
        # A normal truncated at ±3σ has std 0.9866σ.
        assert weight.std().item() == pytest.approx(0.9866 * std, rel=0.05)

    check(model.embed.weight, 1 / math.sqrt(d))
    for i, block in enumerate(model.blocks):
        check(block.attn.qkv.weight, 1 / math.sqrt(d))
        check(block.mlp.in_proj.weight, 1 / math.sqrt(d))
        check(block.attn.out.weight, 1 / math.sqrt(2 * d * (i + 1)))
        check(block.mlp.out.weight, 1 / math.sqrt(2 * 1024 * (i + 1)))


def test_untied_head_init():
    torch.manual_seed(0)
    model = OLMo(model_preset("tiny").model_copy(update={"weight_tying": False}))
    assert model.lm_head.weight.std().item() == pytest.approx(0.9866 / math.sqrt(128), rel=0.05)


def test_activation_checkpointing_same_gradients(monkeypatch):
    import olmo.model.transformer as transformer

    torch.manual_seed(0)
    config = model_preset("tiny")
    plain = OLMo(config)
    ckpt = OLMo(config.model_copy(update={"activation_checkpointing": True}))
    ckpt.load_state_dict(plain.state_dict())
    calls = []
    real = transformer.checkpoint
    monkeypatch.setattr(transformer, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    ids = torch.randint(0, 50280, (2, 16))
    labels = torch.roll(ids, -1, 1)
    for model in (plain, ckpt):
        model(ids, labels=labels).backward()
    assert len(calls) == config.n_layers
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_sequence_longer_than_max_is_rejected(tiny):
    with pytest.raises(ValueError, match="exceeds max_sequence_length"):
        tiny(torch.zeros(1, 257, dtype=torch.long))


def test_model_imports_no_deepspeed_or_kubernetes():
    loaded = top_level_modules_after_import("olmo.model.transformer")
    assert "torch" in loaded
    assert not loaded & {"deepspeed", "kubernetes", "kopf"}
