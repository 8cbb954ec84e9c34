"""Training metrics: one JSON line per logged step in ``RUN_DIR/metrics.jsonl`` and, when
enabled, the same numbers to Weights & Biases (offline unless an API key is configured).
Only rank 0 writes."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from olmo.train.config import TrainConfig

METRICS_FILE = "metrics.jsonl"
WANDB_ID_FILE = "wandb_id"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wandb_mode(requested: str) -> str:
    """``online`` falls back to ``offline`` when no API key is available."""
    if requested == "online" and not (
        os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").exists()
    ):
        return "offline"
    return requested


class MetricsLogger:
    def __init__(self, run_dir: Path, config: TrainConfig, resumed_step: int, enabled: bool):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self._wandb = None
        if not enabled:
            return
        # A resumed run continues the file; lines past the checkpoint were never "kept".
        lines = read_metrics(run_dir)
        kept = [m for m in lines if m.get("step", 0) <= resumed_step]
        if len(kept) != len(lines):
            self.path.write_text("".join(json.dumps(m) + "\n" for m in kept))
        mode = wandb_mode(config.wandb.mode)
        if mode != "disabled":
            self._wandb = _init_wandb(Path(run_dir), config, mode)

    def log(self, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in metrics.items() if k != "step"}, step=metrics["step"])

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _init_wandb(run_dir: Path, config: TrainConfig, mode: str):
    import wandb

    id_file = run_dir / WANDB_ID_FILE
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        run_id = uuid.uuid4().hex[:8]  # the form of W&B's own run ids
        id_file.write_text(run_id)
    return wandb.init(
        project=config.wandb.project,
        entity=config.wandb.entity,
        group=config.wandb.group,
        name=config.run_name,
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        mode=mode,
        config=config.model_dump(mode="json"),
    )
