"""The pod template every workload shares: the image user, a read-only root, writable
emptyDirs with the caches in them, pull secrets — on all four kinds of pod."""

from __future__ import annotations

from typing import Any

import pytest

from olmo_operator import contract as c
from olmo_operator.resources import AttemptState, dataprep_job, desired_objects, rotation_job
from olmo_operator.spec import parse_job
from tests.operator.olmojobs import env_of, olmojob


def every_pod_spec(**spec: Any) -> dict[str, dict[str, Any]]:
    """The pod spec of each of the four pod kinds the operator creates, by component."""
    job = parse_job(
        olmojob(
            eval={"enabled": True},
            dataset={"claimName": "d", "prepare": {"pipelineConfigMap": {"name": "p"}}},
            **spec,
        )
    )
    objects = [*desired_objects(job, AttemptState(1)), dataprep_job(job), rotation_job(job)]
    pods = {
        o["metadata"]["labels"][c.LABEL_COMPONENT]: o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] in ("Job", "Deployment")
    }
    assert sorted(pods) == sorted(c.COMPONENTS)
    return pods


def test_image_pull_secrets_reach_every_pod() -> None:
    job = parse_job(
        olmojob(
            imagePullSecrets=[{"name": "registry"}],
            eval={"enabled": True},
            dataset={"claimName": "d", "prepare": {"pipelineConfigMap": {"name": "p"}}},
        )
    )
    pod_specs = [
        o["spec"]["template"]["spec"]
        for o in [*desired_objects(job, AttemptState(1)), dataprep_job(job), rotation_job(job)]
        if o["kind"] in ("Job", "Deployment")
    ]
    assert len(pod_specs) == 4  # trainer, eval worker, data-prep, rotation
    assert all(p["imagePullSecrets"] == [{"name": "registry"}] for p in pod_specs)
    plain = desired_objects(parse_job(olmojob()), AttemptState(1))
    assert all(
        "imagePullSecrets" not in o["spec"]["template"]["spec"] for o in plain if o["kind"] == "Job"
    )


@pytest.mark.parametrize("component", c.COMPONENTS)
def test_every_pod_runs_as_the_image_user_with_a_read_only_root(component: str) -> None:
    pod = every_pod_spec()[component]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert c.IMAGE_UID == 10001  # USER 10001:10001 in every Dockerfile
    for container in pod["containers"]:
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }


@pytest.mark.parametrize("component", c.COMPONENTS)
def test_every_pod_has_writable_tmp_and_home_and_its_caches_point_there(component: str) -> None:
    pod = every_pod_spec()[component]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}
    assert volumes["home"] == {"name": "home", "emptyDir": {"sizeLimit": "4Gi"}}
    for container in pod["containers"]:
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/tmp"] == "tmp" and mounts["/home/olmo"] == "home"
        writable = [path for path, name in mounts.items() if "emptyDir" in volumes[name]]
        env = env_of(container)
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names)), "one definition per variable"
        assert env["HOME"] == "/home/olmo" and env["TMPDIR"] == "/tmp"
        for name, value in {
            "XDG_CACHE_HOME": "/home/olmo/.cache",
            "HF_HOME": "/home/olmo/.cache/huggingface",
            "TRITON_CACHE_DIR": "/home/olmo/.triton/cache",
            "MPLCONFIGDIR": "/home/olmo/.config/matplotlib",
            "WANDB_CACHE_DIR": "/home/olmo/.cache/wandb",
            "WANDB_CONFIG_DIR": "/home/olmo/.config/wandb",
            "WANDB_DATA_DIR": "/home/olmo/.local/share/wandb",
        }.items():
            assert env[name] == value, name
        # Every folder the env names lies in an emptyDir of this container; so does torch's
        # extension folder, from XDG_CACHE_HOME, unless the image sets TORCH_EXTENSIONS_DIR.
        assert "TORCH_EXTENSIONS_DIR" not in env
        assert f"{env['XDG_CACHE_HOME']}/torch_extensions" == c.TORCH_EXTENSIONS_DEFAULT
        folders = [*c.WRITABLE_ENV, ("TORCH_EXTENSIONS_DIR", c.TORCH_EXTENSIONS_DEFAULT)]
        for name, value in folders:
            assert env.get(name, value) == value
            assert any(value == w or value.startswith(w + "/") for w in writable), name


def test_the_users_env_still_wins() -> None:
    pod = every_pod_spec(env=[{"name": "HOME", "value": "/data/home"}, {"name": "X", "value": "1"}])
    container = pod[c.TRAINER]["containers"][0]
    names = [e["name"] for e in container["env"]]
    assert names[-2:] == ["HOME", "X"]  # last, as written
    assert names.count("HOME") == 1 and env_of(container)["HOME"] == "/data/home"
    assert env_of(container)["TMPDIR"] == "/tmp"
    # Only the trainer takes spec.env.
    assert env_of(pod[c.EVALWORKER]["containers"][0])["HOME"] == "/home/olmo"


def test_only_the_pods_that_report_progress_get_an_identity() -> None:
    pods = every_pod_spec()
    for component in (c.TRAINER, c.EVALWORKER):
        assert pods[component]["serviceAccountName"] == "run-progress"
        assert "automountServiceAccountToken" not in pods[component]
    for component in (c.DATAPREP, c.ROTATION):
        assert pods[component]["automountServiceAccountToken"] is False  # no API token at all
        assert "serviceAccountName" not in pods[component]


def test_jobs_never_restart_their_pods_and_the_deployment_keeps_its_default() -> None:
    pods = every_pod_spec()
    assert {k: p.get("restartPolicy") for k, p in pods.items()} == {
        c.TRAINER: "Never",
        c.DATAPREP: "Never",
        c.ROTATION: "Never",
        c.EVALWORKER: None,
    }


def test_the_priority_class_goes_to_the_trainer_and_the_eval_worker() -> None:
    pods = every_pod_spec(priorityClassName="high")
    assert {k: p.get("priorityClassName") for k, p in pods.items()} == {
        c.TRAINER: "high",
        c.EVALWORKER: "high",
        c.DATAPREP: None,
        c.ROTATION: None,
    }
