"""desired_objects(): what one attempt of an OLMoJob runs, as plain Kubernetes objects."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.resources import AttemptState, dataprep_job, desired_objects, rotation_job
from olmo_operator.spec import parse_job
from tests.operator.olmojobs import olmojob


def test_an_attempt_is_rbac_a_headless_service_and_an_indexed_job() -> None:
    objects = desired_objects(olmojob(), AttemptState(attempt=3))
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Service", "Job"]
    svc, job = objects[4], objects[5]
    assert svc["metadata"]["name"] == job["metadata"]["name"] == "run-a3"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {
        c.LABEL_JOB: "run",
        c.LABEL_COMPONENT: "trainer",
        c.LABEL_ATTEMPT: "3",
    }
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 2
    assert spec["backoffLimit"] == 0
    assert spec["suspend"] is False
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["subdomain"] == "run-a3"
    # The Service selects the pods.
    assert svc["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()


def test_names_are_deterministic_so_a_restarted_operator_creates_the_same_objects() -> None:
    first = desired_objects(olmojob(), AttemptState(7, 0))
    again = desired_objects(olmojob(), AttemptState(7, 0))
    assert first == again


def test_every_object_validates_against_the_kubernetes_models() -> None:
    import kubernetes.client as k

    models = {
        "ServiceAccount": k.V1ServiceAccount,
        "Role": k.V1Role,
        "RoleBinding": k.V1RoleBinding,
        "ConfigMap": k.V1ConfigMap,
        "Service": k.V1Service,
        "Job": k.V1Job,
        "Deployment": k.V1Deployment,
    }
    everything = olmojob(
        model={"config": "model: {preset: tiny}\n"},
        dataset={
            "claimName": "data",
            "prepare": {
                "pipelineConfigMap": {"name": "p"},
                "workers": 2,
                "resources": {"requests": {"cpu": 4, "memory": "8Gi"}},
            },
        },
        checkpoint={"claimName": "ckpt", "keepEvery": 100, "requireEvaluated": True},
        resources={"requests": {"cpu": 8}, "limits": {"memory": "64Gi"}},
        nodePools=[
            {
                "name": "spot",
                "preemptible": True,
                "nodeSelector": {"a": "b"},
                "tolerations": [
                    {
                        "key": "k",
                        "operator": "Equal",
                        "value": "v",
                        "effect": "NoExecute",
                        "tolerationSeconds": 5,
                    }
                ],
            }
        ],
        eval={
            "enabled": True,
            "tasks": ["piqa"],
            "limit": 5,
            "resources": {"limits": {"nvidia.com/gpu": 1}},
        },
        wandb={"project": "p", "mode": "online", "secretRef": {"name": "wb", "key": "k"}},
        queueName="q",
        priorityClassName="high",
        env=[
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    )
    job = parse_job(everything)
    objects = [*desired_objects(job, AttemptState(3)), dataprep_job(job), rotation_job(job)]
    assert {o["kind"] for o in objects} == set(models)
    for obj in objects:
        models[obj["kind"]].model_validate(obj)  # raises on unknown fields or wrong types
