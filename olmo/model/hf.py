"""Conversion between our state dicts and HF transformers' ``OlmoForCausalLM``.

Our layout fuses q/k/v into ``attn.qkv`` and up/gate into ``mlp.in_proj`` (rows ``[up; gate]``,
the order OLMo's own checkpoints use); HF keeps them as separate ``q_proj``/``k_proj``/
``v_proj`` and ``up_proj``/``gate_proj``. Both directions are pure tensor reshuffles, so a
round trip is exact.

``save_hf_directory`` writes ``config.json`` + ``model.safetensors`` that
``transformers.AutoModelForCausalLM.from_pretrained`` loads; ``load_hf_directory`` reads one back.
Requires the ``hf`` extra (transformers, safetensors).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from olmo.model.config import ModelConfig

__all__ = [
    "from_hf_state_dict",
    "hf_config",
    "load_hf_directory",
    "model_config_from_hf",
    "save_hf_directory",
    "to_hf_state_dict",
]

HF_LAYER_NORM_EPS = 1e-5  # HF's OlmoLayerNorm hard-codes this epsilon.
SAFETENSORS_NAME = "model.safetensors"


def hf_config(config: ModelConfig):
    """The ``transformers.OlmoConfig`` describing the same network."""
    from transformers import OlmoConfig

    if config.layer_norm_eps != HF_LAYER_NORM_EPS:
        raise ValueError(
            f"HF OlmoForCausalLM fixes layer_norm_eps at {HF_LAYER_NORM_EPS}; "
            f"this model uses {config.layer_norm_eps}"
        )
    return OlmoConfig(
        vocab_size=config.embedding_size,
        hidden_size=config.d_model,
        intermediate_size=config.mlp_hidden_size,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        hidden_act="silu",
        max_position_embeddings=config.max_sequence_length,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        attention_bias=False,
        attention_dropout=0.0,
        clip_qkv=None,
        tie_word_embeddings=config.weight_tying,
        pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
        bos_token_id=None,
        architectures=["OlmoForCausalLM"],
    )


def model_config_from_hf(hf: object, vocab_size: int | None = None) -> ModelConfig:
    """Our ``ModelConfig`` for an HF ``OlmoConfig`` (or its dict form)."""
    c = hf if isinstance(hf, Mapping) else hf.to_dict()  # type: ignore[attr-defined]
    if c.get("model_type", "olmo") != "olmo":
        raise ValueError(f"expected an HF config with model_type 'olmo', got {c['model_type']!r}")
    if c.get("clip_qkv") is not None or c.get("attention_bias"):
        raise ValueError("clip_qkv and attention biases are not part of the OLMo architecture")
    heads = c["num_attention_heads"]
    if c.get("num_key_value_heads", heads) not in (None, heads):
        raise ValueError("grouped-query attention is not supported")
    rope = c.get("rope_parameters") or {}
    embedding_size = c["vocab_size"]
    eos = c.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    values = {
        "d_model": c["hidden_size"],
        "n_layers": c["num_hidden_layers"],
        "n_heads": heads,
        "mlp_hidden_size": c["intermediate_size"],
        "embedding_size": embedding_size,
        "max_sequence_length": c.get("max_position_embeddings", 2048),
        "rope_theta": float(rope.get("rope_theta", c.get("rope_theta", 10000.0))),
        "weight_tying": bool(c.get("tie_word_embeddings", False)),
        "layer_norm_eps": HF_LAYER_NORM_EPS,
    }
    default_vocab = ModelConfig().vocab_size
    values["vocab_size"] = vocab_size or (
        default_vocab if embedding_size >= default_vocab else embedding_size
    )
    if eos is not None:
        values["eos_token_id"] = eos
    if c.get("pad_token_id") is not None:
        values["pad_token_id"] = c["pad_token_id"]
    return ModelConfig.model_validate(values)


def to_hf_state_dict(
    state: Mapping[str, torch.Tensor], config: ModelConfig
) -> dict[str, torch.Tensor]:
    """Our state dict → HF ``OlmoForCausalLM`` state dict (tensors are views, not copies)."""
    d, h = config.d_model, config.mlp_hidden_size
    out = {"model.embed_tokens.weight": state["embed.weight"]}
    for i in range(config.n_layers):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].split(d, dim=0)
        up, gate = state[ours + "mlp.in_proj.weight"].split(h, dim=0)
        out |= {
            theirs + "self_attn.q_proj.weight": q,
            theirs + "self_attn.k_proj.weight": k,
            theirs + "self_attn.v_proj.weight": v,
            theirs + "self_attn.o_proj.weight": state[ours + "attn.out.weight"],
            theirs + "mlp.up_proj.weight": up,
            theirs + "mlp.gate_proj.weight": gate,
            theirs + "mlp.down_proj.weight": state[ours + "mlp.out.weight"],
        }
    out["lm_head.weight"] = state["embed.weight" if config.weight_tying else "lm_head.weight"]
    return out


def from_hf_state_dict(
    state: Mapping[str, torch.Tensor], config: ModelConfig
) -> dict[str, torch.Tensor]:
    """HF ``OlmoForCausalLM`` state dict → ours. Unknown or missing keys are errors."""
    remaining = dict(state)
    remaining.pop("model.rotary_emb.inv_freq", None)  # a buffer in some HF versions

    def take(key: str) -> torch.Tensor:
        try:
            return remaining.pop(key)
        except KeyError:
            raise KeyError(f"HF state dict is missing {key!r}") from None

    out = {"embed.weight": take("model.embed_tokens.weight")}
    for i in range(config.n_layers):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        attn, mlp = theirs + "self_attn.", theirs + "mlp."
        out[ours + "attn.qkv.weight"] = torch.cat(
            [
                take(attn + "q_proj.weight"),
                take(attn + "k_proj.weight"),
                take(attn + "v_proj.weight"),
            ]
        )
        out[ours + "attn.out.weight"] = take(attn + "o_proj.weight")
        out[ours + "mlp.in_proj.weight"] = torch.cat(
            [take(mlp + "up_proj.weight"), take(mlp + "gate_proj.weight")]
        )
        out[ours + "mlp.out.weight"] = take(mlp + "down_proj.weight")
    head = remaining.pop("lm_head.weight", None)
    if not config.weight_tying:
        if head is None:
            raise KeyError("HF state dict is missing 'lm_head.weight' for an untied model")
        out["lm_head.weight"] = head
    if remaining:
        raise KeyError(f"unexpected keys in HF state dict: {sorted(remaining)[:5]}")
    return out


def save_hf_directory(
    state: Mapping[str, torch.Tensor],
    config: ModelConfig,
    directory: str | Path,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` loadable by ``AutoModelForCausalLM``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hf_state = to_hf_state_dict(state, config)
    if config.weight_tying:
        del hf_state["lm_head.weight"]  # tied: HF re-ties it on load
    tensors = {
        k: (v.to(dtype) if dtype is not None else v).detach().cpu().contiguous()
        for k, v in hf_state.items()
    }
    save_file(tensors, directory / SAFETENSORS_NAME, metadata={"format": "pt"})
    cfg = hf_config(config)
    if dtype is not None:
        cfg.dtype = dtype
    cfg.save_pretrained(directory)
    return directory


def load_hf_directory(directory: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Read an HF OLMo directory (single or sharded safetensors) into our config + state dict."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json")
    config = model_config_from_hf(json.loads(config_path.read_text()))
    index = directory / f"{SAFETENSORS_NAME}.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = [SAFETENSORS_NAME]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state |= load_file(directory / name)
    return config, from_hf_state_dict(state, config)
