"""Progress reports to the OLMoJob that started this run (``olmo.progress``): the step and
tokens after every step, and at once after each save the new latest checkpoint, what rotation
removed. With a run directory on an object store a save reports how long it blocked training
(``checkpointBlockedSeconds``: the local save plus the wait for the previous upload), and the
latest checkpoint is reported once its upload finished, with its URI, together with ``upload``:
``{step, seconds, bytes, files, time}`` (and ``rotation``, which runs after the upload). Only rank 0 reports,
and only when the operator started the run."""

from __future__ import annotations

from olmo.progress import ProgressReporter, now_iso
from olmo.train.callbacks.base import Callback, Saved, StepEnd
from olmo.train.upload import Uploaded


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
        report: dict = {"step": saved.step, "tokens": saved.tokens}
        if saved.uploading:  # on a store, the checkpoint is the latest once it is uploaded
            report["checkpointBlockedSeconds"] = round(saved.blocked_seconds, 3)
        else:
            report["latestCheckpoint"] = {
                "step": saved.step, "path": str(saved.path), "time": now_iso()
            }  # fmt: skip
        self.reporter.report(report, urgent=True)

    def on_upload(self, uploaded: Uploaded) -> None:
        """The checkpoint is on the store: it is the latest one, at its URI."""
        now = now_iso()
        report = {
            "latestCheckpoint": {
                "step": uploaded.step,
                "path": str(uploaded.location),
                "time": now,
            },
            "upload": {
                "step": uploaded.step,
                "seconds": round(uploaded.seconds, 3),
                "bytes": uploaded.bytes,
                "files": uploaded.files,
                "time": now,
            },
        }
        if uploaded.rotated_out:
            report["rotation"] = {"deleted": list(uploaded.rotated_out), "time": now}
        self.reporter.report(report, urgent=True)

    def on_finish(self) -> None:
        self.reporter.close()
