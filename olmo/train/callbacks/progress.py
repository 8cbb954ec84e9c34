"""Progress reports to the OLMoJob that started this run (``olmo.progress``): the step and
tokens after every step, and at once after each save the new latest checkpoint and what
rotation removed. Only rank 0 reports, and only when the operator started the run."""

from __future__ import annotations

from olmo.progress import ProgressReporter, now_iso
from olmo.train.callbacks.base import Callback, Saved, StepEnd


class JobProgress(Callback):
    def __init__(self, reporter: ProgressReporter):
        self.reporter = reporter

    @classmethod
    def from_env(cls, is_main: bool) -> JobProgress | None:
        """The callback for rank 0 of a run the operator started, else None."""
        reporter = ProgressReporter.from_env() if is_main else None
        return None if reporter is None else cls(reporter)

    def on_step_end(self, end: StepEnd) -> None:
        self.reporter.report({"step": end.step, "tokens": end.metrics["tokens"]})

    def on_save(self, saved: Saved) -> None:
        if saved.rotated_out:
            deleted = [str(p) for p in saved.rotated_out]
            self.reporter.report({"rotation": {"deleted": deleted, "time": now_iso()}}, urgent=True)
        latest = {"step": saved.step, "path": str(saved.path), "time": now_iso()}
        self.reporter.report(
            {"step": saved.step, "tokens": saved.tokens, "latestCheckpoint": latest}, urgent=True
        )

    def on_finish(self) -> None:
        self.reporter.close()
