"""Progress reports to the OLMoJob's progress ConfigMap (olmo/progress.py): what is sent, that
reporting never blocks or breaks the caller, and that a rotated ServiceAccount token is picked
up."""

from __future__ import annotations

import json
import os
import time

import pytest

from olmo.progress import ProgressReporter, deep_merge
from tests.conftest import StatusServer


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


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_not_started_by_the_operator_means_no_reporter():
    assert ProgressReporter.from_env({}) is None
    assert ProgressReporter.from_env({"OLMOJOB_NAME": "x", "OLMOJOB_NAMESPACE": "y"}) is None


def test_patch_goes_to_the_progress_config_map_as_a_merge_patch(status_server):
    """The pods write their own data key of ``<job>-progress``, never the OLMoJob."""
    reporter = _reporter(status_server)
    reporter.report({"step": 10, "tokens": 40960})
    reporter.close()
    (request,) = status_server.requests
    assert request["path"] == "/api/v1/namespaces/research/configmaps/tiny-progress"
    assert request["content_type"] == "application/merge-patch+json"
    assert list(request["body"]) == ["data"] and list(request["body"]["data"]) == ["trainer"]
    progress = json.loads(request["body"]["data"]["trainer"])
    assert progress["step"] == 10 and progress["tokens"] == 40960 and progress["attempt"] == 3
    assert progress["updated"].endswith("Z")


def test_each_document_carries_the_whole_state(status_server):
    """A merge patch replaces the data key's string: every document is the writer's full state
    (an earlier checkpoint report is not lost when a step report follows)."""
    reporter = _reporter(status_server)
    reporter.report({"latestCheckpoint": {"step": 5, "path": "/c/step5"}}, urgent=True)
    _wait_for(lambda: len(status_server.requests) == 1)
    reporter.report({"step": 6}, urgent=True)
    reporter.close()
    first, second = status_server.progress()
    assert second["step"] == 6 and second["latestCheckpoint"] == first["latestCheckpoint"]


def test_the_eval_worker_writes_its_own_key(status_server):
    reporter = ProgressReporter.from_env(
        {"OLMOJOB_NAME": "tiny", "OLMOJOB_NAMESPACE": "ns", "OLMO_K8S_API_URL": status_server.url},
        source="eval",
    )
    reporter.report({"lastEval": {"step": 1}}, urgent=True)
    reporter.close()
    (request,) = status_server.requests
    assert list(request["body"]["data"]) == ["eval"]
    with pytest.raises(ValueError, match="source"):
        ProgressReporter("a", "b", api_url=status_server.url, source="restarts")


def test_a_document_that_is_not_json_is_dropped_not_raised(status_server, caplog):
    reporter = _reporter(status_server)
    reporter.report({"lastEval": {"headline": {"piqa": float("nan")}}}, urgent=True)
    reporter.close()
    assert status_server.requests == [] and reporter.failed == 1
    assert "not JSON-ready" in caplog.text


def test_step_updates_are_coalesced_checkpoints_go_out_at_once(status_server):
    reporter = _reporter(status_server, interval=60)
    reporter.report({"step": 1, "tokens": 1}, urgent=True)
    _wait_for(lambda: len(status_server.requests) == 1)
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


# --------------------------------------------------------------------------------------------
# The projected ServiceAccount token is rotated by the kubelet


@pytest.fixture
def token_server():
    server = StatusServer(valid="token-A")
    yield server
    server.close()


def test_a_rotated_token_file_is_read_again(tmp_path, token_server):
    """The kubelet swaps the token file: the next report uses the new token (before: the file
    was read once at start-up and every report after the rotation was refused)."""
    token_file = tmp_path / "token"
    token_file.write_text("token-A\n")
    reporter = ProgressReporter("tiny", "ns", api_url=token_server.url, token_file=token_file)
    reporter.report({"step": 1}, urgent=True)
    _wait_for(lambda: reporter.sent == 1)
    rotated = tmp_path / "token.new"
    rotated.write_text("token-B\n")
    os.replace(rotated, token_file)  # what the kubelet's atomic writer amounts to
    token_server.valid = "token-B"
    reporter.report({"step": 2}, urgent=True)
    _wait_for(lambda: reporter.sent == 2 or reporter.failed > 0)
    reporter.close()
    assert (reporter.sent, reporter.failed) == (2, 0)
    assert [code for _, code in token_server.seen] == [200, 200]
    assert token_server.seen[-1][0] == "Bearer token-B"


def test_a_401_re_reads_the_token_and_retries_once(tmp_path, token_server):
    """A change the file's stat does not show (same inode, size and mtime): the 401 makes the
    reporter read the file again and retry once."""
    token_file = tmp_path / "token"
    token_file.write_text("token-A")
    reporter = ProgressReporter("tiny", "ns", api_url=token_server.url, token_file=token_file)
    reporter.report({"step": 1}, urgent=True)
    _wait_for(lambda: reporter.sent == 1)
    stat = token_file.stat()
    with open(token_file, "r+") as f:  # rewritten in place, stamp restored
        f.write("token-B")
    os.utime(token_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    token_server.valid = "token-B"
    reporter.report({"step": 2}, urgent=True)
    _wait_for(lambda: reporter.sent == 2 or reporter.failed > 0)
    reporter.close()
    assert (reporter.sent, reporter.failed) == (2, 0)
    assert [code for _, code in token_server.seen] == [200, 401, 200]
    # A token that stays refused is retried once, not forever.
    token_server.valid = "token-C"
    again = ProgressReporter("tiny", "ns", api_url=token_server.url, token_file=token_file)
    again.report({"step": 3}, urgent=True)
    again.close()
    assert (again.sent, again.failed) == (0, 1)
    assert [code for _, code in token_server.seen[3:]] == [401]
