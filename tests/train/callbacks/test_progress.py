"""Progress reports to the OLMoJob: the step after every step; after a save, what rotation
removed and then the new latest checkpoint, both at once (urgent); the reporter closed at the
end. (tests/train/test_trainer.py checks the same against a real status server.)"""

from __future__ import annotations

from pathlib import Path

from olmo.train.callbacks import Saved, StepEnd
from olmo.train.callbacks.progress import JobProgress


class FakeReporter:
    def __init__(self):
        self.reports: list[tuple[dict, bool]] = []
        self.closed = False

    def report(self, fields: dict, *, urgent: bool = False) -> None:
        self.reports.append((fields, urgent))

    def close(self) -> None:
        self.closed = True


def test_reports_the_step_and_tokens_after_every_step():
    reporter = FakeReporter()
    progress = JobProgress(reporter)
    for step in (1, 2):
        progress.on_step_end(StepEnd(step, {"tokens": 512 * step}, 0.1, preempted=False))
    assert reporter.reports == [
        ({"step": 1, "tokens": 512}, False),
        ({"step": 2, "tokens": 1024}, False),
    ]


def test_reports_rotation_then_the_latest_checkpoint(tmp_path):
    reporter = FakeReporter()
    old, new = tmp_path / "step000002", tmp_path / "step000004"
    JobProgress(reporter).on_save(Saved(4, 2048, new, rotated_out=[old]))
    (rotation, urgent1), (latest, urgent2) = reporter.reports
    assert urgent1 and urgent2
    assert rotation["rotation"]["deleted"] == [str(old)] and rotation["rotation"]["time"]
    assert latest["step"] == 4 and latest["tokens"] == 2048
    assert latest["latestCheckpoint"]["step"] == 4
    assert latest["latestCheckpoint"]["path"] == str(new)
    assert latest["latestCheckpoint"]["time"].endswith("Z")


def test_no_rotation_report_when_nothing_was_rotated():
    reporter = FakeReporter()
    JobProgress(reporter).on_save(Saved(4, 2048, Path("step000004")))
    assert [list(fields) for fields, _ in reporter.reports] == [
        ["step", "tokens", "saveSeconds", "latestCheckpoint"]
    ]


def test_closes_the_reporter_at_the_end():
    reporter = FakeReporter()
    JobProgress(reporter).on_finish()
    assert reporter.closed


def test_only_rank_0_of_an_operator_run_reports(monkeypatch):
    monkeypatch.delenv("OLMOJOB_NAME", raising=False)
    assert JobProgress.from_env(is_main=True) is None
    monkeypatch.setenv("OLMOJOB_NAME", "tiny")
    monkeypatch.setenv("OLMOJOB_NAMESPACE", "default")
    monkeypatch.setenv("OLMO_K8S_API_URL", "http://127.0.0.1:9")
    assert JobProgress.from_env(is_main=False) is None
    progress = JobProgress.from_env(is_main=True)
    assert progress is not None
    progress.on_finish()
