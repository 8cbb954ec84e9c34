"""The trainer gang of one attempt: its Indexed Job, torchrun command line, environment,
volumes, resources, node pool and config."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.resources import SHM_SIZE_DEFAULT, AttemptState, desired_objects
from tests.operator.olmojobs import by_kind, container_of, env_of, olmojob, sets_of, trainer_of


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
    progress, cm = by_kind(objects)["ConfigMap"]  # (the first: the pods' progress reports)
    assert progress["metadata"]["name"] == "run-progress"
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
    assert [m["metadata"]["name"] for m in by_kind(objects)["ConfigMap"]] == ["run-progress"]
    job = trainer_of(objects)
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"] == {
        "name": "cfg",
        "items": [{"key": "7b.yaml", "path": "config.yaml"}],
    }
