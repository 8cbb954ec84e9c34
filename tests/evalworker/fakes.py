"""A cheap evaluator with ``evaluate_checkpoint``'s signature, for ``--evaluator`` in CLI tests.

Its results are made up from the checkpoint's step (so tests can predict them). Environment
variables steer it across process boundaries: ``FAKE_EVAL_CALLS`` names a file that gets one
line per call (the checkpoint folder's name), ``FAKE_EVAL_SLEEP`` seconds to take,
``FAKE_EVAL_FAIL`` a comma-separated list of steps that raise ``CheckpointError``,
``FAKE_EVAL_NO_DATA`` (any value) makes every call raise ``EvalDataMissing``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from olmo.checkpoints import layout

NORMS = ("none", "per_token", "per_char", "pmi")


def fake_results(step: int, tasks: tuple[str, ...] = ("copa", "piqa")) -> dict[str, Any]:
    """Results shaped like olmo.eval's; accuracy of task i at ``step`` is (step % 50 + i) / 100."""
    out: dict[str, Any] = {"tasks": {}, "continuations_scored": 4 * len(tasks), "seconds": 0.01}
    for i, task in enumerate(tasks):
        acc = (step % 50 + i) / 100
        out["tasks"][task] = {
            "items": 2,
            "headline_metric": "none",
            "headline": acc,
            "acc": {norm: acc for norm in NORMS},
        }
    return out


def evaluate(path: Path, **options: Any) -> dict[str, Any]:
    path = Path(path)
    calls = os.environ.get("FAKE_EVAL_CALLS")
    if calls:
        with open(calls, "a") as f:
            f.write(path.name + "\n")
    time.sleep(float(os.environ.get("FAKE_EVAL_SLEEP", "0")))
    step = layout.parse_step(path.name) or 0
    if os.environ.get("FAKE_EVAL_NO_DATA"):
        from olmo.eval import EvalDataMissing

        raise EvalDataMissing("the task data are not installed (fake)")
    failing = {int(s) for s in os.environ.get("FAKE_EVAL_FAIL", "").split(",") if s}
    if step in failing:
        from olmo.eval import CheckpointError

        raise CheckpointError(f"checkpoint {path}: unreadable DeepSpeed ZeRO-3 files (fake)")
    tasks = options.get("tasks") or ("copa", "piqa")
    tasks = ("copa", "piqa") if tasks == "core" else tuple(tasks)
    return {"checkpoint": str(path), "step": step, "tokens": None, **fake_results(step, tasks)}
