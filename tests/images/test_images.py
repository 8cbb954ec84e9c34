"""The four images of docker/, run as the operator's pod specs run them.

Each test builds the pod with the operator's own builders (``olmo_operator.resources``) and runs
its container with the pod's user (uid 10001), a read-only root filesystem, dropped
capabilities, the pod's mounts as host folders, and no network unless the pod needs one:

- the operator image reconciles an OLMoJob against the API emulator and creates its first
  attempt's Job;
- the data-prep image runs a two-worker Indexed-Job-style pipeline into a bind-mounted folder,
  byte for byte what the same pipeline makes as one local process;
- the trainer image trains a tiny model for a few steps with two ZeRO-3 processes (gloo on CPU,
  DeepSpeed's communication op prebuilt in the image) and saves COMPLETE checkpoints;
- the eval-worker image evaluates that checkpoint and answers /healthz and /metrics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from olmo.checkpoints import layout
from olmo_operator import contract as c
from olmo_operator.resources import (
    AttemptState,
    attempt_name,
    dataprep_job,
    eval_deployment,
    master_address,
    trainer_job,
)
from olmo_operator.spec import parse_job
from tests.dataprep.conftest import english_docs, write_jsonl_gz
from tests.engine import IMAGE_NAMES, IMAGE_UID, engine, image, require_image
from tests.operator.conftest import K8s, olmojob_crd, wait_for
from tests.operator.emulator import ApiServer, KubeEmulator, write_kubeconfig
from tests.train.conftest import TINY_MODEL, VOCAB, write_dataset

from .conftest import docker_create, folder, wait_until

pytestmark = [pytest.mark.images, pytest.mark.slow]

NAMESPACE = "default"
TRAIN_STEPS, SAVE_INTERVAL = 4, 2
TRAIN_CONFIG = {
    "seed": 7,
    "model": TINY_MODEL,
    "optimizer": {"lr": 3e-3},
    "scheduler": {"name": "cosine", "warmup_steps": 1},
    "batch": {"global_batch_size": 8, "micro_batch_size": 2},
    "eval": {"interval": None},
    "wandb": {"mode": "disabled"},
}  # fmt: skip
TOKENIZER_TEXT = [
    "To open a jar that is stuck, run the lid under hot water for a minute and then twist it.",
    "A wet phone should be turned off at once and left in a bowl of dry rice overnight.",
    "Put a wooden spoon across a boiling pot so that the water does not boil over.",
    "Plants grow better when they get water in the morning rather than in the heat of the day.",
]


def olmojob(name: str = "tiny", **spec) -> dict:
    body = {
        "model": {"config": yaml.safe_dump(TRAIN_CONFIG)},
        "image": image("trainer"),
        "nodes": 1,
        "gpusPerNode": 0,
        "processesPerNode": 2,
        "dataset": {"claimName": "olmo-data", "path": "tokens"},
        "checkpoint": {"claimName": "olmo-checkpoints", "interval": SAVE_INTERVAL},
        "eval": {"enabled": True, "image": image("evalworker"), "tasks": ["piqa"],
                 "limit": 2},
        "maxSteps": TRAIN_STEPS,
        **spec,
    }  # fmt: skip
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": "u-1", "generation": 1},
        "spec": body,
    }


def pod_spec(obj: dict) -> dict:
    """The pod template of a Job or Deployment."""
    return obj["spec"]["template"]["spec"]


def run_checked(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


# --------------------------------------------------------------------------------------------
# What is in the images


def test_every_image_runs_as_10001_and_only_the_torch_images_carry_torch() -> None:
    client = engine()
    sizes = {}
    for name in IMAGE_NAMES:
        found = client.images.get(require_image(name))
        assert found.attrs["Config"]["User"] == f"{IMAGE_UID}:{IMAGE_UID}", name
        sizes[name] = found.attrs["Size"]
        probe = (
            "import importlib.util, os, sys; "
            "print(os.getuid(), os.getgid(), importlib.util.find_spec('torch') is not None)"
        )
        out = client.containers.run(
            found.id, entrypoint=["python3", "-c", probe], network_mode="none", remove=True,
            read_only=True,
        ).decode().split()  # fmt: skip
        assert out[:2] == [str(IMAGE_UID), str(IMAGE_UID)], (name, out)
        assert out[2] == str(name in ("trainer", "evalworker")), (name, out)
    print(" ".join(f"{name}={size / 1e6:.0f}MB" for name, size in sizes.items()))


def test_the_trainer_image_ships_deepspeeds_cpu_ops_prebuilt() -> None:
    """The communication op and CPU Adam (``offload_optimizer: cpu``) load and run under a
    read-only root without a compiler: nothing is built at start."""
    probe = (
        "from deepspeed.git_version_info import installed_ops; "
        "assert installed_ops['deepspeed_shm_comm'] and installed_ops['cpu_adam'], installed_ops; "
        "import deepspeed.ops.comm.deepspeed_shm_comm_op as op; print('op', op.__name__); "
        "import torch; from deepspeed.ops.adam import DeepSpeedCPUAdam; "
        "from olmo.train.engine import use_prebuilt_cpu_adam; assert use_prebuilt_cpu_adam(); "
        "p = torch.nn.Parameter(torch.zeros(8)); adam = DeepSpeedCPUAdam([p], lr=0.1); "
        "p.grad = torch.ones(8); adam.step(); print('cpu_adam step', round(p[0].item(), 3))"
    )
    out = engine().containers.run(
        require_image("trainer"), entrypoint=["python3", "-c", probe], network_mode="none",
        remove=True, read_only=True, environment={"DS_ACCELERATOR": "cpu"},
        tmpfs={"/tmp": "", "/home/olmo": ""},  # the pods' emptyDirs (torch writes its caches there)
    )  # fmt: skip
    assert b"op deepspeed.ops.comm.deepspeed_shm_comm_op" in out
    assert b"cpu_adam step -0.1" in out  # Adam's first step moves by lr against the gradient


# --------------------------------------------------------------------------------------------
# The operator image


def test_operator_image_reconciles_an_olmojob_against_the_api(run_pod, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kube" / "config"
    kubeconfig.parent.mkdir()
    with ApiServer(KubeEmulator(), kubeconfig) as server:
        server.call(server.emulator.register_crd, olmojob_crd())
        write_kubeconfig(kubeconfig, server.url)
        kubeconfig.chmod(0o644)
        k8s = K8s.from_kubeconfig(kubeconfig, NAMESPACE)
        # The chart's Deployment: `olmo-operator run --standalone --namespace=...` (ENTRYPOINT).
        pod = {
            "securityContext": {"runAsNonRoot": True, "runAsUser": IMAGE_UID,
                                "runAsGroup": IMAGE_UID},
            "containers": [{
                "name": "operator",
                "args": ["run", "--standalone", f"--namespace={NAMESPACE}",
                         "--liveness-port=0", "--metrics-port=0"],
                "env": [{"name": "KUBECONFIG", "value": "/kube/config"}],
                "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "kube", "mountPath": "/kube", "readOnly": True},
                                 {"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "kube", "secret": {"secretName": "kubeconfig"}},
                        {"name": "tmp", "emptyDir": {}}],
        }  # fmt: skip
        operator = run_pod("operator", pod, {"kube": kubeconfig.parent}, network="host")
        k8s.create_olmojob("tiny", olmojob()["spec"])
        job = wait_for(
            lambda: next(
                iter(k8s.jobs(f"{c.LABEL_JOB}=tiny,{c.LABEL_COMPONENT}={c.TRAINER}")), None
            ),
            90,
            message="the operator (in its image) to create the first attempt's Job",
        )
        assert job["metadata"]["name"] == attempt_name("tiny", 1)
        assert k8s.olmojob("tiny").get("status", {}).get("attempt") == 1
        started = time.monotonic()
        operator.stop(grace=30)
        assert operator.wait(30) == 0, operator.logs()[-3000:]
        assert time.monotonic() - started < 25, "the operator ignored SIGTERM"
        k8s.close()


# --------------------------------------------------------------------------------------------
# The data-prep image


PIPELINE = {
    "seed": 0,
    "sources": [{"name": "web", "paths": ["/data/raw/web"]},
                {"name": "books", "paths": ["/data/raw/books"]}],
    "tokenizer": {"name": "train", "train_vocab_size": VOCAB},
}  # fmt: skip


def test_dataprep_image_two_workers_make_what_one_local_process_makes(
    run_pod, tmp_path: Path
) -> None:
    data = folder(tmp_path / "data")
    for i, source in enumerate(("web", "books")):
        for part in range(2):
            docs = english_docs(30, seed=10 * i + part, paragraphs=2, sentences=6)
            write_jsonl_gz(
                data / "raw" / source / f"part-{part}.jsonl.gz",
                [{"id": f"{source}-{part}-{n}", "text": t} for n, t in enumerate(docs)],
            )
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    (pipeline / c.PIPELINE_FILE).write_text(yaml.safe_dump(PIPELINE))

    spec = olmojob(dataset={"claimName": "olmo-data", "path": "tokens", "prepare": {
        "pipelineConfigMap": {"name": "pipeline"}, "workers": 2,
        "image": image("dataprep")}})["spec"]  # fmt: skip
    job = dataprep_job(parse_job(olmojob(**spec)))
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    pod = pod_spec(job)
    volumes = {"pipeline": pipeline, "data": data}
    workers = [
        run_pod("dataprep", pod, volumes, env={"JOB_COMPLETION_INDEX": str(index)})
        for index in range(2)
    ]
    for index, worker in enumerate(workers):
        assert worker.wait(600) == 0, f"worker {index}:\n{worker.logs()[-4000:]}"

    # The same pipeline as one local process, on a copy of the raw documents.
    local = tmp_path / "local"
    config = dict(PIPELINE, sources=[
        {"name": s["name"], "paths": [str(data / "raw" / s["name"])]} for s in PIPELINE["sources"]
    ])  # fmt: skip
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(config))
    olmo_dataprep = str(Path(sys.executable).parent / "olmo-dataprep")
    run_checked(olmo_dataprep, "run", str(tmp_path / "local.yaml"), "--output", str(local))

    ours = json.loads((data / "tokens" / "manifest.json").read_text())
    theirs = json.loads((local / "manifest.json").read_text())
    assert ours["total_tokens"] == theirs["total_tokens"] > 0
    assert [s["sha256"] for s in ours["shards"]] == [s["sha256"] for s in theirs["shards"]]
    assert (data / "tokens" / "tokenizer.json").read_bytes() == (
        local / "tokenizer.json"
    ).read_bytes()


# --------------------------------------------------------------------------------------------
# The trainer and eval-worker images


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A tiny run trained in the trainer image: (checkpoint volume, data volume, OLMoJob)."""
    from olmo_dataprep.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("trainer-image")
    data, checkpoints, config = folder(root / "data"), folder(root / "checkpoints"), root / "config"
    tokens = write_dataset(data / "tokens", num_docs=120)
    tokenizer = train_bpe(TOKENIZER_TEXT * 4, vocab_size=VOCAB)
    assert tokenizer.token_to_id("<|endoftext|>") == 0
    tokenizer.save(str(tokens / "tokenizer.json"))
    config.mkdir()
    obj = olmojob()
    (config / c.CONFIG_FILE).write_text(obj["spec"]["model"]["config"])

    job = parse_job(obj)
    pod = pod_spec(trainer_job(job, AttemptState(attempt=1)))
    # The Job controller gives JOB_COMPLETION_INDEX; the pod's DNS name is the master address.
    create = docker_create(
        "trainer", pod, {"checkpoints": checkpoints, "data": data, "config": config}, root,
        env={"JOB_COMPLETION_INDEX": "0", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert master_address(job.name, 1) in create.host["extra_hosts"]
    api = engine().api
    container = api.create_container(
        host_config=api.create_host_config(**create.host), **create.config
    )["Id"]
    try:
        api.start(container)
        rc = int(api.wait(container, timeout=600)["StatusCode"])
        logs = api.logs(container).decode(errors="replace")
    finally:
        api.remove_container(container, force=True)
    assert rc == 0, logs[-6000:]
    assert "deepspeed_shm_comm_op built successfully" in logs, logs[-3000:]
    assert "ninja" not in logs.lower() and "c++" not in logs, "a pod compiled something"
    print(f"{attempt_name(job.name, 1)}: trained {TRAIN_STEPS} steps in the trainer image")
    return checkpoints, data, obj


def test_trainer_image_trains_with_two_zero3_processes_and_saves_complete_checkpoints(
    trained,
) -> None:
    checkpoints, _, obj = trained
    run_dir = checkpoints / obj["spec"]["checkpoint"].get("path", obj["metadata"]["name"])
    saved = layout.list_checkpoints(run_dir)
    assert [ckpt.step for ckpt in saved] == list(
        range(SAVE_INTERVAL, TRAIN_STEPS + 1, SAVE_INTERVAL)
    )
    for ckpt in saved:
        assert layout.is_complete(ckpt.path), ckpt
        assert ckpt.path.stat().st_uid == IMAGE_UID  # written by the image's user
    assert layout.latest_complete(run_dir).step == TRAIN_STEPS
    metrics = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert any('"loss"' in line for line in metrics)


def test_evalworker_image_evaluates_the_checkpoint_and_serves_health_and_metrics(
    trained, run_pod
) -> None:
    checkpoints, data, obj = trained
    job = parse_job(obj)
    run_dir = checkpoints / Path(job.spec.run_dir).name
    pod = pod_spec(eval_deployment(job))
    worker = run_pod("evalworker", pod, {"checkpoints": checkpoints, "data": data})
    result = layout.eval_result_path(run_dir, TRAIN_STEPS)
    wait_until(result.exists, 300, f"the eval worker to write {result}", interval=1)
    results = json.loads(result.read_text())
    assert results["step"] == TRAIN_STEPS and "piqa" in results["tasks"]
    assert layout.is_evaluated(layout.final_dir(run_dir, TRAIN_STEPS))

    port = next(p["containerPort"] for p in pod["containers"][0]["ports"])
    fetch = (
        "import sys, urllib.request; "
        f"r = urllib.request.urlopen('http://127.0.0.1:{port}' + sys.argv[1], timeout=10); "
        "print(r.status); print(r.read().decode())"
    )
    health = worker.container.exec_run(["python3", "-c", fetch, "/healthz"], user=str(IMAGE_UID))
    assert health.exit_code == 0 and health.output.decode().startswith("200"), health.output
    metrics = worker.container.exec_run(["python3", "-c", fetch, "/metrics"], user=str(IMAGE_UID))
    assert metrics.exit_code == 0, metrics.output
    assert "olmo_eval" in metrics.output.decode(), metrics.output.decode()[:2000]

    started = time.monotonic()
    worker.container.kill("SIGTERM")  # its program is PID 1: it must handle SIGTERM itself
    assert worker.wait(60) in (0, 143), worker.logs()[-3000:]
    assert time.monotonic() - started < 30, "the eval worker ignored SIGTERM"
