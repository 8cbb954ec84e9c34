"""Prometheus metrics of the operator (served by ``olmo-operator run --metrics-port``).

- ``olmo_jobs{phase}``: OLMoJobs this operator sees, by phase;
- ``olmo_job_restarts_total{cause}``: attempts restarted, by cause (Preemption, Failure);
- ``olmo_job_attempts_total``: attempts started;
- ``olmo_reconcile_seconds``: time of one reconcile (histogram).
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from olmo_operator import contract as c
from olmo_operator.failures import Cause

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


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Start the /metrics HTTP server in a background thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
