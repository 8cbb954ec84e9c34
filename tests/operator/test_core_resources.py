"""desired_objects(): what one attempt of an OLMoJob runs, as plain Kubernetes objects."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from olmo_operator import contract as c
from olmo_operator.resources import (
    PREEMPTION_AWARE_ENTRYPOINT,
    ROTATION_ENTRYPOINT,
    SHM_SIZE_DEFAULT,
    AttemptState,
    dataprep_job,
    desired_objects,
    rotation_job,
)
from olmo_operator.spec import SpecError, parse_job
from tests.pid1 import as_pid1

UID = "0b7a3a43-2f7e-4c1e-9d0a-6d1f7f1e0c11"


def olmojob(name: str = "run", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"preset": "tiny"},
        "image": "olmo-trainer:dev",
        "dataset": {"claimName": "data"},
        "checkpoint": {"claimName": "ckpt"},
        "nodes": 2,
        "gpusPerNode": 8,
    }
    base.update(spec)
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name, "namespace": "ml", "uid": UID, "generation": 1},
        "spec": base,
    }


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def trainer_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = by_kind(objects)["Job"]
    return job


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def sets_of(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]


# --------------------------------------------------------------------------------------------


def test_an_attempt_is_rbac_a_headless_service_and_an_indexed_job() -> None:
    objects = desired_objects(olmojob(), AttemptState(attempt=3))
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "Service", "Job"]
    svc, job = objects[3], objects[4]
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


def test_pod_failure_policy_fails_the_job_on_disruption_and_on_exit_75() -> None:
    rules = trainer_of(desired_objects(olmojob(), AttemptState(1)))["spec"]["podFailurePolicy"][
        "rules"
    ]
    assert rules[0] == {
        "action": "FailJob",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[1]["action"] == "FailJob"
    assert rules[1]["onExitCodes"] == {
        "containerName": "trainer",
        "operator": "In",
        "values": [75],
    }


def test_torchrun_command_line() -> None:
    job = trainer_of(desired_objects(olmojob(maxSteps=500), AttemptState(2)))
    container = container_of(job)
    assert container["command"][:2] == ["/bin/sh", "-c"]
    args = container["args"]
    assert args[:13] == [
        "torchrun",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "8",
        "--node-rank",
        "$(JOB_COMPLETION_INDEX)",
        "--master-addr",
        "$(MASTER_ADDR)",
        "--master-port",
        "$(MASTER_PORT)",
        "-m",
        "olmo.train.cli",
    ]
    assert args[args.index("--config") + 1] == "/app/configs/tiny.yaml"
    assert args[args.index("--run-dir") + 1] == "/checkpoints/run"
    assert args[args.index("--resume") + 1] == "latest"
    env = env_of(container)
    assert env["MASTER_ADDR"] == "run-a2-0.run-a2"  # pod 0 of the Indexed Job, in the subdomain
    assert env["MASTER_PORT"] == "29500" and env["NNODES"] == "2" and env["NPROC_PER_NODE"] == "8"
    sets = sets_of(args)
    assert 'run_name="run"' in sets
    assert 'data.paths=["/data/tokens"]' in sets
    assert "max_steps=500" in sets


def test_trainer_pods_report_progress_and_know_their_grace_period() -> None:
    job = trainer_of(desired_objects(olmojob(terminationGracePeriodSeconds=90), AttemptState(4)))
    pod = job["spec"]["template"]["spec"]
    env = env_of(container_of(job))
    assert env[c.ENV_JOB_NAME] == "run" and env[c.ENV_JOB_NAMESPACE] == "ml"
    assert env[c.ENV_ATTEMPT] == "4"
    assert env[c.ENV_GRACE] == "90" and pod["terminationGracePeriodSeconds"] == 90
    assert env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == "90"  # torchrun must not cut the save short
    assert pod["serviceAccountName"] == "run-progress"


def test_progress_rbac_is_least_privilege() -> None:
    objects = by_kind(desired_objects(olmojob(), AttemptState(1)))
    (role,) = objects["Role"]
    assert role["rules"] == [
        {
            "apiGroups": ["olmo-k8s.io"],
            "resources": ["olmojobs/status"],
            "resourceNames": ["run"],
            "verbs": ["get", "patch"],
        }
    ]
    (binding,) = objects["RoleBinding"]
    assert binding["roleRef"]["name"] == "run-progress"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "run-progress", "namespace": "ml"}
    ]


def test_gpus_volumes_shm_and_security() -> None:
    job = trainer_of(desired_objects(olmojob(), AttemptState(1)))
    pod = job["spec"]["template"]["spec"]
    container = container_of(job)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["checkpoints"]["mountPath"] == "/checkpoints"
    assert mounts["data"] == {"name": "data", "mountPath": "/data", "readOnly": True}
    assert mounts["dshm"]["mountPath"] == "/dev/shm"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "ckpt"}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}
    # No memory limit here: /dev/shm gets the documented default size.
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": SHM_SIZE_DEFAULT}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_shm_size_follows_the_memory_limit() -> None:
    job = trainer_of(
        desired_objects(
            olmojob(resources={"requests": {"memory": "6Gi"}, "limits": {"memory": "8Gi"}}),
            AttemptState(1),
        )
    )
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}


def test_cpu_training_uses_processes_per_node_and_no_gpus() -> None:
    job = trainer_of(
        desired_objects(
            olmojob(gpusPerNode=0, processesPerNode=2, resources={"limits": {"cpu": 4}}),
            AttemptState(1),
        )
    )
    container = container_of(job)
    args = container["args"]
    assert args[args.index("--nproc-per-node") + 1] == "2"
    assert container["resources"] == {"limits": {"cpu": "4"}}
    assert env_of(container)["DS_ACCELERATOR"] == "cpu"


def test_the_current_node_pool_decides_selector_and_tolerations() -> None:
    pools = [
        {
            "name": "spot",
            "preemptible": True,
            "nodeSelector": {"cloud.google.com/gke-spot": "true"},
            "tolerations": [{"key": "cloud.google.com/gke-spot", "operator": "Exists"}],
        },
        {"name": "on-demand", "nodeSelector": {"pool": "od"}},
    ]
    spot = trainer_of(desired_objects(olmojob(nodePools=pools), AttemptState(1, 0)))
    od = trainer_of(desired_objects(olmojob(nodePools=pools), AttemptState(5, 1)))
    assert spot["spec"]["template"]["spec"]["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert spot["spec"]["template"]["spec"]["tolerations"] == pools[0]["tolerations"]
    assert spot["metadata"]["annotations"][c.ANNOTATION_NODE_POOL] == "spot"
    assert od["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "od"}
    assert "tolerations" not in od["spec"]["template"]["spec"]
    # An index beyond a shortened list stays on the last pool.
    clamped = trainer_of(desired_objects(olmojob(nodePools=pools), AttemptState(6, 7)))
    assert clamped["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "od"}


def test_labels_and_owner_references() -> None:
    for obj in desired_objects(olmojob(eval={"enabled": True}), AttemptState(1)):
        meta = obj["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["labels"][c.LABEL_JOB] == "run"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "olmo-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "run"
        assert meta["labels"][c.LABEL_COMPONENT] in c.COMPONENTS
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "olmo-k8s.io/v1alpha1",
                "kind": "OLMoJob",
                "name": "run",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_kueue_queue_label_and_suspended_job() -> None:
    job = trainer_of(desired_objects(olmojob(queueName="team-a"), AttemptState(1)))
    assert job["metadata"]["labels"][c.KUEUE_QUEUE_LABEL] == "team-a"
    assert job["spec"]["suspend"] is True


def test_priority_wandb_secret_and_extra_env() -> None:
    job = trainer_of(
        desired_objects(
            olmojob(
                priorityClassName="high",
                wandb={"project": "p", "mode": "online", "secretRef": {"name": "wb"}},
                env=[{"name": "NCCL_DEBUG", "value": "WARN"}],
                overrides=["optimizer.lr=1e-4"],
            ),
            AttemptState(1),
        )
    )
    assert job["spec"]["template"]["spec"]["priorityClassName"] == "high"
    container = container_of(job)
    env = env_of(container)
    assert env["WANDB_API_KEY"] == {"secretKeyRef": {"name": "wb", "key": "api-key"}}
    assert env["NCCL_DEBUG"] == "WARN"
    sets = sets_of(container["args"])
    assert 'wandb.project="p"' in sets and 'wandb.mode="online"' in sets
    assert sets[-1] == "optimizer.lr=1e-4"  # the user's overrides come last, so they win


def test_inline_config_becomes_a_config_map_of_the_attempt() -> None:
    objects = desired_objects(olmojob(model={"config": "model: {preset: tiny}\n"}), AttemptState(2))
    (cm,) = by_kind(objects)["ConfigMap"]
    assert cm["metadata"]["name"] == "run-a2-config"
    assert cm["metadata"]["labels"][c.LABEL_ATTEMPT] == "2"
    assert cm["data"] == {"config.yaml": "model: {preset: tiny}\n"}
    job = trainer_of(objects)
    args = container_of(job)["args"]
    assert args[args.index("--config") + 1] == "/etc/olmo/config.yaml"
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "run-a2-config"


def test_config_map_reference_is_mounted() -> None:
    objects = desired_objects(
        olmojob(model={"configMapRef": {"name": "cfg", "key": "7b.yaml"}}), AttemptState(1)
    )
    assert "ConfigMap" not in by_kind(objects)
    job = trainer_of(objects)
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"] == {
        "name": "cfg",
        "items": [{"key": "7b.yaml", "path": "config.yaml"}],
    }


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


def test_dataprep_indexed_job() -> None:
    job = dataprep_job(
        parse_job(
            olmojob(
                dataset={
                    "claimName": "data",
                    "path": "dolma",
                    "prepare": {"pipelineConfigMap": {"name": "pipe"}, "workers": 4},
                }
            )
        )
    )
    assert job["metadata"]["name"] == "run-dataprep"
    assert job["metadata"]["labels"][c.LABEL_COMPONENT] == "dataprep"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 4
    container = container_of(job)
    assert container["image"] == "olmo-trainer:dev"  # defaults to spec.image
    assert container["command"] == ["olmo-dataprep"]
    assert container["args"] == [
        "run",
        "/config/pipeline.yaml",
        "--num-workers",
        "4",
        "--output",
        "/data/dolma",
    ]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["pipeline"]["configMap"] == {
        "name": "pipe",
        "items": [{"key": "pipeline.yaml", "path": "pipeline.yaml"}],
    }
    assert "readOnly" not in volumes["data"]["persistentVolumeClaim"]


def test_rotation_job_runs_olmo_ckpt_rotate_with_the_trainer_image() -> None:
    job = rotation_job(
        parse_job(
            olmojob(
                checkpoint={
                    "claimName": "ckpt",
                    "keepLast": 2,
                    "keepEvery": 1000,
                    "requireEvaluated": True,
                },
                eval={"enabled": True},
            )
        )
    )
    assert job["metadata"]["name"] == "run-rotate"
    assert job["metadata"]["labels"][c.LABEL_COMPONENT] == "rotation"
    container = container_of(job)
    assert container["image"] == "olmo-trainer:dev"
    assert container["args"] == [
        "olmo-ckpt",
        "rotate",
        "/checkpoints/run",
        "--keep-last",
        "2",
        "--keep-every",
        "1000",
        "--require-evaluated",
    ]


def test_names_are_deterministic_so_a_restarted_operator_creates_the_same_objects() -> None:
    first = desired_objects(olmojob(), AttemptState(7, 0))
    again = desired_objects(olmojob(), AttemptState(7, 0))
    assert first == again


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"checkpoint": {"claimName": "k", "path": "a/../b"}}, "relative path"),
        ({"model": {"preset": "tiny", "config": "x"}}, "exactly one of"),
        ({"overrides": ["=x"]}, "KEY=VALUE"),
        ({"nodePools": [{"name": "a"}, {"name": "a"}]}, "unique"),
    ],
)
def test_specs_the_schema_cannot_catch_are_refused_with_a_clear_message(
    patch: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        parse_job(olmojob(**patch))


def test_long_names_are_refused() -> None:
    with pytest.raises(SpecError, match="at most 42"):
        parse_job(olmojob(name="a" * 43))


# --------------------------------------------------------------------------------------------
# The trainer container's entrypoint


def _run_entrypoint(child: str, tmp_path: Path, signal_after: float | None) -> int:
    script = tmp_path / "child.py"
    script.write_text(child)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", PREEMPTION_AWARE_ENTRYPOINT, "olmo-trainer", sys.executable, str(script)]
    )
    if signal_after is not None:
        time.sleep(signal_after)
        proc.terminate()
    return proc.wait(timeout=20)


CHILD_SAVES_ON_SIGTERM = """
import signal, sys, time
def stop(*_):
    time.sleep(0.2)   # "saving a checkpoint"
    sys.exit(1)       # torchrun exits 1 whatever its workers' codes
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(30)
"""


def test_entrypoint_turns_a_sigterm_stop_into_exit_75(tmp_path: Path) -> None:
    assert _run_entrypoint(CHILD_SAVES_ON_SIGTERM, tmp_path, signal_after=0.5) == 75


def test_entrypoint_passes_exit_codes_through_without_sigterm(tmp_path: Path) -> None:
    assert _run_entrypoint("import sys; sys.exit(3)", tmp_path, signal_after=None) == 3
    assert _run_entrypoint("print('done')", tmp_path, signal_after=None) == 0


def test_entrypoint_keeps_success_when_training_finished_on_sigterm(tmp_path: Path) -> None:
    child = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\ntime.sleep(30)\n"
    assert _run_entrypoint(child, tmp_path, signal_after=0.5) == 0


def test_entrypoint_as_pid1_forwards_sigterm_and_exits_75(tmp_path: Path) -> None:
    """sh is the container's PID 1: without its trap a SIGTERM would do nothing at all."""
    script = tmp_path / "child.py"
    script.write_text(CHILD_SAVES_ON_SIGTERM)
    argv = [
        "/bin/sh",
        "-c",
        PREEMPTION_AWARE_ENTRYPOINT,
        "olmo-trainer",
        sys.executable,
        str(script),
    ]
    with as_pid1(argv, stdout=subprocess.PIPE, text=True) as pid1:
        assert pid1.process.stdout is not None
        assert pid1.process.stdout.readline() == "ready\n"
        sent = pid1.terminate()
        assert pid1.wait(timeout=20) == 75
        assert time.monotonic() - sent < 10


# --------------------------------------------------------------------------------------------
# The rotation container's entrypoint


def _rotation(tmp_path: Path, child: str) -> tuple[list[str], Path]:
    """The rotation container's command around ``python child``, its termination message file
    where the test can read it (the kubelet provides ``/dev/termination-log``)."""
    script = tmp_path / "child.py"
    script.write_text(child)
    log = tmp_path / "termination-log"
    entrypoint = ROTATION_ENTRYPOINT.replace("/dev/termination-log", str(log))
    assert entrypoint != ROTATION_ENTRYPOINT
    return ["/bin/sh", "-c", entrypoint, "olmo-rotate", sys.executable, str(script)], log


def test_rotation_entrypoint_keeps_the_summary_as_termination_message(tmp_path: Path) -> None:
    argv, log = _rotation(
        tmp_path, "import sys\nfor i in range(30): print('line', i)\nsys.exit(3)\n"
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout.splitlines() == [f"line {i}" for i in range(30)]
    assert log.read_text().splitlines() == [f"line {i}" for i in range(10, 30)]
    assert not list(tmp_path.glob("tmp*")), "its temporary file is removed"


CHILD_STOPS_ON_SIGTERM = """
import signal, sys, time
def stop(*_):
    print("stopped by SIGTERM", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("rotating", flush=True)
time.sleep(60)
"""


def test_rotation_entrypoint_forwards_sigterm(tmp_path: Path) -> None:
    argv, log = _rotation(tmp_path, CHILD_STOPS_ON_SIGTERM)
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        _wait_until(lambda: "rotating" in _read_all(tmp_path))
        proc.terminate()
        assert proc.wait(timeout=20) == 143
    finally:
        proc.kill()
        out, _ = proc.communicate()
    assert out.splitlines() == ["rotating", "stopped by SIGTERM"]
    assert log.read_text() == "rotating\nstopped by SIGTERM\n"


def test_rotation_entrypoint_as_pid1_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    # A child without a handler of its own: as a child (not PID 1) SIGTERM ends it.
    argv, log = _rotation(tmp_path, "import time\nprint('rotating', flush=True)\ntime.sleep(60)\n")
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    with as_pid1(argv, env=env, stdout=subprocess.PIPE, text=True) as pid1:
        _wait_until(lambda: "rotating" in _read_all(tmp_path))
        sent = pid1.terminate()
        assert pid1.wait(timeout=20) == 143
        assert time.monotonic() - sent < 10
    assert log.read_text() == "rotating\n"


def _read_all(folder: Path) -> str:
    """What the rotation's child wrote so far (into the entrypoint's file in ``$TMPDIR``)."""
    return "".join(p.read_text() for p in folder.glob("tmp*") if p.is_file())


def _wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# Every object is a valid Kubernetes object (the client's own models: field names and types)


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
