"""Committed evaluations and given-up checkpoints reach the OLMoJob (the ``eval`` key of its
progress ConfigMap: lastEval, lastEvalFailure)."""

from __future__ import annotations

from pathlib import Path

from olmo.progress import ProgressReporter
from olmo_evalworker.outcomes import Evaluated, Failed
from olmo_evalworker.status_sink import MAX_MESSAGE, StatusSink


def _sink(server) -> StatusSink:
    return StatusSink(ProgressReporter("tiny", "default", api_url=server.url, source="eval"))


def test_evaluated_checkpoint_is_reported_as_last_eval(status_server):
    sink = _sink(status_server)
    results = {
        "tasks": {
            "piqa": {"headline": 0.5, "acc": {"none": 0.5}},
            "copa": {"headline": 0.75, "acc": {"none": 0.75}},
            "broken": {"headline": float("nan")},
        }
    }
    sink.evaluated(
        Evaluated(
            step=40, tokens=1000, checkpoint=Path("c"), results=results,
            results_path=Path("r.json"), seconds=1.0,
        )
    )  # fmt: skip
    sink.close()
    (request,) = status_server.requests
    assert list(request["body"]["data"]) == ["eval"]
    (progress,) = status_server.progress()
    assert progress["lastEval"]["step"] == 40
    assert progress["lastEval"]["headline"] == {"piqa": 0.5, "copa": 0.75}


def test_a_checkpoint_given_up_on_is_reported_as_last_eval_failure(status_server):
    """Only the final failure is reported (before: none was, so the operator could not tell a
    checkpoint that will never be evaluated from one still being evaluated)."""
    sink = _sink(status_server)
    retry = {"final": False, "reason": "RuntimeError: transient"}
    sink.failed(Failed(step=30, checkpoint=Path("c"), record=retry))
    final = {"final": True, "reason": "RuntimeError: " + "x" * 5000}
    sink.failed(Failed(step=30, checkpoint=Path("c"), record=final))
    sink.close()
    (progress,) = status_server.progress()
    failure = progress["lastEvalFailure"]
    assert failure["step"] == 30 and failure["time"].endswith("Z")
    assert failure["message"].startswith("RuntimeError: xxx")
    assert len(failure["message"]) == MAX_MESSAGE


def test_no_sink_outside_a_cluster(monkeypatch):
    monkeypatch.delenv("OLMOJOB_NAME", raising=False)
    assert StatusSink.from_env() is None
