"""Interoperability with HF transformers' OlmoForCausalLM."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, OlmoForCausalLM

from olmo.model.config import model_preset
from olmo.model.hf import (
    from_hf_state_dict,
    hf_config,
    load_hf_directory,
    model_config_from_hf,
    save_hf_directory,
    to_hf_state_dict,
)
from olmo.model.transformer import OLMo


def tiny(tied: bool):
    return model_preset("tiny").model_copy(update={"weight_tying": tied})


@pytest.mark.parametrize("tied", [True, False])
def test_logits_match_hf_fp32(tied):
    torch.manual_seed(0)
    config = tiny(tied)
    ours = OLMo(config).eval()
    theirs = OlmoForCausalLM(hf_config(config)).eval()
    theirs.load_state_dict(to_hf_state_dict(ours.state_dict(), config), strict=True)
    ids = torch.randint(0, config.vocab_size, (2, 48))
    with torch.no_grad():
        ours_logits = ours(ids)
        hf_logits = theirs(input_ids=ids).logits
    assert ours_logits.shape == hf_logits.shape == (2, 48, 50304)
    assert (ours_logits - hf_logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize("tied", [True, False])
def test_hf_to_ours_to_hf_round_trip_is_exact(tied):
    torch.manual_seed(1)
    config = tiny(tied)
    hf_model = OlmoForCausalLM(hf_config(config))
    hf_state = hf_model.state_dict()
    ours = OLMo(config)
    ours.load_state_dict(from_hf_state_dict(hf_state, config), strict=True)
    back = to_hf_state_dict(ours.state_dict(), config)
    expected = {k: v for k, v in hf_state.items() if "rotary_emb" not in k}
    assert back.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(back[key], tensor), key


def test_hf_config_values_7b():
    c = hf_config(model_preset("7b"))
    assert (c.hidden_size, c.intermediate_size, c.num_hidden_layers) == (4096, 11008, 32)
    assert (c.num_attention_heads, c.num_key_value_heads, c.vocab_size) == (32, 32, 50304)
    assert c.tie_word_embeddings is False and c.pad_token_id == 1 and c.eos_token_id == 50279
    assert c.rope_parameters["rope_theta"] == 10000.0
    assert model_config_from_hf(c) == model_preset("7b").model_copy(update={"preset": None})


@pytest.mark.parametrize("tied", [True, False])
def test_saved_directory_loads_with_auto_model(tmp_path, tied):
    torch.manual_seed(2)
    config = tiny(tied).model_copy(update={"rope_theta": 20000.0})
    ours = OLMo(config).eval()
    save_hf_directory(ours.state_dict(), config, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "olmo"
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(hf_model, OlmoForCausalLM)
    ids = torch.randint(0, config.vocab_size, (1, 40))
    with torch.no_grad():
        assert (hf_model(input_ids=ids).logits - ours(ids)).abs().max().item() <= 1e-4
    loaded_config, state = load_hf_directory(tmp_path)
    assert loaded_config == config.model_copy(update={"preset": None})
    for key, tensor in ours.state_dict().items():
        assert torch.equal(state[key], tensor), key


def test_mismatched_state_dict_is_an_error():
    config = tiny(False)
    state = OlmoForCausalLM(hf_config(config)).state_dict()
    del state["lm_head.weight"]
    with pytest.raises(KeyError, match=r"lm_head\.weight"):
        from_hf_state_dict(state, config)
    state = OlmoForCausalLM(hf_config(config)).state_dict()
    state["model.extra.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="unexpected keys"):
        from_hf_state_dict(state, config)


def test_non_default_layer_norm_eps_cannot_be_expressed_in_hf():
    with pytest.raises(ValueError, match="layer_norm_eps"):
        hf_config(tiny(True).model_copy(update={"layer_norm_eps": 1e-6}))


def test_rope_is_bitwise_hf_apply_rotary_pos_emb():
    """Our signed-sin RoPE (one pass fewer) gives HF's ``q*cos + rotate_half(q)*sin`` exactly."""
    from transformers.models.olmo.modeling_olmo import apply_rotary_pos_emb

    config = tiny(True)
    rope = OLMo(config).blocks[0].attn.rope
    torch.manual_seed(3)
    q, k = torch.randn(2, 2, config.n_heads, 40, config.head_dim).unbind(0)
    exponent = torch.arange(0, config.head_dim, 2, dtype=torch.float32)
    freqs = torch.outer(
        torch.arange(40, dtype=torch.float32),
        1.0 / (config.rope_theta ** (exponent / config.head_dim)),
    )
    angles = torch.cat((freqs, freqs), dim=-1)[None]  # HF's (batch, seq, head_dim) layout
    expected = apply_rotary_pos_emb(q, k, angles.cos(), angles.sin())
    ours = rope.rotate(torch.stack((q, k)))
    assert torch.equal(ours[0], expected[0]) and torch.equal(ours[1], expected[1])


def test_fused_loss_and_gradients_match_hf_training_step():
    """The benchmark's two steps compute the same thing: loss and every gradient agree."""
    from olmo.model.loss import cross_entropy_loss

    torch.manual_seed(4)
    config = tiny(True)
    ours = OLMo(config).train()
    theirs = OlmoForCausalLM(hf_config(config)).train()
    theirs.load_state_dict(to_hf_state_dict(ours.state_dict(), config))
    ids = torch.randint(0, config.vocab_size, (2, 200))  # 400 tokens: several CPU loss chunks
    labels = torch.roll(ids, -1, dims=1)
    labels[:, -1] = -100
    loss = ours(ids, labels=labels)
    loss.backward()
    hf_loss = cross_entropy_loss(theirs(input_ids=ids).logits, labels)
    hf_loss.backward()
    torch.testing.assert_close(loss, hf_loss)
    ours_grads = to_hf_state_dict({n: p.grad for n, p in ours.named_parameters()}, config)
    hf_params = dict(theirs.named_parameters())  # the tied head appears once, as the embedding
    assert hf_params.keys() <= ours_grads.keys() and len(hf_params) == 1 + 7 * config.n_layers
    for name, param in hf_params.items():
        torch.testing.assert_close(ours_grads[name], param.grad, atol=1e-6, rtol=1e-4, msg=name)
