"""Progress reports to the OLMoJob status (olmo/progress.py): what is sent, and that reporting
never blocks or breaks the caller."""

from __future__ import annotations

import time

import pytest

from olmo.progress import ProgressReporter, deep_merge


def _reporter(server, **kwargs) -> ProgressReporter:
    return ProgressReporter.from_env(
        {
            "OLMOJOB_NAME": "tiny",
            "OLMOJOB_NAMESPACE": "research",
            "OLMOJOB_ATTEMPT": "3",
            "OLMO_K8S_API_URL": server.url,
            "OLMO_PROGRESS_INTERVAL_SECONDS": str(kwargs.get("interval", 60)),
        }
    )


def test_not_started_by_the_operator_means_no_reporter():
    assert ProgressReporter.from_env({}) is None
    assert ProgressReporter.from_env({"OLMOJOB_NAME": "x", "OLMOJOB_NAMESPACE": "y"}) is None


def test_patch_goes_to_the_status_subresource_as_a_merge_patch(status_server):
    reporter = _reporter(status_server)
    reporter.report({"step": 10, "tokens": 40960})
    reporter.close()
    (request,) = status_server.requests
    assert request["path"] == "/apis/olmo-k8s.io/v1alpha1/namespaces/research/olmojobs/tiny/status"
    assert request["content_type"] == "application/merge-patch+json"
    progress = request["body"]["status"]["progress"]
    assert progress["step"] == 10 and progress["tokens"] == 40960 and progress["attempt"] == 3
    assert progress["updated"].endswith("Z")


def test_step_updates_are_coalesced_checkpoints_go_out_at_once(status_server):
    reporter = _reporter(status_server, interval=60)
    reporter.report({"step": 1, "tokens": 1}, urgent=True)
    deadline = time.monotonic() + 5
    while len(status_server.requests) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    for step in range(2, 50):  # within the interval: held back, newest wins
        reporter.report({"step": step, "tokens": step})
    time.sleep(0.2)
    assert len(status_server.requests) == 1
    reporter.report({"latestCheckpoint": {"step": 49, "path": "/c/step000049"}}, urgent=True)
    reporter.close()
    first, second = status_server.progress()
    assert first["step"] == 1
    assert second["step"] == 49 and second["latestCheckpoint"]["step"] == 49


def test_failures_are_logged_not_raised(status_server, caplog):
    status_server.fail_next = 1
    reporter = _reporter(status_server)
    reporter.report({"step": 1}, urgent=True)
    reporter.close()
    assert reporter.failed == 1 and "progress report" in caplog.text
    unreachable = ProgressReporter("a", "b", api_url="http://127.0.0.1:9", timeout=0.5)
    unreachable.report({"step": 1}, urgent=True)
    unreachable.close()
    assert unreachable.failed == 1


@pytest.mark.parametrize(
    ("base", "update", "merged"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"c": {"x": 1, "y": 2}}, {"c": {"y": 3}}, {"c": {"x": 1, "y": 3}}),
        ({"c": {"x": 1}}, {"c": 5}, {"c": 5}),
    ],
)
def test_deep_merge(base, update, merged):
    assert deep_merge(base, update) == merged
