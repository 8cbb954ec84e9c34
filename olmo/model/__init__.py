"""The OLMo model: config and presets (torch-free), transformer, FLOPs, HF conversion.

Import ``olmo.model.transformer`` for the ``nn.Module``; this package's top level stays
torch-free so that configs can be validated where torch is not installed.
"""

from olmo.model.config import PRESETS, ModelConfig, model_preset

__all__ = ["PRESETS", "ModelConfig", "model_preset"]
