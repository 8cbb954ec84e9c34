"""The worker's HTTP side: Prometheus metrics and a liveness check, on one small ``http.server``.

- ``GET /metrics``: the Prometheus text format of ``WorkerMetrics.registry`` (its own registry,
  not prometheus_client's global one, so that several workers can live in one test process);
- ``GET /healthz``: ``200 ok`` while the watch loop thread is alive and not stuck, else ``503``
  with the reason. "Stuck" means one piece of work (a scan, or one checkpoint's evaluation) has
  gone on for longer than ``stuck_after`` seconds; waiting for new checkpoints is never stuck.

Metric names (namespace ``olmo_eval``):

- ``olmo_eval_checkpoints_evaluated_total`` counter (``recovered`` commits included);
- ``olmo_eval_checkpoints_failed_total`` counter (failed attempts);
- ``olmo_eval_checkpoints_vanished_total`` counter (deleted before their evaluation finished);
- ``olmo_eval_pending_checkpoints`` gauge (what the latest scan found to do);
- ``olmo_eval_current_step`` gauge (step being evaluated, -1 when none);
- ``olmo_eval_last_evaluated_step`` gauge (the highest step evaluated, restored from
  ``metrics.jsonl`` at start so a restart does not reset it);
- ``olmo_eval_last_eval_seconds`` gauge (duration of the latest evaluation);
- ``olmo_eval_headline{task}`` gauge (headline accuracy of the highest step evaluated);
- ``olmo_eval_perplexity{source}`` / ``olmo_eval_bits_per_byte{source}`` gauges (same step).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from olmo_evalworker import records
from olmo_evalworker.outcomes import Evaluated, Failed, Sink
from olmo_evalworker.watcher import WorkerState

__all__ = ["HealthCheck", "MetricsServer", "WorkerMetrics"]

log = logging.getLogger("olmo_evalworker")

NAMESPACE = "olmo_eval"


class WorkerMetrics(Sink):
    """Prometheus metrics fed by the watcher's events."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        kw = {"namespace": NAMESPACE, "registry": self.registry}
        self.evaluated_total = Counter(
            "checkpoints_evaluated", "Checkpoints whose evaluation was committed", **kw
        )
        self.failed_total = Counter("checkpoints_failed", "Failed evaluation attempts", **kw)
        self.vanished_total = Counter(
            "checkpoints_vanished", "Checkpoints deleted before their evaluation finished", **kw
        )
        self.pending_gauge = Gauge("pending_checkpoints", "Checkpoints left to evaluate", **kw)
        self.current_step = Gauge("current_step", "Step being evaluated (-1: none)", **kw)
        self.last_step = Gauge("last_evaluated_step", "Highest step evaluated", **kw)
        self.last_seconds = Gauge("last_eval_seconds", "Duration of the latest evaluation", **kw)
        self.headline = Gauge(
            "headline", "Headline accuracy at the highest step evaluated", ["task"], **kw
        )
        self.perplexity = Gauge(
            "perplexity", "Perplexity at the highest step evaluated", ["source"], **kw
        )
        self.bits_per_byte = Gauge(
            "bits_per_byte", "Bits per byte at the highest step evaluated", ["source"], **kw
        )
        self.current_step.set(-1)
        self.last_step.set(-1)
        self._highest = -1
        self._pending = 0

    def restore(self, run_dir: str | Path) -> None:
        """Gauges of the highest step already in ``RUN_DIR/eval/metrics.jsonl``."""
        lines = [m for m in records.read_metrics(run_dir) if isinstance(m.get("step"), int)]
        if lines:
            newest = max(lines, key=lambda m: m["step"])
            self._show(newest["step"], newest)

    def _show(self, step: int, flat: dict) -> None:
        if step < self._highest:
            return  # a retried older checkpoint does not move the gauges back
        self._highest = step
        self.last_step.set(step)
        for key, value in flat.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "eval" and parts[2] == "headline":
                self.headline.labels(task=parts[1]).set(value)
            elif len(parts) == 4 and parts[:2] == ["eval", "ppl"]:
                gauge = {"perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte}
                if parts[3] in gauge:
                    gauge[parts[3]].labels(source=parts[2]).set(value)

    def pending(self, count: int) -> None:
        self._pending = count
        self.pending_gauge.set(count)

    def _done_one(self) -> None:
        self._pending = max(0, self._pending - 1)
        self.pending_gauge.set(self._pending)

    def started(self, step: int) -> None:
        self.current_step.set(step)

    def evaluated(self, event: Evaluated) -> None:
        self.evaluated_total.inc()
        self.last_seconds.set(event.seconds)
        self._done_one()
        self._show(event.step, records.flat_metrics(event.results))

    def failed(self, event: Failed) -> None:
        self.failed_total.inc()
        self._done_one()

    def vanished(self, step: int) -> None:
        self.vanished_total.inc()
        self._done_one()

    def idle(self) -> None:
        self.current_step.set(-1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HealthCheck:
    """``(healthy, reason)`` from the loop thread's liveness and the watcher's state."""

    def __init__(
        self,
        state: WorkerState,
        loop_alive: Callable[[], bool],
        stuck_after: float | None,
    ):
        self.state = state
        self.loop_alive = loop_alive
        self.stuck_after = stuck_after

    def __call__(self) -> tuple[bool, str]:
        if not self.loop_alive():
            return False, "the watch loop is not running"
        phase, step, seconds = self.state.snapshot()
        busy = phase in ("scanning", "evaluating")
        if busy and self.stuck_after and seconds > self.stuck_after:
            what = f"evaluating step {step}" if phase == "evaluating" else phase
            return False, f"stuck: {what} for {seconds:.0f}s (limit {self.stuck_after:.0f}s)"
        return True, "ok"


class MetricsServer:
    """``/healthz`` and ``/metrics`` on a background thread; ``port=0`` picks a free port."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        health: Callable[[], tuple[bool, str]],
        *,
        host: str = "0.0.0.0",
        port: int = 8080,
    ):
        handler = _handler(metrics, health)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="olmo-eval-http",
            daemon=True,
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(
    metrics: WorkerMetrics, health: Callable[[], tuple[bool, str]]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "olmo-evalworker"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok, reason = health()
                status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(status, "text/plain; charset=utf-8", (reason + "\n").encode())
            elif path == "/metrics":
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, metrics.exposition())
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found: /healthz, /metrics\n")

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http: " + format, *args)

    return Handler
