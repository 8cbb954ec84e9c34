"""The OLMo transformer, top to bottom as in the paper's architecture section.

- token embedding (``embedding_size`` rows, the vocabulary padded for efficiency), no positions;
- ``n_layers`` pre-norm blocks: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``;
- non-parametric LayerNorm: no gain, no bias, computed in fp32;
- attention: fused q/k/v projection, RoPE on q and k, causal
  ``scaled_dot_product_attention``, output projection;
- SwiGLU MLP: fused up|gate projection, ``silu(gate) * up``, output projection;
- no bias terms anywhere; the output head is the embedding (weight tying) or its own matrix.

This is a plain ``nn.Module``: it knows nothing about DeepSpeed, checkpoint files or clusters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from olmo.model.config import ModelConfig
from olmo.model.loss import linear_cross_entropy

__all__ = ["OLMo"]


class LayerNorm(nn.Module):
    """LayerNorm with no learnable parameters, computed in fp32 and cast back."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE in the "rotate half" layout (the one OLMo and HF ``OlmoForCausalLM`` use).

    The cos/sin tables are computed in fp32 and cached per (length, device); they are not
    buffers, so they never appear in a state dict and survive meta-device construction. The sin
    table is stored with the first half negated, so that ``rotate_half(x) * sin`` becomes
    ``swap_halves(x) * signed_sin``: the same products bit for bit (``-a * b == a * -b``) with one
    pass over the activations fewer.
    """

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self._cache: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, signed_sin)``, each (seq_len, head_dim) fp32."""
        key = (seq_len, device)
        if key not in self._cache:
            exponent = torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32)
            inv_freq = 1.0 / (self.theta ** (exponent / self.head_dim))
            positions = torch.arange(seq_len, device=device, dtype=torch.float32)
            freqs = torch.outer(positions, inv_freq)
            sin = freqs.sin()
            self._cache[key] = (torch.cat((freqs, freqs), dim=-1).cos(), torch.cat((-sin, sin), -1))
        return self._cache[key]

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` of shape (..., seq, head_dim); q and k stacked go through in one pass."""
        cos, signed_sin = self.tables(x.shape[-2], x.device)
        x32 = x.float()
        x1, x2 = x32.chunk(2, dim=-1)
        return (x32 * cos + torch.cat((x2, x1), dim=-1) * signed_sin).to(x.dtype)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate ``q`` and ``k`` of shape (batch, heads, seq, head_dim)."""
        return self.rotate(q), self.rotate(k)


class Linear(nn.Linear):
    """A bias-free linear layer that initialises itself: truncated normal at ±3σ.

    Each parameterised module initialises its own weights in its constructor, so that
    construction under DeepSpeed's ``zero.Init`` (which partitions each module's parameters as
    soon as its constructor returns) still gets OLMo's init.
    """

    def __init__(self, in_features: int, out_features: int, std: float):
        self.init_std = std  # read by reset_parameters(), which nn.Linear.__init__ calls
        super().__init__(in_features, out_features, bias=False)

    def reset_parameters(self) -> None:
        _trunc_normal(self.weight, self.init_std)


class Embedding(nn.Embedding):
    """Token embedding with the same self-initialisation as ``Linear``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, std: float):
        self.init_std = std
        super().__init__(num_embeddings, embedding_dim)

    def reset_parameters(self) -> None:
        _trunc_normal(self.weight, self.init_std)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer_id: int):
        super().__init__()
        d = config.d_model
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.qkv = Linear(d, 3 * d, std=1 / math.sqrt(d))
        self.rope = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.out = Linear(d, d, std=1 / math.sqrt(2 * d * (layer_id + 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        qkv = self.qkv(x).view(batch, seq, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.rope.rotate(qkv[:2])  # (2, batch, heads, seq, head_dim): q and k together
        v = qkv[2]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, seq, d_model))


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig, layer_id: int):
        super().__init__()
        d, hidden = config.d_model, config.mlp_hidden_size
        self.in_proj = Linear(d, 2 * hidden, std=1 / math.sqrt(d))
        self.out = Linear(hidden, d, std=1 / math.sqrt(2 * hidden * (layer_id + 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, gate = self.in_proj(x).chunk(2, dim=-1)
        return self.out(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        self.attn_norm = LayerNorm(config.layer_norm_eps)
        self.attn = Attention(config, layer_id)
        self.mlp_norm = LayerNorm(config.layer_norm_eps)
        self.mlp = SwiGLU(config, layer_id)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class OLMo(nn.Module):
    """Decoder-only OLMo transformer returning next-token logits over ``embedding_size``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        std = 1 / math.sqrt(config.d_model)
        self.embed = Embedding(config.embedding_size, config.d_model, std=std)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.final_norm = LayerNorm(config.layer_norm_eps)
        self.lm_head = (
            None if config.weight_tying else Linear(config.d_model, config.embedding_size, std=std)
        )
        self.activation_checkpointing = config.activation_checkpointing

    @property
    def output_weight(self) -> torch.Tensor:
        return self.embed.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``input_ids`` (batch, seq) → logits (batch, seq, embedding_size).

        With ``labels`` (batch, seq; already shifted, ``-100`` ignored) it returns the mean
        fp32 next-token loss instead, fused with the output projection so that the full
        logits are never materialised (see ``olmo.model.loss``).
        """
        x = self.hidden_states(input_ids)
        if labels is not None:
            return linear_cross_entropy(x, self.output_weight, labels)
        return F.linear(x, self.output_weight)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The final-norm output (batch, seq, d_model): everything before the output projection
        (the eval engine projects only the positions it scores)."""
        if input_ids.shape[-1] > self.config.max_sequence_length:
            raise ValueError(
                f"sequence length {input_ids.shape[-1]} exceeds max_sequence_length "
                f"{self.config.max_sequence_length}"
            )
        x = self.embed(input_ids)
        for block in self.blocks:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.final_norm(x)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-draw every weight with OLMo's "mitchell" init (what construction already did):
        truncated normal (±3σ) with σ = 1/√fan_in; the output projection of each residual
        branch is further scaled by 1/√(2·(layer_id + 1))."""
        for module in self.modules():
            if isinstance(module, Linear | Embedding):
                module.reset_parameters()


@torch.no_grad()
def _trunc_normal(weight: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)
