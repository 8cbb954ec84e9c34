"""The cluster path through everything issue 20 adds, in one run (process mode): a preflight
that fails on one node, a preemption that moves the job to a smaller pool, a hang, and the
goodput ledger, the adaptive checkpoint interval and the report on top.

The real kopf operator runs against the API emulator and the test kubelet runs its pods as
local processes. The tiny model of the cluster-path test trains on token shards written straight
into the data volume (no data-prep Job) as an OLMoJob of 2 nodes × 1 process:

1. **Preflight.** The checkpoint volume is broken on node ``e2e-node-1`` (its mounts point under
   a regular file, as a stale NFS mount would fail). Attempt 1's rank on that node fails the
   storage check; the operator names the node (``PreflightFailed``), excludes it
   (``status.excludedNodes``, node anti-affinity the kubelet honours) and starts attempt 2 at
   once, spending no budget.
2. **Elastic fallback.** Once attempt 2 saved a checkpoint, one of its pods is preempted. The
   spot pool allows one preemption, so attempt 3 runs on the next pool, which has
   ``maxNodes: 1``: one node, the same global batch (twice the gradient accumulation), the same
   data order.
3. **Hang.** Once attempt 3 trains, its trainer process is stopped (SIGSTOP). No step progress
   within ``hangTimeoutSeconds`` ends the attempt as a ``Hang``; attempt 4 resumes and finishes.
4. **Checkpoint interval.** The hang is the small pool's first interruption: attempt 4's save
   interval is Young/Daly's, from the measured save and step times, within the spec's bounds.

Then: every step's batch digest (``batch_sha1`` in ``metrics.jsonl``, from every attempt, on 2
nodes and on 1) equals the data order's own (what ``inspect-batch`` reconstructs for an
uninterrupted run); the ledger charged every state and both pools; ``olmo-operator report``
prints it and draws the timeline.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from olmo.checkpoints import layout
from olmo.train.inspect import batch_documents
from olmo_operator import contract as c
from olmo_operator.cli import main as operator_cli
from tests.operator.conftest import K8s, running_operator, wait_for
from tests.train.conftest import write_dataset

from .kubelet import Kubelet
from .test_cluster_path import (
    CHECKPOINT_CLAIM,
    DATA_CLAIM,
    NAME,
    TRAIN_CONFIG,
    TRAINER_RESOURCES,
    create_claim,
    images,
    status_of,
    trainer_pods,
)

pytestmark = pytest.mark.slow

BROKEN_NODE = "e2e-node-1"
MAX_STEPS, INTERVAL = 16, 3
HANG_SECONDS = 10
RUN_TIMEOUT = 420.0


@pytest.fixture
def resilient_operator(olmojob_resource, monkeypatch: pytest.MonkeyPatch):
    """The operator with a short failure settle window: a failed pod waits 5 s for a preemption
    signal or a preflight report before it counts as a failure."""
    with running_operator(monkeypatch, **{c.ENV_FAILURE_SETTLE: "5"}) as op:
        yield op


def spec() -> dict:
    return {
        "model": {"config": yaml.safe_dump(TRAIN_CONFIG)},
        "image": images("process")["trainer"],
        "nodes": 2,
        "gpusPerNode": 0,
        "processesPerNode": 1,
        "resources": TRAINER_RESOURCES,
        "dataset": {"claimName": DATA_CLAIM, "path": "tokens"},
        "checkpoint": {
            "claimName": CHECKPOINT_CLAIM,
            "interval": INTERVAL,
            "keepLast": 20,
            "adaptive": {"minInterval": 2, "maxInterval": 5},
        },
        "nodePools": [
            {"name": "spot", "preemptible": True, "maxPreemptions": 1, "costPerNodeHour": 1.5},
            {"name": "small", "maxNodes": 1, "costPerNodeHour": 4.0},
        ],
        "preflight": {"timeoutSeconds": 60},
        "hangTimeoutSeconds": HANG_SECONDS,
        "maxSteps": MAX_STEPS,
        "maxFailures": 2,
        "terminationGracePeriodSeconds": 5,
        "env": [{"name": "OLMO_PROGRESS_INTERVAL_SECONDS", "value": "0.5"}],
    }


def expected_digests(run_dir: Path) -> dict[int, str]:
    """Each step's batch digest in an uninterrupted run, from ``inspect-batch``'s offline
    reconstruction of the global batch (the run's config and data order only)."""
    out = {}
    for step in range(1, MAX_STEPS + 1):
        instances = [row["instance"] for row in batch_documents(run_dir, step)]
        out[step] = hashlib.sha1(np.asarray(instances, dtype=np.int64).tobytes()).hexdigest()[:16]
    return out


def test_preflight_elastic_fallback_hang_and_the_ledger_on_the_cluster_path(
    k8s: K8s,
    resilient_operator,
    job_controller,
    kubelet: Kubelet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    create_claim(k8s, DATA_CLAIM)
    create_claim(k8s, CHECKPOINT_CLAIM)
    write_dataset(kubelet.claim_dir(DATA_CLAIM) / "tokens", num_docs=240)
    kubelet.break_claim(BROKEN_NODE, CHECKPOINT_CLAIM)
    run_dir = kubelet.claim_dir(CHECKPOINT_CLAIM) / NAME
    started = time.monotonic()

    def milestone(what: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s [resilience] {what}", file=sys.__stdout__)

    k8s.create_olmojob(NAME, spec())

    # 1. The preflight fails on the broken node: excluded, nothing spent.
    wait_for(
        lambda: (status_of(k8s).get("restarts") or {}).get("preflightFailures") == 1,
        RUN_TIMEOUT, 0.1, "the failed preflight",
    )  # fmt: skip
    status = status_of(k8s)
    assert status["excludedNodes"] == [BROKEN_NODE]
    failure = status["lastPreflight"]["failures"][0]
    assert failure["node"] == BROKEN_NODE and failure["check"] == "storage"
    milestone(f"preflight failed on {BROKEN_NODE}: {failure['message'][:80]}")

    # 2. Attempt 2 avoids the node, saves a checkpoint, and loses a pod.
    first = wait_for(lambda: layout.latest_complete(run_dir), RUN_TIMEOUT, 0.05, "a checkpoint")
    pods = trainer_pods(k8s, 2)
    nodes = {p["spec"].get("nodeName") for p in pods.values()}
    assert BROKEN_NODE not in nodes and None not in nodes
    kubelet.preempt(pods[1]["metadata"]["name"], "TerminationByKubelet")
    milestone(f"attempt 2 on {sorted(nodes)} saved step {first.step}: preempted")

    # 3. Attempt 3 on the one-node pool; stop its trainer once it trains.
    (pod,) = wait_for(
        lambda: len(p := trainer_pods(k8s, 3)) == 1 and list(p.values()), RUN_TIMEOUT, 0.1,
        "attempt 3's pod",
    )  # fmt: skip
    status = status_of(k8s)
    assert status["nodePool"] == "small" and status["nodes"] == 1
    resumed = wait_for(
        lambda: (p := status_of(k8s).get("progress") or {}).get("attempt") == 3
        and (p.get("step") or 0) > first.step
        and p,
        RUN_TIMEOUT, 0.05, "attempt 3 to train",
    )  # fmt: skip
    stopped = kubelet.signal_process(pod["metadata"]["name"], r"olmo\.train\.cli", signal.SIGSTOP)
    milestone(f"attempt 3 at step {resumed['step']} on 1 node: SIGSTOP {stopped}")

    # 4. The hang ends attempt 3; attempt 4 finishes.
    final = wait_for(
        lambda: (s := status_of(k8s)).get("phase") in c.TERMINAL_PHASES and s,
        RUN_TIMEOUT, 0.2, "the OLMoJob to finish",
    )  # fmt: skip
    milestone(f"OLMoJob {final['phase']} at attempt {final['attempt']}")
    assert final["phase"] == c.SUCCEEDED, final
    assert final["attempt"] == 4
    assert final["restarts"] == {
        "preflightFailures": 1, "preemptions": 1, "failures": 1, "hangs": 1
    }  # fmt: skip
    assert final["nodePool"] == "small" and final["nodes"] == 1
    assert final["excludedNodes"] == [BROKEN_NODE]
    events = {e["reason"]: e["message"] for e in k8s.events(NAME)}
    for reason in ("PreflightFailed", "NodePoolFallback", "ElasticResize", "Hang"):
        assert reason in events, (reason, sorted(events))
    assert BROKEN_NODE in events["PreflightFailed"]
    assert "1 of 2 node(s)" in events["ElasticResize"]

    # The checkpoint interval of attempt 4 follows the small pool's interruption.
    interval = final["checkpointInterval"]
    assert interval["attempt"] == 4 and interval["mtbfSeconds"] > 0
    assert 2 <= interval["steps"] <= 5 and "Young/Daly" in interval["reason"]
    assert "CheckpointInterval" in events

    # The same batches, step by step, whatever the attempt and the node count.
    expected = expected_digests(run_dir)
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in logged if "batch_sha1" in m]
    # (a resumed run rewrites metrics.jsonl from the step it resumed at: one line per step)
    assert [m["step"] for m in steps] == list(range(1, MAX_STEPS + 1))
    # 2 nodes: 8 micro-batches of 2 per rank; 1 node: 16, the same global batch of 32
    assert {m["micro_batches"] for m in steps} == {8, 16}
    for m in steps:
        assert m["batch_sha1"] == expected[m["step"]], m["step"]
    assert layout.latest_complete(run_dir).step == MAX_STEPS

    # The ledger: every state the job went through, both pools priced, the lost work.
    ledger = final["goodput"]
    assert "state" not in ledger  # finished
    for state in ("starting", "training", "restarting"):
        assert ledger["seconds"].get(state, 0) > 0, (state, ledger["seconds"])
    assert ledger["pools"]["spot"]["cost"] > 0 and ledger["pools"]["small"]["cost"] > 0
    assert ledger["pools"]["small"]["interruptions"] == 1
    causes = [(r["cause"], r["reason"]) for r in ledger["restarts"]]
    assert ("Failure", "Hang") in causes and any(cause == "Preemption" for cause, _ in causes)
    assert ledger["lostSteps"] == sum(r["lostSteps"] for r in ledger["restarts"])
    assert 0 < ledger["ratio"] <= 1
    attempts = {segment["attempt"] for segment in ledger["timeline"]}
    assert {1, 2, 3, 4} <= attempts

    # The report: the table and the timeline of this very status.
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps(k8s.olmojob(NAME)))
    png = tmp_path / "timeline.png"
    args = ["report", "--status-file", str(status_file), "--png", str(png)]
    assert operator_cli(args) == 0
    printed = capsys.readouterr().out
    assert "goodput ratio" in printed and "Hang" in printed and "small" in printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
