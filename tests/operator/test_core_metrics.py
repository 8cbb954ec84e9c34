"""The per-job Prometheus metrics (``olmo_operator.metrics``), set from OLMoJob status dicts."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from olmo_operator import contract as c
from olmo_operator import metrics
from olmo_operator.metrics import JobMetrics, job_samples, state_seconds

from .goodput_status import NOW, full_status

JOB = {"namespace": "ml", "job": "run"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {**JOB, **labels})


def series(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in registry.collect()
        for s in family.samples
    }


def test_a_full_status_sets_every_per_job_series(registry):
    JobMetrics(registry).update("ml", "run", full_status(), NOW)
    assert value(registry, "olmo_job_phase", phase="Running") == 1
    assert {value(registry, "olmo_job_phase", phase=p) for p in c.PHASES if p != "Running"} == {0}
    assert value(registry, "olmo_job_step") == 1200
    assert value(registry, "olmo_job_tokens") == 78_643_200
    assert value(registry, "olmo_job_tokens_per_second", kind="nominal") == 1024.0
    assert value(registry, "olmo_job_tokens_per_second", kind="effective") == 812.5
    assert value(registry, "olmo_job_step_seconds") == 2.0
    assert value(registry, "olmo_job_mfu") == 0.41
    assert value(registry, "olmo_job_goodput_ratio") == 0.79
    # the open state is counted up to now: 600 s charged + 30 s since ``charged``
    assert value(registry, "olmo_job_state_seconds", state="training") == 630
    assert value(registry, "olmo_job_state_seconds", state="pending") == 12
    assert value(registry, "olmo_job_lost_steps") == 7
    assert value(registry, "olmo_job_cost", pool="spot") == 0.36
    assert value(registry, "olmo_job_cost", pool="on-demand") == 0.87
    assert value(registry, "olmo_job_status_restarts", cause="failures") == 1
    assert value(registry, "olmo_job_status_restarts", cause="hangs") == 1
    assert value(registry, "olmo_job_status_restarts", cause="preflightFailures") == 2
    assert value(registry, "olmo_job_checkpoint_step") == 1100
    saved = dt.datetime(2026, 12, 8, 10, 5, tzinfo=dt.UTC).timestamp()
    assert value(registry, "olmo_job_checkpoint_timestamp_seconds") == saved
    assert value(registry, "olmo_job_checkpoint_interval_steps") == 147
    assert value(registry, "olmo_job_upload_seconds") == 42.5
    assert value(registry, "olmo_job_save_seconds") == 12.0
    assert value(registry, "olmo_job_eval_score", task="piqa") == 0.61
    assert value(registry, "olmo_job_eval_score", task="hellaswag") == 0.35
    assert value(registry, "olmo_job_eval_step") == 1000


def test_a_job_that_has_not_started_has_only_its_counts(registry):
    JobMetrics(registry).update("ml", "run", {"phase": "Pending"}, NOW)
    names = {name for name, _ in series(registry)}
    assert names == {
        "olmo_job_phase",
        "olmo_job_step",
        "olmo_job_tokens",
        "olmo_job_status_restarts",
    }
    assert value(registry, "olmo_job_phase", phase="Pending") == 1
    assert value(registry, "olmo_job_step") == 0
    assert value(registry, "olmo_job_status_restarts", cause="preemptions") == 0
    JobMetrics(CollectorRegistry()).update("ml", "new", None)  # no status at all: no error


def test_malformed_fields_give_no_series_rather_than_an_error():
    status = {
        "step": "12",
        "throughput": [1],
        "goodput": {"ratio": True, "seconds": {"training": "x"}, "pools": {"p": None}},
        "latestCheckpoint": {"step": 5, "time": "yesterday"},
        "lastEval": {"headline": {"piqa": None}},
    }
    names = {name for name, _, _ in job_samples(status, NOW)}
    assert "olmo_job_step" not in names and "olmo_job_goodput_ratio" not in names
    assert "olmo_job_checkpoint_timestamp_seconds" not in names
    assert "olmo_job_eval_score" not in names and "olmo_job_cost" not in names
    assert "olmo_job_checkpoint_step" in names and "olmo_job_lost_steps" in names


def test_an_update_drops_the_series_whose_field_went_away(registry):
    jobs = JobMetrics(registry)
    jobs.update("ml", "run", full_status(), NOW)
    later = full_status()
    later["lastEval"]["headline"] = {"arc_easy": 0.5}
    del later["throughput"]["mfu"]
    del later["goodput"]["pools"]["on-demand"]
    later["phase"] = "Restarting"
    jobs.update("ml", "run", later, NOW)
    assert value(registry, "olmo_job_eval_score", task="piqa") is None
    assert value(registry, "olmo_job_eval_score", task="arc_easy") == 0.5
    assert value(registry, "olmo_job_mfu") is None
    assert value(registry, "olmo_job_cost", pool="on-demand") is None
    assert value(registry, "olmo_job_phase", phase="Restarting") == 1
    assert value(registry, "olmo_job_phase", phase="Running") == 0


def test_forget_removes_only_that_jobs_series(registry):
    jobs = JobMetrics(registry)
    jobs.update("ml", "run", full_status(), NOW)
    jobs.update("ml", "other", {"phase": "Pending", "step": 3}, NOW)
    jobs.forget("ml", "run")
    assert jobs.jobs() == [("ml", "other")]
    left = {dict(labels)["job"] for _, labels in series(registry)}
    assert left == {"other"}
    assert registry.get_sample_value("olmo_job_step", {"namespace": "ml", "job": "other"}) == 3
    jobs.forget("ml", "never-seen")  # deleting a job the operator never reconciled


def test_the_open_state_counts_from_charged():
    ledger = full_status()["goodput"]
    assert state_seconds(ledger, None)["training"] == 600  # no now: as charged
    assert state_seconds(ledger, NOW)["training"] == 630
    ledger["charged"] = "2026-12-09T00:00:00Z"  # a clock behind the ledger adds nothing
    assert state_seconds(ledger, NOW)["training"] == 600
    finished = {"seconds": {"training": 5}}
    assert state_seconds(finished, NOW) == {"training": 5.0}


def test_the_operator_registry_exposes_valid_text_with_every_contract_name():
    """The real registry: no name clash with the operator-wide metrics, parsable exposition."""
    metrics.JOBS_METRICS.update("test-metrics", "run", full_status(), NOW)
    try:
        text = generate_latest(metrics.REGISTRY).decode()
        families = {f.name for f in text_string_to_metric_families(text)}
    finally:
        metrics.JOBS_METRICS.forget("test-metrics", "run")
    design_f = {
        "olmo_job_phase", "olmo_job_step", "olmo_job_tokens", "olmo_job_tokens_per_second",
        "olmo_job_step_seconds", "olmo_job_mfu", "olmo_job_goodput_ratio",
        "olmo_job_state_seconds", "olmo_job_lost_steps", "olmo_job_cost",
        "olmo_job_status_restarts", "olmo_job_checkpoint_step",
        "olmo_job_checkpoint_timestamp_seconds", "olmo_job_checkpoint_interval_steps",
        "olmo_job_upload_seconds", "olmo_job_save_seconds", "olmo_job_eval_score",
        "olmo_job_eval_step", "olmo_jobs", "olmo_job_restarts", "olmo_job_attempts",
        "olmo_reconcile_seconds",
    }  # fmt: skip
    assert design_f <= families
    assert 'olmo_job_step{job="run",namespace="test-metrics"} 1200.0' in text
    after = generate_latest(metrics.REGISTRY).decode()
    assert 'namespace="test-metrics"' not in after
