"""The test kubelet's emulation rules (``tests/e2e/kubelet.py``): as functions, with ``/bin/sh``
pods in process mode, and in container mode (marked ``images``) with ``python3 -c`` pods of the
data-prep image (small, no torch): the pod's user, env, mounts and read-only root, exit codes,
signal deaths and OOM kills, SIGTERM then SIGKILL after the grace period, a missing image, the
``runAsNonRoot`` check, and cleanup."""

from __future__ import annotations

import base64
import json
import signal
import time
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
from kubernetes.client.exceptions import ApiException

from tests.engine import engine, require_image
from tests.operator.conftest import K8s, wait_for

from .kubelet import (
    FINALIZER,
    LABEL,
    LABEL_OWNER,
    ConfigError,
    Kubelet,
    PathMap,
    VolumeMount,
    dns_rewriter,
    docker_create_args,
    expand,
    field_value,
    memory_bytes,
    milli_cpus,
    node_affinity_matches,
    parse_quantity,
    pod_dns_names,
    process_program,
    remap_port_args,
    remap_ports_in_text,
    remove_orphans,
)

TIMEOUT = 15.0

# --------------------------------------------------------------------------------------------
# The rules as functions


def test_expand_follows_kubernetes_dependent_variables():
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$$(A) $(MISSING) $A ${B} $", env) == "$(A) $(MISSING) $A ${B} $"
    assert expand("$(cat /etc/x)", env) == "$(cat /etc/x)"  # not a variable name: left alone


def test_path_map_rewrites_container_paths_at_path_boundaries_only():
    paths = PathMap(
        {
            "/data": "/host/data",
            "/checkpoints/": "/host/ckpt",
            "/dev/termination-log": "/host/term",
            "/etc/olmo": "/host/cfg",
        }
    )
    assert paths('data.paths=["/data/tokens"]') == 'data.paths=["/host/data/tokens"]'
    assert paths("--run-dir /checkpoints/run") == "--run-dir /host/ckpt/run"
    assert paths("/checkpoints") == "/host/ckpt"
    assert paths("tail -n 20 > /dev/termination-log 2>/dev/null") == (
        "tail -n 20 > /host/term 2>/dev/null"
    )
    assert paths("--config=/etc/olmo/config.yaml") == "--config=/host/cfg/config.yaml"
    for untouched in ("/database", "/x/data", "relative/data", "/data-set", "/dev/shm"):
        assert paths(untouched) == untouched
    assert paths("/data /data") == "/host/data /host/data"


def test_cluster_dns_names_of_the_pods_subdomain_resolve_to_loopback():
    dns = dns_rewriter("llm-a1", "ml")
    for name in (
        "llm-a1-0.llm-a1",
        "llm-a1-0.llm-a1.ml",
        "llm-a1-0.llm-a1.ml.svc",
        "llm-a1-0.llm-a1.ml.svc.cluster.local",
    ):
        assert dns(name) == "127.0.0.1", name
        assert dns(f"tcp://{name}:29500") == "tcp://127.0.0.1:29500"
    for other in ("llm-a2-0.llm-a2", "llm-a1-0.llm-a1b", "llm-a1", "example.com"):
        assert dns(other) == other
    assert dns_rewriter(None, "ml")("llm-a1-0.llm-a1") == "llm-a1-0.llm-a1"


def test_declared_ports_are_remapped_in_port_flags_and_host_port_pairs():
    ports = {29500: 41234}
    args = ["--master-port", "29500", "--port=29500", "--steps", "29500", "--port", "80"]
    assert remap_port_args(args, ports) == [
        "--master-port", "41234", "--port=41234", "--steps", "29500", "--port", "80",
    ]  # fmt: skip
    assert remap_ports_in_text("localhost:8080 127.0.0.1:29500", ports) == (
        "localhost:8080 127.0.0.1:41234"
    )


def test_downward_api_fields():
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "ml",
            "uid": "u",
            "labels": {"a": "1"},
            "annotations": {"batch.kubernetes.io/job-completion-index": "3"},
        },
        "spec": {"nodeName": "n"},
    }
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert field_value(pod, index) == "3"
    assert field_value(pod, "metadata.labels['a']") == "1"
    assert [field_value(pod, f) for f in ("metadata.name", "metadata.namespace")] == ["p", "ml"]
    assert field_value(pod, "spec.serviceAccountName") == "default"
    with pytest.raises(ValueError, match="not supported"):
        field_value(pod, "status.phase")


# --------------------------------------------------------------------------------------------
# Pods through the API


def sh_pod(name: str, script: str, **spec) -> dict:
    container = {"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", script]}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name, "labels": {"app": "e2e-kubelet-test"}},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def create(k8s: K8s, body: dict) -> dict:
    return k8s.to_dict(k8s.core.create_namespaced_pod(k8s.namespace, body))


def phase(k8s: K8s, name: str) -> str | None:
    try:
        return (k8s.pod(name).get("status") or {}).get("phase")
    except ApiException as e:
        if e.status == 404:
            return "<gone>"
        raise


def terminated(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


def claim(k8s: K8s, name: str) -> None:
    body = {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    k8s.core.create_namespaced_persistent_volume_claim(k8s.namespace, body)


def config_map_and_secret(k8s: K8s) -> None:
    """ConfigMap ``cfg`` (greeting=hello) and Secret ``creds`` (token=s3cret)."""
    k8s.core.create_namespaced_config_map(
        k8s.namespace, {"metadata": {"name": "cfg"}, "data": {"greeting": "hello"}}
    )
    token = base64.b64encode(b"s3cret").decode()
    k8s.core.create_namespaced_secret(
        k8s.namespace, {"metadata": {"name": "creds"}, "data": {"token": token}}
    )


def test_an_indexed_jobs_pods_run_from_their_spec(k8s: K8s, job_controller, kubelet: Kubelet):
    claim(k8s, "work")
    config_map_and_secret(k8s)
    k8s.core.create_namespaced_service(
        k8s.namespace,
        {
            "metadata": {"name": "gang"},
            "spec": {"clusterIP": "None", "ports": [{"port": 29500}]},
        },
    )
    script = (
        "out=/work/out-$(JOB_COMPLETION_INDEX)\n"
        'echo "$(JOB_COMPLETION_INDEX) $POD $(NS) $TOKEN ${MAYBE-unset} $MASTER $MASTER_PORT" > $out\n'
        'echo "$(cat /etc/cfg/greeting)" >> $out\n'
        'echo "$(ADDRESS)" >> $out\n'
        "pwd >> $out\n"
    )
    secret = {"secretKeyRef": {"name": "creds", "key": "token"}}
    env = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "TOKEN", "valueFrom": secret},
        {
            "name": "MAYBE",
            "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}},
        },
        {"name": "MASTER", "value": "gang-a-0.gang"},
        {"name": "MASTER_PORT", "value": "29500"},
        {"name": "ADDRESS", "value": "$(MASTER):$(MASTER_PORT)"},
    ]
    job = {
        "metadata": {"name": "gang-a"},
        "spec": {
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "subdomain": "gang",
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "command": ["/bin/sh", "-c"],
                            "args": [script],
                            "env": env,
                            "workingDir": "/work",
                            "ports": [{"containerPort": 29500}],
                            "volumeMounts": [
                                {"name": "work", "mountPath": "/work"},
                                {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "work", "persistentVolumeClaim": {"claimName": "work"}},
                        {"name": "cfg", "configMap": {"name": "cfg"}},
                    ],
                }
            },
        },
    }
    k8s.batch.create_namespaced_job(k8s.namespace, job)
    wait_for(
        lambda: any(
            c["type"] == "Complete" and c["status"] == "True"
            for c in (k8s.job("gang-a").get("status") or {}).get("conditions") or []
        ),
        TIMEOUT,
        message="the Job to complete",
    )
    work = kubelet.claim_dir("work")
    outputs = {i: (work / f"out-{i}").read_text().splitlines() for i in (0, 1)}
    ports = set()
    for index, (first, greeting, address, cwd) in outputs.items():
        got_index, pod, ns, token_value, maybe, master, port = first.split()
        assert (got_index, ns, token_value, maybe, master) == (
            str(index),
            "default",
            "s3cret",
            "unset",
            "127.0.0.1",
        )
        assert pod.startswith(f"gang-a-{index}-")
        assert greeting == "hello"
        assert address == f"127.0.0.1:{port}"
        assert Path(cwd) == work
        ports.add(port)
    assert len(ports) == 1 and ports != {"29500"}  # one remapped port for the whole gang
    for pod in k8s.pods("batch.kubernetes.io/job-name=gang-a"):
        assert pod["status"]["phase"] == "Succeeded"
        assert terminated(pod)["exitCode"] == 0
        assert pod["spec"]["nodeName"].startswith("e2e-node-")
        assert FINALIZER in pod["metadata"]["finalizers"]  # released when deleted


def test_a_deleted_pod_gets_sigterm_then_sigkill_and_goes_after_it_stopped(k8s, kubelet):
    create(k8s, sh_pod("polite", "trap 'exit 7' TERM; while :; do sleep 0.05; done"))
    create(
        k8s,
        sh_pod(
            "stubborn",
            "trap '' TERM; while :; do sleep 0.05; done",
            terminationGracePeriodSeconds=1,
        ),
    )
    for name in ("polite", "stubborn"):
        wait_for(lambda name=name: phase(k8s, name) == "Running", TIMEOUT)
    started = time.monotonic()
    for name in ("polite", "stubborn"):
        k8s.core.delete_namespaced_pod(name, k8s.namespace)
    assert k8s.pod("stubborn")["metadata"]["deletionTimestamp"]  # kept while it stops
    for name in ("polite", "stubborn"):
        wait_for(lambda name=name: phase(k8s, name) == "<gone>", TIMEOUT)
    assert time.monotonic() - started >= 1.0  # the grace period passed before the SIGKILL
    runs = {run.name: run for run in kubelet.runs()}
    assert runs["polite"].containers[0].exit_code == 7
    assert runs["stubborn"].containers[0].exit_code == 137
    assert runs["stubborn"].sent["phase"] == "Failed"
    assert not kubelet.processes()


@pytest.mark.parametrize("reason", ["TerminationByKubelet", "PreemptionByScheduler"])
def test_a_preempted_pod_is_marked_as_disrupted_before_it_is_stopped(k8s, kubelet, reason):
    create(k8s, sh_pod("victim", "trap 'exit 75' TERM; while :; do sleep 0.05; done"))
    wait_for(lambda: phase(k8s, "victim") == "Running", TIMEOUT)
    kubelet.preempt("victim", reason)
    run = wait_for(
        lambda: next((r for r in kubelet.runs() if r.name == "victim" and r.finished), None),
        TIMEOUT,
    )
    assert run.containers[0].exit_code == 75
    status = run.sent
    assert status["phase"] == "Failed"
    disruption = next(c for c in status["conditions"] if c["type"] == "DisruptionTarget")
    assert (disruption["status"], disruption["reason"]) == ("True", reason)
    if reason == "TerminationByKubelet":  # graceful node shutdown: the pod object stays
        pod = k8s.pod("victim")
        assert pod["status"]["reason"] == "Terminated"
        assert terminated(pod)["exitCode"] == 75
        assert any(c["type"] == "DisruptionTarget" for c in pod["status"]["conditions"])
    else:  # the scheduler deleted it: gone once stopped
        wait_for(lambda: phase(k8s, "victim") == "<gone>", TIMEOUT)


def test_pods_wait_for_their_claims_secrets_and_config_maps(k8s, kubelet):
    create(
        k8s,
        sh_pod(
            "needs-claim",
            "echo ok > /w/ok",
            container={"volumeMounts": [{"name": "w", "mountPath": "/w"}]},
            volumes=[{"name": "w", "persistentVolumeClaim": {"claimName": "later"}}],
        ),
    )
    create(
        k8s,
        sh_pod(
            "needs-secret",
            "true",
            container={
                "env": [
                    {
                        "name": "K",
                        "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}},
                    }
                ]
            },
        ),
    )

    def waiting(name: str) -> dict | None:
        status = k8s.pod(name).get("status") or {}
        return status if status.get("phase") == "Pending" and status.get("conditions") else None

    scheduled = wait_for(lambda: waiting("needs-claim"), TIMEOUT)["conditions"][0]
    assert (scheduled["type"], scheduled["status"], scheduled["reason"]) == (
        "PodScheduled",
        "False",
        "Unschedulable",
    )
    assert '"later" not found' in scheduled["message"]
    # Bound first (PodScheduled=True, no container yet), then the container cannot be configured.
    state = wait_for(lambda: (waiting("needs-secret") or {}).get("containerStatuses"), TIMEOUT)[0][
        "state"
    ]
    assert state["waiting"]["reason"] == "CreateContainerConfigError"

    claim(k8s, "later")
    k8s.core.create_namespaced_secret(
        k8s.namespace,
        {"metadata": {"name": "later"}, "data": {"k": base64.b64encode(b"v").decode()}},
    )
    for name in ("needs-claim", "needs-secret"):
        wait_for(lambda name=name: phase(k8s, name) == "Succeeded", TIMEOUT)
    assert (kubelet.claim_dir("later") / "ok").read_text() == "ok\n"


def test_the_termination_message_file_becomes_the_containers_message(k8s, kubelet):
    script = "echo 'deleted 3, kept 2' > /dev/termination-log; exit 4"
    create(k8s, sh_pod("summary", script))
    wait_for(lambda: phase(k8s, "summary") == "Failed", TIMEOUT)
    state = terminated(k8s.pod("summary"))
    assert (state["exitCode"], state["reason"], state["message"].strip()) == (
        4,
        "Error",
        "deleted 3, kept 2",
    )


def test_a_deployments_pod_restarts_with_back_off_and_goes_with_it(k8s, kubelet):
    kubelet.max_backoff = 0.2  # crashLoopBackOff.maxContainerRestartPeriod
    labels = {"app": "crashy"}
    deployment = {
        "metadata": {"name": "crashy"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", "exit 3"]}
                    ]
                },
            },
        },
    }
    k8s.apps.create_namespaced_deployment(k8s.namespace, deployment)

    def restarted() -> dict | None:
        pods = k8s.pods("app=crashy")
        statuses = [(p.get("status") or {}).get("containerStatuses") or [{}] for p in pods]
        return pods[0] if pods and statuses[0][0].get("restartCount", 0) >= 2 else None

    pod = wait_for(restarted, TIMEOUT)
    assert len(k8s.pods("app=crashy")) == 1
    status = pod["status"]
    assert status["phase"] == "Running"
    assert status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 3
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet" and owner["name"].startswith("crashy-")
    k8s.apps.delete_namespaced_deployment("crashy", k8s.namespace)
    wait_for(lambda: not k8s.pods("app=crashy"), TIMEOUT, message="the pods to be collected")


# --------------------------------------------------------------------------------------------
# Node affinity, broken claims, signals (the preflight's and hang detection's tests use them)


def affinity(*terms: dict) -> dict:
    required = {"nodeSelectorTerms": list(terms)}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}


def names(operator: str, *values: str) -> dict:
    """A ``matchFields`` term on the node name (the operator's ``excludedNodes`` with NotIn)."""
    return {"matchFields": [{"key": "metadata.name", "operator": operator, "values": list(values)}]}


def test_required_node_affinity_follows_the_schedulers_rules():
    labels = {"kubernetes.io/hostname": "n-1", "zone": "a", "gpus": "8"}

    def fits(*terms: dict, name: str = "n-1") -> bool:
        return node_affinity_matches({"spec": {"affinity": affinity(*terms)}}, name, labels)

    def expr(key: str, operator: str, *values: str) -> dict:
        req = {"key": key, "operator": operator}
        if values:
            req["values"] = list(values)
        return req

    assert node_affinity_matches({"spec": {}}, "n-1", {})  # no requirement: any node
    assert fits(names("NotIn", "n-0", "n-2")) and not fits(names("NotIn", "n-1"))
    assert fits(names("In", "n-1")) and not fits(names("In", "n-1"), name="n-2")
    assert fits({"matchExpressions": [expr("zone", "In", "a", "b"), expr("gpus", "Gt", "4")]})
    assert not fits({"matchExpressions": [expr("zone", "In", "a"), expr("gpus", "Lt", "4")]})
    assert fits({"matchExpressions": [expr("spot", "NotIn", "true"), expr("spot", "DoesNotExist")]})
    assert not fits({"matchExpressions": [expr("spot", "Exists")]})
    assert not fits({"matchExpressions": [expr("spot", "Gt", "1")]})  # Gt needs the label
    # Expressions and fields of one term are ANDed, terms ORed; an empty term allows nothing.
    both = {"matchExpressions": [expr("zone", "In", "a")], **names("NotIn", "n-1")}
    assert not fits(both)
    assert fits(both, names("In", "n-1")) and not fits() and not fits({})
    for bad, message in (
        ({"matchExpressions": [expr("zone", "Near", "a")]}, "operator 'Near'"),
        ({"matchExpressions": [expr("zone", "In")]}, "needs values"),
        ({"matchExpressions": [expr("zone", "Exists", "a")]}, "takes no values"),
        ({"matchExpressions": [expr("gpus", "Gt", "many")]}, "one integer value"),
        ({"matchFields": [expr("metadata.uid", "In", "u")]}, "metadata.name"),
        ({"matchFields": [expr("metadata.name", "Exists")]}, "In or NotIn only"),
    ):
        with pytest.raises(ValueError, match=message):
            fits(bad)


def test_the_program_of_a_process_is_its_python_module_or_script_else_its_executable():
    venv = "/opt/venv/bin"
    torchrun = [f"{venv}/python", f"{venv}/torchrun", "--nnodes", "2", "-m", "olmo.train.cli"]
    assert process_program(torchrun) == f"{venv}/torchrun"
    assert process_program([f"{venv}/python", "-u", "-m", "olmo.train.cli", "--config"]) == (
        "olmo.train.cli"
    )
    assert process_program(["python3.11", "-uB", "-X", "dev", "-mhttp.server"]) == "http.server"
    assert process_program(["python3", "-Wignore", "-uc", "import olmo.train.cli"]) == "-c"
    assert process_program(["python", "--", "script.py"]) == "script.py"
    entrypoint = ["/bin/sh", "-c", 'exec "$@"', "sh", "torchrun", "-m", "olmo.train.cli"]
    assert process_program(entrypoint) == "/bin/sh"
    assert process_program(["sleep", "30"]) == "sleep" and process_program([]) == ""


def bound_node(k8s: K8s, name: str) -> str:
    return wait_for(lambda: k8s.pod(name)["spec"].get("nodeName"), TIMEOUT)


def test_pods_are_bound_only_to_nodes_their_required_affinity_allows(k8s: K8s, kubelet: Kubelet):
    create(
        k8s, sh_pod("avoids", "true", affinity=affinity(names("NotIn", "e2e-node-0", "e2e-node-1")))
    )
    assert bound_node(k8s, "avoids") == "e2e-node-2"
    hostname = {
        "matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["e2e-node-4"]}
        ]
    }
    create(k8s, sh_pod("by-label", "true", affinity=affinity(hostname)))
    assert bound_node(k8s, "by-label") == "e2e-node-4"
    node = k8s.to_dict(k8s.core.read_node("e2e-node-4"))
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "e2e-node-4"
    # nodeSelector stays ignored: node pools are the operator's decision.
    create(k8s, sh_pod("selector", "true", nodeSelector={"pool": "spot"}))
    assert bound_node(k8s, "selector") == "e2e-node-0"

    # Only e2e-node-0 (busy) allowed — or a node that does not exist: the pod waits unbound
    # while free nodes are excluded, and takes e2e-node-0 once it is free.
    for name in ("avoids", "by-label", "selector"):
        wait_for(lambda name=name: phase(k8s, name) == "Succeeded", TIMEOUT)
    create(k8s, sh_pod("holder", "sleep 30", terminationGracePeriodSeconds=1))
    assert bound_node(k8s, "holder") == "e2e-node-0"
    wait_for(lambda: phase(k8s, "holder") == "Running", TIMEOUT)
    nowhere = {"matchExpressions": [{"key": "pool", "operator": "Exists"}]}
    create(k8s, sh_pod("waiter", "true", affinity=affinity(names("In", "e2e-node-0"), nowhere)))

    def unschedulable() -> dict | None:
        conditions = (k8s.pod("waiter").get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("reason") == "Unschedulable"), None)

    condition = wait_for(unschedulable, TIMEOUT)
    assert condition["status"] == "False"
    assert "didn't match Pod's node affinity" in condition["message"]
    time.sleep(0.5)  # several kubelet passes
    assert not k8s.pod("waiter")["spec"].get("nodeName")
    assert phase(k8s, "waiter") == "Pending"
    k8s.core.delete_namespaced_pod("holder", k8s.namespace)
    wait_for(lambda: phase(k8s, "waiter") == "Succeeded", TIMEOUT)
    assert k8s.pod("waiter")["spec"]["nodeName"] == "e2e-node-0"


def test_a_broken_claim_fails_every_write_on_its_node_only(k8s: K8s, kubelet: Kubelet):
    claim(k8s, "ckpt")
    kubelet.break_claim("e2e-node-0", "ckpt")
    script = "mkdir -p /ckpt/run/.preflight && echo ok > /ckpt/run/.preflight/probe"
    for node in ("e2e-node-0", "e2e-node-1"):
        create(
            k8s,
            sh_pod(
                f"on-{node}",
                script,
                affinity=affinity(names("In", node)),
                container={"volumeMounts": [{"name": "c", "mountPath": "/ckpt"}]},
                volumes=[{"name": "c", "persistentVolumeClaim": {"claimName": "ckpt"}}],
            ),
        )
    wait_for(lambda: phase(k8s, "on-e2e-node-0") == "Failed", TIMEOUT)
    wait_for(lambda: phase(k8s, "on-e2e-node-1") == "Succeeded", TIMEOUT)
    assert "Not a directory" in kubelet.log_of("on-e2e-node-0")
    assert (kubelet.claim_dir("ckpt") / "run/.preflight/probe").read_text() == "ok\n"
    assert kubelet.broken_claim_path("e2e-node-0", "ckpt").parent.is_file()


def test_a_stopped_process_stays_stopped_and_still_ends_with_its_pod(k8s: K8s, kubelet: Kubelet):
    # The main process forwards SIGTERM and waits for its child, as the trainer's entrypoint
    # and torchrun do: a stopped child keeps the pod until the grace period's SIGKILL.
    script = "sleep 300 & child=$!; trap 'kill -TERM $child; wait $child; exit 0' TERM; wait"
    create(k8s, sh_pod("hung", script, terminationGracePeriodSeconds=1))
    wait_for(lambda: phase(k8s, "hung") == "Running", TIMEOUT)
    pids = wait_for(lambda: _signal_or_none(kubelet, "hung", "^sleep$", signal.SIGSTOP), TIMEOUT)
    assert len(pids) == 1
    (sleeper,) = (psutil.Process(pid) for pid in pids)
    wait_for(lambda: sleeper.status() == psutil.STATUS_STOPPED, TIMEOUT)
    assert kubelet.signal_process("hung", "sleep", signal.SIGCONT) == pids
    wait_for(lambda: sleeper.status() != psutil.STATUS_STOPPED, TIMEOUT)
    kubelet.signal_process("hung", "sleep", signal.SIGSTOP)
    with pytest.raises(ValueError, match=r"no process of pod hung .*'/bin/sh'"):
        kubelet.signal_process("hung", "olmo.train.cli", signal.SIGSTOP)
    with pytest.raises(ValueError, match="not running"):
        kubelet.signal_process("absent", "sleep", signal.SIGSTOP)

    started = time.monotonic()
    k8s.core.delete_namespaced_pod("hung", k8s.namespace)
    wait_for(lambda: phase(k8s, "hung") == "<gone>", TIMEOUT)
    assert time.monotonic() - started >= 1.0  # SIGTERM did not end it: SIGKILL did
    run = next(r for r in kubelet.runs() if r.name == "hung")
    assert run.containers[0].exit_code == 137
    wait_for(lambda: gone(sleeper), TIMEOUT)  # SIGKILL is delivered asynchronously

    # A whole pod stopped (its main process too): stop() still ends every process of it.
    create(k8s, sh_pod("frozen", "sleep 300 & wait"))
    wait_for(lambda: phase(k8s, "frozen") == "Running", TIMEOUT)
    wait_for(lambda: _signal_or_none(kubelet, "frozen", "^sleep$", signal.SIGCONT), TIMEOUT)
    frozen = [psutil.Process(pid) for pid in kubelet.signal_process("frozen", ".", signal.SIGSTOP)]
    assert len(frozen) == 2
    wait_for(lambda: all(p.status() == psutil.STATUS_STOPPED for p in frozen), TIMEOUT)
    kubelet.stop()
    wait_for(lambda: all(gone(p) for p in frozen), TIMEOUT)
    main = next(r for r in kubelet.runs() if r.name == "frozen").containers[0].proc
    assert main is not None and main.returncode == -signal.SIGKILL


def gone(proc: psutil.Process) -> bool:
    """Dead (a zombie until its new parent reaps it)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _signal_or_none(kubelet: Kubelet, pod: str, pattern: str, sig: int) -> list[int] | None:
    """``signal_process`` once the shell has started its child (None until then)."""
    try:
        return kubelet.signal_process(pod, pattern, sig)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Container mode: the pod spec → Docker, as a function


def test_quantities_are_parsed_as_kubernetes_does():
    assert parse_quantity("500m") == Decimal("0.5")
    assert parse_quantity(2) == 2
    assert parse_quantity("1.5") == Decimal("1.5")
    assert memory_bytes("2Gi") == 2 * 1024**3
    assert memory_bytes("128M") == 128_000_000
    assert memory_bytes("1e9") == 10**9
    assert memory_bytes("0.5Ki") == 512
    assert memory_bytes("1.5m") == 1  # rounded up, as Kubernetes does
    assert milli_cpus("250m") == 250 and milli_cpus("2") == 2000 and milli_cpus("0.1") == 100
    for bad in ("1Gb", "", "Gi", "1 Gi", "-"):
        with pytest.raises(ValueError, match="quantity"):
            parse_quantity(bad)


def _pod(container: dict, **spec) -> dict:
    return {
        "metadata": {"name": "p-0-abcde", "namespace": "ml"},
        "spec": {"containers": [container], **spec},
    }


def _create(pod: dict, env: dict | None = None, mounts=(), image: dict | None = None):
    return docker_create_args(
        pod,
        pod["spec"]["containers"][0],
        env or {},
        list(mounts),
        Path("/host/term"),
        image_config=image or {"User": "10001:10001"},
        labels={},
        node_memory=8 * 1024**3,
    )


def test_command_and_args_follow_kubernetes_not_docker():
    env = {"WHO": "w"}
    both = _create(
        _pod({"name": "c", "image": "i", "command": ["a", "$(WHO)"], "args": ["b"]}), env
    )
    assert (both.config["entrypoint"], both.config["command"]) == (["a", "w"], ["b"])
    command = _create(_pod({"name": "c", "image": "i", "command": ["a"]}))
    assert command.config["entrypoint"] == ["a"] and "command" not in command.config  # no CMD
    args = _create(_pod({"name": "c", "image": "i", "args": ["--x=$(WHO)", "$$(WHO)"]}), env)
    assert "entrypoint" not in args.config and args.config["command"] == ["--x=w", "$(WHO)"]
    neither = _create(_pod({"name": "c", "image": "i"}))
    assert "entrypoint" not in neither.config and "command" not in neither.config


def test_the_user_comes_from_the_security_context_else_the_image():
    def user(image_user: str, pod_sc: dict, sc: dict | None = None):
        pod = _pod({"name": "c", "image": "i", "securityContext": sc or {}}, securityContext=pod_sc)
        return _create(pod, image={"User": image_user}).config.get("user")

    assert user("10001:10001", {}) is None  # the image's USER
    assert user("", {"runAsUser": 5, "runAsGroup": 6}) == "5:6"
    assert user("", {"runAsUser": 5, "runAsGroup": 6}, {"runAsUser": 7}) == "7:6"
    assert user("10001:10001", {"runAsGroup": 6}) == "10001:6"
    assert user("", {"runAsUser": 5}) == "5"
    assert user("10001", {"runAsNonRoot": True}) is None
    for image_user, pod_sc, message in (
        ("olmo", {"runAsNonRoot": True}, "non-numeric user"),
        ("", {"runAsNonRoot": True}, "will run as root"),
        ("10001", {"runAsNonRoot": True, "runAsUser": 0}, "breaks non-root policy"),
    ):
        with pytest.raises(ConfigError, match=message):
            user(image_user, pod_sc)


def test_memory_backed_empty_dirs_are_tmpfs_and_dev_shm_is_sized_like_kubernetes():
    def mount(path: str, size: int | None = None) -> VolumeMount:
        host = Path("/host") / path.strip("/")
        return VolumeMount(path, host, "v", "emptyDir", host, memory=True, size_limit=size)

    limited = {
        "name": "c",
        "image": "i",
        "resources": {"limits": {"memory": "1Gi", "cpu": "1500m"}},
    }
    got = _create(_pod(limited), mounts=[mount("/dev/shm"), mount("/scratch", 2**20)])
    assert got.host["shm_size"] == 2**30  # no sizeLimit: the pod's memory limit
    assert got.host["tmpfs"] == {"/scratch": f"rw,size={2**20},mode=0777"}
    assert got.host["mem_limit"] == got.host["memswap_limit"] == 2**30
    assert got.host["nano_cpus"] == 1_500_000_000 and got.host["cpu_shares"] == 1536
    unlimited = _create(_pod({"name": "c", "image": "i"}), mounts=[mount("/dev/shm")])
    assert unlimited.host["shm_size"] == 8 * 1024**3  # the node's memory
    assert "mem_limit" not in unlimited.host and "nano_cpus" not in unlimited.host
    capped = _create(_pod(limited), mounts=[mount("/dev/shm", 4 * 2**30)])
    assert capped.host["shm_size"] == 2**30
    assert not [m for m in capped.host["mounts"] if m["Target"] == "/dev/shm"]


def test_pod_dns_names_cover_the_pod_and_the_hosts_its_env_names():
    pod = {
        "metadata": {"name": "llm-a1-1-xyz", "namespace": "ml"},
        "spec": {"hostname": "llm-a1-1", "subdomain": "llm-a1"},
    }
    names = pod_dns_names(pod, ["llm-a1-0.llm-a1", "tcp://other-0.other:1", "llm-a1"])
    assert names[0] == "llm-a1-1"
    for host in ("llm-a1-1", "llm-a1-0"):
        for suffix in ("", ".ml", ".ml.svc", ".ml.svc.cluster.local"):
            assert f"{host}.llm-a1{suffix}" in names
    assert not [n for n in names if "other" in n]
    assert pod_dns_names({"metadata": {"name": "solo"}, "spec": {}}, ["x.y"]) == ["solo"]


# --------------------------------------------------------------------------------------------
# Container mode: pods through the API, as containers of an image


def py_pod(name: str, image: str, script: str, **spec) -> dict:
    """A pod running ``python3 -c script`` in ``image``."""
    container = {"name": "main", "image": image, "command": ["python3", "-c", script]}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name, "labels": {"app": "e2e-kubelet-test"}},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


@pytest.fixture
def small_image() -> str:
    """A project image with python3 and /bin/sh (the data-prep image: no torch, starts fast)."""
    return require_image("dataprep")


INSPECT_SCRIPT = r"""
import json, os, socket, sys
out = {
    "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
    "cwd": os.getcwd(), "argv": sys.argv[1:],
    "env": {
        k: os.environ.get(k)
        for k in ("GREETING", "INDEX", "HOSTNAME", "EXTRA", "PATH", "CFG_greeting", "TOKEN")
    },
    "dns": {n: socket.gethostbyname(n) for n in ("me.gang", "peer-1.gang.default.svc")},
    "config": open("/etc/cfg/greeting").read(),
    "tmpfs": {p: t for _, p, t, *_ in (l.split() for l in open("/proc/self/mounts"))},
    "sizes": {p: os.statvfs(p).f_blocks * os.statvfs(p).f_frsize for p in ("/dev/shm", "/mem")},
}
paths = ("/written-to-root", "/etc/cfg/new", "/scratch/ok", "/work/ok", "/ro/x", "/sub/ok",
         "/mem/ok", "/host/x")
for path in paths:
    try:
        open(path, "w").write("x")
        out[path] = "written"
    except OSError as e:
        out[path] = e.strerror
json.dump(out, open("/work/result.json", "w"))
open("/dev/termination-log", "w").write("inspected")
sys.exit(3)
"""


@pytest.mark.parametrize("kubelet_runtime", ["container"])
@pytest.mark.images
def test_a_container_runs_with_the_pods_user_env_mounts_and_read_only_root(
    k8s: K8s, kubelet: Kubelet, small_image: str, tmp_path: Path
):
    claim(k8s, "work")
    config_map_and_secret(k8s)
    host_path = tmp_path / "host-path"
    host_path.mkdir()
    host_path.chmod(0o755)  # root's: fsGroup does not apply to hostPath volumes
    kubelet.extra_env["EXTRA"] = "from-the-kubelet"
    pod = py_pod(
        "inspected",
        small_image,
        INSPECT_SCRIPT,
        hostname="me",
        subdomain="gang",
        securityContext={
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "runAsNonRoot": True,
            "fsGroup": 2000,
        },
        volumes=[
            {"name": "work", "persistentVolumeClaim": {"claimName": "work"}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            {"name": "host", "hostPath": {"path": str(host_path)}},
        ],
        container={
            "args": ["$(GREETING)", "$$(GREETING)"],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "workingDir": "/work",
            "env": [
                {"name": "WHO", "value": "world"},
                {"name": "GREETING", "value": "hello $(WHO)"},
                {"name": "INDEX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "PEER", "value": "peer-1.gang.default.svc"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            ],
            "volumeMounts": [
                {"name": "work", "mountPath": "/work"},
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "work", "mountPath": "/ro", "readOnly": True},
                {"name": "work", "mountPath": "/sub", "subPath": "nested"},
                {"name": "mem", "mountPath": "/mem"},
                {"name": "dshm", "mountPath": "/dev/shm"},
                {"name": "host", "mountPath": "/host"},
            ],
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        },
    )
    create(k8s, pod)
    wait_for(lambda: phase(k8s, "inspected") == "Failed", 60, message="the pod to end")
    state = terminated(k8s.pod("inspected"))
    assert (state["exitCode"], state["reason"], state["message"]) == (3, "Error", "inspected")
    assert state["containerID"].startswith("docker://")
    work = kubelet.claim_dir("work")
    out = json.loads((work / "result.json").read_text())
    assert (out["uid"], out["gid"]) == (10001, 10001)
    assert 2000 in out["groups"]  # fsGroup
    assert out["cwd"] == "/work"
    assert out["argv"] == ["hello world", "$(GREETING)"]
    assert out["env"]["GREETING"] == "hello world"
    assert out["env"]["INDEX"] == "inspected"
    assert out["env"]["HOSTNAME"] == "me"
    assert out["env"]["EXTRA"] == "from-the-kubelet"
    assert out["env"]["PATH"].startswith("/opt/venv/bin")  # the image's, not the kubelet's
    assert out["dns"] == {"me.gang": "127.0.0.1", "peer-1.gang.default.svc": "127.0.0.1"}
    assert out["config"] == "hello"
    assert out["/written-to-root"] == "Read-only file system"
    assert out["/etc/cfg/new"] == "Read-only file system"  # configMap volumes are read-only
    assert out["/ro/x"] == "Read-only file system"  # a readOnly mount of the claim
    assert out["/scratch/ok"] == out["/work/ok"] == out["/sub/ok"] == out["/mem/ok"] == "written"
    assert (work / "nested" / "ok").exists()  # subPath
    assert out["/host/x"] == "Permission denied"  # hostPath: root's, no fsGroup
    assert out["env"]["CFG_greeting"] == "hello" and out["env"]["TOKEN"] == "s3cret"
    assert out["tmpfs"]["/mem"] == out["tmpfs"]["/dev/shm"] == "tmpfs"
    assert out["sizes"] == {"/dev/shm": 16 * 2**20, "/mem": 8 * 2**20}
    written = (work / "ok").stat()
    assert (written.st_uid, written.st_gid) == (10001, 2000)  # setgid folder of the fsGroup
    assert work.stat().st_gid == 2000 and work.stat().st_mode & 0o2070 == 0o2070


@pytest.mark.parametrize("kubelet_runtime", ["container"])
@pytest.mark.images
def test_a_deleted_container_gets_sigterm_then_sigkill_after_the_grace_period(
    k8s: K8s, kubelet: Kubelet, small_image: str
):
    # A handler: exits at once with its own code. PID 1 without one ignores SIGTERM (as in a
    # pod): SIGKILL after the grace period.
    polite = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
    polite += "print('ready', flush=True)\nwhile True: time.sleep(0.05)"
    stubborn = "import time\nprint('ready', flush=True)\nwhile True: time.sleep(0.05)"
    create(k8s, py_pod("polite", small_image, polite, terminationGracePeriodSeconds=20))
    create(k8s, py_pod("stubborn", small_image, stubborn, terminationGracePeriodSeconds=2))
    for name in ("polite", "stubborn"):
        wait_for(lambda name=name: "ready" in kubelet.log_of(name), 60, message=f"{name} ready")
    ids = {name: ids[0] for name, ids in kubelet.processes().items()}
    for name, grace in (("polite", 20), ("stubborn", 2)):
        inspected = engine().api.inspect_container(ids[name])["Config"]
        assert (inspected["StopTimeout"], inspected["StopSignal"]) == (grace, "SIGTERM")
    started = time.monotonic()
    for name in ("polite", "stubborn"):
        k8s.core.delete_namespaced_pod(name, k8s.namespace)
    for name in ("polite", "stubborn"):
        wait_for(lambda name=name: phase(k8s, name) == "<gone>", 30)
    assert time.monotonic() - started >= 2  # the stubborn one's grace period passed first
    killed = {pod for _, pod, what in kubelet.history if what.startswith("grace period over")}
    assert killed == {"stubborn"}  # the polite one stopped on SIGTERM, well within its 20 s
    runs = {run.name: run for run in kubelet.runs()}
    assert runs["polite"].containers[0].exit_code == 7
    assert runs["stubborn"].containers[0].exit_code == 137
    assert runs["stubborn"].sent["phase"] == "Failed"
    assert not kubelet.processes()


@pytest.mark.parametrize("kubelet_runtime", ["container"])
@pytest.mark.images
def test_stop_removes_every_container_of_the_kubelet_and_orphans_go_too(
    k8s: K8s, kubelet: Kubelet, small_image: str
):
    create(k8s, py_pod("sleeper", small_image, "import time; time.sleep(600)"))
    wait_for(lambda: phase(k8s, "sleeper") == "Running", 60)
    client = engine()
    mine = {"label": [f"{LABEL}={kubelet.id}"]}
    assert len(client.api.containers(filters=mine)) == 1
    kubelet.stop()  # what the fixture does after a failed test too
    assert not client.api.containers(all=True, filters=mine)
    # A container left by a test process that was killed (its owner pid is gone)
    dead = psutil.Process().pid
    while psutil.pid_exists(dead):
        dead += 1
    orphan = client.api.create_container(
        small_image, labels={LABEL: "e2e-orphan", LABEL_OWNER: str(dead)}, command=["--help"]
    )["Id"]
    assert orphan in remove_orphans(client)
    assert not client.api.containers(all=True, filters={"id": orphan})


@pytest.mark.parametrize("kubelet_runtime", ["container"])
@pytest.mark.images
def test_container_exit_codes_signals_oom_and_args_alone(k8s: K8s, kubelet: Kubelet, small_image):
    # A signal death of PID 1 (a fault: PID 1's own kill(1, SIGKILL) would be ignored, as in a pod)
    create(k8s, py_pod("signalled", small_image, "import ctypes; ctypes.string_at(0)"))
    create(k8s, py_pod("clean", small_image, "print('bye')"))
    hog = "b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); print('sur' 'vived')"
    memory = {"resources": {"limits": {"memory": "64Mi"}}}
    create(k8s, py_pod("hog", small_image, hog, container=memory))
    # args alone keep the image's ENTRYPOINT (olmo-dataprep)
    create(
        k8s,
        sh_pod(
            "entrypoint", "", container={"image": small_image, "command": [], "args": ["--help"]}
        ),
    )
    for name in ("signalled", "clean", "hog", "entrypoint"):
        wait_for(lambda name=name: phase(k8s, name) in ("Succeeded", "Failed"), 60)
    states = {
        name: terminated(k8s.pod(name)) for name in ("signalled", "clean", "hog", "entrypoint")
    }
    assert (states["clean"]["exitCode"], states["clean"]["reason"]) == (0, "Completed")
    assert states["signalled"]["exitCode"] == 139 and states["signalled"]["signal"] == 11
    assert (states["hog"]["exitCode"], states["hog"]["reason"]) == (137, "OOMKilled")
    assert "survived" not in kubelet.log_of("hog")
    assert states["entrypoint"]["exitCode"] == 0
    assert "olmo-dataprep" in kubelet.log_of("entrypoint")


@pytest.mark.parametrize("kubelet_runtime", ["container"])
@pytest.mark.images
def test_a_missing_image_waits_in_err_image_pull_and_starts_once_it_exists(
    k8s: K8s, kubelet: Kubelet, small_image: str
):
    late = f"e2e-late-image:{kubelet.id}"
    create(k8s, py_pod("late", late, "print('finally')"))

    def waiting() -> str | None:
        statuses = (k8s.pod("late").get("status") or {}).get("containerStatuses") or [{}]
        return ((statuses[0].get("state") or {}).get("waiting") or {}).get("reason")

    assert wait_for(lambda: waiting() == "ErrImagePull" and waiting(), 20)
    assert (
        "pulls nothing"
        in k8s.pod("late")["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    )
    wait_for(lambda: waiting() == "ImagePullBackOff", 20)
    assert phase(k8s, "late") == "Pending"
    client = engine()
    client.images.get(small_image).tag(late)
    try:
        wait_for(lambda: phase(k8s, "late") == "Succeeded", 60, message="the pod to run")
    finally:
        client.images.remove(late)
    assert "finally" in kubelet.log_of("late")


@pytest.mark.parametrize("kubelet_runtime", ["container"])
@pytest.mark.images
def test_a_root_container_under_run_as_non_root_is_a_config_error(
    k8s: K8s, kubelet: Kubelet, small_image: str
):
    create(
        k8s,
        py_pod(
            "rooted",
            small_image,
            "print('never')",
            securityContext={"runAsNonRoot": True, "runAsUser": 0},
        ),
    )

    def reason() -> str | None:
        statuses = (k8s.pod("rooted").get("status") or {}).get("containerStatuses") or [{}]
        return ((statuses[0].get("state") or {}).get("waiting") or {}).get("message")

    message = wait_for(reason, 20)
    assert "breaks non-root policy" in message
    assert not kubelet.log_of("rooted")
