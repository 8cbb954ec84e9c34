"""Committed evaluations reach the OLMoJob's status (status.progress.lastEval)."""

from __future__ import annotations

from pathlib import Path

from olmo.progress import ProgressReporter
from olmo_evalworker.outcomes import Evaluated
from olmo_evalworker.status_sink import StatusSink


def test_evaluated_checkpoint_is_reported_as_last_eval(status_server):
    sink = StatusSink(ProgressReporter("tiny", "default", api_url=status_server.url))
    results = {
        "tasks": {
            "piqa": {"headline": 0.5, "acc": {"none": 0.5}},
            "copa": {"headline": 0.75, "acc": {"none": 0.75}},
        }
    }
    sink.evaluated(
        Evaluated(
            step=40, tokens=1000, checkpoint=Path("c"), results=results,
            results_path=Path("r.json"), seconds=1.0,
        )
    )  # fmt: skip
    sink.close()
    (progress,) = status_server.progress()
    assert progress["lastEval"]["step"] == 40
    assert progress["lastEval"]["headline"] == {"piqa": 0.5, "copa": 0.75}


def test_no_sink_outside_a_cluster(monkeypatch):
    monkeypatch.delenv("OLMOJOB_NAME", raising=False)
    assert StatusSink.from_env() is None
