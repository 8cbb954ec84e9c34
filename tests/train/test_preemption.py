"""SIGTERM inside the trainer: recorded (not fatal), seen by every rank, and how much of the
grace period is left for a save."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from olmo.train.preemption import GRACE_ENV, Preemption


def test_sigterm_is_recorded_and_the_handler_restored(dist, caplog):
    before = signal.getsignal(signal.SIGTERM)
    preemption = Preemption(dist.device)
    with caplog.at_level(logging.WARNING, logger="olmo.train"), preemption:
        assert not preemption.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.received_at is not None
        first = preemption.received_at
        os.kill(os.getpid(), signal.SIGTERM)  # a second one changes nothing
        assert preemption.received_at == first
        assert preemption.requested()
    assert signal.getsignal(signal.SIGTERM) == before
    assert caplog.text.count("SIGTERM received: finishing the current step") == 1


def test_seconds_left_counts_from_the_sigterm(monkeypatch):
    monkeypatch.delenv(GRACE_ENV, raising=False)
    preemption = Preemption(device=None)
    assert preemption.seconds_left(30.0) == pytest.approx(30.0, abs=0.01)
    preemption.received_at = time.monotonic() - 10
    assert preemption.seconds_left(30.0) == pytest.approx(20.0, abs=0.01)


def test_the_pod_grace_period_overrides_the_config(monkeypatch):
    monkeypatch.setenv(GRACE_ENV, "90")
    assert Preemption(device=None).seconds_left(30.0) == pytest.approx(90.0, abs=0.01)
