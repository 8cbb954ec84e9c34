"""Evaluation results to the OLMoJob's status, when the operator started this worker.

The operator's eval Deployment sets ``OLMOJOB_NAME``/``OLMOJOB_NAMESPACE`` and a ServiceAccount
that may patch that OLMoJob's status; each committed evaluation then goes out as
``status.progress.lastEval = {step, headline: {task: accuracy}, time}`` (``olmo.progress``, the
same contract the trainer uses), which the operator mirrors into ``status.lastEval`` and an
``Evaluated`` Event. Outside a cluster nothing is sent.
"""

from __future__ import annotations

from olmo.json_records import now_iso
from olmo.progress import ProgressReporter
from olmo_evalworker.outcomes import Evaluated, Sink

__all__ = ["StatusSink"]


class StatusSink(Sink):
    def __init__(self, reporter: ProgressReporter):
        self.reporter = reporter

    @classmethod
    def from_env(cls) -> StatusSink | None:
        reporter = ProgressReporter.from_env()
        return None if reporter is None else cls(reporter)

    def evaluated(self, event: Evaluated) -> None:
        tasks = event.results.get("tasks") or {}
        headline = {
            name: task["headline"]
            for name, task in tasks.items()
            if isinstance(task, dict) and isinstance(task.get("headline"), int | float)
        }
        self.reporter.report(
            {"lastEval": {"step": event.step, "headline": headline, "time": now_iso()}},
            urgent=True,
        )

    def close(self) -> None:
        self.reporter.close()
