"""Everything the training loop does besides taking steps, one concern per module, each deciding
its own timing (``base`` holds the hooks):

- ``train_metrics``: metrics.jsonl / W&B and the step log line;
- ``progress``: progress reports to the OLMoJob (state, throughput, checkpoints);
- ``checkpointer``: save cadence, SIGTERM save, rotation;
- ``validation``: held-out perplexity;
- ``downstream``: in-loop downstream tasks.
"""

from olmo.train.callbacks.base import (
    EVALUATING,
    SAVING,
    TRAINING,
    Callback,
    Callbacks,
    Saved,
    StepEnd,
    Throughput,
)

__all__ = [
    "EVALUATING",
    "SAVING",
    "TRAINING",
    "Callback",
    "Callbacks",
    "Saved",
    "StepEnd",
    "Throughput",
]
