"""The cluster path, end to end: an OLMoJob through the real operator to a trained model.

The real kopf operator (``olmo_operator.handlers``) runs against the API emulator; the job
controller and the Deployment controller make the pods of its Jobs and of the eval worker's
Deployment; the test kubelet (``tests/e2e/kubelet.py``) runs every pod from its spec — as local
processes (``process``), or as containers of the images the OLMoJob names (``container``: the
trainer, eval-worker and data-prep images of docker/, as uid 10001 with a read-only root) —:
``olmo-dataprep run`` in two Indexed-Job workers, ``torchrun`` under the operator's entrypoint,
``olmo-eval watch``, ``olmo-ckpt rotate``.

The dataset comes from the operator's data-prep Job: a small raw Dolma-format corpus (JSONL.gz,
two sources, with a duplicate and two documents the language filter drops) in the data volume
and a pipeline ConfigMap with every filter on, which turns it into token shards and a trained
BPE tokenizer of 512 tokens (EOS 0, pad 1). A tiny 2-node × 1-process run (DeepSpeed ZeRO-3 on
CPU, gloo) is then preempted on one node once a checkpoint exists; the operator restarts the
gang, the trainer resumes from the latest complete checkpoint, the eval worker evaluates every
checkpoint (with data-prep's tokenizer), the final rotation keeps the newest two — and the final
weights are bit-identical to an uninterrupted local ``torchrun`` run on the same token folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
from tokenizers import Tokenizer

from olmo.checkpoints import layout
from olmo.checkpoints.paths import DEEPSPEED_TAG
from olmo.data.shards import read_manifest
from olmo_operator import contract as c
from tests.dataprep.conftest import english_docs, write_jsonl_gz
from tests.engine import IMAGE_UID, require_image
from tests.operator.conftest import COMPLETION_INDEX, K8s, wait_for
from tests.train.conftest import SEQ_LEN, TINY_MODEL, VOCAB, losses, run_trainer

from .extensions import image_torch_extensions
from .kubelet import Kubelet, venv_bin

pytestmark = pytest.mark.slow

MODES = [
    pytest.param("process", id="process"),
    pytest.param("container", id="container", marks=pytest.mark.images),
]

NAME = "tiny"
DATA_CLAIM, CHECKPOINT_CLAIM = "olmo-data", "olmo-checkpoints"
PIPELINE = "tiny-pipeline"
RAW = "raw"  # the raw corpus, in the data volume
MAX_STEPS, INTERVAL, KEEP_LAST = 12, 3, 2
# 32 instances of 64 tokens a step (micro-batches of 2): ~0.25 s a step on 2 CPU cores, so that
# the preemption, sent as soon as the first checkpoint is complete, lands well before the end.
GLOBAL_BATCH = 32
GRACE_SECONDS = 30
RUN_TIMEOUT = 420.0

# The model and training settings (the operator adds data paths, checkpoint policy, max_steps).
TRAIN_CONFIG = {
    "seed": 1234,
    "model": TINY_MODEL,
    "optimizer": {"lr": 3e-3},
    "scheduler": {"name": "cosine", "warmup_steps": 2},
    "batch": {"global_batch_size": GLOBAL_BATCH, "micro_batch_size": 2},
    "eval": {"interval": None},
    "wandb": {"mode": "disabled"},
}  # fmt: skip

# Resources as a real OLMoJob would ask (enforced in container mode).
TRAINER_RESOURCES = {"limits": {"memory": "3Gi", "cpu": "1"}, "requests": {"cpu": "500m"}}
EVAL_RESOURCES = {"limits": {"memory": "2Gi", "cpu": "1"}}
DATAPREP_RESOURCES = {"limits": {"memory": "1Gi", "cpu": "1"}}
DOCS, BOOKS = 240, 30
FRENCH = (
    "Le moulin se trouve au bord de la rivière depuis plus de cent ans, et les habitants du "
    "village y apportent leur blé chaque été. Les enfants regardent la roue tourner pendant que "
    "le meunier note le poids de chaque sac dans son grand cahier."
)


def create_claim(k8s: K8s, name: str) -> None:
    body = {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    k8s.core.create_namespaced_persistent_volume_claim(k8s.namespace, body)


def write_corpus(data: Path) -> dict[str, int]:
    """The raw corpus in the data volume (Dolma JSONL.gz): two web files and one of books, with
    an exact duplicate and two documents the language filter drops; the input counts."""
    docs = english_docs(DOCS, seed=7)
    dolma = {"added": "2026-12-01T00:00:00Z", "created": "2026-01-01T00:00:00Z"}
    web = [
        {"id": f"web-{i:04d}", "text": t, "source": "web", **dolma,
         "metadata": {"url": f"https://example.org/{i}"}}
        for i, t in enumerate(docs)
    ]  # fmt: skip
    web += [
        {"id": "web-duplicate", "text": docs[3], "source": "web", **dolma,
         "metadata": {"url": "https://example.org/copy"}},
        {"id": "web-french", "text": FRENCH, "source": "web", **dolma},
        {"id": "web-short", "text": "Too short.", "source": "web", **dolma},
    ]  # fmt: skip
    books = [
        {"id": f"book-{i:03d}", "text": t, "source": "books", **dolma}
        for i, t in enumerate(english_docs(BOOKS, seed=8, paragraphs=3))
    ]
    write_jsonl_gz(data / RAW / "web" / "web-0000.jsonl.gz", web[::2])
    write_jsonl_gz(data / RAW / "web" / "web-0001.jsonl.gz", web[1::2])
    write_jsonl_gz(data / RAW / "books" / "books-0000.jsonl.gz", books)
    return {"web": len(web), "books": len(books)}


def pipeline_config(raw: str) -> dict:
    """The data-prep pipeline (every filter on, recipe defaults), reading ``raw``: the corpus
    folder as the data-prep pods see it. In container mode that is ``/data/raw``; process mode
    cannot rewrite paths inside a ConfigMap's file, so there it is the host folder."""
    return {
        "seed": 0,
        "sources": [
            {"name": "web", "paths": [f"{raw}/web"]},
            {"name": "books", "paths": [f"{raw}/books"], "weight": 2.0},
        ],
        # a BPE trained on the kept text, the size of the model's vocabulary
        "tokenizer": {"name": "train", "train_vocab_size": VOCAB},
        "processes": 1,  # each worker maps its files itself (2 workers on 2 cores)
    }


@pytest.fixture
def corpus(k8s: K8s, kubelet: Kubelet, kubelet_runtime: str) -> dict[str, int]:
    """The two PVCs, the raw corpus in the data volume and the pipeline ConfigMap."""
    create_claim(k8s, DATA_CLAIM)
    create_claim(k8s, CHECKPOINT_CLAIM)
    data = kubelet.claim_dir(DATA_CLAIM)
    counts = write_corpus(data)
    raw = f"{c.DATA_MOUNT}/{RAW}" if kubelet_runtime == "container" else str(data / RAW)
    body = {
        "metadata": {"name": PIPELINE},
        "data": {c.PIPELINE_FILE: yaml.safe_dump(pipeline_config(raw), sort_keys=False)},
    }
    k8s.core.create_namespaced_config_map(k8s.namespace, body)
    return counts


def images(mode: str) -> dict[str, str]:
    """The images the OLMoJob names: the real ones in container mode (which must exist)."""
    if mode == "container":
        return {name: require_image(name) for name in ("trainer", "evalworker", "dataprep")}
    return {name: f"olmo-{name}:e2e" for name in ("trainer", "evalworker", "dataprep")}


def olmojob_spec(image: dict[str, str]) -> dict:
    return {
        "model": {"config": yaml.safe_dump(TRAIN_CONFIG)},
        "image": image["trainer"],
        "nodes": 2,
        "gpusPerNode": 0,
        "processesPerNode": 1,
        "resources": TRAINER_RESOURCES,
        "dataset": {
            "claimName": DATA_CLAIM,
            "path": "tokens",
            "prepare": {
                "pipelineConfigMap": {"name": PIPELINE},
                "workers": 2,
                "image": image["dataprep"],
                "resources": DATAPREP_RESOURCES,
            },
        },
        "checkpoint": {
            "claimName": CHECKPOINT_CLAIM,
            "interval": INTERVAL,
            "keepLast": KEEP_LAST,
            "requireEvaluated": True,
        },
        "eval": {
            "enabled": True,
            "image": image["evalworker"],
            "tasks": ["piqa"],
            "limit": 2,
            "resources": EVAL_RESOURCES,
        },
        "maxSteps": MAX_STEPS,
        "maxFailures": 1,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        # step-only progress reports every second (checkpoints are reported at once anyway)
        "env": [{"name": "OLMO_PROGRESS_INTERVAL_SECONDS", "value": "1"}],
    }


def status_of(k8s: K8s) -> dict:
    return k8s.olmojob(NAME).get("status") or {}


def trainer_pods(k8s: K8s, attempt: int) -> dict[int, dict]:
    pods = k8s.pods(f"{c.LABEL_JOB}={NAME},{c.LABEL_ATTEMPT}={attempt}")
    index = "batch.kubernetes.io/job-completion-index"
    return {int(p["metadata"]["labels"][index]): p for p in pods}


def ran(kubelet: Kubelet, attempt: int) -> list:
    """The trainer pods of ``attempt`` that the kubelet ran."""
    prefix = f"{NAME}-a{attempt}-"
    return [
        run
        for run in kubelet.runs()
        if run.name.startswith(prefix)
        and run.pod["metadata"]["labels"].get(c.LABEL_COMPONENT) == c.TRAINER
    ]


_REFERENCES: dict[str, Path] = {}


def uninterrupted_run(data: str, manifest: dict, root: Path) -> Path:
    """The run directory of an uninterrupted local 2-process ``torchrun`` of the cluster path's
    job (``TRAIN_CONFIG``, ``MAX_STEPS``, ``INTERVAL``) on the token folder ``data`` (a path or a
    URI) whose ``manifest`` is given. Deterministic, so it is run once per test session for each
    set of shards (their sha256s): data-prep writes the same bytes with one worker or two, into a
    volume or a bucket, and every cluster-path test compares against the same run."""
    key = hashlib.sha256(json.dumps(manifest["shards"], sort_keys=True).encode()).hexdigest()
    if key not in _REFERENCES:
        root.mkdir(parents=True, exist_ok=True)
        config = root / "reference.yaml"
        config.write_text(yaml.safe_dump(TRAIN_CONFIG))
        run_trainer(
            config, root / "reference", 2,
            "--set", f"run_name={json.dumps(NAME)}",
            "--set", f"data.paths={json.dumps([data])}",
            "--set", f"max_steps={MAX_STEPS}",
            "--set", f"checkpoint.save_interval={INTERVAL}",
            # the pods' toolchain (the venv's ninja) and extension cache: no second JIT build
            env={**image_torch_extensions(), "PATH": f"{venv_bin()}:{os.environ['PATH']}"},
        )  # fmt: skip
        _REFERENCES[key] = root / "reference"
    return _REFERENCES[key]


def fp32_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG)


@pytest.mark.parametrize("kubelet_runtime", MODES)
def test_preempted_run_resumes_to_the_same_weights_as_an_uninterrupted_run(
    k8s: K8s,
    operator,
    job_controller,
    kubelet: Kubelet,
    kubelet_runtime: str,
    corpus: dict[str, int],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
):
    image = images(kubelet_runtime)
    run_dir = kubelet.claim_dir(CHECKPOINT_CLAIM) / NAME
    dataset = kubelet.claim_dir(DATA_CLAIM) / "tokens"
    started = time.monotonic()

    def milestone(what: str) -> None:
        print(
            f"{time.monotonic() - started:7.1f}s [{kubelet_runtime}] {what}",
            file=sys.__stdout__,
            flush=True,
        )

    k8s.create_olmojob(NAME, olmojob_spec(image))

    # Data-prep first: two workers of an Indexed Job write the token shards and the tokenizer.
    prepared = wait_for(
        lambda: next(
            (
                cond
                for cond in status_of(k8s).get("conditions") or []
                if cond["type"] == "DataPrepared" and cond["status"] == "True"
            ),
            None,
        ),
        RUN_TIMEOUT,
        0.1,
        "the data-prep Job to finish",
    )
    read_manifest(dataset)  # the trainer's reader accepts it
    manifest = json.loads((dataset / "manifest.json").read_text())
    milestone(
        f"data prepared: {manifest['total_tokens']} tokens, {len(manifest['shards'])} shards "
        f"({prepared['message']})"
    )

    # Attempt 1 trains on two "nodes"; once its first checkpoint is complete, node 1 goes away.
    first = wait_for(
        lambda: layout.latest_complete(run_dir), RUN_TIMEOUT, 0.02, "the first checkpoint"
    )
    victim = trainer_pods(k8s, 1)[1]["metadata"]["name"]
    kubelet.preempt(victim, "TerminationByKubelet")
    milestone(f"checkpoint step {first.step} complete: preempting {victim}")

    final = wait_for(
        lambda: (
            (s := status_of(k8s)).get("phase") in c.TERMINAL_PHASES
            and (s.get("finalRotation") or {}).get("phase") in ("Succeeded", "Failed")
            and s
        ),
        RUN_TIMEOUT,
        0.2,
        "the OLMoJob to finish and rotate its checkpoints",
    )
    milestone(f"OLMoJob {final['phase']}, final rotation {final['finalRotation']['phase']}")
    assert final["phase"] == c.SUCCEEDED, final
    # The eval worker goes once the final checkpoint is evaluated.
    wait_for(
        lambda: not k8s.apps.list_namespaced_deployment(k8s.namespace).items,
        60,
        message="the eval worker Deployment to be removed",
    )

    # ---- the preemption: mid-run, signalled, saved, counted as a preemption --------------
    assert final["restarts"] == {"failures": 0, "preemptions": 1}
    assert final["attempt"] == 2
    assert final["lastRestart"]["cause"] == "Preemption"
    assert final["lastRestart"]["reason"] == "DisruptionTarget"
    assert victim in final["lastRestart"]["message"]
    preempted = next(run for run in kubelet.runs() if run.name == victim)
    assert preempted.containers[0].exit_code == c.EXIT_PREEMPTED  # the entrypoint's verdict
    assert preempted.sent["phase"] == "Failed"
    assert {"type": "DisruptionTarget", "reason": "TerminationByKubelet"}.items() <= next(
        cond for cond in preempted.sent["conditions"] if cond["type"] == "DisruptionTarget"
    ).items()

    attempt1 = "".join(kubelet.log_of(run.name) for run in ran(kubelet, 1))
    stopped = re.search(r"stopping after step (\d+): preempted", attempt1)
    assert stopped, attempt1[-3000:]
    stopped_at = int(stopped.group(1))
    assert first.step <= stopped_at < MAX_STEPS
    attempt2 = "".join(kubelet.log_of(run.name) for run in ran(kubelet, 2))
    resumed = re.search(r"resumed from \S*step(\d+) at step (\d+)", attempt2)
    assert resumed, attempt2[-3000:]
    resumed_at = int(resumed.group(1))
    assert first.step <= resumed_at <= stopped_at
    saved = sorted({*range(INTERVAL, MAX_STEPS + 1, INTERVAL), resumed_at})
    # Never two gangs on the run directory: attempt 2 started once attempt 1's pods had stopped.
    events = {(pod, what.split(":")[0]): when for when, pod, what in kubelet.history}
    stopped_pods = [events[run.name, "finished"] for run in ran(kubelet, 1)]
    started_pods = [events[run.name, "started"] for run in ran(kubelet, 2)]
    assert len(stopped_pods) == len(started_pods) == 2
    assert max(stopped_pods) < min(started_pods)

    # ---- status mirrored from the pods' reports -------------------------------------------
    final_ckpt = layout.final_dir(run_dir, MAX_STEPS)
    assert final["step"] == MAX_STEPS
    assert final["progress"]["attempt"] == 2  # reported by the pods of attempt 2
    assert "rejected" not in final["progress"]  # every report they sent passed validation
    assert final["tokens"] == MAX_STEPS * GLOBAL_BATCH * SEQ_LEN
    assert final["latestCheckpoint"]["step"] == MAX_STEPS
    # the path as the pods see it: the volume's mount path (process mode: its host folder)
    claim = kubelet.claim_dir(CHECKPOINT_CLAIM)
    seen_at = Path(c.CHECKPOINTS_MOUNT) if kubelet_runtime == "container" else claim
    assert Path(final["latestCheckpoint"]["path"]) == seen_at / final_ckpt.relative_to(claim)
    assert final["lastEval"]["step"] == MAX_STEPS
    assert set(final["lastEval"]["headline"]) == {"piqa"}
    assert final["finalRotation"]["phase"] == "Succeeded"
    reasons = {e["reason"] for e in k8s.events(NAME)}
    assert {"Preempted", "CheckpointSaved", "Evaluated", "CheckpointsRotated"} <= reasons
    # Issue 20 inside the images: both attempts passed the preflight (the storage check wrote
    # to the checkpoint volume as the pods' user), and the ledger charged the run.
    assert final["lastPreflight"]["attempt"] == 2 and final["lastPreflight"]["passed"] is True
    assert "PreflightPassed" in reasons
    assert final["throughput"]["stepSeconds"] > 0 and final["lastSaveSeconds"] >= 0
    ledger = final["goodput"]
    for state in ("preparingData", "starting", "training"):
        assert ledger["seconds"].get(state, 0) > 0, (state, ledger["seconds"])
    assert [r["cause"] for r in ledger["restarts"]] == ["Preemption"]
    assert 0 < ledger["ratio"] <= 1 and ledger["pools"][""]["interruptions"] == 1

    # ---- checkpoints rotated by the policy, every one evaluated first ---------------------
    kept = layout.list_checkpoints(run_dir)
    assert [ckpt.step for ckpt in kept] == saved[-KEEP_LAST:]
    for ckpt in kept:
        assert layout.is_complete(ckpt.path) and layout.is_evaluated(ckpt.path), ckpt
    assert not layout.list_temp_dirs(run_dir)
    assert layout.latest_complete(run_dir).step == MAX_STEPS
    for step in saved:
        results = json.loads(layout.eval_result_path(run_dir, step).read_text())
        assert results["step"] == step
        assert "piqa" in results["tasks"]
        assert Path(results["tokenizer"]).parts[-2:] == ("tokens", "tokenizer.json")  # data-prep's

    # ---- the dataset: data-prep's two workers, every filter, a 512-token BPE ------------
    dataprep_pods = [
        run
        for run in kubelet.runs()
        if run.pod["metadata"]["labels"].get(c.LABEL_COMPONENT) == c.DATAPREP
    ]
    assert sorted(run.pod["metadata"]["labels"][COMPLETION_INDEX] for run in dataprep_pods) == [
        "0",
        "1",
    ]
    assert all(run.sent["phase"] == "Succeeded" for run in dataprep_pods)
    counts = manifest["stage_counts"]
    assert counts["documents_in"] == sum(corpus.values())
    assert counts["dropped"]["doc_dedup"] == {"duplicate": 1}
    assert counts["dropped"]["langid"] == {"language": 2}
    assert manifest["sources"]["books"]["copies_written"] == 2 * BOOKS  # weight 2.0
    assert (manifest["eos_token_id"], manifest["dtype"]) == (0, "uint16")
    model = TRAIN_CONFIG["model"]  # the trainer's vocabulary, EOS and padding are data-prep's
    assert (manifest["tokenizer"]["eos_token_id"], manifest["tokenizer"]["pad_token_id"]) == (
        model["eos_token_id"],
        model["pad_token_id"],
    )
    tokenizer = Tokenizer.from_file(str(dataset / "tokenizer.json"))
    assert tokenizer.get_vocab_size() <= VOCAB
    assert tokenizer.token_to_id("<|endoftext|>") == 0
    if kubelet_runtime == "container":  # written by the images' user, through fsGroup
        assert (dataset / "manifest.json").stat().st_uid == IMAGE_UID
        assert final_ckpt.stat().st_uid == IMAGE_UID

    # ---- the same model as an uninterrupted run -------------------------------------------
    reference = uninterrupted_run(str(dataset), manifest, tmp_path_factory.mktemp("uninterrupted"))
    milestone("the uninterrupted reference run is done")
    assert dict(losses(run_dir)) == dict(losses(reference))
    ours = fp32_weights(final_ckpt)
    theirs = fp32_weights(layout.final_dir(reference, MAX_STEPS))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
