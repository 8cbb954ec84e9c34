"""The per-OLMoJob NetworkPolicy (resources/network_policy.py): its object, byte for byte, and
when the operator creates it."""

from __future__ import annotations

import datetime as dt

import pytest

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind, Observed, next_action
from olmo_operator.resources import network_policy, trainer_job, with_network_policy
from olmo_operator.resources.network_policy import enabled_from_env
from olmo_operator.resources.trainer import AttemptState
from olmo_operator.spec import parse_job
from tests.operator.olmojobs import UID, olmojob

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def test_the_object():
    job = parse_job(olmojob("llm"))
    trainers = {"matchLabels": {c.LABEL_JOB: "llm", c.LABEL_COMPONENT: c.TRAINER}}
    assert network_policy(job) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "llm-trainer-ingress",
            "namespace": "ml",
            "labels": {
                "app.kubernetes.io/name": "olmo",
                "app.kubernetes.io/instance": "llm",
                "app.kubernetes.io/component": c.TRAINER,
                "app.kubernetes.io/part-of": "olmo-k8s",
                "app.kubernetes.io/managed-by": "olmo-operator",
                c.LABEL_JOB: "llm",
                c.LABEL_COMPONENT: c.TRAINER,
            },
            "ownerReferences": [
                {
                    "apiVersion": c.API_VERSION,
                    "kind": c.KIND,
                    "name": "llm",
                    "uid": UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        # Every port (rendezvous, NCCL/gloo's own) of the trainer pods, from the job's trainers.
        "spec": {
            "podSelector": trainers,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": trainers}]}],
        },
    }


def test_it_selects_every_attempts_trainer_pods_and_nothing_else():
    job = parse_job(olmojob("llm", nodes=3))
    selected = network_policy(job)["spec"]["podSelector"]["matchLabels"]
    for attempt in (1, 7):
        pod_labels = trainer_job(job, AttemptState(attempt))["spec"]["template"]["metadata"][
            "labels"
        ]
        assert selected.items() <= pod_labels.items()
    other = trainer_job(parse_job(olmojob("llm2")), AttemptState(1))
    assert not selected.items() <= other["spec"]["template"]["metadata"]["labels"].items()


def test_created_before_the_trainer_job_of_a_new_attempt():
    job = parse_job(olmojob("llm"))
    action = next_action(job, {}, Observed(now=NOW))
    assert action.kind is ActionKind.START_ATTEMPT
    protected = with_network_policy(action, job)
    kinds = [o["kind"] for o in protected.create]
    assert kinds[0] == "NetworkPolicy" and "Job" in kinds
    assert protected.create[1:] == action.create


def test_not_added_when_no_trainer_job_is_created():
    job = parse_job(olmojob("llm"))
    status = {"phase": c.RUNNING, "attempt": 1}
    running = trainer_job(job, AttemptState(1))
    action = next_action(job, status, Observed(now=NOW, jobs=(running,)))
    assert not any(o["kind"] == "Job" for o in action.create)
    assert with_network_policy(action, job) is action


@pytest.mark.parametrize(
    ("value", "enabled"), [(None, False), ("", False), ("false", False), ("true", True)]
)
def test_switch(value, enabled):
    env = {} if value is None else {c.ENV_NETWORK_POLICY: value}
    assert enabled_from_env(env) is enabled


def test_switch_refuses_anything_else():
    with pytest.raises(ValueError, match="OLMO_OPERATOR_NETWORK_POLICY must be true or false"):
        enabled_from_env({c.ENV_NETWORK_POLICY: "yes"})
