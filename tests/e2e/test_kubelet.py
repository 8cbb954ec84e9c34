"""The test kubelet's emulation rules (``tests/e2e/kubelet.py``), with ``/bin/sh`` pods."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from tests.operator.conftest import K8s, wait_for

from .kubelet import (
    FINALIZER,
    Kubelet,
    PathMap,
    dns_rewriter,
    expand,
    field_value,
    remap_port_args,
    remap_ports_in_text,
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


def test_an_indexed_jobs_pods_run_from_their_spec(k8s: K8s, job_controller, kubelet: Kubelet):
    claim(k8s, "work")
    k8s.core.create_namespaced_config_map(
        k8s.namespace, {"metadata": {"name": "cfg"}, "data": {"greeting": "hello"}}
    )
    token = base64.b64encode(b"s3cret").decode()
    k8s.core.create_namespaced_secret(
        k8s.namespace, {"metadata": {"name": "creds"}, "data": {"token": token}}
    )
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
    state = wait_for(lambda: waiting("needs-secret"), TIMEOUT)["containerStatuses"][0]["state"]
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
