"""Prometheus metrics of the operator (served by ``olmo-operator run --metrics-port``).

Operator-wide:

- ``olmo_jobs{phase}``: OLMoJobs this operator sees, by phase;
- ``olmo_job_restarts_total{cause}``: attempts restarted, by cause (Preemption, Failure);
- ``olmo_job_attempts_total``: attempts started;
- ``olmo_reconcile_seconds``: time of one reconcile (histogram).

Per OLMoJob (labels ``namespace`` and ``job``; :data:`JOBS_METRICS`), mirrored from the job's
``status`` after every reconcile by :meth:`JobMetrics.update` and removed by
:meth:`JobMetrics.forget` when the job is deleted. A series whose status field is absent is not
exported (a job that has not trained yet has no ``olmo_job_mfu``), except the counts that are
zero until something happens (step, tokens, restarts by cause, phase):

- ``olmo_job_phase{phase}`` 1 for the current phase, 0 for the others;
- ``olmo_job_step``, ``olmo_job_tokens``; ``olmo_job_tokens_per_second{kind}`` (``nominal``: the
  trainer's recent steps, ``effective``: the goodput ledger's tokens over wall time);
- ``olmo_job_step_seconds``, ``olmo_job_mfu``, ``olmo_job_goodput_ratio``;
- ``olmo_job_state_seconds{state}`` (the ledger's wall seconds per state, the current state's
  time counted up to ``now``), ``olmo_job_lost_steps``, ``olmo_job_cost{pool}``;
- ``olmo_job_status_restarts{cause}`` with cause ``failures``, ``preemptions``, ``hangs``,
  ``preflightFailures`` (``status.restarts``; the name ``olmo_job_restarts`` is taken by the
  counter ``olmo_job_restarts_total``, whose exposition reserves it);
- ``olmo_job_checkpoint_step``, ``olmo_job_checkpoint_timestamp_seconds`` (age in PromQL:
  ``time() - olmo_job_checkpoint_timestamp_seconds``), ``olmo_job_checkpoint_interval_steps``,
  ``olmo_job_upload_seconds``, ``olmo_job_save_seconds``;
- ``olmo_job_eval_score{task}`` (headline accuracy of the newest evaluation), ``olmo_job_eval_step``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from olmo_operator import contract as c
from olmo_operator.failures import Cause
from olmo_operator.timefmt import parse_time

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS = Gauge("olmo_jobs", "OLMoJobs by phase", ["phase"], registry=REGISTRY)
RESTARTS = Counter(
    "olmo_job_restarts_total", "OLMoJob attempts restarted, by cause", ["cause"], registry=REGISTRY
)
ATTEMPTS = Counter("olmo_job_attempts_total", "OLMoJob attempts started", registry=REGISTRY)
RECONCILE_SECONDS = Histogram(
    "olmo_reconcile_seconds",
    "Duration of one OLMoJob reconcile",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)

for _phase in c.PHASES:
    JOBS.labels(phase=_phase).set(0)
for _cause in Cause:
    RESTARTS.labels(cause=_cause.value)


class PhaseTracker:
    """The phase of every OLMoJob seen, kept in the ``olmo_jobs`` gauge."""

    def __init__(self, gauge: Gauge = JOBS):
        self._gauge = gauge
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def set(self, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            if phase:
                self._phases[(namespace, name)] = phase
            else:
                self._phases.pop((namespace, name), None)
            self._publish()

    def forget(self, namespace: str, name: str) -> None:
        self.set(namespace, name, None)

    def _publish(self) -> None:
        counts = dict.fromkeys(c.PHASES, 0)
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, n in counts.items():
            self._gauge.labels(phase=phase).set(n)


PHASES = PhaseTracker()

# --------------------------------------------------------------------------------------------
# Per-job metrics

RESTART_CAUSES = ("failures", "preemptions", "hangs", "preflightFailures")
"""Keys of ``status.restarts``, the ``cause`` label of ``olmo_job_status_restarts``."""

_JOB_LABELS = ("namespace", "job")
_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (help, extra labels)
    "olmo_job_phase": ("1 for the OLMoJob's current phase, 0 for the others", ("phase",)),
    "olmo_job_step": ("Latest training step reported by the trainer", ()),
    "olmo_job_tokens": ("Tokens trained on so far", ()),
    "olmo_job_tokens_per_second": (
        "Tokens per second: nominal (recent steps) or effective (over the job's wall time)",
        ("kind",),
    ),
    "olmo_job_step_seconds": ("Mean wall seconds of one optimizer step (recent steps)", ()),
    "olmo_job_mfu": ("Model FLOPs utilisation reported by the trainer", ()),
    "olmo_job_goodput_ratio": ("Effective over nominal tokens per second (at most 1)", ()),
    "olmo_job_state_seconds": ("Wall seconds the OLMoJob spent in each state", ("state",)),
    "olmo_job_lost_steps": ("Steps redone after restarts, in total", ()),
    "olmo_job_cost": ("Cost of the node-hours held on each node pool", ("pool",)),
    "olmo_job_status_restarts": ("Restarts of the OLMoJob by cause (status.restarts)", ("cause",)),
    "olmo_job_checkpoint_step": ("Step of the newest complete checkpoint", ()),
    "olmo_job_checkpoint_timestamp_seconds": (
        "Unix time the newest complete checkpoint was saved",
        (),
    ),
    "olmo_job_checkpoint_interval_steps": ("Save interval of the current attempt, in steps", ()),
    "olmo_job_upload_seconds": ("Duration of the latest checkpoint upload", ()),
    "olmo_job_save_seconds": ("How long the latest save stopped training", ()),
    "olmo_job_eval_score": ("Headline score per task of the newest evaluation", ("task",)),
    "olmo_job_eval_step": ("Checkpoint step of the newest evaluation", ()),
}

Sample = tuple[str, tuple[str, ...], float]
"""(metric name, values of its extra labels, value)."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def state_seconds(goodput: Mapping[str, Any], now: dt.datetime | None) -> dict[str, float]:
    """The ledger's wall seconds per state, the current state's open time counted up to ``now``:
    ``goodput.seconds`` holds the time charged up to ``goodput.charged``, and the time since then
    is the current state's (``olmo_operator.goodput.advance`` writes both together)."""
    seconds = {
        str(k): float(v)
        for k, v in _mapping(goodput.get("seconds")).items()
        if _number(v) is not None
    }
    state, start = goodput.get("state"), parse_time(goodput.get("charged"))
    if now is not None and isinstance(state, str) and state and start is not None:
        seconds[state] = seconds.get(state, 0.0) + max(0.0, (now - start).total_seconds())
    return seconds


def job_samples(status: Mapping[str, Any], now: dt.datetime | None = None) -> list[Sample]:
    """Every per-job series of one OLMoJob ``status`` (pure; missing fields give no series)."""
    out: list[Sample] = []

    def put(name: str, value: Any, *labels: str) -> None:
        number = _number(value)
        if number is not None:
            out.append((name, tuple(labels), number))

    phase = status.get("phase")
    for known in c.PHASES:
        put("olmo_job_phase", 1 if known == phase else 0, known)
    put("olmo_job_step", status.get("step", 0))
    put("olmo_job_tokens", status.get("tokens", 0))
    goodput = _mapping(status.get("goodput"))
    throughput = _mapping(status.get("throughput"))
    nominal = goodput.get("nominalTokensPerSecond", throughput.get("tokensPerSecond"))
    put("olmo_job_tokens_per_second", nominal, "nominal")
    put("olmo_job_tokens_per_second", goodput.get("effectiveTokensPerSecond"), "effective")
    put("olmo_job_step_seconds", throughput.get("stepSeconds"))
    put("olmo_job_mfu", throughput.get("mfu"))
    put("olmo_job_goodput_ratio", goodput.get("ratio"))
    if goodput:
        for state, seconds in state_seconds(goodput, now).items():
            put("olmo_job_state_seconds", seconds, state)
        put("olmo_job_lost_steps", goodput.get("lostSteps", 0))
        for pool, ledger in _mapping(goodput.get("pools")).items():
            put("olmo_job_cost", _mapping(ledger).get("cost"), str(pool))
    restarts = _mapping(status.get("restarts"))
    for cause in RESTART_CAUSES:
        put("olmo_job_status_restarts", restarts.get(cause, 0), cause)
    checkpoint = _mapping(status.get("latestCheckpoint"))
    put("olmo_job_checkpoint_step", checkpoint.get("step"))
    saved = parse_time(checkpoint.get("time"))
    if saved is not None:
        put("olmo_job_checkpoint_timestamp_seconds", saved.timestamp())
    put(
        "olmo_job_checkpoint_interval_steps",
        _mapping(status.get("checkpointInterval")).get("steps"),
    )
    put("olmo_job_upload_seconds", _mapping(status.get("lastUpload")).get("seconds"))
    put(
        "olmo_job_save_seconds", status.get("lastSaveSeconds", status.get("lastSaveBlockedSeconds"))
    )
    evaluation = _mapping(status.get("lastEval"))
    for task, score in _mapping(evaluation.get("headline")).items():
        put("olmo_job_eval_score", score, str(task))
    put("olmo_job_eval_step", evaluation.get("step"))
    return out


class JobMetrics:
    """The per-job gauges of every OLMoJob seen; each update replaces the job's series."""

    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.gauges = {
            name: Gauge(name, doc, [*_JOB_LABELS, *extra], registry=registry)
            for name, (doc, extra) in _GAUGES.items()
        }
        self._series: dict[tuple[str, str], set[tuple[str, tuple[str, ...]]]] = {}
        self._lock = threading.Lock()

    def update(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any] | None,
        now: dt.datetime | None = None,
    ) -> None:
        """Set the job's series from its ``status`` (after a reconcile); drop those whose field
        disappeared (e.g. an eval task no longer in ``lastEval``)."""
        samples = job_samples(status or {}, now)
        with self._lock:
            seen: set[tuple[str, tuple[str, ...]]] = set()
            for metric, labels, value in samples:
                self.gauges[metric].labels(namespace, name, *labels).set(value)
                seen.add((metric, labels))
            for metric, labels in self._series.get((namespace, name), set()) - seen:
                self.gauges[metric].remove(namespace, name, *labels)
            self._series[(namespace, name)] = seen

    def forget(self, namespace: str, name: str) -> None:
        """Remove every series of a deleted job."""
        with self._lock:
            for metric, labels in self._series.pop((namespace, name), set()):
                self.gauges[metric].remove(namespace, name, *labels)

    def jobs(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._series)


JOBS_METRICS = JobMetrics()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Start the /metrics HTTP server in a background thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
