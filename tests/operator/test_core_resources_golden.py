"""Every object the builders make, byte for byte, for a few representative OLMoJobs.

The files in ``golden/`` hold the objects as JSON (keys in the order the builders write them).
They were written by the builders of ``resources.py`` before it was split into one module per
object kind, so a refactoring that changes any field, value or key order fails here. When an
object is meant to change, rewrite them and review the diff::

    python -m tests.operator.test_core_resources_golden --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from olmo_operator.resources import AttemptState, dataprep_job, desired_objects, rotation_job
from olmo_operator.spec import parse_job
from tests.operator.olmojobs import olmojob

GOLDEN = Path(__file__).parent / "golden"

TOLERATION = {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute"}

CASES: dict[str, tuple[dict[str, Any], tuple[AttemptState, ...]]] = {
    # The defaults: a preset on 2 × 8 GPUs, no data-prep, no eval, no pools.
    "minimal": (olmojob(), (AttemptState(1),)),
    # Every optional field of the trainer, eval worker, data-prep and rotation at once.
    "everything": (
        olmojob(
            model={"config": "model: {preset: tiny}\n"},
            imagePullSecrets=[{"name": "registry"}],
            dataset={
                "claimName": "data",
                "path": "dolma",
                "prepare": {
                    "pipelineConfigMap": {"name": "p", "key": "pipe.yaml"},
                    "workers": 2,
                    "resources": {"requests": {"cpu": 4, "memory": "8Gi"}},
                },
            },
            checkpoint={
                "claimName": "ckpt",
                "path": "runs/x",
                "interval": 50,
                "keepLast": 2,
                "keepEvery": 100,
                "requireEvaluated": True,
            },
            resources={"requests": {"cpu": 8}, "limits": {"memory": "64Gi"}},
            nodePools=[
                {
                    "name": "spot",
                    "preemptible": True,
                    "nodeSelector": {"a": "b"},
                    "tolerations": [{**TOLERATION, "tolerationSeconds": 5}],
                }
            ],
            eval={
                "enabled": True,
                "tasks": ["piqa", "sciq"],
                "limit": 5,
                "resources": {"limits": {"nvidia.com/gpu": 1}},
            },
            wandb={
                "project": "p",
                "entity": "team",
                "mode": "online",
                "secretRef": {"name": "wb", "key": "k"},
            },
            queueName="q",
            priorityClassName="high",
            terminationGracePeriodSeconds=90,
            maxSteps=500,
            maxFailures=5,
            hangTimeoutSeconds=900,
            preflight={"timeoutSeconds": 60},
            overrides=["optimizer.lr=1e-4"],
            env=[
                {"name": "HOME", "value": "/data/home"},
                {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        ),
        (AttemptState(3),),
    ),
    # CPU training on a second node pool, a ConfigMap model config, an eval worker with its own
    # image and placement, data-prep with its own image; no uid yet (no owner references).
    "cpu-pools": (
        {
            **olmojob(
                "cpu",
                gpusPerNode=0,
                processesPerNode=2,
                imagePullPolicy="Always",
                model={"configMapRef": {"name": "cfg", "key": "7b.yaml"}},
                resources={"limits": {"cpu": 4}},
                maxFailures=0,
                nodePools=[
                    {
                        "name": "spot",
                        "preemptible": True,
                        "maxPreemptions": 1,
                        "nodeSelector": {"cloud.google.com/gke-spot": "true"},
                        "tolerations": [TOLERATION],
                    },
                    {"name": "on-demand", "nodeSelector": {"pool": "od"}},
                ],
                eval={
                    "enabled": True,
                    "image": "eval:1",
                    "nodeSelector": {"pool": "cpu"},
                    "tolerations": [TOLERATION],
                },
                dataset={
                    "claimName": "d",
                    "prepare": {
                        "pipelineConfigMap": {"name": "p"},
                        "workers": 4,
                        "image": "prep:1",
                    },
                },
                checkpoint={"claimName": "ckpt", "requireEvaluated": True},
            ),
            "metadata": {"name": "cpu", "namespace": "team"},
        },
        (
            AttemptState(1, 0),
            AttemptState(5, 1),
            AttemptState(6, 7, nodes=1, save_interval=7, excluded_nodes=("node-a", "node-b")),
        ),
    ),
}


def build(case: str) -> list[dict[str, Any]]:
    """Every object of the case: each attempt's, then data-prep (if any) and rotation."""
    obj, states = CASES[case]
    job = parse_job(obj)
    objects = [o for state in states for o in desired_objects(job, state)]
    if job.spec.dataset.prepare is not None:
        objects.append(dataprep_job(job))
    objects.append(rotation_job(job))
    return objects


def render(objects: list[dict[str, Any]]) -> str:
    return json.dumps(objects, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_objects_are_byte_identical_to_the_golden_files(case: str) -> None:
    expected = (GOLDEN / f"{case}.json").read_text()
    assert render(build(case)) == expected


def test_the_cases_cover_every_kind_of_object() -> None:
    kinds = {o["kind"] for case in CASES for o in build(case)}
    assert kinds == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Service",
        "Job",
        "Deployment",
    }


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(__doc__)
    GOLDEN.mkdir(exist_ok=True)
    for name in sorted(CASES):
        (GOLDEN / f"{name}.json").write_text(render(build(name)))
        print(f"wrote {GOLDEN / name}.json")
