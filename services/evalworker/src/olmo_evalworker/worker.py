"""``olmo-eval watch`` wired up: everything between the parsed arguments and the ``Watcher``.

The CLI turns its arguments into ``WatchSettings`` and an evaluator and calls ``watch``, which
builds the sinks (Prometheus, the OLMoJob status, W&B), runs the ``Watcher`` on its own thread
so that the main thread can serve signals, serves ``/healthz`` and ``/metrics``, and on
SIGTERM/SIGINT stops between checkpoints: an evaluation in progress gets ``grace_seconds`` to
finish, after which it is abandoned (the process waits for a commit under way, then exits 0
with nothing written for that checkpoint; the next worker evaluates it from scratch).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo_evalworker import records
from olmo_evalworker.outcomes import Sink
from olmo_evalworker.watcher import Evaluator, Watcher, WorkerLockBusy

__all__ = ["PROG", "HttpSettings", "UsageError", "WandbSettings", "WatchSettings", "watch"]

PROG = "olmo-eval"

log = logging.getLogger("olmo_evalworker")


class UsageError(Exception):
    """Bad arguments or input; the CLI reports it on stderr with exit code 2."""


@dataclass(frozen=True)
class HttpSettings:
    """Where ``/healthz`` and ``/metrics`` are served (``port=0`` picks a free port)."""

    host: str = "0.0.0.0"
    port: int = 8080
    stuck_after: float | None = 6 * 3600.0
    """``/healthz`` fails when one scan or one evaluation runs longer (None: never)."""


@dataclass(frozen=True)
class WandbSettings:
    """One resumable W&B eval run per run dir (``olmo_evalworker.wandb_sink``)."""

    project: str
    mode: str
    entity: str | None = None
    name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WatchSettings:
    """How ``watch`` runs; the CLI's ``watch`` options, validated."""

    run_dir: Path | str
    """A local folder or the URI of one on an object store."""
    poll_seconds: float = 30.0
    once: bool = False
    until_step: int | None = None
    max_attempts: int = 2
    retry_delay: float = 60.0
    grace_seconds: float = 10.0
    verify: bool = True
    http: HttpSettings | None = HttpSettings()
    wandb: WandbSettings | None = None
    cache_dir: Path | None = None
    """For a run dir on a store: where checkpoints are downloaded (``records.cache_dir``)."""


def watch(settings: WatchSettings, evaluate: Evaluator) -> int:
    """Evaluate every new checkpoint of ``settings.run_dir`` until stopped (``once``,
    ``until_step``, SIGTERM/SIGINT); returns the exit code (``Watcher.watch``'s, or 1 when the
    loop died). Raises ``UsageError`` when the HTTP port cannot be bound."""
    from olmo.eval import EvalDataMissing, TokenizerNotFound
    from olmo_evalworker.server import HealthCheck, MetricsServer, WorkerMetrics

    metrics = WorkerMetrics()
    metrics.restore(settings.run_dir)
    watcher = Watcher(
        settings.run_dir,
        evaluate,
        max_attempts=settings.max_attempts,
        retry_delay=settings.retry_delay,
        verify=settings.verify,
        sinks=[metrics, *_reporting_sinks(settings)],
        fatal=(EvalDataMissing, TokenizerNotFound, ImportError),
        cache_dir=settings.cache_dir,
    )
    stop = threading.Event()
    loop = _Loop(
        watcher,
        stop,
        poll_seconds=settings.poll_seconds,
        once=settings.once,
        until_step=settings.until_step,
    )
    server = None
    # From here on SIGTERM/SIGINT set ``stop`` (a loop started after that ends at once).
    previous = _install_signal_handlers(stop)
    try:
        if (http := settings.http) is not None:
            health = HealthCheck(watcher.state, loop.is_alive, http.stuck_after)
            try:
                server = MetricsServer(metrics, health, host=http.host, port=http.port)
            except OSError as e:
                raise UsageError(f"cannot serve on {http.host}:{http.port}: {e}") from None
            print(
                f"{PROG}: serving /healthz and /metrics on http://{http.host}:{server.port}",
                flush=True,
            )
        loop.start()
        while loop.is_alive() and not stop.is_set():
            loop.join(0.2)
        if loop.is_alive():  # stopped by a signal
            _, step, _ = watcher.state.snapshot()
            if step is not None:
                log.info(
                    "stopping: giving step %d up to %.0fs to finish", step, settings.grace_seconds
                )
            loop.join(settings.grace_seconds)
        if loop.is_alive():
            _abandon(watcher, server)  # does not return
        return loop.exit_code()
    finally:
        _restore_signal_handlers(previous)
        watcher.close()
        if server is not None:
            server.close()


def _reporting_sinks(settings: WatchSettings) -> list[Sink]:
    """The OLMoJob's status (when the operator started us) and W&B (when configured)."""
    from olmo_evalworker.status_sink import StatusSink

    sinks: list[Sink] = []
    status = StatusSink.from_env()
    if status is not None:
        sinks.append(status)
    if (wb := settings.wandb) is not None:
        from olmo_evalworker.wandb_sink import WandbSink

        sinks.append(
            WandbSink(
                settings.run_dir,
                files_dir=records.local_dir(settings.run_dir, settings.cache_dir),
                project=wb.project,
                entity=wb.entity,
                mode=wb.mode,
                name=wb.name,
                config=wb.config,
            )
        )
    return sinks


class _Loop(threading.Thread):
    """The watch loop on its own thread, so the main thread can serve signals."""

    def __init__(self, watcher: Watcher, stop: threading.Event, **kwargs: Any):
        super().__init__(name="olmo-eval-watch", daemon=True)
        self.watcher, self.stop, self.kwargs = watcher, stop, kwargs
        self.code: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.code = self.watcher.watch(self.stop, **self.kwargs)
        except BaseException as e:
            self.error = e

    def exit_code(self) -> int:
        """The finished loop's exit code; an error that ended it is reported here."""
        error = self.error
        if isinstance(error, WorkerLockBusy):
            print(f"{PROG}: {error}", file=sys.stderr)
        elif error is not None:
            log.error("the watch loop stopped: %s: %s", type(error).__name__, error, exc_info=error)
        return 1 if error is not None else (self.code or 0)


def _abandon(watcher: Watcher, server: Any) -> None:
    """Exit now, mid-evaluation: wait for any commit in progress, so that a checkpoint ends up
    either fully committed or with nothing written, then exit 0 without running the rest of
    the evaluation."""
    acquired = watcher.commit_lock.acquire(timeout=60)
    _, step, _ = watcher.state.snapshot()
    if step is not None:
        log.info("abandoned the evaluation of step %d: nothing written; it will be redone", step)
    try:
        watcher.close()
        if server is not None:
            server.close()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if acquired else 1)


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
