"""The operator's pods as the test kubelet's container mode creates them: what Docker got.

Each pod the operator makes — the trainer Job's (a node of a 2-node attempt), the eval worker
Deployment's, the data-prep Job's, the rotation Job's — is built with the operator's own builders
(``olmo_operator.resources``) from a realistic OLMoJob (limits, an inline model config, a W&B
secret, ``$(VAR)`` references in the user's env) and made a pod as the Job, ReplicaSet and
scheduler would (completion index, hostname, node). The container runtime creates its
container (not started), and :func:`mismatches` compares ``docker inspect`` with the pod spec
field by field wherever Docker has the same notion. The expectations are computed from the pod
spec here, not by the code under test; a last test drops fields from the create arguments and
checks that the comparison notices each one.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from olmo_operator import contract as c
from olmo_operator.resources import (
    AttemptState,
    config_map,
    dataprep_job,
    eval_deployment,
    master_address,
    rotation_job,
    trainer_job,
)
from olmo_operator.spec import OLMoJob, parse_job
from tests.engine import IMAGE_UID, image, require_image
from tests.operator.conftest import COMPLETION_INDEX, K8s

from .kubelet import (
    DEFAULT_GRACE,
    LABEL,
    LABEL_CONTAINER,
    LABEL_POD,
    LOOPBACK,
    TERMINATION_LOG,
    ContainerRuntime,
    Kubelet,
    expand,
    memory_bytes,
    milli_cpus,
)

pytestmark = [pytest.mark.images, pytest.mark.parametrize("kubelet_runtime", ["container"])]

JSON = dict[str, Any]
NAME = "llm"
PIPELINE, WANDB_SECRET, WANDB_KEY = "llm-pipeline", "wandb", "s3cret-key"
GRACE = 45
IMAGE_OF = {
    "trainer": "trainer",
    "evalworker": "evalworker",
    "dataprep": "dataprep",
    "rotation": "trainer",
}


def olmojob() -> OLMoJob:
    spec = {
        "model": {"config": yaml.safe_dump({"model": {"preset": "tiny"}, "seed": 1})},
        "image": image("trainer"),
        "nodes": 2,
        "gpusPerNode": 0,
        "processesPerNode": 2,
        "resources": {"limits": {"memory": "6Gi", "cpu": 2}, "requests": {"cpu": "1500m"}},
        "dataset": {
            "claimName": "olmo-data",
            "path": "tokens",
            "prepare": {
                "pipelineConfigMap": {"name": PIPELINE},
                "workers": 2,
                "image": image("dataprep"),
                "resources": {"limits": {"memory": "2Gi", "cpu": "500m"}},
            },
        },
        "checkpoint": {"claimName": "olmo-checkpoints", "interval": 50, "keepLast": 2},
        "eval": {
            "enabled": True,
            "image": image("evalworker"),
            "tasks": ["piqa"],
            "limit": 10,
            "resources": {"limits": {"memory": "3Gi", "cpu": "1"}},
        },
        "wandb": {"project": "olmo", "secretRef": {"name": WANDB_SECRET}},
        "terminationGracePeriodSeconds": GRACE,
        "maxSteps": 100,
        "env": [
            {"name": "RENDEZVOUS", "value": "$(MASTER_ADDR):$(MASTER_PORT)"},
            {"name": "LITERAL", "value": "$$(MASTER_ADDR) and $(UNDEFINED)"},
        ],
    }
    obj = {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": NAME, "namespace": "default", "uid": "0f0e-uid", "generation": 1},
        "spec": spec,
    }
    return parse_job(obj)


def job_pod(job: JSON, index: int | None, suffix: str) -> JSON:
    """The pod the Job controller makes for ``index`` (and the scheduler binds)."""
    template = copy.deepcopy(job["spec"]["template"])
    meta, spec = template.get("metadata") or {}, template["spec"]
    labels, annotations = dict(meta.get("labels") or {}), dict(meta.get("annotations") or {})
    name = job["metadata"]["name"]
    if index is not None:
        labels[COMPLETION_INDEX] = annotations[COMPLETION_INDEX] = str(index)
        spec["hostname"] = f"{name}-{index}"
        index_ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
        for container in spec["containers"]:
            container["env"] = [
                {"name": "JOB_COMPLETION_INDEX", "valueFrom": index_ref},
                *container.get("env", []),
            ]
    spec["nodeName"] = "e2e-node-0"
    pod_name = f"{name}-{index}-{suffix}" if index is not None else f"{name}-{suffix}"
    return {
        "metadata": {
            "name": pod_name,
            "namespace": job["metadata"]["namespace"],
            "uid": f"uid-{pod_name}",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def operator_pods(job: OLMoJob) -> dict[str, JSON]:
    deployment = eval_deployment(job)
    eval_pod = job_pod(
        {**deployment, "metadata": {"name": f"{NAME}-eval-5d8f9", "namespace": "default"}},
        None,
        "x7k2p",
    )
    return {
        "trainer": job_pod(trainer_job(job, AttemptState(attempt=1)), 1, "abcde"),
        "evalworker": eval_pod,
        "dataprep": job_pod(dataprep_job(job), 0, "fghij"),
        "rotation": job_pod(rotation_job(job), None, "klmno"),
    }


# --------------------------------------------------------------------------------------------
# The comparison


def _field(pod: JSON, path: str) -> str:
    meta = pod["metadata"]
    for kind in ("labels", "annotations"):
        prefix = f"metadata.{kind}['"
        if path.startswith(prefix):
            return meta[kind][path[len(prefix) : -2]]
    return {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"]["nodeName"],
    }[path]


def expected_env(pod: JSON, spec: JSON, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's variables from its spec: literal values expanded in order, fieldRefs
    from the pod, secretKeyRefs from ``secrets``."""
    env: dict[str, str] = {}
    for var in spec.get("env") or []:
        source = var.get("valueFrom")
        if source is None:
            env[var["name"]] = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            env[var["name"]] = _field(pod, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            raise AssertionError(f"the test does not know {var}")
    return env


def _security(pod: JSON, spec: JSON, key: str) -> Any:
    sc, pod_sc = spec.get("securityContext") or {}, pod["spec"].get("securityContext") or {}
    return sc[key] if sc.get(key) is not None else pod_sc.get(key)


def mismatches(
    kubelet: Kubelet,
    pod: JSON,
    spec: JSON,
    inspected: JSON,
    image_config: JSON,
    secrets: dict[str, dict[str, str]],
) -> list[str]:
    """Every field where ``docker inspect`` of the container disagrees with the pod spec."""
    out: list[str] = []

    def check(what: str, got: Any, want: Any) -> None:
        if got != want:
            out.append(f"{what}: docker has {got!r}, the pod spec says {want!r}")

    config, host = inspected["Config"], inspected["HostConfig"]
    pod_spec, meta = pod["spec"], pod["metadata"]

    # image, command, env, working dir
    check("image", config["Image"], spec["image"])
    env = expected_env(pod, spec, secrets)
    got_env = dict(item.split("=", 1) for item in config["Env"] or [])
    for name, value in env.items():
        check(f"env {name}", got_env.get(name), value)
    hostname = pod_spec.get("hostname") or meta["name"]
    check("env HOSTNAME", got_env.get("HOSTNAME"), hostname)
    for name, value in kubelet.extra_env.items():
        check(f"env {name} (the kubelet's)", got_env.get(name), env.get(name, value))
    command = [expand(a, env) for a in spec.get("command") or []]
    args = [expand(a, env) for a in spec.get("args") or []]
    if command:
        check("entrypoint (command)", config["Entrypoint"], command)
        check("cmd (args)", config["Cmd"] or [], args)
    else:
        check("entrypoint (the image's)", config["Entrypoint"], image_config.get("Entrypoint"))
        check("cmd", config["Cmd"], args or image_config.get("Cmd"))
    check("working dir", config["WorkingDir"], spec.get("workingDir") or image_config["WorkingDir"])

    # security
    uid, gid = _security(pod, spec, "runAsUser"), _security(pod, spec, "runAsGroup")
    check("user", config["User"], f"{uid}:{gid}" if gid is not None else str(uid))
    sc = spec.get("securityContext") or {}
    check("read-only root", host["ReadonlyRootfs"], bool(sc.get("readOnlyRootFilesystem")))
    capabilities = sc.get("capabilities") or {}
    check("cap drop", host["CapDrop"] or [], capabilities.get("drop") or [])
    check("cap add", host["CapAdd"] or [], capabilities.get("add") or [])
    check(
        "no-new-privileges",
        "no-new-privileges" in (host["SecurityOpt"] or []),
        sc.get("allowPrivilegeEscalation") is False,
    )
    pod_sc = pod_spec.get("securityContext") or {}
    groups = [pod_sc["fsGroup"]] if pod_sc.get("fsGroup") is not None else []
    groups += pod_sc.get("supplementalGroups") or []
    check("group add (fsGroup)", host["GroupAdd"] or [], [str(g) for g in groups])
    check("privileged", host["Privileged"], bool(sc.get("privileged")))

    # resources
    limits = (spec.get("resources") or {}).get("limits") or {}
    requests = (spec.get("resources") or {}).get("requests") or {}
    memory = memory_bytes(limits["memory"]) if "memory" in limits else 0
    check("memory limit", host["Memory"], memory)
    check("memory+swap limit", host["MemorySwap"], memory)
    check(
        "nano cpus", host["NanoCpus"], milli_cpus(limits["cpu"]) * 10**6 if "cpu" in limits else 0
    )
    shares = requests.get("cpu", limits.get("cpu"))
    check("cpu shares", host["CpuShares"], milli_cpus(shares) * 1024 // 1000 if shares else 0)

    # volumes
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    binds = {m["Destination"]: m for m in inspected["Mounts"]}
    wanted_binds = set()
    for mount in spec.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        empty_dir = volume.get("emptyDir")
        if empty_dir is not None and empty_dir.get("medium") == "Memory":
            size = empty_dir.get("sizeLimit")
            size = memory_bytes(size) if size is not None else None
            if size is None or (memory and memory < size):
                size = memory or None
            if mount["mountPath"] == "/dev/shm":
                check("shm size", host["ShmSize"], size or kubelet.runtime.node_memory)
            else:
                check(
                    f"tmpfs {mount['mountPath']}", mount["mountPath"] in (host["Tmpfs"] or {}), True
                )
            continue
        if "persistentVolumeClaim" in volume:
            source = kubelet.claim_dir(volume["persistentVolumeClaim"]["claimName"])
        elif "hostPath" in volume:
            source = Path(volume["hostPath"]["path"])
        else:
            source = kubelet.pod_dir(meta["name"]) / "volumes" / mount["name"]
        if mount.get("subPath"):
            source = source / mount["subPath"]
        read_only = bool(
            mount.get("readOnly")
            or (volume.get("persistentVolumeClaim") or {}).get("readOnly")
            or "configMap" in volume
            or "secret" in volume
        )
        got = binds.get(mount["mountPath"])
        wanted_binds.add(mount["mountPath"])
        if got is None:
            out.append(f"mount {mount['mountPath']}: missing")
            continue
        check(f"mount {mount['mountPath']} source", got["Source"], str(source))
        check(f"mount {mount['mountPath']} read-write", got["RW"], not read_only)
        check(f"mount {mount['mountPath']} type", got["Type"], "bind")
    term = spec.get("terminationMessagePath") or TERMINATION_LOG
    wanted_binds.add(term)
    if term not in binds:
        out.append(f"termination message file {term}: not mounted")
    else:
        check("termination message file writable", binds[term]["RW"], True)
    check("mounts", sorted(binds), sorted(wanted_binds))

    # stopping, network, identity
    grace = pod_spec.get("terminationGracePeriodSeconds")
    check("stop timeout", config.get("StopTimeout"), DEFAULT_GRACE if grace is None else grace)
    check("stop signal", config.get("StopSignal"), image_config.get("StopSignal") or "SIGTERM")
    check("network mode", host["NetworkMode"], "host")
    hosts = set(host["ExtraHosts"] or [])
    wanted_hosts = {f"{hostname}:{LOOPBACK}"}
    if pod_spec.get("subdomain"):
        for name in {hostname, *_subdomain_hosts(env, pod_spec["subdomain"])}:
            base = f"{name}.{pod_spec['subdomain']}"
            for suffix in ("", ".default", ".default.svc", ".default.svc.cluster.local"):
                wanted_hosts.add(f"{base}{suffix}:{LOOPBACK}")
    check("extra hosts (cluster DNS)", hosts, wanted_hosts)
    labels = config["Labels"] or {}
    check("label kubelet", labels.get(LABEL), kubelet.id)
    check("label pod", labels.get(LABEL_POD), meta["name"])
    check("label container", labels.get(LABEL_CONTAINER), spec["name"])
    return out


def _subdomain_hosts(env: dict[str, str], subdomain: str) -> set[str]:
    """Hosts ``<h>.<subdomain>`` named in env values (the operator's MASTER_ADDR)."""
    return {value.split(".")[0] for value in env.values() if value.split(".")[1:2] == [subdomain]}


# --------------------------------------------------------------------------------------------
# The tests


@pytest.fixture
def secrets(k8s: K8s) -> dict[str, dict[str, str]]:
    """The objects the pods reference: the W&B secret, the pipeline and the model config."""
    job = olmojob()
    token = base64.b64encode(WANDB_KEY.encode()).decode()
    k8s.core.create_namespaced_secret(
        k8s.namespace, {"metadata": {"name": WANDB_SECRET}, "data": {"api-key": token}}
    )
    k8s.core.create_namespaced_config_map(
        k8s.namespace,
        {"metadata": {"name": PIPELINE}, "data": {c.PIPELINE_FILE: "sources: []\n"}},
    )
    k8s.core.create_namespaced_config_map(k8s.namespace, config_map(job, 1))
    return {WANDB_SECRET: {"api-key": WANDB_KEY}}


@pytest.mark.parametrize("component", ["trainer", "evalworker", "dataprep", "rotation"])
def test_the_container_docker_creates_is_the_pod_spec(
    kubelet: Kubelet, secrets: dict, component: str
):
    require_image(IMAGE_OF[component])
    pod = operator_pods(olmojob())[component]
    spec = pod["spec"]["containers"][0]
    assert spec["image"] == image(IMAGE_OF[component])
    runtime = kubelet.runtime
    assert isinstance(runtime, ContainerRuntime)
    [container] = kubelet.prepare(pod)
    container_id = runtime.create(container)
    inspected = runtime.api.inspect_container(container_id)
    image_config = runtime.image_config(spec["image"])
    problems = mismatches(kubelet, pod, spec, inspected, image_config, secrets)
    assert not problems, "\n".join(problems)

    # what the pods of an OLMoJob must get, whatever the builders do later
    assert inspected["Config"]["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert str(IMAGE_UID) in inspected["HostConfig"]["GroupAdd"]
    assert inspected["HostConfig"]["ReadonlyRootfs"]
    if component == "trainer":
        env = dict(item.split("=", 1) for item in inspected["Config"]["Env"])
        assert env["JOB_COMPLETION_INDEX"] == "1"
        assert env["RENDEZVOUS"] == f"{master_address(NAME, 1)}:{c.RENDEZVOUS_PORT}"
        assert env["LITERAL"] == "$(MASTER_ADDR) and $(UNDEFINED)"
        assert env[c.ENV_WANDB_KEY] == WANDB_KEY
        assert f"{master_address(NAME, 1)}:{LOOPBACK}" in inspected["HostConfig"]["ExtraHosts"]
        assert inspected["Config"]["Entrypoint"][:2] == ["/bin/sh", "-c"]
        assert "--node-rank" in inspected["Config"]["Cmd"]
        assert (
            inspected["Config"]["Cmd"][inspected["Config"]["Cmd"].index("--node-rank") + 1] == "1"
        )
        assert inspected["HostConfig"]["Memory"] == 6 * 2**30
        assert inspected["HostConfig"]["NanoCpus"] == 2 * 10**9
        assert inspected["HostConfig"]["ShmSize"] == 6 * 2**30  # the dshm emptyDir
        assert inspected["Config"]["StopTimeout"] == GRACE


def test_the_comparison_notices_every_dropped_field(kubelet: Kubelet, secrets: dict):
    """The check above is not vacuous: a container created without some of what the pod
    spec says is caught, field by field."""
    require_image("trainer")
    pod = operator_pods(olmojob())["trainer"]
    spec = pod["spec"]["containers"][0]
    runtime = kubelet.runtime
    assert isinstance(runtime, ContainerRuntime)
    [container] = kubelet.prepare(pod)
    config, host = dict(container.config.config), dict(container.config.host)
    config["environment"] = [e for e in config["environment"] if not e.startswith("NNODES=")]
    config["command"] = config["command"][:-1]
    config.pop("stop_timeout")
    config["user"] = "0:0"  # (without one, the image's USER would happen to match)
    for key in ("read_only", "cap_drop", "security_opt", "group_add", "mem_limit", "memswap_limit"):
        host.pop(key)
    host.pop("nano_cpus")
    host["mounts"] = [m for m in host["mounts"] if m["Target"] != c.DATA_MOUNT]
    host["shm_size"] = 64 * 2**20
    host["extra_hosts"] = {}
    container.config = dataclasses.replace(container.config, config=config, host=host)
    inspected = runtime.api.inspect_container(runtime.create(container))
    image_config = runtime.image_config(spec["image"])
    problems = "\n".join(mismatches(kubelet, pod, spec, inspected, image_config, secrets))
    for what in (
        "env NNODES",
        "cmd (args)",
        "user",
        "stop timeout",
        "read-only root",
        "cap drop",
        "no-new-privileges",
        "group add",
        "memory limit",
        "nano cpus",
        f"mount {c.DATA_MOUNT}: missing",
        "shm size",
        "extra hosts",
    ):
        assert what in problems, f"{what!r} not reported:\n{problems}"
