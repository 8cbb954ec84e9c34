"""Shared pieces for the evaluation tests: a tiny byte-level BPE, a tiny real OLMo, and models
whose log-probabilities the test controls (so expected scores can be written down by hand)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import nn

from olmo.model.config import ModelConfig
from olmo.model.transformer import OLMo

EOS = "<|endoftext|>"
BPE_VOCAB = 320
CORPUS = [
    "Question: Which technology was developed most recently?\nAnswer: cellular telephone",
    "The man turned on the faucet therefore water flowed from the spout.",
    "Sarah was a much better surgeon than Maria so Maria always got the easier cases.",
    "Roof shingle removal: A man is sitting on a roof. He starts pulling up roofing.",
    "Frilled sharks and angler fish live far beneath the surface of the ocean.",
    "How do I ready a guinea pig cage for its new occupants? Provide bedding and water.",
    "Who proposed the theory of evolution by natural selection? darwin",
    "does ethanol take more energy make than it produces? yes no",
] * 4


def train_bpe(texts=CORPUS, vocab_size: int = BPE_VOCAB) -> Tokenizer:
    """A GPT-NeoX-style byte-level BPE (no BOS; EOS ``<|endoftext|>`` is id 0)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def word_tokenizer(words: list[str]) -> Tokenizer:
    """Whitespace-separated words, one id each in the given order (``words[0]`` is EOS)."""
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return tokenizer


def small_config(vocab: int, max_sequence_length: int = 64, **extra) -> ModelConfig:
    values = dict(
        d_model=32, n_layers=2, n_heads=2, mlp_hidden_size=64, vocab_size=vocab,
        embedding_size=vocab, max_sequence_length=max_sequence_length, eos_token_id=0,
        pad_token_id=1,
    )  # fmt: skip
    return ModelConfig.model_validate({**values, **extra})


def tiny_olmo(vocab: int = BPE_VOCAB, max_sequence_length: int = 64, seed: int = 0) -> OLMo:
    torch.manual_seed(seed)
    return OLMo(small_config(vocab, max_sequence_length)).eval()


class BigramModel(nn.Module):
    """Logits at each position = log P[current token]: p(next | prev) = P[prev, next]."""

    def __init__(self, probs: torch.Tensor, max_sequence_length: int = 64, pad_token_id: int = 0):
        super().__init__()
        self.config = small_config(probs.shape[0], max_sequence_length, pad_token_id=pad_token_id)
        self.register_buffer("table", probs.double().log().float())
        self.calls: list[torch.Tensor] = []

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(input_ids.detach().cpu().clone())
        return self.table[input_ids]


class FixedDistributionModel(BigramModel):
    """The same next-token distribution ``q`` at every position, whatever the input."""

    def __init__(self, q: torch.Tensor, max_sequence_length: int = 64, pad_token_id: int = 0):
        super().__init__(q.expand(len(q), len(q)).clone(), max_sequence_length, pad_token_id)


def uniform_model(vocab: int, max_sequence_length: int = 16, **kw) -> FixedDistributionModel:
    return FixedDistributionModel(torch.full((vocab,), 1.0 / vocab), max_sequence_length, **kw)


@pytest.fixture(scope="session")
def bpe() -> Tokenizer:
    return train_bpe()


@pytest.fixture(scope="session")
def olmo_model() -> OLMo:
    return tiny_olmo()
