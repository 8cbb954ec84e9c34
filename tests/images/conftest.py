"""Fixtures of the image tests: each image of docker/ runs as the operator's pod spec runs it.

:func:`run_pod` takes a pod spec made by the operator's own builders (``olmo_operator.resources``)
and runs one of its containers with the test kubelet's translation of a pod spec into a Docker
container (``tests.e2e.kubelet.docker_create_args``, compared field by field with ``docker
inspect`` in tests/e2e/test_container_spec.py): command and args with ``$(VAR)`` expansion, the
env, the pod's user and group, the container's securityContext (read-only root, dropped
capabilities, no privilege escalation), ``fsGroup`` applied to the volumes, limits, /dev/shm,
the grace period, and every volume mount — each volume a host folder the test names (a PVC, a
ConfigMap's files) or a fresh one (an emptyDir). Only the network differs from the cluster
path: ``none`` unless the test needs the host's loopback.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.kubelet import (
    DockerCreate,
    VolumeMount,
    apply_pod_fs_group,
    docker_create_args,
    expand,
    memory_bytes,
)
from tests.engine import engine, require_image

JSON = dict[str, Any]
LABEL = "olmo-k8s.test/images"
KINDS = ("persistentVolumeClaim", "emptyDir", "hostPath", "configMap", "secret")
NODE_NAME = "images-node"
"""The node the image tests' pods "run on" (``spec.nodeName``)."""


def pod_of(pod_spec: JSON, name: str) -> JSON:
    """A Pod object around ``pod_spec``."""
    return {"metadata": {"name": name, "namespace": "default"}, "spec": pod_spec}


def resolve_env(spec: JSON, given: Mapping[str, str] | None) -> dict[str, str]:
    """The container's env as a kubelet resolves it: what the cluster adds (``given``: e.g. the
    Job controller's JOB_COMPLETION_INDEX) first, then ``env`` in order with ``$(VAR)``
    expansion. Plain values, and the node's name (``fieldRef`` ``spec.nodeName``: ``NODE_NAME``);
    any other ``valueFrom`` fails the test (the e2e kubelet resolves those against an API)."""
    resolved = dict(given or {})
    for var in spec.get("env") or []:
        field = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if "value" in var:
            resolved[var["name"]] = expand(str(var["value"]), resolved)
        elif field == "spec.nodeName":
            resolved[var["name"]] = NODE_NAME
        else:
            raise AssertionError(f"env {var['name']}: valueFrom is not resolved by this fixture")
    return resolved


def volume_mounts(pod_spec: JSON, spec: JSON, volumes: Mapping[str, Path], root: Path) -> list:
    """The container's mounts on the host: each volume is the folder ``volumes`` names, or a
    fresh folder under ``root`` for an emptyDir on disk; memory-backed emptyDirs are tmpfs."""
    by_name = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts = []
    for mount in spec.get("volumeMounts") or []:
        volume = by_name[mount["name"]]
        kind = next(k for k in KINDS if k in volume)
        source = volume[kind] or {}
        memory = kind == "emptyDir" and source.get("medium") == "Memory"
        if mount["name"] in volumes:
            host = Path(volumes[mount["name"]])
        elif kind == "emptyDir":
            host = root / mount["name"]
            host.mkdir(parents=True, exist_ok=True)
            host.chmod(0o777)  # as the kubelet makes an emptyDir
        else:
            raise AssertionError(f"volume {mount['name']!r} ({mount['mountPath']}) has no folder")
        read_only = bool(mount.get("readOnly") or source.get("readOnly")) or kind in (
            "configMap",
            "secret",
        )
        size = source.get("sizeLimit") if kind == "emptyDir" else None
        mounts.append(
            VolumeMount(
                path=mount["mountPath"],
                host=host / mount["subPath"] if mount.get("subPath") else host,
                volume=mount["name"],
                kind=kind,
                volume_host=host,
                read_only=read_only,
                memory=memory,
                size_limit=memory_bytes(size) if size is not None else None,
            )
        )
    return mounts


def docker_create(
    name: str,
    pod_spec: JSON,
    volumes: Mapping[str, Path],
    root: Path,
    *,
    env: Mapping[str, str] | None = None,
    network: str = "none",
    container: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> DockerCreate:
    """The Docker container of one container of ``pod_spec`` (the first, or ``container``),
    running image ``name`` of docker/ (the tag ``make images`` gives it)."""
    spec = next(
        c for c in pod_spec["containers"] if container is None or c["name"] == container
    )  # fmt: skip
    spec = {**spec, "image": require_image(name)}
    pod = pod_of(pod_spec, f"{name}-{uuid.uuid4().hex[:6]}")
    mounts = volume_mounts(pod_spec, spec, volumes, root)
    apply_pod_fs_group(pod, mounts)
    termination_log = root / "termination-log"
    termination_log.touch()
    termination_log.chmod(0o666)
    image_config = engine().images.get(spec["image"]).attrs["Config"]
    create = docker_create_args(
        pod,
        spec,
        resolve_env(spec, env),
        mounts,
        termination_log,
        image_config=image_config,
        labels=dict(labels or {}),
        node_memory=psutil.virtual_memory().total,
    )
    create.host["network_mode"] = network
    return create


@dataclass
class Running:
    container: Any

    def wait(self, timeout: float) -> int:
        return int(self.container.wait(timeout=timeout)["StatusCode"])

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def stop(self, grace: float = 10) -> None:
        with contextlib.suppress(Exception):
            self.container.stop(timeout=int(grace))


@pytest.fixture
def run_pod(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """``run_pod(image, pod_spec, volumes, network="none", env=..., container=...)`` →
    :class:`Running` (started, detached); every container is removed at the end, and its log
    printed when the test failed."""
    client = engine()
    started: list[Running] = []

    def run(name: str, pod_spec: JSON, volumes: Mapping[str, Path], **kwargs: Any) -> Running:
        root = tmp_path_factory.mktemp(f"{name}-pod")
        create = docker_create(
            name, pod_spec, volumes, root, labels={LABEL: request.node.name}, **kwargs
        )
        api = client.api
        container_id = api.create_container(
            host_config=api.create_host_config(**create.host),
            name=f"olmo-image-test-{name}-{uuid.uuid4().hex[:8]}",
            **create.config,
        )["Id"]
        api.start(container_id)
        started.append(Running(client.containers.get(container_id)))
        return started[-1]

    yield run
    report = getattr(request.node, "rep_call", None)
    for running in started:
        if report is None or report.failed:
            print(f"===== {running.container.name} =====\n{running.logs()[-6000:]}")
        running.stop(grace=5)
        with contextlib.suppress(Exception):
            running.container.remove(force=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def folder(path: Path) -> Path:
    """A new host folder for a volume (the pod's fsGroup makes it writable for uid 10001)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path
