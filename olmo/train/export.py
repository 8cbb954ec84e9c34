"""Consolidate a ZeRO-3 checkpoint into one fp32 state dict and write an HF directory.

Used by ``olmo-ckpt export-hf`` and the eval worker: the per-rank fp32 master partitions are
merged with DeepSpeed's own reader, then converted by ``olmo.model.hf``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from olmo.checkpoints import layout
from olmo.checkpoints.paths import CONFIG_FILE, DEEPSPEED_TAG
from olmo.config import load_yaml, validate
from olmo.model.config import ModelConfig
from olmo.train.config import TrainConfig


def load_consolidated(checkpoint: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(model config, fp32 state dict) of a COMPLETE trainer checkpoint."""
    checkpoint = Path(checkpoint)
    if not layout.is_complete(checkpoint):
        raise ValueError(f"{checkpoint} is not a complete checkpoint (no valid COMPLETE marker)")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    config = validate(TrainConfig, load_yaml(checkpoint / CONFIG_FILE), str(checkpoint))
    state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG)
    state = {
        k: v for k, v in state.items() if not (config.model.weight_tying and k == "lm_head.weight")
    }
    return config.model, state


def export_hf(checkpoint: Path, out: Path, dtype: torch.dtype | None = None) -> Path:
    from olmo.model.hf import save_hf_directory

    model_config, state = load_consolidated(checkpoint)
    return save_hf_directory(state, model_config, out, dtype=dtype)
