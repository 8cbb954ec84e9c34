"""Evaluation results to the OLMoJob, when the operator started this worker.

The operator's eval Deployment sets ``OLMOJOB_NAME``/``OLMOJOB_NAMESPACE`` and a ServiceAccount
that may patch only the job's progress ConfigMap (``<job>-progress``); this sink writes its
``eval`` data key (``olmo.progress``, the same contract the trainer uses for its ``trainer``
key): each committed evaluation as ``lastEval = {step, headline: {task: accuracy}, time}``, and
a checkpoint the worker gave up on (its last attempt failed) as ``lastEvalFailure = {step,
message, time}``. The operator validates the document and mirrors it into ``status.lastEval`` /
``status.lastEvalFailure`` with an Event. Outside a cluster nothing is sent.
"""

from __future__ import annotations

import math

from olmo.json_records import now_iso
from olmo.progress import EVAL, ProgressReporter
from olmo_evalworker.outcomes import Evaluated, Failed, Sink

__all__ = ["MAX_MESSAGE", "StatusSink"]

MAX_MESSAGE = 1000
"""Characters of a failure's message sent (the operator refuses longer ones)."""


class StatusSink(Sink):
    def __init__(self, reporter: ProgressReporter):
        self.reporter = reporter

    @classmethod
    def from_env(cls) -> StatusSink | None:
        reporter = ProgressReporter.from_env(source=EVAL)
        return None if reporter is None else cls(reporter)

    def evaluated(self, event: Evaluated) -> None:
        tasks = event.results.get("tasks") or {}
        # Only finite numbers: the operator refuses a report with anything else in it.
        headline = {
            name: task["headline"]
            for name, task in tasks.items()
            if isinstance(task, dict)
            and isinstance(task.get("headline"), int | float)
            and not isinstance(task.get("headline"), bool)
            and math.isfinite(task["headline"])
        }
        self.reporter.report(
            {"lastEval": {"step": event.step, "headline": headline, "time": now_iso()}},
            urgent=True,
        )

    def failed(self, event: Failed) -> None:
        """Only the final failure (no attempts left) is reported: a retry may still succeed."""
        if not event.final:
            return
        message = str(event.record.get("reason") or "evaluation failed")
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        self.reporter.report(
            {"lastEvalFailure": {"step": event.step, "message": message, "time": now_iso()}},
            urgent=True,
        )

    def close(self) -> None:
        self.reporter.close()
