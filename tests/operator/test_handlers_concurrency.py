"""Status writes are conditional on the version the decision was read from: a reconcile decided
from an outdated read (another operator, or any write since) applies nothing of its decision
and decides again from a fresh read, so no restart is counted twice and no child comes back.

The handlers' ``reconcile`` runs here directly (no kopf) against the API emulator, with the
fake job controller playing the cluster; Events are recorded instead of posted.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import kopf
import kubernetes
import pytest

from olmo_operator import contract as c
from olmo_operator import handlers, kube
from olmo_operator.features import Features
from olmo_operator.lifecycle import Timing
from olmo_operator.policy import Policy

from .conftest import FakeJobController, K8s, fail_pod, olmojob_spec

TIMING = Timing(
    backoff_base_seconds=0,
    backoff_max_seconds=0,
    termination_wait_seconds=0,
    failure_settle_seconds=0,
)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    posted: list[tuple[str, str]] = []

    def record(obj: Any, *, type: str, reason: str, message: str = "") -> None:
        posted.append((type, reason))

    monkeypatch.setattr(kopf, "event", record)
    monkeypatch.setattr(
        kopf,
        "warn",
        lambda obj, *, reason, message="": record(
            obj, type="Warning", reason=reason, message=message
        ),
    )
    return posted


@pytest.fixture
def api(
    emulator: Any, olmojob_resource: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[kube.Kube]:
    client = kubernetes.config.new_client_from_config(config_file=str(emulator.kubeconfig))
    api = kube.Kube(client)
    monkeypatch.setattr(handlers.STATE, "api", api)
    monkeypatch.setattr(handlers.STATE, "timing", TIMING)
    monkeypatch.setattr(handlers.STATE, "policy", Policy(), raising=False)
    monkeypatch.setattr(handlers.STATE, "network_policy", False, raising=False)
    # An operator started earlier in this process may have switched features on.
    monkeypatch.setattr(handlers.STATE, "features", Features())
    yield api
    client.close()


def _status(k8s: K8s, name: str) -> dict[str, Any]:
    return k8s.olmojob(name).get("status") or {}


def _trainer_jobs(k8s: K8s, name: str) -> list[str]:
    return sorted(
        j["metadata"]["name"]
        for j in k8s.jobs(f"{c.LABEL_JOB}={name},{c.LABEL_COMPONENT}={c.TRAINER}")
        if not j["metadata"].get("deletionTimestamp")
    )


def _reconcile_until(name: str, done: Any, tries: int = 10) -> None:
    for _ in range(tries):
        handlers.reconcile("default", name)
        if done():
            return
    raise AssertionError(f"{name}: not done after {tries} reconciles")


def test_a_decision_from_an_outdated_read_is_refused_and_made_again(
    k8s: K8s, api: kube.Kube, events: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    k8s.create_olmojob("llm", olmojob_spec())
    controller = FakeJobController(k8s)
    handlers.reconcile("default", "llm")
    pods = controller.sync("llm-a1")
    fail_pod(k8s, pods[0]["metadata"]["name"], 1, controller)
    outdated = copy.deepcopy(k8s.olmojob("llm"))  # what a second operator read at this moment

    # This operator counts the failure and starts attempt 2.
    _reconcile_until("llm", lambda: _status(k8s, "llm").get("phase") == c.RUNNING)
    controller.sync("llm-a2")
    before = _status(k8s, "llm")
    assert before["attempt"] == 2 and before["restarts"]["failures"] == 1
    assert _trainer_jobs(k8s, "llm") == ["llm-a2"]
    failed_events = events.count(("Warning", "AttemptFailed"))
    assert failed_events == 1

    # The other reconcile decides from the outdated read: attempt 1 failed, or gone.
    reads: list[str] = []
    fresh_read = api.get_olmojob

    def read_outdated_first(namespace: str, name: str) -> dict[str, Any] | None:
        reads.append(name)
        return copy.deepcopy(outdated) if len(reads) == 1 else fresh_read(namespace, name)

    monkeypatch.setattr(api, "get_olmojob", read_outdated_first)
    handlers.reconcile("default", "llm")

    assert len(reads) == 2  # refused (409), then decided again from a fresh read
    after = _status(k8s, "llm")
    assert after["attempt"] == 2 and after["restarts"] == before["restarts"]
    assert after["phase"] == c.RUNNING and after["lastRestart"] == before["lastRestart"]
    # Nothing of the outdated decision was applied: attempt 2 stays, attempt 1 stays gone.
    assert _trainer_jobs(k8s, "llm") == ["llm-a2"]
    assert events.count(("Warning", "AttemptFailed")) == failed_events


def test_conflicts_are_retried_a_bounded_number_of_times_without_warnings(
    k8s: K8s, api: kube.Kube, events: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    k8s.create_olmojob("llm", olmojob_spec())
    calls: list[str | None] = []

    def always_changed(namespace: str, name: str, status: Any, version: Any = None) -> None:
        calls.append(version)
        raise kube.Conflict(409, "changed")

    monkeypatch.setattr(api, "patch_status", always_changed)
    with pytest.raises(handlers.StatusConflict):
        handlers.reconcile("default", "llm")
    assert len(calls) == handlers.CONFLICT_RETRIES and all(calls)
    assert events == []  # no Warning Event for a normal race
    assert k8s.jobs() == []  # and nothing created from a refused decision
