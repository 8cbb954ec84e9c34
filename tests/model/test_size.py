"""Exact parameter counts (meta device) and the FLOPs-per-token formula."""

from __future__ import annotations

import pytest

from olmo.model.config import PRESETS
from olmo.model.size import flops_per_token, model_size

EXACT = {"1b": 1_176_764_416, "7b": 6_888_095_744, "65b": 65_584_234_496}


@pytest.mark.parametrize("preset", sorted(EXACT))
def test_exact_parameter_counts(preset):
    # Built on the meta device: 65B in fp32 would need 262 GB, far beyond this machine.
    assert model_size(PRESETS[preset]).num_params == EXACT[preset]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_counts_match_closed_form(preset):
    c = PRESETS[preset]
    per_layer = 4 * c.d_model**2 + 3 * c.d_model * c.mlp_hidden_size
    embedding = c.embedding_size * c.d_model
    expected = c.n_layers * per_layer + embedding * (1 if c.weight_tying else 2)
    size = model_size(c)
    assert size.num_params == expected
    assert size.num_embedding_params == embedding
    assert size.num_non_embedding_params == expected - embedding


def test_tiny_is_a_few_million_parameters():
    assert 1_000_000 < model_size(PRESETS["tiny"]).num_params < 10_000_000


def test_flops_per_token_7b():
    c = PRESETS["7b"]
    # 6 × (every matmul weight: blocks + output head) + 12·L·d·T attention.
    matmul = 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 50304 * 4096
    assert flops_per_token(c) == 6 * matmul + 12 * 32 * 4096 * 2048
    assert flops_per_token(c, seq_len=4096) - flops_per_token(c) == 12 * 32 * 4096 * 2048


def test_tied_head_still_costs_flops():
    # The 1B ties its head to the embedding, but the head matmul runs on every token.
    c = PRESETS["1b"]
    matmul = 16 * (4 * 2048**2 + 3 * 2048 * 8192) + 50304 * 2048
    assert flops_per_token(c) == 6 * matmul + 12 * 16 * 2048 * 2048
