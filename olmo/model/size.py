"""Parameter counts and training FLOPs per token; the trainer's MFU uses ``flops_per_token``.

Counts come from building the real module on the meta device (no memory is allocated), so they
can never drift from the architecture. FLOPs follow the PaLM/Chinchilla convention
``6·N_matmul + 12·L·d·T``: 6 FLOPs per weight per token for forward and backward over every
weight used in a matmul (all transformer weights plus the output head, not the embedding
lookup), and the attention score/value products for a context of ``T`` tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from olmo.model.config import ModelConfig
from olmo.model.transformer import OLMo

__all__ = ["ModelSize", "flops_per_token", "model_size"]


@dataclass(frozen=True)
class ModelSize:
    num_params: int
    """Unique trainable parameters (a tied output head is counted once)."""
    num_non_embedding_params: int
    """``num_params`` without the input embedding (an untied output head stays in)."""
    num_embedding_params: int
    flops_per_token: int
    """Training (forward + backward) FLOPs per token at ``seq_len``."""
    seq_len: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def model_size(config: ModelConfig, seq_len: int | None = None) -> ModelSize:
    with torch.device("meta"):
        model = OLMo(config)
    num_params = sum(p.numel() for p in model.parameters())
    num_embedding = model.embed.weight.numel()
    seq_len = config.max_sequence_length if seq_len is None else seq_len
    return ModelSize(
        num_params=num_params,
        num_non_embedding_params=num_params - num_embedding,
        num_embedding_params=num_embedding,
        flops_per_token=_flops(config, num_params, num_embedding, seq_len),
        seq_len=seq_len,
    )


def flops_per_token(config: ModelConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward + backward) for MFU."""
    return model_size(config, seq_len).flops_per_token


def _flops(config: ModelConfig, num_params: int, num_embedding: int, seq_len: int) -> int:
    # The embedding lookup is not a matmul; the output head is one on every position, also
    # when it shares its weight with the embedding (then it is missing from the non-embedding
    # count and is added back here).
    matmul_params = num_params - num_embedding
    if config.weight_tying:
        matmul_params += config.embedding_size * config.d_model
    attention = 12 * config.n_layers * config.d_model * seq_len
    return 6 * matmul_params + attention
