"""The cluster path, end to end: an OLMoJob through the real operator to a trained model.

The real kopf operator (``olmo_operator.handlers``) runs against the API emulator; the job
controller and the Deployment controller make the pods of its Jobs and of the eval worker's
Deployment; the test kubelet (``tests/e2e/kubelet.py``) runs every pod as local processes from
its spec — ``torchrun`` under the operator's entrypoint, ``olmo-eval watch``, ``olmo-ckpt
rotate``. A tiny 2-node × 1-process run (DeepSpeed ZeRO-3 on CPU, gloo) is preempted on one node
once a checkpoint exists; the operator restarts the gang, the trainer resumes from the latest
complete checkpoint, the eval worker evaluates every checkpoint, the final rotation keeps the
newest two — and the final weights are bit-identical to an uninterrupted local ``torchrun`` run.
"""

from __future__ import annotations

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

from olmo.checkpoints import layout
from olmo.train.checkpointing import DEEPSPEED_TAG
from olmo_operator import contract as c
from tests.operator.conftest import K8s, wait_for
from tests.train.conftest import losses, run_trainer, write_dataset

from .conftest import image_torch_extensions
from .kubelet import Kubelet, venv_bin

pytestmark = pytest.mark.slow

NAME = "tiny"
DATA_CLAIM, CHECKPOINT_CLAIM = "olmo-data", "olmo-checkpoints"
MAX_STEPS, INTERVAL, KEEP_LAST = 12, 3, 2
VOCAB, SEQ_LEN = 512, 64
# 32 instances of 64 tokens a step (micro-batches of 2): ~0.25 s a step on 2 CPU cores, so that
# the preemption, sent as soon as the first checkpoint is complete, lands well before the end.
GLOBAL_BATCH = 32
GRACE_SECONDS = 30
RUN_TIMEOUT = 420.0

# The model and training settings (the operator adds data paths, checkpoint policy, max_steps).
TRAIN_CONFIG = {
    "seed": 1234,
    "model": {
        "preset": "tiny", "d_model": 64, "n_layers": 2, "n_heads": 4, "mlp_hidden_size": 256,
        "vocab_size": VOCAB, "embedding_size": VOCAB, "eos_token_id": 0, "pad_token_id": 1,
        "max_sequence_length": SEQ_LEN,
    },
    "optimizer": {"lr": 3e-3},
    "scheduler": {"name": "cosine", "warmup_steps": 2},
    "batch": {"global_batch_size": GLOBAL_BATCH, "micro_batch_size": 2},
    "eval": {"interval": None},
    "wandb": {"mode": "disabled"},
}  # fmt: skip

# English text for a small byte-level BPE tokenizer (the eval worker scores text tasks with it).
ENGLISH = """\
To open a jar that is stuck, run the lid under hot water for a minute and then twist it.
If you want to keep bread fresh for longer, wrap it in a cloth and store it in a dry place.
A wet phone should be turned off at once and left in a bowl of dry rice overnight.
You can clean a cutting board by rubbing it with half a lemon and a spoon of coarse salt.
To stop a door from squeaking, put a drop of oil on each of its hinges.
When a shirt has a grease stain, cover the spot with chalk before you wash it.
Use a rubber band around a stripped screw head to give the screwdriver more grip.
Frozen pipes can be thawed slowly with a hair dryer, starting near the tap.
Put a wooden spoon across a boiling pot so that the water does not boil over.
To find a small lost item on the floor, cover the end of a vacuum hose with a thin sock.
Plants grow better when they get water in the morning rather than in the heat of the day.
A dull knife is more dangerous than a sharp one, because it slips off the food.
"""


def train_tokenizer(path: Path) -> Path:
    """A byte-level BPE tokenizer of at most VOCAB tokens (data-prep's trainer: EOS is id 0)."""
    from olmo_dataprep.tokenizer import train_bpe

    tokenizer = train_bpe(ENGLISH.splitlines() * 4, vocab_size=VOCAB)
    assert tokenizer.token_to_id("<|endoftext|>") == 0
    assert tokenizer.get_vocab_size() <= VOCAB
    tokenizer.save(str(path))
    return path


def create_claim(k8s: K8s, name: str) -> None:
    body = {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    k8s.core.create_namespaced_persistent_volume_claim(k8s.namespace, body)


@pytest.fixture
def dataset(k8s: K8s, kubelet: Kubelet) -> Path:
    """The two PVCs; in the dataset volume, token shards plus a tokenizer (what data-prep
    leaves there)."""
    create_claim(k8s, DATA_CLAIM)
    create_claim(k8s, CHECKPOINT_CLAIM)
    folder = write_dataset(kubelet.claim_dir(DATA_CLAIM) / "tokens", num_docs=200)
    train_tokenizer(folder / "tokenizer.json")
    return folder


def olmojob_spec() -> dict:
    return {
        "model": {"config": yaml.safe_dump(TRAIN_CONFIG)},
        "image": "olmo-trainer:e2e",
        "nodes": 2,
        "gpusPerNode": 0,
        "processesPerNode": 1,
        "dataset": {"claimName": DATA_CLAIM, "path": "tokens"},
        "checkpoint": {
            "claimName": CHECKPOINT_CLAIM,
            "interval": INTERVAL,
            "keepLast": KEEP_LAST,
            "requireEvaluated": True,
        },
        "eval": {"enabled": True, "tasks": ["piqa"], "limit": 2},
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


def fp32_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG)


def test_preempted_run_resumes_to_the_same_weights_as_an_uninterrupted_run(
    k8s: K8s, operator, job_controller, kubelet: Kubelet, dataset: Path, tmp_path: Path
):
    run_dir = kubelet.claim_dir(CHECKPOINT_CLAIM) / NAME
    started = time.monotonic()

    def milestone(what: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s {what}", file=sys.__stdout__, flush=True)

    k8s.create_olmojob(NAME, olmojob_spec())

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
    assert final["tokens"] == MAX_STEPS * GLOBAL_BATCH * SEQ_LEN
    assert final["latestCheckpoint"]["step"] == MAX_STEPS
    assert Path(final["latestCheckpoint"]["path"]) == final_ckpt
    assert final["lastEval"]["step"] == MAX_STEPS
    assert set(final["lastEval"]["headline"]) == {"piqa"}
    assert final["finalRotation"]["phase"] == "Succeeded"
    reasons = {e["reason"] for e in k8s.events(NAME)}
    assert {"Preempted", "CheckpointSaved", "Evaluated", "CheckpointsRotated"} <= reasons

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

    # ---- the same model as an uninterrupted run -------------------------------------------
    config = tmp_path / "reference.yaml"
    config.write_text(yaml.safe_dump(TRAIN_CONFIG))
    reference = tmp_path / "reference"
    run_trainer(
        config, reference, 2,
        "--set", f"run_name={json.dumps(NAME)}",
        "--set", f"data.paths={json.dumps([str(dataset)])}",
        "--set", f"max_steps={MAX_STEPS}",
        "--set", f"checkpoint.save_interval={INTERVAL}",
        # the pods' toolchain (the venv's ninja) and extension cache: no second JIT build
        env={**image_torch_extensions(), "PATH": f"{venv_bin()}:{os.environ['PATH']}"},
    )  # fmt: skip
    milestone("the uninterrupted reference run is done")
    assert dict(losses(run_dir)) == dict(losses(reference))
    ours = fp32_weights(final_ckpt)
    theirs = fp32_weights(layout.final_dir(reference, MAX_STEPS))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
