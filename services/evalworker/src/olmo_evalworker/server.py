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
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
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


class _BoundedHTTPServer(HTTPServer):
    """An ``HTTPServer`` that no client can make hold unbounded threads or connections.

    One loop thread accepts connections and keeps them in a waiting room (a selector, no thread
    each) until their first bytes arrive, then hands them to a fixed pool of ``workers`` daemon
    threads. A connection that sends nothing for ``timeout`` seconds is closed by the loop; one
    that stops mid-request is closed by its worker when a read waits ``timeout`` seconds (the
    handler's socket timeout). Beyond ``max_connections`` waiting or queued connections, new ones
    are closed at once.
    """

    request_queue_size = 128  # the listen backlog (socketserver's default of 5 drops bursts)

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        timeout: float,
        workers: int,
        max_connections: int,
    ):
        if timeout <= 0 or workers < 1 or max_connections < 1:
            raise ValueError("timeout, workers and max_connections must be positive")
        super().__init__(address, handler)
        self.conn_timeout = timeout
        self.max_connections = max_connections
        self._stop = threading.Event()
        self._ready: queue.Queue = queue.Queue()  # readable connections, or None to stop a worker
        self._workers = [
            threading.Thread(target=self._work, name=f"olmo-eval-http-{i}", daemon=True)
            for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def serve(self) -> None:
        """Accept, wait for first bytes, dispatch; until ``stop``."""
        waiting: dict[socket.socket, tuple[object, float]] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self.socket, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    for key, _ in sel.select(0.1):
                        if key.fileobj is self.socket:
                            self._accept(sel, waiting)
                        else:
                            conn = key.fileobj
                            sel.unregister(conn)
                            addr, _ = waiting.pop(conn)
                            self._ready.put((conn, addr))
                    now = time.monotonic()
                    for conn, (_, deadline) in list(waiting.items()):
                        if now >= deadline:  # idle: connected but sent nothing
                            sel.unregister(conn)
                            del waiting[conn]
                            self.shutdown_request(conn)
            finally:
                for conn in waiting:
                    self.shutdown_request(conn)

    def _accept(self, sel: selectors.BaseSelector, waiting: dict) -> None:
        try:
            conn, addr = self.socket.accept()
        except OSError:
            return
        if len(waiting) + self._ready.qsize() >= self.max_connections:
            log.debug("http: refusing %s: %d connections open", addr, self.max_connections)
            self.shutdown_request(conn)
            return
        waiting[conn] = (addr, time.monotonic() + self.conn_timeout)
        sel.register(conn, selectors.EVENT_READ)

    def _work(self) -> None:
        while (item := self._ready.get()) is not None:
            conn, addr = item
            if self._stop.is_set():
                self.shutdown_request(conn)
                continue
            try:
                self.finish_request(conn, addr)
            except Exception:
                self.handle_error(conn, addr)
            finally:
                self.shutdown_request(conn)

    def stop_accepting(self) -> None:
        """Make ``serve`` return within its 0.1 s poll; queued connections are then dropped."""
        self._stop.set()

    def stop(self, wait: float) -> None:
        """Stop accepting and dispatching; wait up to ``wait`` seconds for workers to finish."""
        self._stop.set()
        for _ in self._workers:
            self._ready.put(None)
        deadline = time.monotonic() + wait
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("http: error serving %s", client_address, exc_info=True)


class MetricsServer:
    """``/healthz`` and ``/metrics`` on a background thread; ``port=0`` picks a free port.

    No client can make it hold more than ``workers`` handler threads: connections wait, without a
    thread, for their first bytes; a connection idle or stalled mid-request for ``timeout``
    seconds is closed; beyond ``max_connections`` open at once, new ones are closed at once.
    """

    def __init__(
        self,
        metrics: WorkerMetrics,
        health: Callable[[], tuple[bool, str]],
        *,
        host: str = "0.0.0.0",
        port: int = 8080,
        timeout: float = 5.0,
        workers: int = 4,
        max_connections: int = 256,
    ):
        handler = _handler(metrics, health, timeout)
        self.httpd = _BoundedHTTPServer(
            (host, port),
            handler,
            timeout=timeout,
            workers=workers,
            max_connections=max_connections,
        )
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve, name="olmo-eval-http", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.stop_accepting()
        self.thread.join()  # the loop closes the connections still waiting for bytes
        self.httpd.stop(wait=1.0)
        self.httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(
    metrics: WorkerMetrics, health: Callable[[], tuple[bool, str]], read_timeout: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "olmo-evalworker"
        timeout = read_timeout  # the socket timeout of each read and write

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
