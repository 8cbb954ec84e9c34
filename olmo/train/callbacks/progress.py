"""Progress reports to the OLMoJob that started this run (``olmo.progress``): the step and
tokens after every step, and at once after each save the new latest checkpoint (with its
tokens), what rotation removed, and how long the save stopped training (``saveSeconds``). With a
run directory on an object store a save reports how long it blocked training
(``checkpointBlockedSeconds``, the same value as ``saveSeconds``: the local save plus the wait for
the previous upload), and the latest checkpoint is reported once its upload finished, with its
URI, together with ``upload``: ``{step, seconds, bytes, files, time}`` (and ``rotation``, which
runs after the upload).

What the trainer is doing goes out at once on every change: ``state`` (``starting``,
``preflight``, ``training``, ``saving``, ``evaluating``) and ``stateSince``. The entrypoint
(``olmo.train.cli``) reports ``starting``, ``preflight`` and its result (``preflight``:
``olmo.train.preflight``) and ``training``; during training the other callbacks announce
``saving``/``evaluating`` and ``training`` again (``on_activity``). The training speed over the
recent steps follows every step (``stepSeconds``, ``tokensPerSecond``, and ``mfu`` when the
device's peak FLOPs are known and the figure lies in [0, 1]), from ``train_metrics``
(``on_throughput``).

Only rank 0 reports, and only when the operator started the run. One reporter per process:
``JobProgress.from_env`` gives the entrypoint and the trainer the same callback until it is
closed."""

from __future__ import annotations

from typing import ClassVar

from olmo.progress import ProgressReporter, now_iso
from olmo.train.callbacks.base import Callback, Saved, StepEnd, Throughput
from olmo.train.upload import Uploaded

STATES = ("starting", "preflight", "training", "saving", "evaluating")


class JobProgress(Callback):
    _shared: ClassVar[JobProgress | None] = None

    def __init__(self, reporter: ProgressReporter):
        self.reporter = reporter
        self.state: str | None = None
        """The state reported last (None: none yet)."""

    @classmethod
    def from_env(cls, is_main: bool) -> JobProgress | None:
        """The callback for rank 0 of a run the operator started, else None. The same one for
        every call in a process until it is closed (``on_finish``)."""
        if not is_main:
            return None
        if JobProgress._shared is None:
            reporter = ProgressReporter.from_env()
            if reporter is None:
                return None
            JobProgress._shared = cls(reporter)
        return JobProgress._shared

    def set_state(self, state: str, since: str | None = None) -> None:
        """Report ``state`` at once (``stateSince``: ``since`` or now) unless it is the state
        reported last."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {state!r}")
        if state == self.state:
            return
        self.state = state
        self.reporter.report({"state": state, "stateSince": since or now_iso()}, urgent=True)

    def report_preflight(self, preflight: dict) -> None:
        """The preflight's result (``PreflightResult.as_report``), at once."""
        self.reporter.report({"preflight": preflight}, urgent=True)

    def on_activity(self, activity: str) -> None:
        self.set_state(activity)

    def on_throughput(self, throughput: Throughput) -> None:
        report = {
            "stepSeconds": round(throughput.step_seconds, 6),
            "tokensPerSecond": round(throughput.tokens_per_second, 3),
        }
        if throughput.mfu is not None and 0 <= throughput.mfu <= 1:
            report["mfu"] = round(throughput.mfu, 5)
        self.reporter.report(report)

    def on_step_end(self, end: StepEnd) -> None:
        self.reporter.report({"step": end.step, "tokens": end.metrics["tokens"]})

    def on_save(self, saved: Saved) -> None:
        if saved.rotated_out:
            deleted = [str(p) for p in saved.rotated_out]
            self.reporter.report({"rotation": {"deleted": deleted, "time": now_iso()}}, urgent=True)
        report: dict = {
            "step": saved.step,
            "tokens": saved.tokens,
            "saveSeconds": round(saved.blocked_seconds, 3),
        }
        if saved.uploading:  # on a store, the checkpoint is the latest once it is uploaded
            report["checkpointBlockedSeconds"] = round(saved.blocked_seconds, 3)
        else:
            report["latestCheckpoint"] = {
                "step": saved.step, "tokens": saved.tokens, "path": str(saved.path),
                "time": now_iso(),
            }  # fmt: skip
        self.reporter.report(report, urgent=True)

    def on_upload(self, uploaded: Uploaded) -> None:
        """The checkpoint is on the store: it is the latest one, at its URI."""
        now = now_iso()
        report = {
            "latestCheckpoint": {
                "step": uploaded.step,
                "tokens": uploaded.tokens,
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

    def close(self) -> None:
        """Send what is pending (at most the reporter's close timeout) and stop reporting."""
        self.reporter.close()
        if JobProgress._shared is self:
            JobProgress._shared = None

    def on_finish(self) -> None:
        self.close()
