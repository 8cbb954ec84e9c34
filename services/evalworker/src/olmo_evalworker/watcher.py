"""Which checkpoint to evaluate next, and what to write once it is done: the worker's semantics.

``Watcher`` scans ``RUN_DIR/checkpoints`` and evaluates every COMPLETE checkpoint that has no
``EVALUATED`` marker, oldest step first, with the evaluator it is given (any callable
``path → results dict``; the CLI passes ``olmo.eval.evaluate_checkpoint`` with its options
bound, tests pass cheap fakes). Per checkpoint:

1. the checkpoint is verified against its ``COMPLETE`` sha256s (unless ``verify=False``), then
   evaluated;
2. success: ``RUN_DIR/eval/stepNNNNNN.json`` is written atomically, a line is appended to
   ``metrics.jsonl``, the sinks (Prometheus, W&B) are told, and only then the ``EVALUATED``
   marker is written (``layout.mark_evaluated``). The marker is the commit point: a checkpoint
   with it is never evaluated again, by this worker or a restarted one;
3. a crash after the results file but before the marker: the next pass finds results whose
   ``evalworker.complete_sha256`` matches the checkpoint and completes the remaining steps
   (metrics line, sinks, marker) without evaluating again. Results of another checkpoint that
   had the same step are ignored and overwritten;
4. failure (any exception, or a sha256 mismatch): ``RUN_DIR/eval/stepNNNNNN.failed.json``
   records the error and the attempt count, and the pass goes on with the next checkpoint. A
   failed checkpoint is retried in a later pass, no sooner than ``retry_delay`` seconds after
   its last failure, until it has had ``max_attempts`` attempts; after that it is left alone
   (delete the record to try again). A success removes the record;
5. a checkpoint that disappears (checkpoint rotation) before or during its evaluation is
   skipped, with no failure record; one that disappears after its evaluation keeps its results.

Exceptions of the types in ``fatal`` (``olmo_evalworker.worker`` passes: missing eval data, no
tokenizer, import errors) are not held against a checkpoint: they would fail every checkpoint
alike, so they stop the watcher instead. The ``stop`` event is checked between checkpoints; an
evaluation in progress is never interrupted here (the worker abandons it on SIGTERM, holding
``commit_lock`` so that it never exits half-way through step 2).

``process`` returns the checkpoint's typed outcome (``olmo_evalworker.outcomes``), which the
sinks also hear about. Torch-free: the evaluator brings torch in.

A run directory on an object store (``s3://…``, ``gs://…``) is watched the same way (the layout
functions dispatch to ``olmo.checkpoints.objectstore``; where the files go: ``records``). Each
checkpoint is downloaded into the local cache folder first, every file sha256-checked (the
verification, whatever ``verify`` says); the evaluator gets that copy, deleted when the attempt
ends. A checkpoint deleted from the store during its download has vanished, as on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from olmo.checkpoints import layout
from olmo.checkpoints.folders import remove_tree
from olmo.json_records import now_iso
from olmo.storage import Location
from olmo_evalworker import records
from olmo_evalworker.outcomes import (
    Evaluated,
    Failed,
    Outcome,
    PassReport,
    Sink,
    Skipped,
    Vanished,
)

__all__ = [
    "CheckpointVerificationError",
    "Evaluator",
    "Watcher",
    "WorkerLockBusy",
    "WorkerState",
]

log = logging.getLogger("olmo_evalworker")

Evaluator = Callable[[Path], Mapping[str, Any]]
"""Takes a local checkpoint folder (a downloaded copy when the run dir is on a store)."""


class CheckpointVerificationError(Exception):
    """A checkpoint's files do not match the sha256s in its ``COMPLETE`` marker."""


class WorkerLockBusy(RuntimeError):
    """Another worker holds ``RUN_DIR/eval/worker.lock``."""


class WorkerState:
    """What the loop is doing now, read by ``/healthz`` from another thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.phase = "starting"
        self.step: int | None = None
        self.since = clock()

    def set(self, phase: str, step: int | None = None) -> None:
        with self._lock:
            self.phase, self.step, self.since = phase, step, self._clock()

    def snapshot(self) -> tuple[str, int | None, float]:
        """(phase, step being evaluated or None, seconds in this phase)."""
        with self._lock:
            return self.phase, self.step, self._clock() - self.since


class Watcher:
    """Evaluates each COMPLETE checkpoint of ``run_dir`` exactly once (see the module doc)."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | Location,
        evaluate: Evaluator,
        *,
        max_attempts: int = 2,
        retry_delay: float = 60.0,
        verify: bool = True,
        sinks: Sequence[Sink] = (),
        fatal: tuple[type[BaseException], ...] = (),
        clock: Callable[[], float] = time.time,
        cache_dir: str | os.PathLike[str] | None = None,
    ):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if retry_delay < 0:
            raise ValueError(f"retry_delay must be >= 0, got {retry_delay}")
        self.run_dir = records.run_root(run_dir)
        self.remote = isinstance(self.run_dir, Location)
        self.local_dir = records.local_dir(self.run_dir, cache_dir)
        self.evaluate = evaluate
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.verify = verify
        self.sinks = list(sinks)
        self.fatal = fatal
        self.clock = clock
        self.state = WorkerState()
        self.commit_lock = threading.Lock()
        self.attempted: set[int] = set()
        """Steps this watcher attempted (to tell, at exit, which of them are still failed)."""

    # ----------------------------------------------------------------------------------------
    # Planning

    def failure(self, step: int, identity: str | None) -> dict[str, Any] | None:
        """The failure record of ``step`` if it is about the checkpoint with ``identity``."""
        record = records.read_json(records.failure_path(self.run_dir, step))
        if record is None or record.get("complete_sha256") != identity:
            return None
        return record

    def plan(self) -> list[layout.CheckpointInfo]:
        """The checkpoints the next pass evaluates, oldest first: complete, not evaluated, and
        not failed, or failed with attempts left and the retry delay over."""
        now = self.clock()
        pending = []
        for info in layout.list_checkpoints(self.run_dir):
            if not info.complete or info.evaluated:
                continue
            record = self.failure(info.step, records.complete_sha256(info.path))
            if record is not None:
                attempts = int(record.get("attempts", 0))
                last = float(record.get("last_failure_unix", 0.0))
                if attempts >= self.max_attempts or now - last < self.retry_delay:
                    continue
            pending.append(info)
        return pending

    def still_failed(self) -> list[int]:
        """Steps attempted by this watcher that are not evaluated and have a failure record."""
        out = []
        for step in sorted(self.attempted):
            path = records.checkpoint_path(self.run_dir, step)
            if layout.is_evaluated(path) or not path.exists():
                continue
            if self.failure(step, records.complete_sha256(path)) is not None:
                out.append(step)
        return out

    # ----------------------------------------------------------------------------------------
    # One pass, one checkpoint

    def run_pass(self, stop: threading.Event | None = None) -> PassReport:
        """Scan once and process every pending checkpoint, oldest first."""
        report = PassReport()
        if not self.remote:
            Path(records.eval_dir(self.run_dir)).mkdir(exist_ok=True)
        self.state.set("scanning")
        pending = self.plan()
        self._tell(lambda sink: sink.pending(len(pending)))
        for info in pending:
            if stop is not None and stop.is_set():
                report.stopped = True
                break
            report.add(info.step, self.process(info.path))
        self.state.set("idle")
        self._tell(lambda sink: sink.idle())
        return report

    def process(self, checkpoint: str | os.PathLike[str] | Location) -> Outcome:
        """Evaluate one checkpoint folder; returns what became of it: ``Evaluated`` (also when
        recovered), ``Failed``, ``Vanished`` or ``Skipped``."""
        path = records.run_root(checkpoint)
        step = layout.parse_step(path.name)
        if step is None:
            return Skipped(None, path, "not a checkpoint folder")
        if not layout.is_complete(path):
            if path.exists():
                return Skipped(step, path, "not complete")
            log.info("%s: deleted before its evaluation; skipped", path.name)
            return self._vanished(step, path)
        if layout.is_evaluated(path):
            return Skipped(step, path, "already evaluated")
        identity = records.complete_sha256(path)
        results_path = records.results_path(self.run_dir, step)
        previous = records.read_json(results_path)
        if previous is not None and _worker_block(previous).get("complete_sha256") == identity:
            log.info("%s: results already written by an earlier worker; completing", path.name)
            seconds = float(_worker_block(previous).get("seconds", 0.0))
            return self._commit(path, step, previous, results_path, seconds, recovered=True)

        self.attempted.add(step)
        earlier = self.failure(step, identity)
        attempt = int(earlier.get("attempts", 0)) + 1 if earlier else 1
        log.info("%s: evaluating (attempt %d of %d)", path.name, attempt, self.max_attempts)
        self.state.set("evaluating", step)
        self._tell(lambda sink: sink.started(step))
        started = time.monotonic()
        local = path
        try:
            if isinstance(path, Location):  # a local copy; ValueError: incomplete or corrupt
                try:
                    local = records.download_checkpoint(path, self.local_dir)
                except ValueError as e:
                    raise CheckpointVerificationError(str(e)) from None
            elif self.verify and (problem := records.verification_problem(path)):
                raise CheckpointVerificationError(problem)
            results = self.evaluate(local)
            if not isinstance(results, Mapping):
                raise TypeError(f"the evaluator returned {type(results).__name__}, not a dict")
            results = self._stamp(dict(results), path, local, step, identity, attempt, started)
            json.dumps(results)  # not JSON-ready: a failure of this attempt, not a crash later
        except Exception as error:
            if not path.exists() or not layout.is_complete(path):
                log.info("%s: deleted during its evaluation; skipped", path.name)
                return self._vanished(step, path)
            if isinstance(error, self.fatal):
                raise
            record = self._record_failure(path, step, identity, attempt, earlier, error, started)
            failed = Failed(step, path, record)
            self._tell(lambda sink: sink.failed(failed))
            log.warning(
                "%s: attempt %d failed: %s: %s%s",
                path.name,
                attempt,
                type(error).__name__,
                error,
                "" if failed.final else " (will retry)",
            )
            return failed
        finally:
            if local is not path:  # the cache keeps only the checkpoint being evaluated
                remove_tree(local)
        return self._commit(path, step, results, results_path, results["evalworker"]["seconds"])

    def _vanished(self, step: int, path: Path | Location) -> Vanished:
        self._tell(lambda sink: sink.vanished(step))
        return Vanished(step, path)

    def _stamp(
        self,
        results: dict[str, Any],
        path: Path | Location,
        local: Path | Location,
        step: int,
        identity: str | None,
        attempt: int,
        started: float,
    ) -> dict[str, Any]:
        """Step and tokens from the checkpoint layout (the contract wins over what the evaluator
        says), the decontamination set(s) of the training data (``decontamination``, see
        ``records.training_decontamination``), plus the worker's block: identity, timing,
        attempts."""
        marker = layout.read_complete(path) or {}
        results["step"] = step
        if results.get("tokens") is None:
            results["tokens"] = marker.get("tokens")
        if local is path:
            results.setdefault("checkpoint", str(path))
        else:  # not the local copy, which is gone by now
            results["checkpoint"] = str(path)
        decontamination = records.training_decontamination(local)
        if decontamination is not None:
            results["decontamination"] = decontamination
        results["evalworker"] = {
            "complete_sha256": identity,
            "attempt": attempt,
            "seconds": round(time.monotonic() - started, 3),
            "finished_at": now_iso(),
            "host": socket.gethostname(),
        }
        return results

    def _commit(
        self,
        path: Path | Location,
        step: int,
        results: Mapping[str, Any],
        results_path: Path | Location,
        seconds: float,
        *,
        recovered: bool = False,
    ) -> Evaluated:
        """Results file → metrics line → sinks → ``EVALUATED``, under ``commit_lock``."""
        worker = _worker_block(results)
        with self.commit_lock:
            if not recovered:
                records.write_json(results_path, results)
            line = {
                "step": step,
                "tokens": results.get("tokens"),
                "checkpoint": path.name,
                "complete_sha256": worker.get("complete_sha256"),
                "seconds": seconds,
                "finished_at": worker.get("finished_at"),
                "decontamination": _set_names(results),
                **records.flat_metrics(results),
            }
            records.append_metrics_line(self.run_dir, line)
            event = Evaluated(
                step, results.get("tokens"), path, results, results_path, seconds, recovered
            )
            self._tell(lambda sink: sink.evaluated(event))
            info = {
                "results": f"{layout.EVAL_DIR}/{results_path.name}",
                "complete_sha256": worker.get("complete_sha256"),
                "headline": records.headlines(results),
                "seconds": seconds,
                "host": worker.get("host"),
            }
            try:
                layout.mark_evaluated(path, info)
            except FileNotFoundError:
                log.info("%s: deleted after its evaluation; results kept", path.name)
            records.remove(records.failure_path(self.run_dir, step))
        headline = ", ".join(f"{t} {v:.4f}" for t, v in records.headlines(results).items())
        log.info("%s: evaluated in %.1fs%s", path.name, seconds, f" ({headline})" * bool(headline))
        return event

    def _record_failure(
        self,
        path: Path | Location,
        step: int,
        identity: str | None,
        attempt: int,
        earlier: Mapping[str, Any] | None,
        error: BaseException,
        started: float,
    ) -> dict[str, Any]:
        now = self.clock()
        entry = {
            "attempt": attempt,
            "type": type(error).__name__,
            "message": str(error),
            "at": now_iso(),
            "seconds": round(time.monotonic() - started, 3),
        }
        final = attempt >= self.max_attempts
        record = {
            "step": step,
            "checkpoint": str(path),
            "complete_sha256": identity,
            "attempts": attempt,
            "max_attempts": self.max_attempts,
            "final": final,
            "reason": f"{entry['type']}: {entry['message']}",
            "last_failure_unix": now,
            "retry_not_before_unix": None if final else now + self.retry_delay,
            "errors": [*(earlier or {}).get("errors", []), entry],
        }
        records.write_json(records.failure_path(self.run_dir, step), record)
        return record

    def _tell(self, notify: Callable[[Sink], None]) -> None:
        """``notify(sink)`` for every sink; a sink that raises is logged and passed over."""
        for sink in self.sinks:
            try:
                notify(sink)
            except Exception:
                log.exception("sink %s failed", type(sink).__name__)

    # ----------------------------------------------------------------------------------------
    # The loop

    def watch(
        self,
        stop: threading.Event,
        *,
        poll_seconds: float = 30.0,
        once: bool = False,
        until_step: int | None = None,
    ) -> int:
        """Run passes until ``stop`` is set, after one pass with ``once``, or once a checkpoint
        at step ≥ ``until_step`` is evaluated (or has failed for good). Holds the run dir's
        worker lock throughout (``once`` gives up at once if another worker holds it; otherwise
        it waits). Returns an exit code: 1 when ``once``/``until_step`` end with a checkpoint
        attempted here still failed, else 0."""
        with self.run_lock(stop, wait=not once, poll_seconds=poll_seconds) as locked:
            if not locked:  # stopped while waiting for the lock
                return 0
            while not stop.is_set():
                report = self.run_pass(stop)
                if once:
                    break
                if until_step is not None and self._reached(until_step):
                    break
                if report.did_work:
                    continue  # new checkpoints may have arrived meanwhile: scan again now
                stop.wait(poll_seconds)
        self.state.set("stopped")
        if stop.is_set() and not once and until_step is None:
            return 0
        failed = self.still_failed()
        if failed:
            names = ", ".join(layout.step_dir_name(s) for s in failed)
            log.warning("still failed: %s (see RUN_DIR/eval/*%s)", names, records.FAILED_SUFFIX)
        return 1 if failed else 0

    def _reached(self, until_step: int) -> bool:
        for info in layout.list_checkpoints(self.run_dir):
            if info.step < until_step or not info.complete:
                continue
            if info.evaluated:
                log.info("%s is evaluated (--until-step %d): done", info.name, until_step)
                return True
            record = self.failure(info.step, records.complete_sha256(info.path))
            if record is not None and record.get("final"):
                log.error("%s failed for good (--until-step %d): done", info.name, until_step)
                return True
        return False

    @contextlib.contextmanager
    def run_lock(
        self, stop: threading.Event, *, wait: bool, poll_seconds: float = 30.0
    ) -> Iterator[bool]:
        """Hold ``RUN_DIR/eval/worker.lock`` (``flock``). Yields False if ``stop`` was set while
        waiting; raises ``WorkerLockBusy`` when busy and ``wait`` is False."""
        folder = self.local_dir
        folder.mkdir(parents=self.remote, exist_ok=True)
        path = folder / records.LOCK_FILE
        with open(path, "a+") as f:
            said = False
            while True:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    f.seek(0)
                    holder = f.read().strip() or "unknown"
                    if not wait:
                        raise WorkerLockBusy(
                            f"another eval worker ({holder}) holds {path}: one worker per run dir"
                        ) from None
                    if not said:
                        log.warning("another eval worker (%s) holds %s; waiting", holder, path)
                        said = True
                    self.state.set("waiting for the worker lock")
                    if stop.wait(min(poll_seconds, 5.0)):
                        yield False
                        return
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()} since {now_iso()}\n")
            f.flush()
            try:
                yield True
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        self._tell(lambda sink: sink.close())


def _set_names(results: Mapping[str, Any]) -> str | None:
    """The decontamination set name(s) of a result, comma-separated; None when unknown."""
    names = records.decontamination_names(results.get("decontamination"))
    return ",".join(names) or None


def _worker_block(results: Mapping[str, Any]) -> Mapping[str, Any]:
    block = results.get("evalworker")
    return block if isinstance(block, Mapping) else {}
