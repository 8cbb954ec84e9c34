"""Evaluation results to Weights & Biases: one W&B run per run dir, resumed across restarts.

The run id lives in ``RUN_DIR/eval/wandb-id`` (the trainer's own run has a different id; an
object on the store for a run dir there), so a restarted worker logs into the same W&B run.
W&B's own files go to ``RUN_DIR/eval/wandb/``, or under the worker's cache folder for a run dir
on a store. Every evaluated checkpoint is one ``log`` call with
the ``metrics.jsonl`` numbers plus ``checkpoint/step`` and ``checkpoint/tokens``, and every
metric is charted against ``checkpoint/step`` (``define_metric(step_metric=...)``) rather than
W&B's own step counter: W&B drops points whose ``step=`` goes backwards, which a retried older
checkpoint, or a repeat log after a crash, would do.

Mode: ``online`` falls back to ``offline`` without an API key (the trainer's rule,
``olmo.train.metrics.wandb_mode``); ``disabled`` turns it off.
"""

from __future__ import annotations

import logging
import secrets
import string
from pathlib import Path
from typing import Any

from olmo.storage import Location
from olmo.train.metrics import wandb_mode
from olmo_evalworker import records
from olmo_evalworker.outcomes import Evaluated, Sink

__all__ = ["WANDB_MODES", "WandbSink"]

log = logging.getLogger("olmo_evalworker")

WANDB_MODES = ("online", "offline", "disabled")
STEP_METRIC = "checkpoint/step"


def new_run_id() -> str:
    """8 random lowercase letters and digits (the form of W&B's own run ids)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class WandbSink(Sink):
    """Logs each evaluated checkpoint to the run dir's W&B eval run."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        project: str,
        files_dir: Path | None = None,
        entity: str | None = None,
        mode: str = "online",
        name: str | None = None,
        config: dict[str, Any] | None = None,
    ):
        if mode not in WANDB_MODES:
            raise ValueError(f"W&B mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        import wandb

        self.run_dir = records.run_root(run_dir)
        folder = files_dir or records.local_dir(self.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        id_file = records.eval_dir(self.run_dir) / records.WANDB_ID_FILE
        if id_file.is_file() and id_file.read_text().strip():
            run_id = id_file.read_text().strip()
        else:
            run_id = new_run_id()
            id_file.write_text(run_id + "\n")
        self.run_id = run_id
        self.mode = wandb_mode(mode)
        self.run = wandb.init(
            project=project,
            entity=entity,
            id=run_id,
            resume="allow",
            name=name or f"{_run_name(self.run_dir)}-eval",
            job_type="eval",
            dir=str(folder),
            mode=self.mode,
            config={"run_dir": str(self.run_dir), **(config or {})},
        )
        self.run.define_metric(STEP_METRIC)
        self.run.define_metric("checkpoint/tokens", step_metric=STEP_METRIC)
        self.run.define_metric("eval/*", step_metric=STEP_METRIC)
        log.info("W&B: run %s (%s mode)", run_id, self.mode)

    def evaluated(self, event: Evaluated) -> None:
        data: dict[str, Any] = {STEP_METRIC: event.step, "eval/seconds": event.seconds}
        if event.tokens is not None:
            data["checkpoint/tokens"] = event.tokens
        data.update(records.flat_metrics(event.results))
        self.run.log(data)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _run_name(run_dir: Path | Location) -> str:
    return run_dir.name if isinstance(run_dir, Location) else run_dir.resolve().name
