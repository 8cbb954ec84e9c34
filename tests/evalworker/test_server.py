"""/healthz and Prometheus /metrics over real HTTP, fed by a real watcher pass."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from olmo.eval import CheckpointError
from olmo_evalworker.server import HealthCheck, MetricsServer, WorkerMetrics
from olmo_evalworker.watcher import Watcher, WorkerState

from .conftest import RecordingEvaluator, make_checkpoint


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_over_http_after_a_pass(run_dir):
    def broken(path):
        raise CheckpointError("corrupt")

    for step in (10, 20, 30):
        make_checkpoint(run_dir, step)
    metrics = WorkerMetrics()
    Watcher(run_dir, RecordingEvaluator({20: broken}), sinks=[metrics]).run_pass()

    with MetricsServer(metrics, lambda: (True, "ok"), host="127.0.0.1", port=0) as server:
        assert server.port > 0
        status, text = get(server.port, "/metrics")
    assert status == 200
    got = samples(text)
    assert got[("olmo_eval_checkpoints_evaluated_total", ())] == 2
    assert got[("olmo_eval_checkpoints_failed_total", ())] == 1
    assert got[("olmo_eval_checkpoints_vanished_total", ())] == 0
    assert got[("olmo_eval_last_evaluated_step", ())] == 30
    assert got[("olmo_eval_pending_checkpoints", ())] == 0
    assert got[("olmo_eval_current_step", ())] == -1
    assert got[("olmo_eval_last_eval_seconds", ())] >= 0
    assert got[("olmo_eval_headline", (("task", "copa"),))] == pytest.approx(0.30)
    assert got[("olmo_eval_headline", (("task", "piqa"),))] == pytest.approx(0.31)


def test_gauges_are_restored_from_metrics_jsonl_and_never_move_back(run_dir):
    for step in (10, 20):
        make_checkpoint(run_dir, step)
    Watcher(run_dir, RecordingEvaluator()).run_pass()

    restarted = WorkerMetrics()
    restarted.restore(run_dir)
    got = samples(restarted.exposition().decode())
    assert got[("olmo_eval_last_evaluated_step", ())] == 20
    assert got[("olmo_eval_headline", (("task", "copa"),))] == pytest.approx(0.20)
    assert got[("olmo_eval_checkpoints_evaluated_total", ())] == 0  # counters start over

    make_checkpoint(run_dir, 5)  # e.g. a retried older checkpoint evaluated late
    Watcher(run_dir, RecordingEvaluator(), sinks=[restarted]).run_pass()
    got = samples(restarted.exposition().decode())
    assert got[("olmo_eval_checkpoints_evaluated_total", ())] == 1
    assert got[("olmo_eval_last_evaluated_step", ())] == 20
    assert got[("olmo_eval_headline", (("task", "copa"),))] == pytest.approx(0.20)


def test_perplexity_gauges():
    metrics = WorkerMetrics()
    metrics._show(7, {"eval/ppl/wiki/perplexity": 12.5, "eval/ppl/aggregate/bits_per_byte": 1.25})
    got = samples(metrics.exposition().decode())
    assert got[("olmo_eval_perplexity", (("source", "wiki"),))] == 12.5
    assert got[("olmo_eval_bits_per_byte", (("source", "aggregate"),))] == 1.25


def test_healthz_over_http():
    clock = [0.0]
    state = WorkerState(clock=lambda: clock[0])
    alive = [True]
    health = HealthCheck(state, lambda: alive[0], stuck_after=100)
    with MetricsServer(WorkerMetrics(), health, host="127.0.0.1", port=0) as server:
        assert get(server.port, "/healthz") == (200, "ok\n")

        state.set("idle")
        clock[0] = 10_000  # waiting for checkpoints for a long time is fine
        assert get(server.port, "/healthz")[0] == 200

        state.set("evaluating", 300)
        clock[0] += 99
        assert get(server.port, "/healthz")[0] == 200
        clock[0] += 2
        status, body = get(server.port, "/healthz")
        assert status == 503 and "stuck: evaluating step 300 for 101s" in body

        state.set("idle")
        alive[0] = False
        assert get(server.port, "/healthz") == (503, "the watch loop is not running\n")
        assert get(server.port, "/nope")[0] == 404


def test_stuck_detection_can_be_disabled():
    clock = [0.0]
    state = WorkerState(clock=lambda: clock[0])
    state.set("scanning")
    clock[0] = 1e9
    assert HealthCheck(state, lambda: True, stuck_after=None)() == (True, "ok")
    assert HealthCheck(state, lambda: True, stuck_after=60)()[0] is False


def test_idle_and_half_sent_connections_neither_hold_threads_nor_block_healthz():
    before = threading.active_count()
    with MetricsServer(
        WorkerMetrics(), lambda: (True, "ok"), host="127.0.0.1", port=0, timeout=1.0, workers=2
    ) as server:
        own = threading.active_count() - before  # the loop and the worker pool
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=3) for _ in range(100)]
        half = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        try:
            time.sleep(0.2)  # the old ThreadingHTTPServer had started one thread per connection
            assert threading.active_count() - before <= own
            start = time.monotonic()
            assert get(server.port, "/healthz") == (200, "ok\n")
            assert time.monotonic() - start < 0.5  # not waiting for the idle ones (1 s) to go
            # Both kinds are closed by the server after the timeout (recv sees EOF, not a hang).
            assert half.recv(1024) == b""
            assert all(conn.recv(1) == b"" for conn in idle)
            assert time.monotonic() - start < 2.5
        finally:
            for conn in [*idle, half]:
                conn.close()
        assert get(server.port, "/metrics")[0] == 200


def test_connections_beyond_the_limit_are_closed_at_once():
    with MetricsServer(
        WorkerMetrics(), lambda: (True, "ok"), host="127.0.0.1", port=0, max_connections=3
    ) as server:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=3) for _ in range(3)]
        try:
            time.sleep(0.2)
            extra = socket.create_connection(("127.0.0.1", server.port), timeout=3)
            with extra:
                assert extra.recv(1) == b""  # closed without waiting for the 5 s timeout
        finally:
            for conn in held:
                conn.close()
        time.sleep(0.2)
        assert get(server.port, "/healthz") == (200, "ok\n")
