"""Model hyper-parameters and the size presets (the single source of truth for sizes).

Values follow the OLMo release configs (Groeneveld et al. 2024). Everything else that needs a
preset's shape (configs/*.yaml, the Helm chart's size presets, the operator) refers to it by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from olmo.config import StrictConfig

# GPT-NeoX-20B + PII tokens: 50280 real ids, padded to a multiple of 128 for matmul efficiency.
OLMO_VOCAB_SIZE = 50280
OLMO_EMBEDDING_SIZE = 50304
OLMO_EOS_TOKEN_ID = 50279
OLMO_PAD_TOKEN_ID = 1


class ModelConfig(StrictConfig):
    """Shape and numerics of a decoder-only OLMo transformer."""

    preset: str | None = None
    """Name of the preset the values came from (informational; explicit keys override it)."""
    d_model: int = 2048
    n_layers: int = 16
    n_heads: int = 16
    mlp_hidden_size: int = 8192
    """Width of the SwiGLU hidden layer (the fused input projection is twice this)."""
    vocab_size: int = OLMO_VOCAB_SIZE
    """Number of real token ids the tokenizer produces."""
    embedding_size: int = OLMO_EMBEDDING_SIZE
    """Rows of the embedding matrix: vocab_size padded up for efficiency."""
    max_sequence_length: int = 2048
    rope_theta: float = 10000.0
    weight_tying: bool = True
    layer_norm_eps: float = 1e-5
    activation_checkpointing: bool = False
    eos_token_id: int = OLMO_EOS_TOKEN_ID
    pad_token_id: int = OLMO_PAD_TOKEN_ID

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in PRESETS:
                raise ValueError(
                    f"preset: unknown preset {name!r} (expected one of {', '.join(PRESETS)})"
                )
            return {**PRESETS[name].model_dump(), **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        positive = ("d_model", "n_layers", "n_heads", "mlp_hidden_size", "vocab_size")
        for name in (*positive, "embedding_size", "max_sequence_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must divide d_model ({self.d_model}) evenly"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim d_model/n_heads = {self.head_dim} must be even for RoPE")
        if self.embedding_size < self.vocab_size:
            raise ValueError(
                f"embedding_size ({self.embedding_size}) must be >= vocab_size ({self.vocab_size})"
            )
        for name in ("eos_token_id", "pad_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must be a token id below vocab_size "
                    f"({self.vocab_size})"
                )
        if self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta}")
        if not 0 < self.layer_norm_eps < 1:
            raise ValueError(f"layer_norm_eps must be in (0, 1), got {self.layer_norm_eps}")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def _preset(name: str, **values: Any) -> ModelConfig:
    return ModelConfig.model_validate({**values, "preset": None}).model_copy(
        update={"preset": name}
    )


PRESETS: dict[str, ModelConfig] = {
    # For CPU tests and the local demo: a few million parameters, most of them the embedding.
    "tiny": _preset(
        "tiny",
        d_model=128,
        n_layers=4,
        n_heads=4,
        mlp_hidden_size=512,
        max_sequence_length=256,
        weight_tying=True,
    ),
    # ~114M parameters: a GPU-shaped model small enough for CPU benchmarks.
    "100m": _preset(
        "100m",
        d_model=768,
        n_layers=8,
        n_heads=12,
        mlp_hidden_size=3072,
        max_sequence_length=1024,
        weight_tying=True,
    ),
    "1b": _preset(
        "1b", d_model=2048, n_layers=16, n_heads=16, mlp_hidden_size=8192, weight_tying=True
    ),
    "7b": _preset(
        "7b", d_model=4096, n_layers=32, n_heads=32, mlp_hidden_size=11008, weight_tying=False
    ),
    "65b": _preset(
        "65b", d_model=8192, n_layers=80, n_heads=64, mlp_hidden_size=22016, weight_tying=False
    ),
}


def model_preset(name: str) -> ModelConfig:
    """A copy of the named preset (``tiny``, ``1b``, ``7b``, ``65b``)."""
    try:
        return PRESETS[name].model_copy()
    except KeyError:
        raise KeyError(
            f"unknown model preset {name!r}; expected one of {', '.join(PRESETS)}"
        ) from None
