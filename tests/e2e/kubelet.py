"""A test kubelet: the Pods in the API, run as local processes or as containers of their images.

The operator tests' ``FakeJobController`` makes the pods of Jobs; :class:`FakeDeploymentController`
below makes the pods of Deployments (through a ReplicaSet); :class:`Kubelet` then runs every pod
of its namespace for real, from the pod spec — so the trainer, the eval worker, the data-prep
workers and the rotation Job run exactly the command lines the operator wrote. Everything goes
through the API, as a real kubelet's work does.

Two runtimes turn a container into something that runs:

- :class:`ProcessRuntime` (the default, for quick local runs): a process tree on this machine,
  with the venv standing in for the image and container paths rewritten to host folders.
- :class:`ContainerRuntime` (``runtime=ContainerRuntime(client)``): a Docker container of the
  image the pod spec names, created from the pod spec by the pure function
  :func:`docker_create_args`, with the pod's user, security context, limits and mounts.

What the kubelet does the same way for both (the emulation rules):

- **Scheduling.** A pending pod without ``spec.nodeName`` is bound to a Node of this kubelet
  (the first ``<prefix>-N`` without a live pod that its required node affinity allows, made
  Ready on first use and labelled ``kubernetes.io/hostname: <prefix>-N``; a patch of
  ``spec.nodeName`` stands in for the binding subresource, which the emulator lacks) and reported
  Pending with ``PodScheduled``. Its PersistentVolumeClaims must exist, otherwise it stays
  unbound (``PodScheduled=False``, ``Unschedulable``), as with a real scheduler. A pod is reported
  Running when its containers have started.
- **Node affinity.** ``spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution``
  is honoured as the scheduler does: its ``nodeSelectorTerms`` are ORed (an empty list, or an
  empty term, allows no node); within a term every ``matchExpressions`` requirement (against the
  Node's labels, as the API has them) and every ``matchFields`` one (key ``metadata.name``,
  ``In``/``NotIn``) must hold; operators ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``, ``Gt``,
  ``Lt``, and ``NotIn``/``DoesNotExist`` hold on a node without the label. A pod that no free
  node allows stays unbound (``Unschedulable``, "didn't match Pod's node affinity/selector") and
  is tried again on every pass: it never takes a node its affinity excludes (the operator's
  ``excludedNodes``: ``matchFields`` ``metadata.name NotIn [...]``). ``spec.nodeSelector`` and
  preferred affinities are ignored: the kubelet's nodes stand in for every node pool (node pool
  selection is the operator's decision, which its tests check on the pod spec).
- **Graceful deletion.** The emulator removes a deleted object at once, whereas a real API server
  keeps a pod with a ``deletionTimestamp`` until its kubelet has stopped it. The kubelet therefore
  adds its finalizer (``FINALIZER``) when it starts a pod and removes it only once the containers
  are gone and the final phase is reported: deleting a running pod (the operator's gang restart,
  the job controller, garbage collection) sends SIGTERM, SIGKILL after the grace period, reports
  phase Succeeded/Failed, then lets the object go. The grace period is a positive
  ``deletionGracePeriodSeconds``, else ``terminationGracePeriodSeconds`` (default 30).
- **Exit codes and phases.** A signal death is reported as ``128 + signal``; a container that
  cannot start (no such executable) as exit code 128, reason ``StartError``. ``restartPolicy:
  Never`` pods end Succeeded (all containers 0) or Failed; ``Always`` (Deployments) and
  ``OnFailure`` restart their containers in place with the kubelet's crash-loop back-off
  (10 s doubling to ``max_backoff`` — 300 s by default, shorter when given, like the kubelet's
  ``crashLoopBackOff.maxContainerRestartPeriod``), counting ``restartCount`` and keeping
  ``lastState``. The termination message file (``terminationMessagePath``, default
  ``/dev/termination-log``; emptied at each start) becomes ``state.terminated.message``
  (``FallbackToLogsOnError`` honoured).
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
  ``optional``, else the container cannot start: ``CreateContainerConfigError``, retried).
  ``command`` and ``args`` are expanded with that environment. Under it lie ``HOSTNAME`` (the
  pod's hostname) and the kubelet's ``extra_env`` (the e2e tests give ``DS_ACCELERATOR=cpu``,
  ``OMP_NUM_THREADS=1`` and ``OLMO_K8S_API_URL``, the in-cluster API address: pods here reach
  the emulator over plain HTTP on 127.0.0.1, with no token); the pod's own variables win.
- **Volumes.** Each volume is a host folder: a PersistentVolumeClaim is
  ``<root>/volumes/<namespace>/<claimName>`` (shared by every pod that mounts it: a
  ReadWriteMany volume), ``configMap``/``secret`` volumes are files written from the object's
  data (``items``, ``defaultMode`` and item ``mode`` honoured), ``emptyDir`` a folder of the pod
  (mode 0777, as a kubelet makes it), ``hostPath`` itself; ``subPath`` is honoured.
- **Images.** No image is ever pulled (no registry answers here): ``imagePullPolicy`` is
  ignored. The container runtime looks the image up in the engine; a missing one keeps the pod
  Pending with ``ErrImagePull``, then ``ImagePullBackOff`` while it retries (1 s doubling to 10 s),
  and the pod starts once the image exists.
- **Logs.** Each container's stdout and stderr go to ``<root>/pods/<namespace>_<pod>/<container>.log``
  (appended across restarts, a header line per start); :meth:`Kubelet.log_tails` returns the ends
  of all of them.

Process mode (:class:`ProcessRuntime`), in addition:

- **Stopping a container.** SIGTERM goes to the container's main process only (the runtime signals
  PID 1; it is the entrypoint's job to forward it); SIGKILL after the grace period, and after the
  main process has exited, goes to every process of the container (the runtime kills the
  cgroup). Membership stands in for the cgroup: each container runs in its own session and
  with a marker variable ``E2E_KUBELET_CONTAINER`` that its descendants inherit, so that
  processes which start sessions of their own (torchrun's workers do) are found too. The main
  process is not a PID-namespace init here, so a SIGTERM it does not handle still kills it.
- **Environment.** Under the pod's variables also ``PATH`` (the venv's ``bin`` first), ``HOME``
  and ``TMPDIR`` in the pod's folder, ``PYTHONUNBUFFERED``; ``override_env`` is set over them
  (what the image has built in and the host emulates with shared state, e.g.
  ``TORCH_EXTENSIONS_DIR``: one cache of the JIT-built DeepSpeed op stands in for the image's
  prebuilt one, where a pod's own value would point into its fresh emptyDir). ``command`` is
  required unless ``entrypoints`` names the image's ENTRYPOINT.
- **Container filesystem.** Paths of the image map to host paths too (``image_paths``:
  ``/app/configs`` → the repo's ``configs/``, ``/opt/venv`` → the venv). Every occurrence of a
  container path (a mount path, an image path, the termination message path) in ``command``,
  ``args``, ``env`` values and ``workingDir`` is rewritten to its host path — at path
  boundaries, in one pass, longest path first — which stands in for the container's mount
  namespace (file contents are not rewritten: a ConfigMap that names container paths does not
  work here). Executables are looked up on the container's ``PATH``. ``readOnly`` and
  ``medium: Memory`` are not enforced.
- **Network.** All pods share this machine's network namespace, where in a cluster each has its
  own IP. Cluster DNS: ``<hostname>.<subdomain>`` (optionally ``.<namespace>[.svc[.cluster.local]]``)
  names under the pod's own subdomain — the headless Service of an Indexed Job; the operator's
  ``MASTER_ADDR`` — are rewritten to ``127.0.0.1``. Ports: the ports a pod declares (its
  ``containerPorts`` and those of the Service named like its subdomain) are remapped to free local
  ports, one mapping per subdomain (so per attempt of the trainer) or per pod: in ``*PORT*``
  environment variables equal to such a port, in ``127.0.0.1:port`` (after the DNS rewrite), and
  in an argument following a ``...port`` flag (or ``--...port=N``). Ports a container binds
  without declaring them are not remapped (two such pods on one port collide here).
- **Broken volumes.** ``Kubelet(broken_claims={node: {claim, ...}})`` or
  :meth:`Kubelet.break_claim` make a PersistentVolumeClaim broken on one node, as a stale NFS
  mount would be: a pod bound to that node afterwards gets that claim's mounts (``subPath`` too)
  pointing under a regular file (:meth:`Kubelet.broken_claim_path`), so that every read, write or
  ``mkdir`` there fails with ENOTDIR (even as root); pods on other nodes, and pods bound before,
  see the claim's folder. A ``workingDir`` there cannot be created: ``CreateContainerConfigError``.
- **Signals.** :meth:`Kubelet.signal_process` sends a signal (``SIGSTOP`` to emulate a hung
  process, ``SIGCONT``) to the processes of a pod whose program matches a pattern: the module of
  ``python -m`` (torchrun's workers run ``python -u -m olmo.train.cli``), the script of
  ``python script`` (torchrun itself), else the executable — see :func:`process_program`;
  forked children with their parent's command line (DataLoader workers) match as it does. A
  stopped process still ends with its pod: a SIGTERM waits in its queue, the SIGKILL after the
  grace period (and :meth:`Kubelet.stop`) ends it.
- Not emulated: ``securityContext`` (the processes run as the test's user), resource limits.

Container mode (:class:`ContainerRuntime`, Docker through docker-py), in addition:

- **Command.** Kubernetes semantics: ``command`` replaces the image's ENTRYPOINT and CMD,
  ``args`` alone replace CMD; ``workingDir`` replaces WORKDIR. The environment is the resolved
  one above, with no PATH/HOME/TMPDIR of the kubelet's: the image's ENV provides those.
- **Mounts.** Bind mounts of the volume folders at their mount paths, read-only where the mount
  says ``readOnly``, the claim says ``persistentVolumeClaim.readOnly``, and for every
  ``configMap``/``secret`` volume. A ``medium: Memory`` emptyDir is a tmpfs (``sizeLimit`` as
  its size), the one at ``/dev/shm`` the container's ``/dev/shm`` with that size (without a
  ``sizeLimit``: the pod's memory limit, else the node's memory, as Kubernetes sizes it).
  The termination message file is bind-mounted (mode 0666) at ``terminationMessagePath``.
- **Security.** ``runAsUser``/``runAsGroup`` (container over pod) as the container's user, else
  the image's USER; ``runAsNonRoot`` checked against that (uid 0, or a non-numeric image user,
  is a ``CreateContainerConfigError``); ``readOnlyRootFilesystem`` → a read-only root;
  ``capabilities.drop``/``add``; ``allowPrivilegeEscalation: false`` → ``no-new-privileges``;
  ``privileged``; ``seccompProfile`` ``Unconfined`` (``RuntimeDefault`` is Docker's default).
  Pod ``fsGroup`` as a kubelet applies it: the volumes (not ``hostPath``) are made group-owned by
  that gid, group-readable (and -writable unless read-only), directories setgid
  (``fsGroupChangePolicy: OnRootMismatch`` skips a volume whose root already matches), and the
  gid is added to the container's groups, with ``supplementalGroups``. Changing a volume's owner
  needs the kubelet to run as root.
- **Resources.** ``limits.memory`` → the memory limit (no swap), ``limits.cpu`` → CPU quota
  (``NanoCpus``), ``requests.cpu`` (else ``limits.cpu``) → CPU shares; quantities parsed as
  Kubernetes does (``500m``, ``1.5``, ``2Gi``, ``1e9``, ``128M``). A container killed for memory
  reports reason ``OOMKilled``.
- **Stopping.** The container's stop signal (the image's STOPSIGNAL, else SIGTERM) to PID 1, which
  — a PID-namespace init, as in a pod — ignores it unless it handles it; SIGKILL after the grace
  period (the container's stop timeout is the grace period too, as ``docker stop -t``); when PID
  1 exits, the engine kills the rest.
- **Network.** ``network_mode="host"`` (no bridge network here): every container shares this
  machine's network namespace, so a container's ports are its pod's (no remapping: two pods
  binding one port collide). Pod DNS names — ``<hostname>.<subdomain>`` with its
  ``.<namespace>[.svc[.cluster.local]]`` forms, for the pod itself and for every such name in
  its command, args and env (the operator's ``MASTER_ADDR``) — map to 127.0.0.1 through
  ``extra_hosts``; the pod's hostname is ``HOSTNAME`` in the environment (the engine refuses a
  hostname with host networking).
- **Lifetime.** Containers are named ``e2e-<kubelet id>-<pod>-<container>-<restart>`` and
  labelled with the kubelet's id (and the test process's pid): a restart creates a new one, the
  old ones stay until :meth:`Kubelet.stop`, which removes every container of the kubelet. A new
  :class:`ContainerRuntime` removes the containers left by test processes that no longer run.
- Not emulated: ephemeral-storage limits and emptyDir ``sizeLimit`` on disk (eviction),
  ``hugepages``, GPUs, AppArmor/SELinux options, ``procMount``, user namespaces.

Container mode has no broken volumes and no :meth:`Kubelet.signal_process`
(``NotImplementedError``).

Not emulated in either mode: init and sidecar containers, probes, image pulls, ``projected``
and ``downwardAPI`` volumes, Service virtual IPs, the service account token mount.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import decimal
import hashlib
import math
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
from kubernetes.client.exceptions import ApiException

from tests.operator.conftest import K8s

JSON = dict[str, Any]
FINALIZER = "e2e.olmo-k8s.io/kubelet"
DEFAULT_GRACE = 30
INITIAL_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 300.0
IMAGE_BACKOFF, MAX_IMAGE_BACKOFF = 1.0, 10.0
TERMINATION_LOG = "/dev/termination-log"
MAX_TERMINATION_MESSAGE = 4096
LOOPBACK = "127.0.0.1"
SHM = "/dev/shm"
MARKER = "E2E_KUBELET_CONTAINER"
"""Inherited by every process of a container: the cgroup, emulated (process mode)."""
LABEL = "e2e.olmo-k8s.io/kubelet"
"""The kubelet id on every container of the container runtime."""
LABEL_OWNER = "e2e.olmo-k8s.io/owner-pid"
LABEL_POD, LABEL_NAMESPACE, LABEL_CONTAINER = (
    "e2e.olmo-k8s.io/pod",
    "e2e.olmo-k8s.io/namespace",
    "e2e.olmo-k8s.io/container",
)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Pure helpers: expansion, rewriting, quantities


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


def _dns_pattern(subdomain: str, namespace: str) -> re.Pattern[str]:
    """``<host>.<subdomain>[.<ns>[.svc[.cluster.local]]]`` (group 1: the host label)."""
    suffix = rf"(?:\.{re.escape(namespace)}(?:\.svc(?:\.cluster\.local)?)?)?"
    return re.compile(
        rf"(?<![A-Za-z0-9.\-])([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.{re.escape(subdomain)}{suffix}"
        r"(?![A-Za-z0-9.\-])"
    )


def dns_rewriter(subdomain: str | None, namespace: str) -> Callable[[str], str]:
    """``<host>.<subdomain>[.<ns>[.svc[.cluster.local]]]`` → 127.0.0.1 (cluster DNS, emulated)."""
    if not subdomain:
        return lambda text: text
    pattern = _dns_pattern(subdomain, namespace)
    return lambda text: pattern.sub(LOOPBACK, text)


def pod_dns_names(pod: JSON, texts: Iterable[str] = ()) -> list[str]:
    """The cluster DNS names a pod's container resolves to a pod of its subdomain: its own
    hostname, and ``<host>.<subdomain>`` in every form (``.<ns>``, ``.<ns>.svc``,
    ``.<ns>.svc.cluster.local``) for itself and for every host of its subdomain named in
    ``texts`` (command, args, env values). Empty-handed without a subdomain but for the
    hostname."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    hostname = spec.get("hostname") or meta.get("name", "")
    subdomain, namespace = spec.get("subdomain"), meta.get("namespace") or "default"
    names = [hostname] if hostname else []
    if not subdomain:
        return names
    hosts = [hostname] if hostname else []
    pattern = _dns_pattern(subdomain, namespace)
    for text in texts:
        for match in pattern.finditer(text):
            if match.group(1) not in hosts:
                hosts.append(match.group(1))
    for host in hosts:
        base = f"{host}.{subdomain}"
        for name in (
            base,
            f"{base}.{namespace}",
            f"{base}.{namespace}.svc",
            f"{base}.{namespace}.svc.cluster.local",
        ):
            if name not in names:
                names.append(name)
    return names


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


_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_SUFFIXES = {
    "n": decimal.Decimal("1e-9"),
    "u": decimal.Decimal("1e-6"),
    "m": decimal.Decimal("1e-3"),
    "": decimal.Decimal(1),
    "k": decimal.Decimal("1e3"),
    "M": decimal.Decimal("1e6"),
    "G": decimal.Decimal("1e9"),
    "T": decimal.Decimal("1e12"),
    "P": decimal.Decimal("1e15"),
    "E": decimal.Decimal("1e18"),
    **{s: decimal.Decimal(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}


def parse_quantity(value: Any) -> decimal.Decimal:
    """A Kubernetes resource quantity (``500m``, ``1.5``, ``2Gi``, ``1e9``, ``128M``, ``8``) as an
    exact number; ValueError for anything else."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    number = decimal.Decimal(match.group("number"))
    if match.group("exponent"):
        return number * decimal.Decimal(10) ** int(match.group("exponent")[1:])
    return number * _SUFFIXES[match.group("suffix") or ""]


def memory_bytes(value: Any) -> int:
    """A memory quantity in bytes (rounded up, as Kubernetes does)."""
    return math.ceil(parse_quantity(value))


def milli_cpus(value: Any) -> int:
    """A CPU quantity in millicores (rounded up: Kubernetes' smallest unit is 1m)."""
    return math.ceil(parse_quantity(value) * 1000)


# --------------------------------------------------------------------------------------------
# Pure helpers: required node affinity, process programs


NODE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


def required_node_terms(pod: JSON) -> list[JSON] | None:
    """``spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
    .nodeSelectorTerms`` of ``pod``; None when the pod requires nothing of its node."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def _requirement_matches(req: JSON, value: str | None, where: str) -> bool:
    """One ``matchExpressions``/``matchFields`` requirement against the node's value (None: the
    node has no such label), with label-selector semantics: ``NotIn`` and ``DoesNotExist``
    match a node without the key; ``Gt``/``Lt`` compare integers."""
    operator, values = req.get("operator"), [str(v) for v in req.get("values") or []]
    if operator not in NODE_OPERATORS:
        raise ValueError(f"{where}: operator {operator!r} is not one of {NODE_OPERATORS}")
    if operator in ("In", "NotIn") and not values:
        raise ValueError(f"{where}: operator {operator} needs values")
    if operator in ("Exists", "DoesNotExist") and values:
        raise ValueError(f"{where}: operator {operator} takes no values")
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if len(values) != 1 or not re.fullmatch(r"-?\d+", values[0]):
        raise ValueError(f"{where}: operator {operator} needs one integer value")
    if value is None or not re.fullmatch(r"-?\d+", value):
        return False
    return int(value) > int(values[0]) if operator == "Gt" else int(value) < int(values[0])


def node_selector_term_matches(term: JSON, name: str, labels: Mapping[str, str]) -> bool:
    """A ``nodeSelectorTerm``: all its ``matchExpressions`` (against the node's labels) and
    ``matchFields`` (``metadata.name``, ``In``/``NotIn``) hold; an empty term matches no node.
    ValueError for what Kubernetes would reject."""
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False
    ok = True
    for req in expressions:
        key = req.get("key")
        if not key:
            raise ValueError("matchExpressions: a requirement without a key")
        ok = _requirement_matches(req, labels.get(key), f"matchExpressions {key}") and ok
    for req in fields:
        if req.get("key") != "metadata.name":
            raise ValueError(
                f"matchFields: key {req.get('key')!r} is not supported (metadata.name)"
            )
        if req.get("operator") not in ("In", "NotIn"):
            raise ValueError(f"matchFields: operator {req.get('operator')!r} (In or NotIn only)")
        ok = _requirement_matches(req, name, "matchFields metadata.name") and ok
    return ok


def node_affinity_matches(pod: JSON, name: str, labels: Mapping[str, str]) -> bool:
    """Whether node ``name`` with ``labels`` satisfies the pod's required node affinity: any of
    its ``nodeSelectorTerms`` (ORed; none listed: no node). True without a requirement."""
    terms = required_node_terms(pod)
    if terms is None:
        return True
    results = [node_selector_term_matches(term, name, labels) for term in terms]  # all checked
    return any(results)


def _referenced_values(terms: Iterable[JSON]) -> set[str]:
    """Every value named by the terms' requirements (the nodes they can tell apart by name)."""
    return {
        str(v)
        for term in terms
        for req in [*(term.get("matchExpressions") or []), *(term.get("matchFields") or [])]
        for v in req.get("values") or []
    }


_PYTHON = re.compile(r"^python[0-9.]*$")
_PYTHON_FLAGS = set("bBdEhiIOPqsSuvVx")
"""Python's one-letter options that take no value (they combine: ``-uB``)."""


def process_program(argv: list[str]) -> str:
    """What a process runs, for :meth:`Kubelet.signal_process`: for a Python interpreter the
    module after ``-m`` (``olmo.train.cli``), ``-c`` for inline code, else the script
    (``/opt/venv/bin/torchrun``); for anything else its executable (``argv[0]``)."""
    if not argv:
        return ""
    if not _PYTHON.match(os.path.basename(argv[0])):
        return argv[0]
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv[i + 1] if i + 1 < len(argv) else argv[0]
        if arg.startswith("--"):  # --check-hash-based-pycs takes a value; the rest do not
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        if not arg.startswith("-") or arg == "-":
            return arg  # the script (or "-": stdin)
        i += 1
        for j, flag in enumerate(arg[1:], 1):
            if flag in _PYTHON_FLAGS:
                continue
            rest = arg[j + 1 :]
            if flag == "c":
                return "-c"
            if flag == "m":
                return rest or (argv[i] if i < len(argv) else "")
            if flag in "WX":  # a value: the rest of this argument, else the next one
                if not rest:
                    i += 1
                break
            break  # unknown: leave it
    return argv[0]


class ConfigError(Exception):
    """The container cannot be configured yet (``CreateContainerConfigError``)."""


class MountError(Exception):
    """A volume cannot be set up yet (the pod stays ``ContainerCreating``)."""


class Unschedulable(Exception):
    """The pod cannot be placed (a missing PersistentVolumeClaim, no node its required node
    affinity allows)."""


# --------------------------------------------------------------------------------------------
# What the kubelet resolves for a container, whatever runs it


@dataclass(frozen=True)
class VolumeMount:
    """One ``volumeMount`` of a container, resolved to the host."""

    path: str
    """Where the container sees it (``mountPath``)."""
    host: Path
    """The host folder or file (the volume's folder, or ``subPath`` inside it)."""
    volume: str
    kind: str
    """``persistentVolumeClaim``, ``emptyDir``, ``hostPath``, ``configMap`` or ``secret``."""
    volume_host: Path
    """The volume's own folder (``host`` without the ``subPath``)."""
    read_only: bool = False
    """``readOnly`` on the mount or on the claim, and always for configMap/secret volumes."""
    memory: bool = False
    """An emptyDir with ``medium: Memory`` (a tmpfs)."""
    size_limit: int | None = None
    """An emptyDir's ``sizeLimit`` in bytes."""


@dataclass
class Container:
    name: str
    spec: JSON
    log: Path
    termination_log: Path
    marker: str = ""
    argv: list[str] = field(default_factory=list)
    """What runs, for the timeline (process mode: the command line; container mode: the
    ENTRYPOINT + CMD given, or ``<image's ...>``)."""
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    config: Any = None
    """The runtime's own configuration (container mode: :class:`DockerCreate`)."""
    handle: Any = None
    """The runtime's handle of the running container (a Popen, or a docker container)."""
    container_id: str = ""
    started_at: str = ""
    restarts: int = 0
    exit_code: int | None = None
    reason: str = ""
    """``state.terminated.reason`` when the runtime knows better than the exit code
    (``OOMKilled``, ``StartError``)."""
    finished_at: str = ""
    message: str = ""
    last_state: JSON | None = None
    next_start: float = 0.0
    backoff: float = 0.0
    waiting: tuple[str, str] | None = None

    @property
    def running(self) -> bool:
        return self.handle is not None and self.exit_code is None

    @property
    def proc(self) -> subprocess.Popen | None:
        """The main process (process mode)."""
        return self.handle if isinstance(self.handle, subprocess.Popen) else None


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
    """The containers are gone and the final phase is reported (the object may remain)."""
    sent: JSON | None = None
    """The last status this kubelet wrote."""
    deleted: bool = False


# --------------------------------------------------------------------------------------------
# Runtimes


class Runtime(Protocol):
    """What turns a configured :class:`Container` into something running."""

    kind: str
    """The ``containerID`` scheme (``process``, ``docker``)."""

    def bind(self, kubelet: Kubelet) -> None:
        """Called once by the kubelet that uses this runtime."""

    def image_problem(self, image: str) -> str | None:
        """None when ``image`` can run here; else why not (the pod waits: ``ErrImagePull``)."""

    def configure(
        self, pod: JSON, c: Container, env: dict[str, str], mounts: list[VolumeMount], folder: Path
    ) -> None:
        """Prepare ``c`` from its spec, its resolved own environment and its mounts (sets
        ``c.argv``, ``c.env``, ``c.config``...). Raises ConfigError or MountError."""

    def start(self, c: Container) -> None:
        """Start ``c``: set ``c.handle`` (and ``c.container_id``), or, when it cannot start, leave
        ``c.handle`` None and set ``c.exit_code``/``c.reason``/``c.message``."""

    def poll(self, c: Container) -> bool:
        """True once the running ``c`` has exited (``c.exit_code`` and ``c.reason`` set)."""

    def terminate(self, c: Container) -> None:
        """The stop signal to the container's main process."""

    def kill(self, c: Container) -> None:
        """SIGKILL to every process of the container."""

    def shutdown(self) -> None:
        """Everything this runtime started for its kubelet is gone."""


class ProcessRuntime:
    """Containers as process trees on this machine (see the module docstring)."""

    kind = "process"

    def __init__(
        self,
        *,
        venv_bin: Path,
        image_paths: Mapping[str, Path] | None = None,
        entrypoints: Mapping[str, list[str]] | None = None,
        override_env: Mapping[str, str] | None = None,
    ):
        self.venv_bin = Path(venv_bin)
        self.image_paths = {k: Path(v) for k, v in (image_paths or {}).items()}
        self.entrypoints = {k: list(v) for k, v in (entrypoints or {}).items()}
        self.override_env = dict(override_env or {})
        self.kubelet: Kubelet | None = None
        self._ports: dict[str, dict[int, int]] = {}

    def bind(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet

    def image_problem(self, image: str) -> str | None:
        return None  # the venv is every image

    # ---- ports -----------------------------------------------------------------------------

    def _declared_ports(self, pod: JSON) -> set[int]:
        assert self.kubelet is not None
        k8s = self.kubelet.k8s
        ports = {
            int(p["containerPort"])
            for c in pod["spec"]["containers"]
            for p in c.get("ports") or []
            if p.get("containerPort")
        }
        subdomain = pod["spec"].get("subdomain")
        if subdomain:
            try:
                service = k8s.to_dict(
                    k8s.core.read_namespaced_service(subdomain, pod["metadata"]["namespace"])
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

    # ---- lifecycle -------------------------------------------------------------------------

    def configure(
        self, pod: JSON, c: Container, env: dict[str, str], mounts: list[VolumeMount], folder: Path
    ) -> None:
        assert self.kubelet is not None
        spec = c.spec
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
        paths = PathMap(
            {
                **self.image_paths,
                **{m.path: m.host for m in mounts},
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
            **self.kubelet.extra_env,
        }
        c.env = {**base, **resolved, **self.override_env, MARKER: c.marker}
        workdir = spec.get("workingDir")
        c.cwd = rewrite(workdir) if workdir else str(folder / c.name / "workdir")
        try:
            Path(c.cwd).mkdir(parents=True, exist_ok=True)
        except OSError as e:  # e.g. on a broken claim
            raise ConfigError(f"container {c.name}: workingDir {workdir}: {e}") from None
        c.argv = argv

    def start(self, c: Container) -> None:
        with open(c.log, "ab") as log:
            try:
                c.handle = subprocess.Popen(
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
                c.handle = None
                c.exit_code, c.reason, c.message = 128, "StartError", str(e)
                return
        c.container_id = str(c.handle.pid)

    def poll(self, c: Container) -> bool:
        proc = c.proc
        if proc is None or proc.poll() is None:
            return False
        rc = proc.returncode
        c.exit_code = 128 + (-rc) if rc < 0 else rc
        c.reason = ""
        self.kill(c)  # the container goes, with what it left
        return True

    def terminate(self, c: Container) -> None:
        if c.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.proc.pid, signal.SIGTERM)

    def kill(self, c: Container) -> None:
        """SIGKILL to every process of the container (its session, and all that carry its
        marker)."""
        if c.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.proc.pid, signal.SIGKILL)
        for proc in marked_processes(c.marker):
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def shutdown(self) -> None:
        if self.kubelet is None:
            return
        for proc in marked_processes(f"{self.kubelet.id}/"):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        for run in self.kubelet.runs():
            for c in run.containers:
                if c.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        c.proc.wait(10)


# ---- container mode: the pod spec → Docker ----------------------------------------------


@dataclass(frozen=True)
class DockerCreate:
    """The arguments of ``APIClient.create_container`` (``config``) and of its
    ``create_host_config`` (``host``), from :func:`docker_create_args`."""

    config: JSON
    host: JSON


def _security(pod: JSON, spec: JSON) -> tuple[JSON, JSON]:
    return (pod.get("spec") or {}).get("securityContext") or {}, spec.get("securityContext") or {}


def container_user(pod: JSON, spec: JSON, image_user: str) -> str | None:
    """Docker's ``user`` for the pod's ``runAsUser``/``runAsGroup`` (the container's over the
    pod's), None to keep the image's USER. ConfigError when ``runAsNonRoot`` cannot hold."""
    pod_sc, sc = _security(pod, spec)

    def pick(key: str) -> Any:
        return sc[key] if sc.get(key) is not None else pod_sc.get(key)

    uid, gid, non_root = pick("runAsUser"), pick("runAsGroup"), pick("runAsNonRoot")
    image_uid = (image_user or "").split(":")[0]
    if non_root:
        effective = str(uid) if uid is not None else image_uid or "0"
        if not effective.isdigit():
            raise ConfigError(
                f"container has runAsNonRoot and image has non-numeric user ({effective}), "
                "cannot verify user is non-root"
            )
        if int(effective) == 0:
            raise ConfigError(
                "container's runAsUser breaks non-root policy"
                if uid is not None
                else "container has runAsNonRoot and image will run as root"
            )
    if uid is None and gid is None:
        return None
    user = str(uid) if uid is not None else image_uid or "0"
    return f"{user}:{gid}" if gid is not None else user


def pod_memory_limit(pod: JSON) -> int | None:
    """The sum of the containers' memory limits when every container has one."""
    total = 0
    for spec in (pod.get("spec") or {}).get("containers") or []:
        limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
        if limit is None:
            return None
        total += memory_bytes(limit)
    return total


def docker_create_args(
    pod: JSON,
    spec: JSON,
    env: Mapping[str, str],
    mounts: list[VolumeMount],
    termination_log: Path,
    *,
    image_config: Mapping[str, Any],
    labels: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None,
    node_memory: int,
) -> DockerCreate:
    """The Docker container of one container of a pod (pure; see the module docstring): all
    of it but its name, which changes with each restart.

    ``env`` is the container's own environment, resolved and expanded (the kubelet's
    ``_container_env``); ``mounts`` its volume mounts on the host; ``image_config`` the image's
    ``Config`` (``docker image inspect``: User, StopSignal); ``node_memory`` the node's memory
    (the size of a memory-backed ``/dev/shm`` with no limit). ConfigError for what cannot be
    run as written."""
    meta, pod_spec = pod.get("metadata") or {}, pod.get("spec") or {}
    pod_sc, sc = _security(pod, spec)
    hostname = pod_spec.get("hostname") or meta.get("name", "")

    # command and args, expanded with the container's own environment
    command = [expand(str(a), env) for a in spec.get("command") or []] or None
    args = [expand(str(a), env) for a in spec.get("args") or []] or None
    environment = {"HOSTNAME": hostname, **(extra_env or {}), **env}

    config: JSON = {
        "image": spec["image"],
        "labels": dict(labels),
        "environment": [f"{k}={v}" for k, v in environment.items()],
        "detach": True,
        "use_config_proxy": False,  # no proxy variables of the client's config: the pod's env only
        "stop_signal": image_config.get("StopSignal") or "SIGTERM",
        "stop_timeout": int(
            DEFAULT_GRACE
            if pod_spec.get("terminationGracePeriodSeconds") is None
            else pod_spec["terminationGracePeriodSeconds"]
        ),
    }
    if command is not None:
        config["entrypoint"] = command  # replaces ENTRYPOINT, and with it CMD
        if args is not None:
            config["command"] = args
    elif args is not None:
        config["command"] = args  # replaces CMD only
    if spec.get("workingDir"):
        config["working_dir"] = spec["workingDir"]
    user = container_user(pod, spec, str(image_config.get("User") or ""))
    if user is not None:
        config["user"] = user

    # the pod's network: the node's, with cluster DNS for its subdomain
    texts = [*(command or []), *(args or []), *env.values()]
    host: JSON = {
        "network_mode": "host",
        "extra_hosts": {n: LOOPBACK for n in pod_dns_names(pod, texts)},
    }

    # security context
    if sc.get("readOnlyRootFilesystem"):
        host["read_only"] = True
    capabilities = sc.get("capabilities") or {}
    if capabilities.get("drop"):
        host["cap_drop"] = list(capabilities["drop"])
    if capabilities.get("add"):
        host["cap_add"] = list(capabilities["add"])
    if sc.get("privileged"):
        host["privileged"] = True
    security_opt = []
    if sc.get("allowPrivilegeEscalation") is False:
        security_opt.append("no-new-privileges")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        security_opt.append("seccomp=unconfined")
    elif seccomp not in (None, "RuntimeDefault"):
        raise ConfigError(f"seccompProfile {seccomp!r} is not emulated")
    if security_opt:
        host["security_opt"] = security_opt
    groups = [
        *([pod_sc["fsGroup"]] if pod_sc.get("fsGroup") is not None else []),
        *(pod_sc.get("supplementalGroups") or []),
    ]
    if groups:
        host["group_add"] = [str(g) for g in dict.fromkeys(groups)]

    # resources
    resources = spec.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    try:
        if limits.get("memory") is not None:
            host["mem_limit"] = memory_bytes(limits["memory"])
            host["memswap_limit"] = host["mem_limit"]  # no swap, as on a Kubernetes node
        if limits.get("cpu") is not None:
            host["nano_cpus"] = max(milli_cpus(limits["cpu"]), 10) * 1_000_000
        shares_from = requests.get("cpu", limits.get("cpu"))
        if shares_from is not None:
            host["cpu_shares"] = max(milli_cpus(shares_from) * 1024 // 1000, 2)
    except ValueError as e:
        raise ConfigError(f"container {spec['name']}: resources: {e}") from None

    # mounts: bind mounts, tmpfs for memory-backed emptyDirs, /dev/shm sized
    from docker.types import Mount

    binds = []
    tmpfs: dict[str, str] = {}
    for m in mounts:
        if m.memory:
            size = m.size_limit
            limit = pod_memory_limit(pod)
            if size is None:
                size = limit if limit is not None else node_memory
            elif limit is not None:
                size = min(size, limit)
            if _clean(m.path) == SHM:
                host["shm_size"] = size
            else:
                tmpfs[m.path] = f"{'ro' if m.read_only else 'rw'},size={size},mode=0777"
            continue
        binds.append(Mount(m.path, str(m.host), type="bind", read_only=m.read_only))
    term_path = spec.get("terminationMessagePath") or TERMINATION_LOG
    binds.append(Mount(term_path, str(termination_log), type="bind"))
    host["mounts"] = binds
    if tmpfs:
        host["tmpfs"] = tmpfs
    return DockerCreate(config=config, host=host)


def apply_pod_fs_group(pod: JSON, mounts: Iterable[VolumeMount]) -> None:
    """The pod's ``fsGroup`` on the volumes behind ``mounts``, as the kubelet's volume manager
    applies it (never to hostPath, nor to a tmpfs)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    gid = pod_sc.get("fsGroup")
    if gid is None:
        return
    seen: set[Path] = set()
    for m in mounts:
        if m.kind == "hostPath" or m.memory or m.volume_host in seen:
            continue
        seen.add(m.volume_host)
        apply_fs_group(
            m.volume_host, int(gid), read_only=m.read_only, policy=pod_sc.get("fsGroupChangePolicy")
        )


def apply_fs_group(path: Path, gid: int, *, read_only: bool, policy: str | None) -> None:
    """What a kubelet does to a volume for the pod's ``fsGroup``: every file and folder
    group-owned by ``gid`` and given ``rw`` (``r`` when read-only) for owner and group, folders
    also ``x`` and setgid. ``OnRootMismatch`` skips a volume whose root already matches."""
    mask = 0o440 if read_only else 0o660
    root_mask = mask | 0o110 | 0o2000
    st = path.stat()
    if policy == "OnRootMismatch" and st.st_gid == gid and st.st_mode & root_mask == root_mask:
        return
    if os.geteuid() != 0:
        raise MountError(
            f"fsGroup {gid}: the test kubelet changes the volume's group with chown, which needs "
            "root (run the container-mode tests as root)"
        )
    for folder, dirs, files in os.walk(path):
        entries = [(folder, True)] + [(os.path.join(folder, d), True) for d in dirs]
        entries += [(os.path.join(folder, f), False) for f in files]
        for entry, is_dir in entries:
            if os.path.islink(entry):
                continue
            os.chown(entry, -1, gid)
            mode = os.stat(entry).st_mode
            os.chmod(entry, mode | (mask | 0o110 | 0o2000 if is_dir else mask))


@dataclass
class DockerHandle:
    """A started container and its follower thread (logs, then the exit status)."""

    id: str
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    error: str = ""


class ContainerRuntime:
    """Containers of the pods' images in a Docker engine (see the module docstring)."""

    kind = "docker"

    def __init__(
        self,
        client: Any,
        *,
        follower: Callable[[], Any] | None = None,
        node_memory: int | None = None,
    ):
        self.client = client
        """A ``docker.DockerClient`` (``tests.engine.engine()``)."""
        self.api = client.api
        self.follower = follower or _blocking_api_from_env
        """Makes the ``docker.APIClient`` each container's follower thread uses (the same engine
        as ``client``, without a read timeout: a quiet container is not a dead one)."""
        self.node_memory = node_memory or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        self.kubelet: Kubelet | None = None
        self._images: dict[str, JSON] = {}

    def bind(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet
        remove_orphans(self.client)

    def _labels(self, pod: JSON, c: Container) -> dict[str, str]:
        assert self.kubelet is not None
        return {
            LABEL: self.kubelet.id,
            LABEL_OWNER: str(os.getpid()),
            LABEL_NAMESPACE: pod["metadata"]["namespace"],
            LABEL_POD: pod["metadata"]["name"],
            LABEL_CONTAINER: c.name,
        }

    def image_config(self, image: str) -> JSON:
        """The image's ``Config`` (docker.errors.ImageNotFound when it is not here)."""
        return self.api.inspect_image(image).get("Config") or {}

    def image_problem(self, image: str) -> str | None:
        import docker

        try:
            self._images[image] = self.image_config(image)
        except docker.errors.ImageNotFound:
            return (
                f'Failed to pull image "{image}": not in the local engine, and the test kubelet '
                "pulls nothing (no registry answers here): build or tag it locally"
            )
        return None

    def configure(
        self, pod: JSON, c: Container, env: dict[str, str], mounts: list[VolumeMount], folder: Path
    ) -> None:
        assert self.kubelet is not None
        image = c.spec["image"]
        image_config = self._images.get(image)
        if image_config is None:
            image_config = self._images[image] = self.image_config(image)
        apply_pod_fs_group(pod, mounts)
        c.config = docker_create_args(
            pod,
            c.spec,
            env,
            mounts,
            c.termination_log,
            image_config=image_config,
            labels=self._labels(pod, c),
            extra_env=self.kubelet.extra_env,
            node_memory=self.node_memory,
        )
        config = c.config.config
        c.env = dict(item.split("=", 1) for item in config["environment"])
        if "entrypoint" in config:  # what will run, for the timeline
            c.argv = [*config["entrypoint"], *config.get("command", [])]
        else:
            entrypoint = image_config.get("Entrypoint") or []
            c.argv = [*entrypoint, *config.get("command", image_config.get("Cmd") or [])]
        c.cwd = config.get("working_dir", image_config.get("WorkingDir") or "")

    def container_name(self, c: Container) -> str:
        assert self.kubelet is not None
        pod = c.config.config["labels"][LABEL_POD]
        return f"e2e-{self.kubelet.id}-{pod}-{c.name}-{c.restarts}"

    def create(self, c: Container) -> str:
        """Create (not start) ``c``'s container; its id."""
        config = {**c.config.config, "name": self.container_name(c)}
        host_config = self.api.create_host_config(**c.config.host)
        return self.api.create_container(host_config=host_config, **config)["Id"]

    def start(self, c: Container) -> None:
        import docker

        with contextlib.suppress(docker.errors.NotFound):  # the last run of this restart count
            self.api.remove_container(self.container_name(c), force=True)
        try:
            container_id = self.create(c)
        except docker.errors.APIError as e:
            self._start_error(c, e)
            return
        handle = DockerHandle(container_id)
        try:
            self.api.start(container_id)
        except docker.errors.APIError as e:
            self._start_error(c, e)
            return
        c.handle, c.container_id = handle, container_id
        handle.thread = threading.Thread(
            target=self._follow, args=(handle, c.log), name=f"e2e-docker-{c.name}", daemon=True
        )
        handle.thread.start()

    def _start_error(self, c: Container, e: Exception) -> None:
        message = getattr(e, "explanation", None) or str(e)
        with open(c.log, "ab") as log:
            log.write(f"cannot start: {message}\n".encode())
        c.handle = None
        c.exit_code, c.reason, c.message = 128, "StartError", str(message)

    def _follow(self, handle: DockerHandle, log_path: Path) -> None:
        """The container's output into its log file until it stops, then its exit status
        (a client of its own, without a read timeout: a quiet container is not a dead one)."""
        api = self.follower()
        try:
            with contextlib.suppress(Exception), open(log_path, "ab") as log:
                for chunk in api.logs(handle.id, stream=True, follow=True):
                    log.write(chunk)
                    log.flush()
            try:
                handle.status = int(api.wait(handle.id)["StatusCode"])
            except Exception as e:  # removed meanwhile (stop())
                handle.error = repr(e)
        finally:
            api.close()
            handle.done.set()

    def poll(self, c: Container) -> bool:
        handle = c.handle
        if not isinstance(handle, DockerHandle) or not handle.done.is_set():
            return False
        state: JSON = {}
        with contextlib.suppress(Exception):
            state = self.api.inspect_container(handle.id)["State"]
        code = state.get("ExitCode", handle.status)
        c.exit_code = int(code if code is not None else 137)
        c.reason = "OOMKilled" if state.get("OOMKilled") else ""
        if state.get("Error"):
            c.message = state["Error"]
        return True

    def _signal(self, c: Container, sig: str) -> None:
        import docker

        if isinstance(c.handle, DockerHandle):
            with contextlib.suppress(docker.errors.APIError):  # not running any more
                self.api.kill(c.handle.id, signal=sig)

    def terminate(self, c: Container) -> None:
        self._signal(c, c.config.config["stop_signal"])

    def kill(self, c: Container) -> None:
        self._signal(c, "SIGKILL")

    def shutdown(self) -> None:
        if self.kubelet is None:
            return
        remove_containers(self.client, {LABEL: self.kubelet.id})
        for run in self.kubelet.runs():
            for c in run.containers:
                if isinstance(c.handle, DockerHandle) and c.handle.thread is not None:
                    c.handle.thread.join(10)


def _blocking_api_from_env() -> Any:
    """An API client of the engine ``DOCKER_HOST`` names (as ``docker.from_env``) with no read
    timeout."""
    import docker

    return docker.from_env(timeout=None).api


def remove_containers(client: Any, labels: Mapping[str, str]) -> list[str]:
    """Force-remove every container with these labels; their names."""
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    removed = []
    for info in client.api.containers(all=True, filters=filters):
        with contextlib.suppress(Exception):
            client.api.remove_container(info["Id"], force=True)
            removed.append(info["Names"][0].lstrip("/") if info.get("Names") else info["Id"])
    return removed


def remove_orphans(client: Any) -> list[str]:
    """Remove the test kubelets' containers whose test process is gone (a killed test run)."""
    removed = []
    for info in client.api.containers(all=True, filters={"label": [LABEL]}):
        owner = (info.get("Labels") or {}).get(LABEL_OWNER, "")
        if owner.isdigit() and psutil.pid_exists(int(owner)):
            continue
        with contextlib.suppress(Exception):
            client.api.remove_container(info["Id"], force=True)
            removed.append(info["Id"])
    return removed


# --------------------------------------------------------------------------------------------
# The kubelet


class Kubelet:
    """Runs the pods of ``namespace`` with ``runtime`` (see the module docstring): as local
    processes (:class:`ProcessRuntime`, the default, from ``venv_bin``, ``image_paths`` and
    ``entrypoints``) or as containers (:class:`ContainerRuntime`).

    ``start()`` runs :meth:`sync` (after each of ``controllers``) in a background thread every
    ``interval`` seconds; ``stop()`` stops the thread and kills every container.
    """

    def __init__(
        self,
        k8s: K8s,
        root: Path,
        *,
        runtime: Runtime | None = None,
        venv_bin: Path | None = None,
        image_paths: Mapping[str, Path] | None = None,
        entrypoints: Mapping[str, list[str]] | None = None,
        extra_env: Mapping[str, str] | None = None,
        interval: float = 0.05,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        node_prefix: str = "e2e-node",
        broken_claims: Mapping[str, Iterable[str]] | None = None,
    ):
        self.k8s = k8s
        self.namespace = k8s.namespace
        self.root = Path(root)
        self.extra_env = dict(extra_env or {})
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
        self._image_retry: dict[str, tuple[int, float]] = {}
        self.errors: list[BaseException] = []
        self.history: list[tuple[float, str, str]] = []
        """(time.monotonic(), pod, what happened): the kubelet's own timeline."""
        self._nodes: set[str] = set()
        self._requests: queue.Queue[tuple[str, str, str]] = queue.Queue()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.controllers: list[Any] = []
        """Objects with a ``sync()`` run before each kubelet pass (e.g. the Deployment
        controller), in the kubelet's thread."""
        if runtime is None:
            runtime = ProcessRuntime(
                venv_bin=venv_bin or Path(sys.executable).parent,
                image_paths=image_paths,
                entrypoints=entrypoints,
            )
        self.runtime: Runtime = runtime
        runtime.bind(self)
        self.broken_claims: dict[str, set[str]] = {}
        """Node → the PersistentVolumeClaims whose mounts are broken there (process mode)."""
        for node, claims in (broken_claims or {}).items():
            for claim in claims:
                self.break_claim(node, claim)

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
            self.runtime.shutdown()

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

    def pod_dir(self, pod: str, namespace: str | None = None) -> Path:
        """The host folder of pod ``pod`` (its logs, emptyDirs, configMap/secret volumes)."""
        return self.root / "pods" / f"{namespace or self.namespace}_{pod}"

    def break_claim(self, node: str, claim: str) -> None:
        """Break PersistentVolumeClaim ``claim`` on ``node``: pods bound to ``node`` from now on
        mount it at :meth:`broken_claim_path`, where nothing can be read or created (process
        mode only; see the module docstring)."""
        if self.runtime.kind != "process":
            raise NotImplementedError("broken claims are emulated in process mode only")
        with self._lock:
            self.broken_claims.setdefault(node, set()).add(claim)

    def repair_claim(self, node: str, claim: str) -> None:
        """Undo :meth:`break_claim` for the pods bound to ``node`` from now on."""
        with self._lock:
            self.broken_claims.get(node, set()).discard(claim)

    def broken_claim_path(self, node: str, claim: str) -> Path:
        """Where a broken claim's mounts point on ``node``: a path under a regular file, so that
        every access fails with ENOTDIR (even as root)."""
        return self.root / "broken-mounts" / node / claim

    def signal_process(self, pod: str, pattern: str, sig: int) -> list[int]:
        """Send ``sig`` to the processes of ``pod``'s containers whose program (see
        :func:`process_program`: the module of ``python -m``, a script, else the executable)
        matches the regular expression ``pattern`` (``re.search``); the pids signalled, sorted.
        ValueError when the pod does not run here or no process matches (process mode only)."""
        if self.runtime.kind != "process":
            raise NotImplementedError("signal_process works in process mode only")
        with self._lock:
            run = self.pods.get(pod)
            if run is None or run.finished:
                raise ValueError(f"pod {pod} is not running on this kubelet")
            prefix = f"{self.id}/{run.namespace}/{run.name}/"
            found, seen = [], []
            for proc in marked_processes(prefix):
                try:
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    program = process_program(proc.cmdline())
                except psutil.Error:
                    continue
                seen.append(program)
                if re.search(pattern, program):
                    found.append(proc)
            signalled = []
            for proc in found:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(sig)
                    signalled.append(proc.pid)
            if not signalled:
                raise ValueError(
                    f"no process of pod {pod} runs a program matching {pattern!r} "
                    f"(programs: {sorted(set(seen))})"
                )
            self._note(run, f"signal {signal.Signals(sig).name} to {sorted(signalled)}")
            return sorted(signalled)

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

    def processes(self) -> dict[str, list[str]]:
        """The running containers by pod: main-process pids (process mode) or container ids."""
        with self._lock:
            return {
                name: [c.container_id for c in run.containers if c.running]
                for name, run in self.pods.items()
                if any(c.running for c in run.containers)
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
        folder = self.pod_dir(pod)
        files = sorted(folder.glob("*.log")) if container is None else [folder / f"{container}.log"]
        return "\n".join(p.read_text(errors="replace") for p in files if p.exists())

    def prepare(self, pod: JSON) -> list[Container]:
        """Volumes set up and every container configured by the runtime, nothing started (what
        admission does once the pod is bound; raises MountError or ConfigError)."""
        meta, spec = pod["metadata"], pod["spec"]
        folder = self.pod_dir(meta["name"], meta["namespace"])
        mounts = self._volumes(pod, folder)
        containers = [
            Container(
                name=spec_c["name"],
                spec=spec_c,
                log=folder / f"{spec_c['name']}.log",
                termination_log=folder / spec_c["name"] / "termination-log",
                marker=f"{self.id}/{meta['namespace']}/{meta['name']}/{spec_c['name']}",
            )
            for spec_c in spec["containers"]
        ]
        for c in containers:
            c.termination_log.parent.mkdir(parents=True, exist_ok=True)
            c.termination_log.write_text("")
            c.termination_log.chmod(0o666)  # writable by any container user, as a kubelet makes it
            env = self._container_env(pod, c.spec)
            self.runtime.configure(pod, c, env, mounts.get(c.name, []), folder)
        return containers

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

    # ---- admission: schedule, mount, pull, configure, start ------------------------------

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
            try:
                node = self._free_node(busy, pod)
            except Unschedulable as e:
                self._pending(pod, "Unschedulable", str(e))
                return
            patch = {"spec": {"nodeName": node}}  # stands in for the binding subresource
            pod = self.k8s.to_dict(
                self.k8s.core.patch_namespaced_pod(name, meta["namespace"], patch)
            )
            spec = pod["spec"]
            busy.add(node)
            self._note(name, f"bound to {node}")
            scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_iso()}
            self._put_status(name, {"phase": "Pending", "conditions": [scheduled]})
        if not self._images_present(pod):
            return
        try:
            containers = self.prepare(pod)
        except MountError as e:
            self._pending(pod, "ContainerCreating", str(e))
            return
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
            folder=self.pod_dir(name, meta["namespace"]),
            node=spec["nodeName"],
            containers=containers,
            restart_policy=spec.get("restartPolicy", "Always"),
            started_at=now_iso(),
        )
        self.pods[name] = run
        self._seen.add(run.uid)
        self._pending_sent.pop(name, None)
        self._image_retry.pop(name, None)
        for c in containers:
            self._start(run, c)
        run.phase = "Running"
        self._note(run, "started: " + "; ".join(_brief(c.argv) for c in containers))
        self._report(run)

    def _images_present(self, pod: JSON) -> bool:
        """True when every container's image can run; else the pod waits (``ErrImagePull``,
        then ``ImagePullBackOff`` while the kubelet retries with back-off)."""
        name = pod["metadata"]["name"]
        failures, next_try = self._image_retry.get(name, (0, 0.0))
        if time.monotonic() < next_try:
            return False
        for spec in pod["spec"]["containers"]:
            problem = self.runtime.image_problem(spec.get("image", ""))
            if problem is not None:
                reason = "ErrImagePull" if failures == 0 else "ImagePullBackOff"
                if failures:
                    problem = f'Back-off pulling image "{spec.get("image", "")}": {problem}'
                delay = min(IMAGE_BACKOFF * 2**failures, MAX_IMAGE_BACKOFF)
                self._image_retry[name] = (failures + 1, time.monotonic() + delay)
                self._pending(pod, reason, problem)
                return False
        return True

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

    def _free_node(self, busy: set[str], pod: JSON | None = None) -> str:
        """The first of this kubelet's nodes without a live pod that satisfies the pod's required
        node affinity (made Ready on first use); Unschedulable when none does."""
        terms = required_node_terms(pod or {})
        if terms is None:
            n = 0
            while f"{self.node_prefix}-{n}" in busy:
                n += 1
            return self._ensure_node(f"{self.node_prefix}-{n}")
        labels = {
            node["metadata"]["name"]: node["metadata"].get("labels") or {}
            for node in self.k8s.to_dict(self.k8s.core.list_node()).get("items") or []
            if node["metadata"]["name"].startswith(f"{self.node_prefix}-")
        }
        # Among the first `limit` names one is free, not yet a Node and named by no requirement:
        # every later name that is neither a Node nor named gets its verdict, so only those
        # named and existing ones need looking at past it.
        referenced = _referenced_values(terms)
        limit = len(busy) + len(labels) + len(referenced) + 1
        own = re.compile(rf"^{re.escape(self.node_prefix)}-(\d+)$")
        beyond = {int(m.group(1)) for v in (*referenced, *labels) if (m := own.match(v))}
        candidates = sorted({*range(limit), *beyond})
        taken = 0
        for n in candidates:
            name = f"{self.node_prefix}-{n}"
            if name in busy:
                taken += 1
                continue
            try:
                fits = node_affinity_matches(
                    pod or {}, name, labels.get(name, {"kubernetes.io/hostname": name})
                )
            except ValueError as e:
                raise Unschedulable(f"invalid node affinity: {e}") from None
            if fits:
                return self._ensure_node(name)
        raise Unschedulable(
            f"0/{len(candidates)} nodes are available: {taken} node(s) already run a pod, "
            f"{len(candidates) - taken} node(s) didn't match Pod's node affinity/selector"
        )

    def _ensure_node(self, name: str) -> str:
        """Node ``name`` exists (labelled ``kubernetes.io/hostname``) and is Ready."""
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

    def _volumes(self, pod: JSON, folder: Path) -> dict[str, list[VolumeMount]]:
        """Set up every volume; return each container's mounts."""
        namespace = pod["metadata"]["namespace"]
        node = pod["spec"].get("nodeName") or ""
        broken = set(self.broken_claims.get(node, ()))
        hosts: dict[str, tuple[Path, str, JSON]] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                kind = "persistentVolumeClaim"
                claim = volume[kind]["claimName"]
                if claim in broken:
                    path = self.broken_claim_path(node, claim)
                    if not path.parent.is_file():
                        path.parent.parent.mkdir(parents=True, exist_ok=True)
                        path.parent.write_text(f"claim mounts on {node} are broken\n")
                else:
                    path = self.claim_dir(claim, namespace)
                    path.mkdir(parents=True, exist_ok=True)
            elif "emptyDir" in volume:
                kind = "emptyDir"
                path = folder / "volumes" / name
                if not path.exists():
                    path.mkdir(parents=True)
                    path.chmod(0o777)  # as the kubelet makes an emptyDir
            elif "hostPath" in volume:
                kind = "hostPath"
                path = Path(volume["hostPath"]["path"])
            elif "configMap" in volume or "secret" in volume:
                kind = "secret" if "secret" in volume else "configMap"
                path = folder / "volumes" / name
                self._write_object_volume(volume, namespace, path)
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise MountError(f"volume {name!r}: {kinds} volumes are not emulated")
            hosts[name] = (path, kind, volume)
        mounts: dict[str, list[VolumeMount]] = {}
        for c in pod["spec"]["containers"]:
            table: list[VolumeMount] = []
            for mount in c.get("volumeMounts") or []:
                if mount["name"] not in hosts:
                    raise MountError(f"volumeMount {mount['name']!r}: no such volume")
                volume_host, kind, volume = hosts[mount["name"]]
                host = volume_host
                if mount.get("subPath"):
                    host = host / mount["subPath"]
                    with contextlib.suppress(NotADirectoryError):  # a broken claim stays so
                        host.mkdir(parents=True, exist_ok=True)
                empty_dir = volume.get("emptyDir") or {}
                size = empty_dir.get("sizeLimit")
                try:
                    size_limit = memory_bytes(size) if size is not None else None
                except ValueError as e:
                    raise MountError(f"volume {mount['name']!r}: sizeLimit: {e}") from None
                table.append(
                    VolumeMount(
                        path=mount["mountPath"],
                        host=host,
                        volume=mount["name"],
                        kind=kind,
                        volume_host=volume_host,
                        read_only=bool(
                            mount.get("readOnly")
                            or (volume.get("persistentVolumeClaim") or {}).get("readOnly")
                            or kind in ("configMap", "secret")
                        ),
                        memory=empty_dir.get("medium") == "Memory",
                        size_limit=size_limit,
                    )
                )
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
            {item["path"]: (item["key"], item.get("mode")) for item in items}
            if items
            else {key: (key, None) for key in data}
        )
        default_mode = source.get("defaultMode", 0o644)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        for rel, (key, mode) in files.items():
            if key not in data:
                if source.get("optional"):
                    continue
                raise MountError(f"configmap/secret {name!r} has no key {key!r}")
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[key])
            target.chmod(default_mode if mode is None else mode)

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

    def _start(self, run: PodRun, c: Container) -> None:
        c.log.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            c.termination_log.write_text("")  # a fresh file for each start
        with open(c.log, "ab") as log:
            log.write(f"----- {now_iso()} start #{c.restarts}: {' '.join(c.argv)}\n".encode())
        c.exit_code, c.reason, c.message = None, "", ""
        self.runtime.start(c)
        if c.handle is None:  # could not start: the runtime set the exit code
            c.finished_at = now_iso()
            return
        c.started_at = now_iso()
        c.waiting = None

    # ---- running pods ----------------------------------------------------------------------

    def _tend(self, run: PodRun) -> None:
        changed = False
        now = time.monotonic()
        for c in run.containers:
            if c.running and self.runtime.poll(c):
                c.finished_at = now_iso()
                c.message = self._termination_message(c) or c.message
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
                    self.runtime.kill(c)
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
            if c.running:
                self.runtime.terminate(c)
        self._note(run, f"{why}: SIGTERM, SIGKILL in {grace:g}s")

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

    def _container_id(self, c: Container) -> str:
        return f"{self.runtime.kind}://{c.container_id or 0}"

    def _terminated(self, c: Container) -> JSON:
        out = {
            "exitCode": c.exit_code,
            "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
            "startedAt": c.started_at or now_iso(),
            "finishedAt": c.finished_at or now_iso(),
            "containerID": self._container_id(c),
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
            status["containerID"] = self._container_id(c)
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
