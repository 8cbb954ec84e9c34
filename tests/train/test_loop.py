"""The loop: steps until max_steps, stop_at or SIGTERM, calling the hooks after each step and
at the end, and returning the exit code the operator reads."""

from __future__ import annotations

import logging

import pytest

from olmo.train import exit_codes, loop
from olmo.train.callbacks import Callback, StepEnd
from olmo.train.checkpointing import TrainerState


class Recorder(Callback):
    def __init__(self):
        self.calls: list = []

    def on_step_end(self, end: StepEnd) -> None:
        self.calls.append(end)

    def on_finish(self) -> None:
        self.calls.append("finish")


class FakePreemption:
    """SIGTERM "arrives" after step ``at``."""

    def __init__(self, state: TrainerState, at: int | None = None):
        self.state, self.at, self.entered, self.exited = state, at, False, False

    def __enter__(self):
        self.entered = True
        return self

    def __exit__(self, *exc):
        self.exited = True

    def requested(self) -> bool:
        return self.state.step == self.at


def train(state: TrainerState, max_steps: int, stop_at=None, preempt_at=None):
    def step() -> dict:
        state.step += 1
        return {"step": state.step, "loss": 1.0 / state.step}

    recorder, preemption = Recorder(), FakePreemption(state, preempt_at)
    code = loop.run(step, state, recorder, preemption, max_steps=max_steps, stop_at=stop_at)
    assert preemption.entered and preemption.exited
    return code, recorder.calls


def test_runs_to_max_steps(caplog):
    with caplog.at_level(logging.INFO, logger="olmo.train"):
        code, calls = train(TrainerState(), max_steps=3)
    assert code == exit_codes.SUCCESS
    assert [c.step for c in calls[:-1]] == [1, 2, 3] and calls[-1] == "finish"
    assert calls[1].metrics == {"step": 2, "loss": 0.5} and calls[1].seconds >= 0
    assert not any(c.preempted for c in calls[:-1])
    assert "done: 3 steps in" in caplog.text


def test_resumed_state_continues_where_it_stopped():
    code, calls = train(TrainerState(step=5), max_steps=7)
    assert code == exit_codes.SUCCESS and [c.step for c in calls[:-1]] == [6, 7]


def test_stop_at_stops_successfully(caplog):
    with caplog.at_level(logging.INFO, logger="olmo.train"):
        code, calls = train(TrainerState(), max_steps=10, stop_at=4)
    assert code == exit_codes.SUCCESS and [c.step for c in calls[:-1]] == [1, 2, 3, 4]
    assert "stopping at step 4 (stop_at); resume with --resume latest" in caplog.text


def test_sigterm_stops_after_the_step_as_preempted(caplog):
    with caplog.at_level(logging.INFO, logger="olmo.train"):
        code, calls = train(TrainerState(), max_steps=10, stop_at=3, preempt_at=3)
    assert code == exit_codes.PREEMPTED
    assert [c.preempted for c in calls[:-1]] == [False, False, True]
    assert "stopping after step 3: preempted" in caplog.text


def test_the_callbacks_finish_after_an_error():
    state, recorder = TrainerState(), Recorder()

    def step() -> dict:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        loop.run(step, state, recorder, FakePreemption(state), max_steps=3, stop_at=None)
    assert recorder.calls == ["finish"]
