"""Operator latencies: the real kopf operator against the in-memory Kubernetes API emulator.

Three measurements, each against a goal:

- an OLMoJob created → its first trainer Job created (goal < 2 s, median over ``--rounds``);
- a trainer pod preempted (``DisruptionTarget``; the job controller fails the Job) → the next
  attempt's Job created (goal < 2 s, median over ``--rounds`` preemptions of one OLMoJob);
- ``--crs`` OLMoJobs (100) created at once → all their first Jobs created (goal < 30 s).

The operator runs in this process (``kopf.testing.KopfRunner``), the API emulator in a thread,
the job controller and kubelet are played through the API (``tests/operator/conftest.py``);
times are taken on one monotonic clock, "created" meaning the API server answered 201. The
operator runs with its own defaults unless ``--reconcile-seconds`` / ``--backoff-base-seconds``
say otherwise. Prints each latency in seconds and as a ratio to its goal (≤ 1 meets it).

    python benchmarks/bench_operator.py [--crs 100] [--rounds 3] [--reconcile-seconds S] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the emulator and the cluster stand-ins live with the tests

GOALS = {"create_to_job_s": 2.0, "preempt_to_next_job_s": 2.0, "all_jobs_s": 30.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crs", type=int, default=100, help="OLMoJobs created at once")
    parser.add_argument("--rounds", type=int, default=3, help="samples of the two latencies")
    parser.add_argument(
        "--reconcile-seconds",
        type=float,
        default=None,
        help="OLMO_OPERATOR_RECONCILE_SECONDS (default: the operator's)",
    )
    parser.add_argument(
        "--backoff-base-seconds",
        type=float,
        default=None,
        help="OLMO_OPERATOR_BACKOFF_BASE_SECONDS (default: the operator's)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    kubeconfig = folder / "kubeconfig"
    os.environ["KUBECONFIG"] = str(kubeconfig)  # before `kubernetes` is imported
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        os.environ.pop(name, None)
    if args.reconcile_seconds is not None:
        os.environ["OLMO_OPERATOR_RECONCILE_SECONDS"] = str(args.reconcile_seconds)
    if args.backoff_base_seconds is not None:
        os.environ["OLMO_OPERATOR_BACKOFF_BASE_SECONDS"] = str(args.backoff_base_seconds)

    import kubernetes.config.kube_config

    kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(kubeconfig)  # kopf's login
    from olmo_operator import contract
    from olmo_operator.crd import crd
    from tests.operator.conftest import FakeJobController, K8s, Operator, olmojob_spec, preempt_pod
    from tests.operator.emulator import ApiServer, KubeEmulator

    emulator = KubeEmulator()
    emulator.register_crd(crd())
    spec = olmojob_spec(nodePools=[], maxFailures=0)  # no pool fallback: every attempt alike

    def created_at(name: str, deadline: float) -> float:
        """When the API server answered 201 to the creation of Job ``name``."""
        while True:
            for record in list(emulator.audit):
                if (record.method, record.plural, record.code, record.name) == (
                    "POST",
                    "jobs",
                    201,
                    name,
                ):
                    return record.time
            if time.monotonic() > deadline:
                raise SystemExit(f"bench_operator: Job {name} was not created in time")
            time.sleep(0.005)

    with ApiServer(emulator, kubeconfig) as server:
        k8s = K8s.from_kubeconfig(kubeconfig)
        operator = Operator("--quiet").start()
        try:
            # Warm-up: the operator's first object (discovery, watch streams, thread pool).
            k8s.create_olmojob("warmup", spec)
            created_at("warmup-a1", time.monotonic() + args.timeout)

            create = []
            for i in range(args.rounds):
                name = f"latency-{i}"
                start = time.monotonic()
                k8s.create_olmojob(name, spec)
                create.append(created_at(f"{name}-a1", start + args.timeout) - start)

            preempt = []
            controller = FakeJobController(k8s)
            for attempt in range(1, args.rounds + 1):
                pods = controller.sync(f"latency-0-a{attempt}")
                start = time.monotonic()
                preempt_pod(k8s, pods[0]["metadata"]["name"], controller=controller)
                name = f"latency-0-a{attempt + 1}"
                preempt.append(created_at(name, start + args.timeout) - start)

            names = [f"fleet-{i}" for i in range(args.crs)]
            start = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: k8s.create_olmojob(n, spec), names))
            deadline = start + args.timeout
            all_jobs = max(created_at(f"{n}-a1", deadline) for n in names) - start
        finally:
            stop_error = None
            try:
                operator.stop()
            except Exception as e:  # after the measurements: report it, keep the numbers
                stop_error = f"{type(e).__name__}: {e}"
                print(
                    f"bench_operator: the operator failed while stopping: {stop_error}",
                    file=sys.stderr,
                )
            k8s.close()
        requests = len(emulator.audit)
        server.stop()

    reconcile = float(os.environ.get(contract.ENV_RECONCILE_SECONDS, "10"))
    result = {
        "benchmark": "operator_latency",
        "reconcile_seconds": reconcile,
        "rounds": args.rounds,
        "crs": args.crs,
        "create_to_job_s": round(statistics.median(create), 3),
        "preempt_to_next_job_s": round(statistics.median(preempt), 3),
        "all_jobs_s": round(all_jobs, 3),
        "api_requests": requests,
        "operator_stop_error": stop_error,
        "goals": GOALS,
    }
    for key, goal in GOALS.items():
        result[key.removesuffix("_s") + "_ratio"] = round(result[key] / goal, 3)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"OLMoJob operator (kopf) against the in-memory API emulator, reconcile every "
        f"{reconcile:g}s, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    rows = [
        ("create_to_job_s", "OLMoJob created → first Job", f"median of {args.rounds}"),
        ("preempt_to_next_job_s", "pod preempted → next attempt's Job", f"median of {args.rounds}"),
        ("all_jobs_s", f"{args.crs} OLMoJobs created → all Jobs", "once"),
    ]
    for key, label, how in rows:
        value, goal = result[key], GOALS[key]
        print(f"  {label:38s} {value:8.3f} s   {value / goal:6.3f}x goal (< {goal:g} s, {how})")
    if stop_error:
        print(f"  (the operator failed while stopping, after the measurements: {stop_error})")


if __name__ == "__main__":
    main()
