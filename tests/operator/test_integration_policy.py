"""The operator policy and the per-job NetworkPolicy, through the real kopf operator against the
API emulator (see test_integration.py for the harness)."""

from __future__ import annotations

import json

import pytest

from olmo_operator import contract as c

from .conftest import K8s, wait_for
from .test_integration import TIMEOUT, events, status, trainer_jobs, wait_status

ALLOWED_IMAGE = "registry.example.com/olmo/trainer:test"  # conftest.olmojob_spec's image
POLICY = {
    "allowedImages": [ALLOWED_IMAGE],
    "allowedImagePrefixes": [],
    "allowedEnvSecrets": [],
    "allowedClaims": ["olmo-tokens", "olmo-checkpoints"],
    "allowedTolerations": [{"key": "cloud.google.com/gke-spot", "effect": "NoSchedule"}],
}


@pytest.fixture
def strict_operator(request, monkeypatch):
    """The operator started with POLICY and per-job NetworkPolicies on."""
    monkeypatch.setenv(c.ENV_POLICY, json.dumps(POLICY))
    monkeypatch.setenv(c.ENV_NETWORK_POLICY, "true")
    return request.getfixturevalue("operator")


def network_policies(k8s: K8s) -> list[dict]:
    import kubernetes

    api = kubernetes.client.NetworkingV1Api(k8s.core.api_client)
    return k8s.to_dict(api.list_namespaced_network_policy(k8s.namespace))["items"]


def test_a_violating_olmojob_fails_without_any_trainer_job(
    k8s, make_olmojob, strict_operator, job_controller
):
    make_olmojob("evil", image="attacker.example/miner:latest")
    st = wait_status(k8s, "evil", phase=c.FAILED)
    assert st["message"].startswith("refused by the operator policy: spec.image")
    assert "allowedImages" in st["message"]
    wait_for(lambda: events(k8s, "evil", "PolicyViolation"), TIMEOUT, message="the Event")
    (event,) = events(k8s, "evil", "PolicyViolation")
    assert event["type"] == "Warning"
    assert trainer_jobs(k8s, "evil") == []
    assert k8s.pods(f"{c.LABEL_JOB}=evil") == []
    assert [p for p in network_policies(k8s) if p["metadata"]["name"].startswith("evil")] == []


def test_a_complying_olmojob_runs_behind_its_network_policy(
    k8s, make_olmojob, strict_operator, job_controller
):
    make_olmojob("llm")
    wait_for(lambda: trainer_jobs(k8s, "llm"), TIMEOUT, message="the trainer Job")
    (policy,) = [p for p in network_policies(k8s) if p["metadata"]["name"] == "llm-trainer-ingress"]
    trainers = {c.LABEL_JOB: "llm", c.LABEL_COMPONENT: c.TRAINER}
    assert policy["spec"]["podSelector"]["matchLabels"] == trainers
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": trainers}}]}]
    assert status(k8s, "llm").get("phase") != c.FAILED
