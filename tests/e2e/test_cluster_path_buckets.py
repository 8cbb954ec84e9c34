"""The cluster path with buckets: ``tests/e2e/test_cluster_path.py``'s story with
``checkpoint.uri`` and ``dataset.uri`` on moto's real S3 server and no volume at all.

The pods reach the store through ``storage.endpoint`` (the server's address) and
``storage.secretRef`` (a Secret of credentials, every key an env var). The raw corpus is in the
bucket; data-prep reads it from there and writes the token shards, tokenizer and manifest there.
The 2-node trainer stages checkpoints in its ``scratch`` emptyDir and uploads them in the
background (each node its own files, ``olmo.train.upload``); node 1 is preempted once a
checkpoint is complete on the store, the operator restarts the gang, which resumes from the
store; the eval worker watches the bucket prefix and evaluates each checkpoint once; the final
rotation Job rotates on the store — and the final weights are bit-identical to an uninterrupted
local run on the same token shards. Process mode only (the kubelet runs each pod as local
processes).

Data-prep runs one worker here: with an output in a bucket, its workers meet in a shared local
staging folder (``olmo_dataprep.pipeline.publish``), which pods of a Job with ``dataset.uri``
do not have (each has its own HOME and no shared volume).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from olmo.checkpoints import layout, objectstore
from olmo.storage import location, walk_local_files
from olmo.train.upload import NODES_DIR
from olmo_operator import contract as c
from tests.operator.conftest import K8s, wait_for
from tests.s3server import CREDENTIALS
from tests.train.conftest import losses

from .kubelet import Kubelet
from .test_cluster_path import (
    INTERVAL,
    KEEP_LAST,
    MAX_STEPS,
    NAME,
    PIPELINE,
    RAW,
    RUN_TIMEOUT,
    fp32_weights,
    images,
    olmojob_spec,
    pipeline_config,
    ran,
    status_of,
    trainer_pods,
    uninterrupted_run,
    write_corpus,
)

pytestmark = pytest.mark.slow

SECRET = "object-storage"


@pytest.fixture
def bucket_corpus(k8s: K8s, s3_bucket: str, tmp_path: Path) -> dict[str, int]:
    """The raw corpus in the bucket, the pipeline ConfigMap reading it, the credentials Secret."""
    local = tmp_path / "corpus"
    counts = write_corpus(local)
    raw = location(f"{s3_bucket}/{RAW}")
    for rel, path in walk_local_files(local / RAW):
        (raw / rel).upload(path)
    body = {
        "metadata": {"name": PIPELINE},
        "data": {c.PIPELINE_FILE: yaml.safe_dump(pipeline_config(raw.uri), sort_keys=False)},
    }
    k8s.core.create_namespaced_config_map(k8s.namespace, body)
    secret = {k: base64.b64encode(v.encode()).decode() for k, v in CREDENTIALS.items()}
    k8s.core.create_namespaced_secret(k8s.namespace, {"metadata": {"name": SECRET}, "data": secret})
    return counts


def bucket_spec(bucket: str, endpoint: str) -> dict:
    """``olmojob_spec`` with the dataset and the checkpoints in ``bucket`` instead of claims."""
    spec = olmojob_spec(images("process"))
    prepare = {**spec["dataset"]["prepare"], "workers": 1}
    spec["dataset"] = {"uri": f"{bucket}/tokens", "prepare": prepare}
    checkpoint = {k: v for k, v in spec["checkpoint"].items() if k != "claimName"}
    spec["checkpoint"] = {**checkpoint, "uri": f"{bucket}/runs"}
    spec["storage"] = {"endpoint": endpoint, "secretRef": {"name": SECRET}}
    return spec


def finished(k8s: K8s) -> dict | None:
    """The job's status once it ended and its final rotation ran, else None."""
    status = status_of(k8s)
    rotation = (status.get("finalRotation") or {}).get("phase")
    ended = status.get("phase") in c.TERMINAL_PHASES and rotation in ("Succeeded", "Failed")
    return status if ended else None


def test_a_preempted_run_on_buckets_resumes_to_the_same_weights(
    k8s: K8s,
    operator,
    job_controller,
    kubelet: Kubelet,
    s3_server,
    s3_bucket: str,
    bucket_corpus: dict[str, int],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
):
    run_dir, dataset = f"{s3_bucket}/runs/{NAME}", f"{s3_bucket}/tokens"
    started = time.monotonic()

    def milestone(what: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s [buckets] {what}", file=sys.__stdout__)

    k8s.create_olmojob(NAME, bucket_spec(s3_bucket, s3_server.endpoint))
    wait_for(
        lambda: any(
            cond["type"] == "DataPrepared" and cond["status"] == "True"
            for cond in status_of(k8s).get("conditions") or []
        ),
        RUN_TIMEOUT, 0.1, "the data-prep Job to finish",
    )  # fmt: skip
    manifest = json.loads((location(dataset) / "manifest.json").read_text())
    milestone(f"data prepared in the bucket: {len(manifest['shards'])} shards")

    first = wait_for(lambda: layout.latest_complete(run_dir), RUN_TIMEOUT, 0.05, "a checkpoint")
    victim = trainer_pods(k8s, 1)[1]["metadata"]["name"]
    kubelet.preempt(victim, "TerminationByKubelet")
    milestone(f"checkpoint step {first.step} complete on the store: preempting {victim}")
    final = wait_for(lambda: finished(k8s), RUN_TIMEOUT, 0.2, "the job and its final rotation")
    milestone(f"OLMoJob {final['phase']}, final rotation {final['finalRotation']['phase']}")
    assert final["phase"] == c.SUCCEEDED, final
    assert final["finalRotation"]["phase"] == "Succeeded"
    wait_for(
        lambda: not k8s.apps.list_namespaced_deployment(k8s.namespace).items,
        60, message="the eval worker Deployment to be removed",
    )  # fmt: skip

    # ---- no volume anywhere; every pod reached the store with the Secret and the endpoint --
    for run in kubelet.runs():
        volumes = run.pod["spec"].get("volumes") or []
        assert not [v for v in volumes if "persistentVolumeClaim" in v], run.name
        main = run.pod["spec"]["containers"][0]
        assert {"secretRef": {"name": SECRET}} in main.get("envFrom", []), run.name

    # ---- the preemption and the resume from the store -------------------------------------
    assert final["restarts"] == {"failures": 0, "preemptions": 1}
    assert final["attempt"] == 2
    attempt1 = "".join(kubelet.log_of(run.name) for run in ran(kubelet, 1))
    stopped = re.search(r"stopping after step (\d+): preempted", attempt1)
    assert stopped, attempt1[-3000:]
    attempt2 = "".join(kubelet.log_of(run.name) for run in ran(kubelet, 2))
    resumed = re.search(r"resumed from \S*step(\d+) at step (\d+)", attempt2)
    assert resumed, attempt2[-3000:]
    resumed_at = int(resumed.group(1))
    assert first.step <= resumed_at <= int(stopped.group(1)) < MAX_STEPS
    assert resumed.group(0).split()[2].startswith(run_dir)  # a checkpoint on the store
    saved = sorted({*range(INTERVAL, MAX_STEPS + 1, INTERVAL), resumed_at})

    # ---- on the store: rotated by the policy, every one complete and evaluated once --------
    assert [s for s, _ in objectstore.step_locations(run_dir)] == saved[-KEEP_LAST:]
    for _, ckpt in objectstore.step_locations(run_dir):
        assert objectstore.problem(ckpt, files="checksums") is None
        assert objectstore.read_evaluated(ckpt) is not None
        assert not [rel for rel in ckpt.files() if rel.startswith(NODES_DIR)]
        marker = objectstore.read_complete(ckpt)
        assert {"rng/rank0.pt", "rng/rank1.pt"} <= set(marker["files"])  # both nodes' files
    assert objectstore.read_latest_pointer(run_dir) == f"step{MAX_STEPS:06d}"
    assert final["latestCheckpoint"]["step"] == MAX_STEPS
    assert final["lastEval"]["step"] == MAX_STEPS
    evals = location(run_dir) / "eval"
    for step in saved:
        results = json.loads((evals / f"step{step:06d}.json").read_text())
        assert results["step"] == step and "piqa" in results["tasks"]
    watcher = "".join(
        kubelet.log_of(run.name)
        for run in kubelet.runs()
        if run.pod["metadata"]["labels"].get(c.LABEL_COMPONENT) == c.EVALWORKER
    )
    for step in saved:  # each checkpoint once
        assert len(re.findall(rf"step{step:06d}: evaluated in", watcher)) == 1, watcher[-3000:]

    # ---- the dataset, written by data-prep to the bucket ---------------------------------
    counts = manifest["stage_counts"]
    assert counts["documents_in"] == sum(bucket_corpus.values())
    assert counts["dropped"]["doc_dedup"] == {"duplicate": 1}

    # ---- the same model as an uninterrupted run, on the same shards in the bucket ---------
    # (shared with the other cluster-path tests when the shards are the same bytes)
    reference = uninterrupted_run(dataset, manifest, tmp_path_factory.mktemp("uninterrupted"))
    milestone("the uninterrupted reference run is done")
    assert dict(losses(location(run_dir))) == dict(losses(reference))
    ours = objectstore.download_checkpoint(
        objectstore.step_location(run_dir, MAX_STEPS), tmp_path / "final"
    )
    theirs = layout.final_dir(reference, MAX_STEPS)
    ours_weights, theirs_weights = fp32_weights(ours), fp32_weights(theirs)
    assert ours_weights.keys() == theirs_weights.keys()
    for name in ours_weights:
        assert torch.equal(ours_weights[name], theirs_weights[name]), name
