"""The NetworkPolicy of an OLMoJob's trainer pods: only the same job's trainer pods reach them.

The trainer pods listen on the rendezvous port (torchrun's c10d store on rank 0) and, for NCCL
and gloo, on ports the libraries pick at random; none of it is authenticated. So the policy
admits ingress on every port, but only from pods carrying the same ``olmo-k8s.io/job`` and
``component: trainer`` labels: the job's own ranks. Egress stays open: the pods reach the API
server (progress), W&B and whatever storage their config names.

One per OLMoJob (no attempt label), owned by it, so it goes with it. It is created with each
attempt's objects, before the trainer Job (a 409 when it is already there), and only when the
operator runs with ``OLMO_OPERATOR_NETWORK_POLICY=true`` (the chart's ``networkPolicy.enabled``):
the lifecycle decides *what* runs, this switch says whether the cluster enforces NetworkPolicies
(a CNI without them would only make this a no-op object).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from olmo_operator import contract as c
from olmo_operator.resources.metadata import metadata, selector
from olmo_operator.spec import OLMoJob

if TYPE_CHECKING:  # the lifecycle imports this package: no import cycle at run time
    from olmo_operator.lifecycle import Action

SUFFIX = "-trainer-ingress"


def network_policy_name(job: str) -> str:
    """``<job>-trainer-ingress`` (at most 42 + 16 characters)."""
    return f"{job}{SUFFIX}"


def network_policy(job: OLMoJob) -> dict[str, Any]:
    """Ingress to the job's trainer pods only from the job's trainer pods, on every port."""
    trainers = {"matchLabels": selector(job.name, c.TRAINER)}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(job, network_policy_name(job.name), c.TRAINER),
        "spec": {
            "podSelector": trainers,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": trainers}]}],
        },
    }


def enabled_from_env(environ: Mapping[str, str]) -> bool:
    """``OLMO_OPERATOR_NETWORK_POLICY``: ``true`` or ``false`` (unset or empty: false)."""
    raw = environ.get(c.ENV_NETWORK_POLICY, "").strip().lower()
    if raw in ("", "false"):
        return False
    if raw == "true":
        return True
    raise ValueError(
        f"{c.ENV_NETWORK_POLICY} must be true or false, got {environ[c.ENV_NETWORK_POLICY]!r}"
    )


def _is_trainer_job(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return obj.get("kind") == "Job" and labels.get(c.LABEL_COMPONENT) == c.TRAINER


def with_network_policy(action: Action, job: OLMoJob) -> Action:
    """``action`` with the job's NetworkPolicy created first when it creates a trainer Job
    (a new attempt, or a missing Job re-created), so that no trainer pod runs unprotected."""
    if not any(_is_trainer_job(obj) for obj in action.create):
        return action
    return dataclasses.replace(action, create=(network_policy(job), *action.create))
