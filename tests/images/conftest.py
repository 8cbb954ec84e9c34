"""Fixtures of the image tests: each image of docker/ runs as the operator's pod spec runs it.

:func:`run_pod` turns a pod spec made by the operator's own builders (``olmo_operator.resources``)
into ``docker run``: the container's command and args, its env (with the values a kubelet would
fill in for ``fieldRef``s, given by the test), the pod's user and group, the container's
securityContext (read-only root, dropped capabilities, no privilege escalation) and its volume
mounts, each volume a host folder (a PVC or an emptyDir) or a file the test wrote (a ConfigMap).
The test kubelet's container mode (tests/e2e) does the same for whole OLMoJobs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.kubelet import expand
from tests.engine import IMAGE_UID, engine, require_image

JSON = dict[str, Any]
LABEL = "olmo-k8s.test/images"


def writable(path: Path) -> Path:
    """A host folder the images' user can write (what fsGroup does for a pod's volumes)."""
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chown(path, IMAGE_UID, IMAGE_UID)
    path.chmod(0o777)
    return path


def chown_tree(path: Path, uid: int, gid: int) -> None:
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            with contextlib.suppress(PermissionError):
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
    with contextlib.suppress(PermissionError):
        os.chown(path, uid, gid)


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


def container_of(pod_spec: JSON, name: str | None = None) -> JSON:
    containers = pod_spec["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def with_empty_dirs(pod_spec: JSON, volumes: Mapping[str, Path], root: Path) -> dict[str, Path]:
    """``volumes`` plus a fresh host folder (writable by the images' user) for each emptyDir on
    disk the test did not name; memory-backed ones become tmpfs mounts or the shm size."""
    out = dict(volumes)
    for volume in pod_spec.get("volumes") or []:
        empty = volume.get("emptyDir")
        if empty is not None and empty.get("medium") != "Memory" and volume["name"] not in out:
            out[volume["name"]] = writable(root / volume["name"])
    return out


def docker_options(
    pod_spec: JSON,
    volumes: Mapping[str, Path],
    *,
    fields: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    container: str | None = None,
) -> JSON:
    """The ``docker run`` options (docker-py keywords) of one container of ``pod_spec``.

    ``volumes``: host folder of each volume by name (PVC, emptyDir, ConfigMap files);
    ``fields``: values of the container's ``fieldRef`` env vars by field path; ``env``: more
    variables (what a cluster would add, e.g. the API address). A volume the test does not name
    fails the test: every mount of the pod spec is honoured."""
    spec = container_of(pod_spec, container)
    pod_security = pod_spec.get("securityContext") or {}
    security = spec.get("securityContext") or {}
    # What the cluster adds first (the Job controller's JOB_COMPLETION_INDEX, say), then the
    # container's env in order, with Kubernetes' $(VAR) expansion (docker has none).
    resolved: dict[str, str] = dict(env or {})
    for var in spec.get("env") or []:
        if "value" in var:
            resolved[var["name"]] = expand(str(var["value"]), resolved)
        elif "fieldRef" in (var.get("valueFrom") or {}):
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            if fields is None or path not in fields:
                raise AssertionError(f"env {var['name']}: no value given for fieldRef {path}")
            resolved[var["name"]] = fields[path]
    memory = {v["name"]: v["emptyDir"] for v in pod_spec.get("volumes") or [] if "emptyDir" in v}
    mounts, tmpfs, shm_size = [], {}, None
    for mount in spec.get("volumeMounts") or []:
        target = mount["mountPath"]
        empty = memory.get(mount["name"])
        if empty is not None and empty.get("medium") == "Memory":
            if target == "/dev/shm":
                shm_size = empty.get("sizeLimit", "64Mi").replace("Gi", "g").replace("Mi", "m")
            else:
                tmpfs[target] = "rw"
            continue
        if mount["name"] not in volumes:
            raise AssertionError(f"volume {mount['name']!r} ({target}) has no host folder")
        host = Path(volumes[mount["name"]])
        mode = "ro" if mount.get("readOnly") else "rw"
        mounts.append(f"{host}:{target}:{mode}")
    user = pod_security.get("runAsUser", security.get("runAsUser"))
    group = pod_security.get("runAsGroup", security.get("runAsGroup"))
    command, args = spec.get("command"), spec.get("args")
    options: JSON = {
        "entrypoint": [expand(a, resolved) for a in command] if command else None,
        "command": [expand(a, resolved) for a in args] if args else None,
        "environment": resolved,
        "volumes": mounts,
        "tmpfs": tmpfs,
        "read_only": bool(security.get("readOnlyRootFilesystem")),
        "cap_drop": list((security.get("capabilities") or {}).get("drop") or []),
        "security_opt": (
            ["no-new-privileges"] if security.get("allowPrivilegeEscalation") is False else []
        ),
        "working_dir": spec.get("workingDir"),
    }
    if user is not None:
        options["user"] = f"{user}:{group}" if group is not None else str(user)
    if pod_security.get("fsGroup") is not None:
        options["group_add"] = [str(pod_security["fsGroup"])]
    if shm_size is not None:
        options["shm_size"] = shm_size
    return {k: v for k, v in options.items() if v is not None}


@pytest.fixture
def run_pod(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """``run_pod(image, pod_spec, volumes, network="none", ...)`` → :class:`Running` (detached);
    every container is removed at the end, and its log printed when the test failed."""
    client = engine()
    started: list[Running] = []

    def run(
        name: str,
        pod_spec: JSON,
        volumes: Mapping[str, Path],
        *,
        network: str = "none",
        **kwargs: Any,
    ) -> Running:
        image = require_image(name)
        volumes = with_empty_dirs(pod_spec, volumes, tmp_path_factory.mktemp(f"{name}-emptydir"))
        options = docker_options(pod_spec, volumes, **kwargs)
        container = client.containers.run(
            image,
            detach=True,
            network_mode=network,
            labels={LABEL: request.node.name},
            name=f"olmo-image-test-{name}-{uuid.uuid4().hex[:8]}",
            **options,
        )
        started.append(Running(container))
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


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst
