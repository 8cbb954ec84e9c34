"""The eval worker Deployment."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.resources import AttemptState, desired_objects
from olmo_operator.spec import parse_job
from tests.operator.olmojobs import by_kind, env_of, olmojob


def test_eval_worker_deployment() -> None:
    objects = desired_objects(
        olmojob(
            eval={"enabled": True, "tasks": ["piqa", "sciq"], "limit": 50, "image": "eval:1"},
            checkpoint={"claimName": "ckpt", "path": "runs/x"},
        ),
        AttemptState(1),
    )
    (deploy,) = by_kind(objects)["Deployment"]
    assert deploy["metadata"]["name"] == "run-eval"
    assert deploy["spec"]["replicas"] == 1
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "eval:1"
    assert container["command"] == ["olmo-eval"]  # replaces the image's ENTRYPOINT
    assert container["args"] == [
        "watch",
        "/checkpoints/runs/x",
        "--port",
        "8080",
        "--poll-seconds",
        "30",
        "--tasks",
        "piqa,sciq",
        "--limit",
        "50",
    ]
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "run-progress"
    assert env_of(container)[c.ENV_JOB_NAME] == "run"
    assert deploy["spec"]["selector"]["matchLabels"].items() <= (
        deploy["spec"]["template"]["metadata"]["labels"].items()
    )
    # The checkpoints, and the dataset read-only at the trainer's path: the tokenizer of a
    # checkpoint is the tokenizer.json next to its data.paths' manifest (/data/<path>).
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[c.CHECKPOINTS_MOUNT]["name"] == "checkpoints"
    assert mounts[c.DATA_MOUNT] == {"name": "data", "mountPath": c.DATA_MOUNT, "readOnly": True}
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}


def test_eval_worker_placement() -> None:
    toleration = {"key": "pool", "operator": "Equal", "value": "cpu", "effect": "NoSchedule"}
    job = parse_job(
        olmojob(
            eval={"enabled": True, "nodeSelector": {"pool": "cpu"}, "tolerations": [toleration]}
        )
    )
    (deploy,) = [o for o in desired_objects(job, AttemptState(1)) if o["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "cpu"} and pod["tolerations"] == [toleration]
