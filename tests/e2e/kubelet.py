"""A test kubelet: the Pods in the API, run as local processes.

The operator tests' ``FakeJobController`` makes the pods of Jobs; :class:`FakeDeploymentController`
below makes the pods of Deployments (through a ReplicaSet); :class:`Kubelet` then runs every pod
of its namespace for real, as processes on this machine, from the pod spec — so the trainer, the
eval worker and the rotation Job run exactly the command lines the operator wrote. Everything goes
through the API, as a real kubelet's work does.

How a container becomes a process (the emulation rules):

- **Scheduling.** A pending pod without ``spec.nodeName`` is bound to a Node of this kubelet
  (the first ``<prefix>-N`` without a live pod, made Ready on first use; a patch of
  ``spec.nodeName`` stands in for the binding subresource, which the emulator lacks) and reported
  Pending with ``PodScheduled``. Its PersistentVolumeClaims must exist, otherwise it stays
  unbound (``PodScheduled=False``, ``Unschedulable``), as with a real scheduler. A pod is reported
  Running when its processes have started.
- **Graceful deletion.** The emulator removes a deleted object at once, whereas a real API server
  keeps a pod with a ``deletionTimestamp`` until its kubelet has stopped it. The kubelet therefore
  adds its finalizer (``FINALIZER``) when it starts a pod and removes it only once the processes
  are gone and the final phase is reported: deleting a running pod (the operator's gang restart,
  the job controller, garbage collection) sends SIGTERM, SIGKILL after the grace period, reports
  phase Succeeded/Failed, then lets the object go. The grace period is a positive
  ``deletionGracePeriodSeconds``, else ``terminationGracePeriodSeconds`` (default 30).
- **Stopping a container.** SIGTERM goes to the container's main process only (the runtime signals
  PID 1; it is the entrypoint's job to forward it); SIGKILL after the grace period, and after the
  main process has exited, goes to every process of the container (the runtime kills the
  cgroup). Membership stands in for the cgroup: each container runs in its own session and
  with a marker variable ``E2E_KUBELET_CONTAINER`` that its descendants inherit, so that
  processes which start sessions of their own (torchrun's workers do) are found too. The main
  process is not a PID-namespace init here, so a SIGTERM it does not handle still kills it.
- **Exit codes and phases.** A signal death is reported as ``128 + signal``. ``restartPolicy:
  Never`` pods end Succeeded (all containers 0) or Failed; ``Always`` (Deployments) and
  ``OnFailure`` restart their containers in place with the kubelet's crash-loop back-off
  (10 s doubling to ``max_backoff`` — 300 s by default, shorter when given, like the kubelet's
  ``crashLoopBackOff.maxContainerRestartPeriod``), counting ``restartCount`` and keeping
  ``lastState``. The termination message file (``terminationMessagePath``, default
  ``/dev/termination-log``) becomes ``state.terminated.message``.
- **Disruptions.** :meth:`Kubelet.preempt` does what a node going away does: it adds the
  ``DisruptionTarget`` condition first; ``TerminationByKubelet`` (graceful node shutdown) then
  stops the pod here and ends it in phase Failed with reason ``Terminated`` (the object stays);
  ``PreemptionByScheduler`` deletes the pod through the API and ``EvictionByEvictionAPI`` (a node
  drain) posts an Eviction, both then stopped as any deleted pod (phase Failed).
- **Environment.** ``env`` in order with Kubernetes ``$(VAR)`` expansion (``$$`` escapes; unknown
  references stay as written), ``envFrom``, and ``valueFrom``: ``fieldRef`` (``metadata.name``,
  ``.namespace``, ``.uid``, ``.labels['k']``, ``.annotations['k']`` — e.g. the job completion
  index —, ``spec.nodeName``, ``spec.serviceAccountName``, ``status.podIP``, ``status.hostIP``),
  ``secretKeyRef`` and ``configMapKeyRef`` (a missing object or key leaves the variable unset when
  ``optional``, else the container cannot start: ``CreateContainerConfigError``, retried). Under
  it lies what the image and this kubelet provide: ``PATH`` (the venv's ``bin`` first), ``HOME``
  and ``TMPDIR`` in the pod's folder, ``HOSTNAME``, ``PYTHONUNBUFFERED``, and ``extra_env`` (the
  e2e tests give ``DS_ACCELERATOR=cpu``, ``OMP_NUM_THREADS=1`` and ``OLMO_K8S_API_URL``, the
  in-cluster API address: pods here reach the emulator over plain HTTP, with no token).
- **Container filesystem.** Each volume is a host folder: a PersistentVolumeClaim is
  ``<root>/volumes/<namespace>/<claimName>`` (shared by every pod that mounts it: a
  ReadWriteMany volume; ``readOnly`` is not enforced), ``configMap``/``secret`` volumes are files
  written from the object's data (``items`` honoured), ``emptyDir`` a folder of the pod,
  ``hostPath`` itself; ``subPath`` is honoured. Paths of the image map to host paths too
  (``image_paths``: ``/app/configs`` → the repo's ``configs/``, ``/opt/venv`` → the venv). Every
  occurrence of a container path (a mount path, an image path, the termination message path) in
  ``command``, ``args``, ``env`` values and ``workingDir`` is rewritten to its host path — at path
  boundaries, in one pass, longest path first — which stands in for the container's mount
  namespace. Executables are looked up on the container's ``PATH`` (``torchrun``, ``olmo-train``,
  ``olmo-eval``, ``olmo-ckpt``, ``olmo-dataprep`` are the venv's; ``/bin/sh`` is the system's).
- **Network.** All pods share this machine's network namespace, where in a cluster each has its
  own IP. Cluster DNS: ``<hostname>.<subdomain>`` (optionally ``.<namespace>[.svc[.cluster.local]]``)
  names under the pod's own subdomain — the headless Service of an Indexed Job; the operator's
  ``MASTER_ADDR`` — are rewritten to ``127.0.0.1``. Ports: the ports a pod declares (its
  ``containerPorts`` and those of the Service named like its subdomain) are remapped to free local
  ports, one mapping per subdomain (so per attempt of the trainer) or per pod: in ``*PORT*``
  environment variables equal to such a port, in ``127.0.0.1:port`` (after the DNS rewrite), and
  in an argument following a ``...port`` flag (or ``--...port=N``). Ports a container binds
  without declaring them are not remapped (two such pods on one port collide here).
- **Logs.** Each container's stdout and stderr go to ``<root>/pods/<namespace>_<pod>/<container>.log``
  (appended across restarts); :meth:`Kubelet.log_tails` returns the ends of all of them.

Not emulated: init and sidecar containers, probes, resource limits, ``securityContext`` (the
processes run as the test's user), image pulls, ``projected`` volumes, Service virtual IPs.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import hashlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from kubernetes.client.exceptions import ApiException

from tests.operator.conftest import K8s

JSON = dict[str, Any]
FINALIZER = "e2e.olmo-k8s.io/kubelet"
DEFAULT_GRACE = 30
INITIAL_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 300.0
TERMINATION_LOG = "/dev/termination-log"
MAX_TERMINATION_MESSAGE = 4096
LOOPBACK = "127.0.0.1"
MARKER = "E2E_KUBELET_CONTAINER"
"""Inherited by every process of a container: the cgroup, emulated."""


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Pure helpers: expansion and rewriting


_REFERENCE = re.compile(r"\$(\$|\(([A-Za-z_][A-Za-z0-9_.-]*)\))")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$(NAME)`` → its value when defined (else kept as
    written), ``$$`` → ``$``; any other ``$`` is literal."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        return variables[name] if name in variables else match.group(0)

    return _REFERENCE.sub(one, text)


_PATH_CHAR = r"[A-Za-z0-9_.\-]"


class PathMap:
    """Container path → host path, applied to strings at path boundaries in one pass."""

    def __init__(self, mapping: Mapping[str, Path | str]):
        self.mapping = {_clean(k): str(v) for k, v in mapping.items()}
        keys = sorted(self.mapping, key=len, reverse=True)
        self._pattern = (
            re.compile(
                rf"(?<![A-Za-z0-9_.\-/])({'|'.join(re.escape(k) for k in keys)})(?!{_PATH_CHAR})"
            )
            if keys
            else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.mapping[m.group(1)], text)


def _clean(path: str) -> str:
    return path.rstrip("/") or "/"


def dns_rewriter(subdomain: str | None, namespace: str) -> Callable[[str], str]:
    """``<host>.<subdomain>[.<ns>[.svc[.cluster.local]]]`` → 127.0.0.1 (cluster DNS, emulated)."""
    if not subdomain:
        return lambda text: text
    suffix = rf"(?:\.{re.escape(namespace)}(?:\.svc(?:\.cluster\.local)?)?)?"
    pattern = re.compile(
        rf"(?<![A-Za-z0-9.\-])[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\.{re.escape(subdomain)}{suffix}"
        r"(?![A-Za-z0-9.\-])"
    )
    return lambda text: pattern.sub(LOOPBACK, text)


def remap_ports_in_text(text: str, ports: Mapping[int, int]) -> str:
    """``127.0.0.1:P`` / ``localhost:P`` → the mapped port."""
    if not ports:
        return text

    def one(match: re.Match[str]) -> str:
        port = int(match.group(2))
        return f"{match.group(1)}:{ports.get(port, port)}"

    return re.sub(r"(127\.0\.0\.1|localhost):(\d+)(?!\d)", one, text)


def remap_port_args(args: list[str], ports: Mapping[int, int]) -> list[str]:
    """An argument after a ``...port`` flag, or ``--...port=P``, → the mapped port."""
    out: list[str] = []
    for i, arg in enumerate(args):
        previous = args[i - 1] if i else ""
        if (
            previous.startswith("-")
            and previous.lower().rstrip("-_").endswith("port")
            and arg.isdigit()
            and int(arg) in ports
        ):
            arg = str(ports[int(arg)])
        else:
            flag, sep, value = arg.partition("=")
            if (
                sep
                and flag.startswith("-")
                and flag.lower().endswith("port")
                and value.isdigit()
                and int(value) in ports
            ):
                arg = f"{flag}={ports[int(value)]}"
        out.append(arg)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def field_value(pod: JSON, path: str, host_ip: str = LOOPBACK) -> str:
    """The value of a downward-API ``fieldRef``; ValueError for what is not supported."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": host_ip,
        "status.podIPs": host_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    match = _FIELD_KEY.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ValueError(f"fieldRef {path!r} is not supported")


class ConfigError(Exception):
    """The container cannot be configured yet (``CreateContainerConfigError``)."""


class MountError(Exception):
    """A volume cannot be set up yet (the pod stays ``ContainerCreating``)."""


class Unschedulable(Exception):
    """The pod cannot be placed (a missing PersistentVolumeClaim)."""


# --------------------------------------------------------------------------------------------
# Running containers


@dataclass
class Container:
    name: str
    spec: JSON
    log: Path
    termination_log: Path
    marker: str = ""
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    proc: subprocess.Popen | None = None
    started_at: str = ""
    restarts: int = 0
    exit_code: int | None = None
    finished_at: str = ""
    message: str = ""
    last_state: JSON | None = None
    next_start: float = 0.0
    backoff: float = 0.0
    waiting: tuple[str, str] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.exit_code is None


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    pod: JSON
    folder: Path
    node: str
    containers: list[Container]
    restart_policy: str
    started_at: str = ""
    terminating: bool = False
    term_deadline: float | None = None
    disruption: JSON | None = None
    reason: str = ""
    message: str = ""
    phase: str = "Pending"
    finished: bool = False
    """The processes are gone and the final phase is reported (the object may remain)."""
    sent: JSON | None = None
    """The last status this kubelet wrote."""
    deleted: bool = False


class Kubelet:
    """Runs the pods of ``namespace`` as local processes (see the module docstring).

    ``start()`` runs :meth:`sync` (after each of ``controllers``) in a background thread every
    ``interval`` seconds; ``stop()`` stops the thread and SIGKILLs every process of its
    containers.
    """

    def __init__(
        self,
        k8s: K8s,
        root: Path,
        *,
        venv_bin: Path,
        image_paths: Mapping[str, Path] | None = None,
        extra_env: Mapping[str, str] | None = None,
        entrypoints: Mapping[str, list[str]] | None = None,
        interval: float = 0.05,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        node_prefix: str = "e2e-node",
    ):
        self.k8s = k8s
        self.namespace = k8s.namespace
        self.root = Path(root)
        self.venv_bin = Path(venv_bin)
        self.image_paths = {k: Path(v) for k, v in (image_paths or {}).items()}
        self.extra_env = dict(extra_env or {})
        self.entrypoints = {k: list(v) for k, v in (entrypoints or {}).items()}
        self.interval = interval
        self.max_backoff = max_backoff
        self.node_prefix = node_prefix
        self.id = uuid.uuid4().hex[:12]
        self.pods: dict[str, PodRun] = {}
        """Pods this kubelet runs or ran, until their objects are deleted."""
        self.done: list[PodRun] = []
        """Pods whose objects are gone (for inspection after a test)."""
        self._seen: set[str] = set()
        self._pending_sent: dict[str, JSON] = {}
        self.errors: list[BaseException] = []
        self.history: list[tuple[float, str, str]] = []
        """(time.monotonic(), pod, what happened): the kubelet's own timeline."""
        self._ports: dict[str, dict[int, int]] = {}
        self._nodes: set[str] = set()
        self._requests: queue.Queue[tuple[str, str, str]] = queue.Queue()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.controllers: list[Any] = []
        """Objects with a ``sync()`` run before each kubelet pass (e.g. the Deployment
        controller), in the kubelet's thread."""

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> Kubelet:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="e2e-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            for proc in marked_processes(f"{self.id}/"):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            for run in list(self.pods.values()):
                for c in run.containers:
                    if c.proc is not None:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            c.proc.wait(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                for controller in self.controllers:
                    controller.sync()
                self.sync()
            except ApiException as e:
                if e.status not in (404, 409) and len(self.errors) < 50:
                    self.errors.append(e)
            except Exception as e:  # reported by the fixture's teardown
                if len(self.errors) < 50:
                    self.errors.append(e)

    def _note(self, run: PodRun | str, what: str) -> None:
        name = run if isinstance(run, str) else run.name
        self.history.append((time.monotonic(), name, what))

    # ---- public helpers --------------------------------------------------------------------

    def claim_dir(self, claim: str, namespace: str | None = None) -> Path:
        """The host folder of PersistentVolumeClaim ``claim``."""
        return self.root / "volumes" / (namespace or self.namespace) / claim

    def preempt(self, pod: str, reason: str = "TerminationByKubelet") -> None:
        """Disrupt ``pod`` as its node going away would (see the module docstring)."""
        if reason not in ("TerminationByKubelet", "PreemptionByScheduler", "EvictionByEvictionAPI"):
            raise ValueError(f"unsupported disruption reason {reason!r}")
        with self._lock:
            run = self.pods.get(pod)
            if run is None or run.finished or run.terminating:
                raise ValueError(f"pod {pod} is not running on this kubelet")
        self._requests.put(("preempt", pod, reason))

    def runs(self) -> list[PodRun]:
        """Every pod this kubelet has run: still present in the API, then gone."""
        with self._lock:
            return [*self.pods.values(), *self.done]

    def processes(self) -> dict[str, list[int]]:
        """Live main-process pids by pod."""
        with self._lock:
            return {
                name: [c.proc.pid for c in run.containers if c.running and c.proc]
                for name, run in self.pods.items()
            }

    def log_files(self) -> list[Path]:
        return sorted((self.root / "pods").glob("*/*.log"))

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for path in self.log_files():
            text = path.read_text(errors="replace").splitlines()
            out.append(f"===== {path.parent.name}/{path.name} (last {lines} lines) =====")
            out += text[-lines:]
        return "\n".join(out)

    def log_of(self, pod: str, container: str | None = None) -> str:
        folder = self.root / "pods" / f"{self.namespace}_{pod}"
        files = sorted(folder.glob("*.log")) if container is None else [folder / f"{container}.log"]
        return "\n".join(p.read_text(errors="replace") for p in files if p.exists())

    # ---- one pass --------------------------------------------------------------------------

    def sync(self) -> None:
        with self._lock:
            while True:
                try:
                    action, pod, reason = self._requests.get_nowait()
                except queue.Empty:
                    break
                if action == "preempt":
                    self._preempt(pod, reason)
            pods = {p["metadata"]["name"]: p for p in self.k8s.pods()}
            for name, run in list(self.pods.items()):
                obj = pods.get(name)
                if obj is None or obj["metadata"]["uid"] != run.uid:
                    run.deleted = True  # force-deleted: stop it all the same
                    if run.finished:
                        self._forget(run)
                        continue
                    if not run.terminating:
                        self._terminate(run, self._grace(run.pod, None), "deleted")
                else:
                    run.pod = obj
                    deleting = bool(obj["metadata"].get("deletionTimestamp"))
                    if deleting and run.finished:
                        if self._release(run):
                            self._forget(run)
                        continue
                    if deleting and not run.terminating:
                        grace = self._grace(obj, obj["metadata"].get("deletionGracePeriodSeconds"))
                        self._terminate(run, grace, "deletion requested")
                if not run.finished:
                    self._tend(run)
            busy = {
                p["spec"]["nodeName"]
                for p in pods.values()
                if p["spec"].get("nodeName")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            }
            for name, obj in pods.items():
                meta = obj["metadata"]
                if name in self.pods or meta["uid"] in self._seen:
                    if (
                        name not in self.pods
                        and meta.get("deletionTimestamp")
                        and FINALIZER in (meta.get("finalizers") or [])
                    ):
                        self._release_object(obj)  # left over: nothing runs it any more
                    continue
                if self._wants(obj):
                    self._admit(obj, busy)

    def _wants(self, pod: JSON) -> bool:
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            return False
        node = (pod.get("spec") or {}).get("nodeName")
        return node is None or node.startswith(f"{self.node_prefix}-")

    # ---- admission: schedule, mount, configure, start ------------------------------------

    def _admit(self, pod: JSON, busy: set[str]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        name = meta["name"]
        if spec.get("initContainers"):
            self._pending(pod, "Unschedulable", "init containers are not emulated")
            return
        if not spec.get("nodeName"):  # the scheduler's part
            try:
                self._check_claims(pod)
            except Unschedulable as e:
                self._pending(pod, "Unschedulable", str(e))
                return
            node = self._free_node(busy)
            patch = {"spec": {"nodeName": node}}  # stands in for the binding subresource
            pod = self.k8s.to_dict(
                self.k8s.core.patch_namespaced_pod(name, meta["namespace"], patch)
            )
            spec = pod["spec"]
            busy.add(node)
            self._note(name, f"bound to {node}")
            scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_iso()}
            self._put_status(name, {"phase": "Pending", "conditions": [scheduled]})
        node = spec["nodeName"]
        folder = self.root / "pods" / f"{meta['namespace']}_{name}"
        try:
            mounts = self._volumes(pod, folder)
        except MountError as e:
            self._pending(pod, "ContainerCreating", str(e))
            return
        containers = [
            Container(
                name=spec_c["name"],
                spec=spec_c,
                log=folder / f"{spec_c['name']}.log",
                termination_log=folder / spec_c["name"] / "termination-log",
                marker=f"{self.id}/{meta['namespace']}/{name}/{spec_c['name']}",
            )
            for spec_c in spec["containers"]
        ]
        try:
            for c in containers:
                self._configure(pod, c, mounts.get(c.name, {}), folder)
        except ConfigError as e:
            self._pending(pod, "CreateContainerConfigError", str(e))
            return
        patch = {"metadata": {"finalizers": [FINALIZER]}}
        pod = self.k8s.to_dict(self.k8s.core.patch_namespaced_pod(name, meta["namespace"], patch))
        run = PodRun(
            namespace=meta["namespace"],
            name=name,
            uid=meta["uid"],
            pod=pod,
            folder=folder,
            node=node,
            containers=containers,
            restart_policy=spec.get("restartPolicy", "Always"),
            started_at=now_iso(),
        )
        self.pods[name] = run
        self._seen.add(run.uid)
        self._pending_sent.pop(name, None)
        for c in containers:
            self._start(run, c)
        run.phase = "Running"
        self._note(run, "started: " + "; ".join(_brief(c.argv) for c in containers))
        self._report(run)

    def _pending(self, pod: JSON, reason: str, message: str) -> None:
        """Report why a pod cannot start yet (retried on every pass)."""
        if reason == "Unschedulable":
            cond = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message}
            wanted = {"phase": "Pending", "conditions": [cond]}
        else:
            wanted = {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "ready": False,
                        "restartCount": 0,
                        "image": c.get("image", ""),
                        "imageID": "",
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                    for c in pod["spec"]["containers"]
                ],
            }
        name = pod["metadata"]["name"]
        if self._pending_sent.get(name) != wanted:
            self._note(name, f"pending: {reason}: {message}")
            self._put_status(name, wanted)
            self._pending_sent[name] = wanted

    def _check_claims(self, pod: JSON) -> None:
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None:
                continue
            try:
                self.k8s.core.read_namespaced_persistent_volume_claim(
                    claim, pod["metadata"]["namespace"]
                )
            except ApiException as e:
                if e.status == 404:
                    raise Unschedulable(
                        f'persistentvolumeclaim "{claim}" not found (0/1 nodes are available)'
                    ) from None
                raise

    def _free_node(self, busy: set[str]) -> str:
        """The first of this kubelet's nodes without a live pod (made Ready on first use)."""
        n = 0
        while f"{self.node_prefix}-{n}" in busy:
            n += 1
        name = f"{self.node_prefix}-{n}"
        if name not in self._nodes:
            body = {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
            try:
                self.k8s.core.create_node(body)
            except ApiException as e:
                if e.status != 409:
                    raise
            ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
            self.k8s.core.patch_node_status(name, {"status": {"conditions": [ready]}})
            self._nodes.add(name)
        return name

    def _volumes(self, pod: JSON, folder: Path) -> dict[str, dict[str, Path]]:
        """Set up every volume; return {container: {mountPath: host path}}."""
        namespace = pod["metadata"]["namespace"]
        hosts: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                path = self.claim_dir(volume["persistentVolumeClaim"]["claimName"], namespace)
                path.mkdir(parents=True, exist_ok=True)
            elif "emptyDir" in volume:
                path = folder / "volumes" / name
                path.mkdir(parents=True, exist_ok=True)
            elif "hostPath" in volume:
                path = Path(volume["hostPath"]["path"])
            elif "configMap" in volume or "secret" in volume:
                path = folder / "volumes" / name
                self._write_object_volume(volume, namespace, path)
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise MountError(f"volume {name!r}: {kinds} volumes are not emulated")
            hosts[name] = path
        mounts: dict[str, dict[str, Path]] = {}
        for c in pod["spec"]["containers"]:
            table: dict[str, Path] = {}
            for mount in c.get("volumeMounts") or []:
                if mount["name"] not in hosts:
                    raise MountError(f"volumeMount {mount['name']!r}: no such volume")
                host = hosts[mount["name"]]
                if mount.get("subPath"):
                    host = host / mount["subPath"]
                    host.mkdir(parents=True, exist_ok=True)
                table[mount["mountPath"]] = host
            mounts[c["name"]] = table
        return mounts

    def _write_object_volume(self, volume: JSON, namespace: str, path: Path) -> None:
        is_secret = "secret" in volume
        source = volume["secret"] if is_secret else volume["configMap"]
        name = source.get("secretName") if is_secret else source.get("name")
        data = self._object_data(is_secret, name, namespace)
        if data is None:
            if source.get("optional"):
                data = {}
            else:
                kind = "secret" if is_secret else "configmap"
                raise MountError(f'{kind} "{name}" not found')
        items = source.get("items")
        files = (
            {item["path"]: item["key"] for item in items} if items else {key: key for key in data}
        )
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        for rel, key in files.items():
            if key not in data:
                if source.get("optional"):
                    continue
                raise MountError(f"configmap/secret {name!r} has no key {key!r}")
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[key])

    def _object_data(self, is_secret: bool, name: str, namespace: str) -> dict[str, bytes] | None:
        try:
            if is_secret:
                obj = self.k8s.to_dict(self.k8s.core.read_namespaced_secret(name, namespace))
            else:
                obj = self.k8s.to_dict(self.k8s.core.read_namespaced_config_map(name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        out: dict[str, bytes] = {}
        if is_secret:
            for key, value in (obj.get("data") or {}).items():
                out[key] = base64.b64decode(value)
            for key, value in (obj.get("stringData") or {}).items():
                out[key] = str(value).encode()
        else:
            for key, value in (obj.get("data") or {}).items():
                out[key] = str(value).encode()
            for key, value in (obj.get("binaryData") or {}).items():
                out[key] = base64.b64decode(value)
        return out

    def _env_source(self, kind: str, name: str, namespace: str) -> dict[str, str] | None:
        data = self._object_data(kind == "secret", name, namespace)
        return None if data is None else {k: v.decode() for k, v in data.items()}

    def _container_env(self, pod: JSON, spec: JSON) -> dict[str, str]:
        """The container's own environment, resolved and expanded (ConfigError if it cannot
        be built yet)."""
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
                ref = source.get(key)
                if ref is None:
                    continue
                values = self._env_source(kind, ref["name"], namespace)
                if values is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'{kind} "{ref["name"]}" not found')
                env.update({prefix + k: v for k, v in values.items()})
        for var in spec.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(str(var.get("value", "")), env)
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                try:
                    env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
                except ValueError as e:
                    raise ConfigError(f"env {name}: {e}") from None
                continue
            for kind, key in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
                ref = source.get(key)
                if ref is None:
                    continue
                values = self._env_source(kind, ref["name"], namespace)
                if values is None or ref["key"] not in values:
                    if ref.get("optional"):
                        break
                    if values is None:
                        raise ConfigError(f'{kind} "{ref["name"]}" not found')
                    raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
                env[name] = values[ref["key"]]
                break
            else:
                raise ConfigError(f"env {name}: valueFrom {sorted(source)} is not emulated")
        return env

    def _declared_ports(self, pod: JSON) -> set[int]:
        ports = {
            int(p["containerPort"])
            for c in pod["spec"]["containers"]
            for p in c.get("ports") or []
            if p.get("containerPort")
        }
        subdomain = pod["spec"].get("subdomain")
        if subdomain:
            try:
                service = self.k8s.to_dict(
                    self.k8s.core.read_namespaced_service(subdomain, pod["metadata"]["namespace"])
                )
            except ApiException as e:
                if e.status != 404:
                    raise
            else:
                for p in (service.get("spec") or {}).get("ports") or []:
                    ports.add(int(p["port"]))
                    if isinstance(p.get("targetPort"), int):
                        ports.add(int(p["targetPort"]))
        return ports

    def _port_map(self, pod: JSON) -> dict[int, int]:
        scope = pod["spec"].get("subdomain") or f"pod/{pod['metadata']['name']}"
        table = self._ports.setdefault(scope, {})
        for port in sorted(self._declared_ports(pod)):
            if port not in table:
                table[port] = free_port()
        return table

    def _configure(self, pod: JSON, c: Container, mounts: dict[str, Path], folder: Path) -> None:
        spec = c.spec
        env = self._container_env(pod, spec)
        command = list(spec.get("command") or [])
        args = list(spec.get("args") or [])
        if not command:
            image = spec.get("image", "")
            entry = next((v for k, v in self.entrypoints.items() if image.startswith(k)), None)
            if entry is None:
                raise ConfigError(
                    f"container {c.name}: no command, and the test kubelet knows no ENTRYPOINT "
                    f"for image {image!r}"
                )
            command = entry
        argv = [expand(a, env) for a in command + args]

        term_path = spec.get("terminationMessagePath") or TERMINATION_LOG
        c.termination_log.parent.mkdir(parents=True, exist_ok=True)
        c.termination_log.write_text("")
        paths = PathMap(
            {
                **self.image_paths,
                **mounts,
                term_path: c.termination_log,
            }
        )
        dns = dns_rewriter(pod["spec"].get("subdomain"), pod["metadata"]["namespace"])
        ports = self._port_map(pod)

        def rewrite(text: str) -> str:
            return paths(remap_ports_in_text(dns(text), ports))

        argv = [rewrite(a) for a in remap_port_args(argv, ports)]
        resolved = {}
        for key, value in env.items():
            if "PORT" in key.upper() and value.isdigit() and int(value) in ports:
                value = str(ports[int(value)])
            resolved[key] = rewrite(value)

        home, tmp = folder / c.name / "home", folder / c.name / "tmp"
        for d in (home, tmp):
            d.mkdir(parents=True, exist_ok=True)
        base = {
            "PATH": f"{self.venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.extra_env,
        }
        c.env = {**base, **resolved, MARKER: c.marker}
        workdir = spec.get("workingDir")
        c.cwd = rewrite(workdir) if workdir else str(folder / c.name / "workdir")
        Path(c.cwd).mkdir(parents=True, exist_ok=True)
        c.argv = argv

    def _start(self, run: PodRun, c: Container) -> None:
        c.log.parent.mkdir(parents=True, exist_ok=True)
        with open(c.log, "ab") as log:
            header = f"----- {now_iso()} start #{c.restarts}: {' '.join(c.argv)}\n"
            log.write(header.encode())
            log.flush()
            try:
                c.proc = subprocess.Popen(
                    c.argv,
                    env=c.env,
                    cwd=c.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: the "container"
                )
            except OSError as e:  # e.g. executable not found: the runtime's StartError
                log.write(f"cannot start: {e}\n".encode())
                c.proc = None
                c.exit_code = 128
                c.message = str(e)
                c.finished_at = now_iso()
                return
        c.exit_code = None
        c.message = ""
        c.started_at = now_iso()
        c.waiting = None

    # ---- running pods ----------------------------------------------------------------------

    def _tend(self, run: PodRun) -> None:
        changed = False
        now = time.monotonic()
        for c in run.containers:
            if c.running and c.proc is not None and c.proc.poll() is not None:
                rc = c.proc.returncode
                c.exit_code = 128 + (-rc) if rc < 0 else rc
                c.finished_at = now_iso()
                self._kill_container(c)  # the container goes, with what it left
                c.message = self._termination_message(c)
                self._note(run, f"container {c.name} exited {c.exit_code}")
                changed = True
            if run.terminating or c.running:
                continue
            if c.waiting is None and c.exit_code is not None and self._restarts(run, c):
                c.last_state = {"terminated": self._terminated(c)}
                c.backoff = min(2 * c.backoff if c.backoff else INITIAL_BACKOFF, self.max_backoff)
                c.next_start = now + c.backoff
                c.waiting = (
                    "CrashLoopBackOff",
                    f"back-off {c.backoff:g}s restarting failed container={c.name} pod={run.name}",
                )
                changed = True
            elif c.waiting is not None and now >= c.next_start:
                c.restarts += 1
                self._start(run, c)
                self._note(run, f"container {c.name} restarted (#{c.restarts})")
                changed = True
        if run.terminating and run.term_deadline is not None and now > run.term_deadline:
            for c in run.containers:
                if c.running:
                    self._note(run, f"grace period over: SIGKILL to {c.name}")
                    self._kill_container(c)
            run.term_deadline = None
        if all(not c.running and c.waiting is None for c in run.containers):
            run.phase = self._final_phase(run)
            run.finished = True
            self._note(run, f"finished: {run.phase}")
            changed = True
        if changed:
            self._report(run)
        deleting = run.deleted or bool(run.pod["metadata"].get("deletionTimestamp"))
        if run.finished and deleting and (run.deleted or self._release(run)):
            self._forget(run)

    def _restarts(self, run: PodRun, c: Container) -> bool:
        return run.restart_policy == "Always" or (
            run.restart_policy == "OnFailure" and c.exit_code != 0
        )

    def _final_phase(self, run: PodRun) -> str:
        if run.disruption is not None:
            return "Failed"
        codes = [c.exit_code for c in run.containers]
        return "Succeeded" if all(code == 0 for code in codes) else "Failed"

    def _forget(self, run: PodRun) -> None:
        self.pods.pop(run.name, None)
        self.done.append(run)

    def _release(self, run: PodRun) -> bool:
        """Remove the kubelet's finalizer (a deleted pod then disappears); False: try again."""
        try:
            pod = self.k8s.to_dict(self.k8s.core.read_namespaced_pod(run.name, run.namespace))
        except ApiException as e:
            if e.status == 404:
                return True
            raise
        if pod["metadata"]["uid"] != run.uid:
            return True
        return self._release_object(pod)

    def _release_object(self, pod: JSON) -> bool:
        meta = pod["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        patch = {
            "metadata": {
                "finalizers": finalizers or None,
                "resourceVersion": meta["resourceVersion"],
            }
        }
        try:
            self.k8s.core.patch_namespaced_pod(
                meta["name"], meta["namespace"], patch, _content_type="application/merge-patch+json"
            )
        except ApiException as e:
            if e.status == 409:  # changed meanwhile: again on the next pass
                return False
            if e.status != 404:
                raise
        return True

    def _grace(self, pod: JSON, deletion_grace: Any) -> float:
        if isinstance(deletion_grace, int) and deletion_grace > 0:
            return float(deletion_grace)
        value = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return float(DEFAULT_GRACE if value is None else value)

    def _terminate(self, run: PodRun, grace: float, why: str) -> None:
        run.terminating = True
        run.term_deadline = time.monotonic() + grace
        for c in run.containers:
            c.waiting = None  # no more restarts
            if c.running and c.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.proc.pid, signal.SIGTERM)
        self._note(run, f"{why}: SIGTERM, SIGKILL in {grace:g}s")

    def _kill_container(self, c: Container) -> None:
        """SIGKILL to every process of the container (its session, and all that carry its
        marker)."""
        if c.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.proc.pid, signal.SIGKILL)
        for proc in marked_processes(c.marker):
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def _preempt(self, name: str, reason: str) -> None:
        run = self.pods.get(name)
        if run is None or run.finished or run.terminating:
            self._note(name, f"not disrupted ({reason}): it stopped meanwhile")
            return
        messages = {
            "TerminationByKubelet": "Pod was terminated in response to imminent node shutdown.",
            "PreemptionByScheduler": f"{self.node_prefix}: preempted by a higher-priority pod",
            "EvictionByEvictionAPI": "Eviction API: evicting",
        }
        run.disruption = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": reason,
            "message": messages[reason],
            "lastTransitionTime": now_iso(),
        }
        self._note(run, f"disrupted: {reason}")
        if reason == "TerminationByKubelet":
            run.reason, run.message = "Terminated", messages[reason]
            self._report(run)
            self._terminate(run, self._grace(run.pod, None), "node shutdown")
        elif reason == "PreemptionByScheduler":
            self._report(run)
            self.k8s.core.delete_namespaced_pod(name, run.namespace)
        else:
            self._report(run)  # the emulator's eviction sets its own condition too
            body = {
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": name, "namespace": run.namespace},
            }
            self.k8s.core.create_namespaced_pod_eviction(name, run.namespace, body)

    # ---- status ----------------------------------------------------------------------------

    def _terminated(self, c: Container) -> JSON:
        out = {
            "exitCode": c.exit_code,
            "reason": "Completed" if c.exit_code == 0 else "Error",
            "startedAt": c.started_at or now_iso(),
            "finishedAt": c.finished_at or now_iso(),
            "containerID": f"process://{c.proc.pid if c.proc else 0}",
        }
        if c.exit_code is not None and c.exit_code > 128 and c.exit_code - 128 < 65:
            out["signal"] = c.exit_code - 128
        if c.message:
            out["message"] = c.message
        return out

    def _termination_message(self, c: Container) -> str:
        text = ""
        with contextlib.suppress(OSError):
            text = c.termination_log.read_text(errors="replace")[:MAX_TERMINATION_MESSAGE]
        policy = c.spec.get("terminationMessagePolicy", "File")
        if not text.strip() and policy == "FallbackToLogsOnError" and c.exit_code:
            with contextlib.suppress(OSError):
                lines = c.log.read_text(errors="replace").splitlines()[-80:]
                text = "\n".join(lines)[-2048:]
        return text

    def _container_status(self, c: Container) -> JSON:
        status: JSON = {
            "name": c.name,
            "image": c.spec.get("image", ""),
            "imageID": "",
            "restartCount": c.restarts,
            "ready": c.running,
            "started": c.running,
        }
        if c.running:
            status["state"] = {"running": {"startedAt": c.started_at}}
            status["containerID"] = f"process://{c.proc.pid if c.proc else 0}"
        elif c.waiting is not None:
            status["state"] = {"waiting": {"reason": c.waiting[0], "message": c.waiting[1]}}
        elif c.exit_code is not None:
            status["state"] = {"terminated": self._terminated(c)}
        else:
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        if c.last_state is not None:
            status["lastState"] = c.last_state
        return status

    def _report(self, run: PodRun) -> None:
        ready = run.phase == "Running" and all(c.running for c in run.containers)
        ready_status = "True" if ready else "False"
        conditions = [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready_status},
            {"type": "Ready", "status": ready_status},
        ]
        old = {c.get("type"): c for c in (run.pod.get("status") or {}).get("conditions") or []}
        for cond in conditions:
            previous = old.get(cond["type"])
            same = previous is not None and previous.get("status") == cond["status"]
            cond["lastTransitionTime"] = (
                previous.get("lastTransitionTime", now_iso()) if same else now_iso()
            )
            if (
                not ready
                and run.phase in ("Succeeded", "Failed")
                and cond["type"] != "PodScheduled"
            ):
                cond["reason"] = "PodCompleted" if run.phase == "Succeeded" else "PodFailed"
        if run.disruption is not None:
            conditions.append(run.disruption)
        status: JSON = {
            "phase": run.phase,
            "conditions": conditions,
            "hostIP": LOOPBACK,
            "podIP": LOOPBACK,
            "podIPs": [{"ip": LOOPBACK}],
            "startTime": run.started_at,
            "qosClass": "BestEffort",
            "containerStatuses": [self._container_status(c) for c in run.containers],
        }
        if run.reason and run.phase in ("Succeeded", "Failed"):
            status["reason"], status["message"] = run.reason, run.message
        if status != run.sent:
            self._put_status(run.name, status)
            run.sent = status

    def _put_status(self, name: str, status: JSON) -> None:
        """Replace the pod's status (the kubelet owns it; a JSON patch ``add /status``)."""
        try:
            pod = self.k8s.core.patch_namespaced_pod_status(
                name, self.namespace, [{"op": "add", "path": "/status", "value": status}]
            )
        except ApiException as e:
            if e.status != 404:
                raise
            return
        run = self.pods.get(name)
        if run is not None:
            run.pod = self.k8s.to_dict(pod)


# --------------------------------------------------------------------------------------------
# Deployments


POD_TEMPLATE_HASH = "pod-template-hash"


def template_hash(template: JSON) -> str:
    import json

    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(digest[i : i + 2], 16) % len(alphabet)] for i in range(0, 20, 2))


class FakeDeploymentController:
    """The Deployment and ReplicaSet controllers, reduced to what the eval worker needs: each
    Deployment gets a ReplicaSet ``<name>-<template hash>`` (owned by it) with ``replicas`` pods
    (owned by the ReplicaSet, so that deleting the Deployment collects them); ReplicaSets of an
    older template are scaled to 0; failed or succeeded pods are replaced. Status counts
    replicas. Run its ``sync()`` in the kubelet's loop (``kubelet.controllers``)."""

    def __init__(self, k8s: K8s):
        self.k8s = k8s
        self._sent: dict[str, JSON] = {}

    def sync(self) -> None:
        ns = self.k8s.namespace
        deployments = [
            self.k8s.to_dict(d) for d in self.k8s.apps.list_namespaced_deployment(ns).items
        ]
        sets = [self.k8s.to_dict(r) for r in self.k8s.apps.list_namespaced_replica_set(ns).items]
        pods = self.k8s.pods()
        for deployment in deployments:
            if deployment["metadata"].get("deletionTimestamp"):
                continue
            self._sync_deployment(deployment, sets, pods)
        for rs in sets:
            if not rs["metadata"].get("deletionTimestamp"):
                self._sync_replica_set(rs, pods)

    def _sync_deployment(self, deployment: JSON, sets: list[JSON], pods: list[JSON]) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        template = spec["template"]
        wanted_hash = template_hash(template)
        mine = [rs for rs in sets if _owned_by(rs, meta["uid"])]
        current = next(
            (rs for rs in mine if rs["metadata"]["labels"].get(POD_TEMPLATE_HASH) == wanted_hash),
            None,
        )
        replicas = int(spec.get("replicas", 1))
        for rs in mine:
            if rs is not current and rs["spec"].get("replicas", 0) != 0:
                self.k8s.apps.patch_namespaced_replica_set(
                    rs["metadata"]["name"], meta["namespace"], {"spec": {"replicas": 0}}
                )
        old_pods = [
            p
            for rs in mine
            if rs is not current
            for p in pods
            if _owned_by(p, rs["metadata"]["uid"]) and not p["metadata"].get("deletionTimestamp")
        ]
        if current is None and not old_pods:  # Recreate: the old pods go first
            labels = {**(template.get("metadata") or {}).get("labels", {})}
            labels[POD_TEMPLATE_HASH] = wanted_hash
            body = {
                "metadata": {
                    "name": f"{meta['name']}-{wanted_hash}",
                    "namespace": meta["namespace"],
                    "labels": labels,
                    "ownerReferences": [_owner(deployment, "apps/v1", "Deployment")],
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {
                        "matchLabels": {
                            **(spec.get("selector") or {}).get("matchLabels", {}),
                            POD_TEMPLATE_HASH: wanted_hash,
                        }
                    },
                    "template": {
                        "metadata": {**(template.get("metadata") or {}), "labels": labels},
                        "spec": copy.deepcopy(template["spec"]),
                    },
                },
            }
            try:
                self.k8s.apps.create_namespaced_replica_set(meta["namespace"], body)
            except ApiException as e:
                if e.status != 409:
                    raise
        elif current is not None and current["spec"].get("replicas") != replicas:
            self.k8s.apps.patch_namespaced_replica_set(
                current["metadata"]["name"], meta["namespace"], {"spec": {"replicas": replicas}}
            )
        live = [
            p for rs in mine for p in pods if _owned_by(p, rs["metadata"]["uid"]) and _active(p)
        ]
        ready = [p for p in live if _ready(p)]
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(live),
            "updatedReplicas": len(
                [p for p in live if current and _owned_by(p, current["metadata"]["uid"])]
            ),
            "readyReplicas": len(ready),
            "availableReplicas": len(ready),
        }
        status = {k: v for k, v in status.items() if v or k == "observedGeneration"}
        if self._sent.get(meta["uid"]) != status:
            self.k8s.apps.patch_namespaced_deployment_status(
                meta["name"], meta["namespace"], [{"op": "add", "path": "/status", "value": status}]
            )
            self._sent[meta["uid"]] = status

    def _sync_replica_set(self, rs: JSON, pods: list[JSON]) -> None:
        meta, spec = rs["metadata"], rs["spec"]
        mine = [p for p in pods if _owned_by(p, meta["uid"]) and _active(p)]
        wanted = int(spec.get("replicas", 1))
        for _ in range(wanted - len(mine)):
            template = copy.deepcopy(spec["template"])
            body = {
                "metadata": {
                    **(template.get("metadata") or {}),
                    "generateName": f"{meta['name']}-",
                    "namespace": meta["namespace"],
                    "ownerReferences": [_owner(rs, "apps/v1", "ReplicaSet")],
                },
                "spec": template["spec"],
            }
            self.k8s.core.create_namespaced_pod(meta["namespace"], body)
        for pod in mine[wanted:] if wanted < len(mine) else []:
            with contextlib.suppress(ApiException):
                self.k8s.core.delete_namespaced_pod(pod["metadata"]["name"], meta["namespace"])
        status = {"replicas": len(mine), "observedGeneration": meta.get("generation", 1)}
        if self._sent.get(meta["uid"]) != status:
            self.k8s.apps.patch_namespaced_replica_set_status(
                meta["name"], meta["namespace"], [{"op": "add", "path": "/status", "value": status}]
            )
            self._sent[meta["uid"]] = status


def _owner(obj: JSON, api_version: str, kind: str) -> JSON:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned_by(obj: JSON, uid: str) -> bool:
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def _active(pod: JSON) -> bool:
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    return phase in ("Pending", "Running") and not pod["metadata"].get("deletionTimestamp")


def _ready(pod: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _brief(argv: list[str], width: int = 60) -> str:
    """A command line for the timeline: one line, each argument cut to ``width``."""
    parts = []
    for arg in argv:
        arg = " ".join(arg.split())
        parts.append(arg if len(arg) <= width else arg[: width - 3] + "...")
    return " ".join(parts)


def marked_processes(prefix: str) -> list[psutil.Process]:
    """This user's processes whose ``E2E_KUBELET_CONTAINER`` starts with ``prefix``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER, "").startswith(prefix):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def venv_bin() -> Path:
    """The ``bin`` folder of the Python running the tests (the venv)."""
    return Path(sys.executable).parent
