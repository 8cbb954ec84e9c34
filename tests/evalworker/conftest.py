"""Fixtures for the eval worker tests: real COMPLETE checkpoints written with the layout's own
functions (tiny payload files), and an evaluator that records its calls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from olmo.checkpoints import layout

from .fakes import fake_results


def make_checkpoint(run_dir: Path, step: int, *, tokens: int | None = None) -> Path:
    """A COMPLETE checkpoint of ``step`` (as the trainer writes one: temp folder, finalize)."""
    temp = layout.prepare_temp_dir(run_dir, step)
    (temp / "deepspeed").mkdir()
    (temp / "deepspeed" / "model_states.pt").write_bytes(f"weights of step {step}".encode())
    (temp / "trainer_state.json").write_text(f'{{"step": {step}}}')
    return layout.finalize(
        run_dir, temp, step=step, tokens=step * 1000 if tokens is None else tokens
    )


class RecordingEvaluator:
    """Returns ``fake_results(step)``; ``behaviour[step]`` may replace that with a callable
    (called with the path; its return value is the result, or it raises)."""

    def __init__(self, behaviour: dict[int, Callable[[Path], Any]] | None = None):
        self.calls: list[int] = []
        self.behaviour = behaviour or {}

    def __call__(self, path: Path) -> Any:
        step = layout.parse_step(Path(path).name)
        self.calls.append(step)
        if step in self.behaviour:
            return self.behaviour[step](Path(path))
        return {"checkpoint": str(path), "step": None, "tokens": None, **fake_results(step)}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


@pytest.fixture
def evaluator() -> RecordingEvaluator:
    return RecordingEvaluator()
