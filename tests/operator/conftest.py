"""Fixtures and stand-ins for the operator tests: an API server, clients bound to it, the real
kopf operator, and the parts of a cluster the emulator does not run (the job controller and the
kubelet), played through the API as a real cluster's controllers would.

The helpers only talk to the API, so the same test code can run against a real cluster (kind)
where one exists: only the ``emulator`` fixture is emulator-specific.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from olmo_operator import contract

from .emulator import ApiServer, KubeEmulator

JSON = dict[str, Any]
NAMESPACE = "default"
GROUP, VERSION, PLURAL = contract.GROUP, contract.VERSION, contract.PLURAL
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
# The operator under test, with timers short enough for tests.
OPERATOR_ENV = {
    contract.ENV_RECONCILE_SECONDS: "0.2",
    contract.ENV_BACKOFF_BASE: "0.1",
    contract.ENV_BACKOFF_MAX: "1",
    contract.ENV_PREEMPTION_BACKOFF_BASE: "0.1",
    contract.ENV_PREEMPTION_BACKOFF_MAX: "1",
    contract.ENV_FAILURE_SETTLE: "0",  # failures count when seen (the unit tests cover the window)
}


# --------------------------------------------------------------------------------------------
# Waiting


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, message: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``.

    API errors inside the predicate count as "not yet" (the last one is reported on failure).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except ApiException as e:
            last = e
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message or predicate}: {last!r}"
            )
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Clients


class K8s:
    """Typed API clients bound to one cluster, plus dict-returning shortcuts for assertions
    (dicts keep the manifest spelling: ``spec.template.spec.nodeSelector``)."""

    def __init__(self, api: client.ApiClient, namespace: str = NAMESPACE):
        self.api = api
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    def from_kubeconfig(cls, path: Path | str, namespace: str = NAMESPACE) -> K8s:
        return cls(kubernetes.config.new_client_from_config(config_file=str(path)), namespace)

    def close(self) -> None:
        self.api.close()

    def to_dict(self, model: Any) -> JSON:
        return self.api.sanitize_for_serialization(model)

    def jobs(self, selector: str = "") -> list[JSON]:
        items = self.batch.list_namespaced_job(self.namespace, label_selector=selector).items
        return [self.to_dict(j) for j in items]

    def job(self, name: str) -> JSON:
        return self.to_dict(self.batch.read_namespaced_job(name, self.namespace))

    def pods(self, selector: str = "") -> list[JSON]:
        items = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [self.to_dict(p) for p in items]

    def pod(self, name: str) -> JSON:
        return self.to_dict(self.core.read_namespaced_pod(name, self.namespace))

    def services(self, selector: str = "") -> list[JSON]:
        items = self.core.list_namespaced_service(self.namespace, label_selector=selector).items
        return [self.to_dict(s) for s in items]

    def events(self, name: str | None = None) -> list[JSON]:
        items = [self.to_dict(e) for e in self.core.list_namespaced_event(self.namespace).items]
        return [e for e in items if name is None or e["involvedObject"].get("name") == name]

    def olmojob(self, name: str) -> JSON:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )

    def olmojobs(self) -> list[JSON]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)[
            "items"
        ]

    def create_olmojob(self, name: str, spec: JSON) -> JSON:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": contract.KIND,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def patch_olmojob(self, name: str, patch: JSON, status: bool = False) -> JSON:
        fn = (
            self.custom.patch_namespaced_custom_object_status
            if status
            else self.custom.patch_namespaced_custom_object
        )
        return fn(GROUP, VERSION, self.namespace, PLURAL, name, patch)

    def delete_olmojob(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)


# --------------------------------------------------------------------------------------------
# The job controller and the kubelet, played through the API


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, reason: str, message: str = "", status: str = "True") -> JSON:
    now = _now()
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def _has_condition(obj: JSON, kind: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _compress_indexes(indexes: set[int]) -> str:
    """``{0, 1, 2, 5}`` → ``"0-2,5"`` (the Job's ``completedIndexes`` format)."""
    ranges: list[str] = []
    for i in sorted(indexes):
        if ranges and int(ranges[-1].split("-")[-1]) == i - 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{i}"
        else:
            ranges.append(str(i))
    return ",".join(ranges)


def _pod_exit_codes(pod: JSON) -> list[tuple[str, int]]:
    out = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is not None:
            out.append((status["name"], int(terminated.get("exitCode", 0))))
    return out


def pod_failure_action(job: JSON, pod: JSON) -> tuple[str, str]:
    """The Job's ``podFailurePolicy`` verdict on a failed pod: (action, the message the real
    job controller writes into the Failed condition). Count when no rule matches."""
    pod_name = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
    for index, rule in enumerate((job["spec"].get("podFailurePolicy") or {}).get("rules") or []):
        on_exit = rule.get("onExitCodes")
        if on_exit:
            values = set(on_exit.get("values") or [])
            for name, code in _pod_exit_codes(pod):
                if code == 0 or on_exit.get("containerName") not in (None, name):
                    continue
                if (code in values) == (on_exit.get("operator") == "In"):
                    return rule["action"], (
                        f"Container {name} for pod {pod_name} failed with exit code {code} "
                        f"matching {rule['action']} rule at index {index}"
                    )
        for pattern in rule.get("onPodConditions") or []:
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if cond.get("type") == pattern.get("type") and cond.get("status") == pattern.get(
                    "status", "True"
                ):
                    return rule["action"], (
                        f"Pod {pod_name} has condition {cond['type']} matching {rule['action']} "
                        f"rule at index {index}"
                    )
    return "Count", ""


class BackgroundLoop:
    """A test controller that calls ``tick()`` every ``interval`` seconds in a daemon thread
    (``start``/``stop``); API errors it does not ``tolerate`` are kept in ``errors``."""

    interval = 0.1
    name = "background-loop"

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def tolerate(self, error: ApiException) -> bool:
        """Errors of one round that are not test failures (the next round sees the new state)."""
        return False

    def start(self):  # -> Self
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except ApiException as e:
                if not self.tolerate(e):
                    self.errors.append(e)
            except Exception as e:  # reported by the fixtures' teardown
                self.errors.append(e)


class FakeJobController(BackgroundLoop):
    """The Job controller and the kubelet, reduced to what the operator observes.

    ``sync(job)`` makes one reconciliation pass: creates the missing pods of an (Indexed) Job
    (``<job>-<index>-xxxxx`` with the template's labels, the completion-index label and
    annotation, ``JOB_COMPLETION_INDEX``, hostname, owner reference), "runs" them (phase
    Running on a Node made for them), and reflects pod phases into the Job's status: active,
    ready, succeeded, failed, completedIndexes, and the Complete/Failed conditions following
    ``backoffLimit`` and ``podFailurePolicy``. A failed Job's remaining pods are deleted, a
    suspended Job's pods too. ``start()`` runs ``sync_all`` in a background thread.
    """

    name = "fake-job-controller"

    def __init__(self, k8s: K8s, interval: float = 0.1, run_pods: bool = True):
        super().__init__()
        self.k8s = k8s
        self.interval = interval
        self.run_pods = run_pods
        self.lock = threading.RLock()

    def tick(self) -> None:  # errors: e.g. the emulator is shutting down, or injected faults
        self.sync_all()

    # ---- reconciliation ---------------------------------------------------------------------

    def sync_all(self) -> None:
        with self.lock:
            jobs = self.k8s.jobs()
            pods = self.k8s.pods()
            for job in jobs:
                uid = job["metadata"]["uid"]
                mine = [p for p in pods if _owned_by(p, uid)]
                self._sync(job, mine)

    def sync(self, job: JSON | str) -> list[JSON]:
        """One pass for one Job; returns its pods afterwards."""
        with self.lock:
            name = job if isinstance(job, str) else job["metadata"]["name"]
            try:
                job = self.k8s.job(name)
            except ApiException as e:
                if e.status == 404:
                    return []
                raise
            uid = job["metadata"]["uid"]
            pods = [p for p in self.k8s.pods(f"{JOB_NAME_LABEL}={name}") if _owned_by(p, uid)]
            return self._sync(job, pods)

    def _sync(self, job: JSON, pods: list[JSON]) -> list[JSON]:
        if job["metadata"].get("deletionTimestamp"):
            return pods
        spec = job["spec"]
        status = copy.deepcopy(job.get("status") or {})
        finished = _has_condition(job, "Complete") or _has_condition(job, "Failed")
        active = [p for p in pods if _phase(p) in ("Pending", "Running") and not _deleting(p)]
        succeeded = [p for p in pods if _phase(p) == "Succeeded"]
        failed = [p for p in pods if _phase(p) == "Failed"]
        indexed = spec.get("completionMode") == "Indexed"
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec.get("parallelism", 1))
        done_indexes = {_index(p) for p in succeeded} if indexed else set()

        if spec.get("suspend") and not finished:
            for pod in active:
                self._delete_pod(pod)
            active = []
            status["conditions"] = _set_condition(
                status.get("conditions"), _condition("Suspended", "JobSuspended", "Job suspended")
            )
        elif not finished:
            verdicts = [pod_failure_action(job, p) for p in failed]
            counted = [v for v in verdicts if v[0] in ("Count", "FailIndex")]
            fail_job = next((v for v in verdicts if v[0] == "FailJob"), None)
            reason = message = ""
            if fail_job is not None:
                reason, message = "PodFailurePolicy", fail_job[1]
            elif len(counted) > int(spec.get("backoffLimit", 6)):
                reason, message = (
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            complete = (len(done_indexes) if indexed else len(succeeded)) >= completions
            if reason:
                for pod in active:
                    self._delete_pod(pod)
                active = []
                conditions = _set_condition(
                    status.get("conditions"), _condition("FailureTarget", reason, message)
                )
                status["conditions"] = _set_condition(
                    conditions, _condition("Failed", reason, message)
                )
            elif complete:
                conditions = _set_condition(
                    status.get("conditions"),
                    _condition(
                        "SuccessCriteriaMet", "CompletionsReached", "Reached expected completions"
                    ),
                )
                status["conditions"] = _set_condition(
                    conditions,
                    _condition("Complete", "CompletionsReached", "Reached expected completions"),
                )
                status["completionTime"] = _now()
            else:
                busy = {_index(p) for p in active} if indexed else set()
                wanted = (
                    [i for i in range(completions) if i not in done_indexes and i not in busy]
                    if indexed
                    else [None]
                    * max(0, min(parallelism, completions - len(succeeded)) - len(active))
                )
                for index in wanted[: max(0, parallelism - len(active))]:
                    active.append(self._create_pod(job, index))
                if _has_condition(job, "Suspended"):
                    status["conditions"] = _set_condition(
                        status.get("conditions"),
                        _condition("Suspended", "JobResumed", "Job resumed", status="False"),
                    )
        status.setdefault("startTime", _now())
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if _phase(p) == "Running")
        status["succeeded"] = len(succeeded)
        status["failed"] = len(failed)
        if indexed:
            status["completedIndexes"] = _compress_indexes(done_indexes)
        for key in ("active", "succeeded", "failed"):
            if not status[key]:
                status.pop(key)
        if status != (job.get("status") or {}):
            try:
                self.k8s.batch.patch_namespaced_job_status(
                    job["metadata"]["name"], job["metadata"]["namespace"], {"status": status}
                )
            except ApiException as e:
                if e.status != 404:  # deleted meanwhile (the operator's gang restart): as a
                    raise  # real job controller, nothing left to report on
        return active + succeeded + failed

    # ---- pods -------------------------------------------------------------------------------

    def _create_pod(self, job: JSON, index: int | None) -> JSON:
        name = job["metadata"]["name"]
        template = copy.deepcopy(job["spec"]["template"])
        meta = template.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        annotations = dict(meta.get("annotations") or {})
        spec = template["spec"]
        if index is not None:
            labels[COMPLETION_INDEX] = str(index)
            annotations[COMPLETION_INDEX] = str(index)
            spec["hostname"] = f"{name}-{index}"
            for container in spec.get("containers") or []:
                env = [e for e in container.get("env") or [] if e["name"] != "JOB_COMPLETION_INDEX"]
                env.insert(
                    0,
                    {
                        "name": "JOB_COMPLETION_INDEX",
                        "valueFrom": {
                            "fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}
                        },
                    },
                )
                container["env"] = env
        node = self._node_for(spec, index) if self.run_pods else None
        if node is not None:
            spec["nodeName"] = node
        body = {
            "metadata": {
                "generateName": f"{name}-{index}-" if index is not None else f"{name}-",
                "namespace": job["metadata"]["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
        }
        pod = self.k8s.to_dict(
            self.k8s.core.create_namespaced_pod(job["metadata"]["namespace"], body)
        )
        if self.run_pods:
            try:
                pod = set_pod_running(self.k8s, pod["metadata"]["name"])
            except ApiException as e:
                if e.status != 404:  # collected meanwhile (its Job deleted by the operator)
                    raise
        return pod

    def _node_for(self, spec: JSON, index: int | None) -> str:
        """A Node the scheduler could have picked: labelled with the pod's nodeSelector."""
        selector = spec.get("nodeSelector") or {}
        digest = hashlib.sha1(repr(sorted(selector.items())).encode()).hexdigest()[:6]
        name = f"node-{digest}-{index or 0}"
        body = {"metadata": {"name": name, "labels": {**selector, "kubernetes.io/hostname": name}}}
        try:
            self.k8s.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        else:
            ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
            self.k8s.core.patch_node_status(name, {"status": {"conditions": [ready]}})
        return name

    def _delete_pod(self, pod: JSON) -> None:
        with contextlib.suppress(ApiException):
            self.k8s.core.delete_namespaced_pod(
                pod["metadata"]["name"], pod["metadata"]["namespace"]
            )


def _set_condition(conditions: list[JSON] | None, condition: JSON) -> list[JSON]:
    out = [c for c in conditions or [] if c.get("type") != condition["type"]]
    old = next((c for c in conditions or [] if c.get("type") == condition["type"]), None)
    if old is not None and old.get("status") == condition["status"]:
        return list(conditions or [])
    return [*out, condition]


def _owned_by(obj: JSON, uid: str) -> bool:
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def _phase(pod: JSON) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _deleting(obj: JSON) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _index(pod: JSON) -> int:
    return int(pod["metadata"].get("labels", {}).get(COMPLETION_INDEX, 0))


def fake_job_controller(k8s: K8s, job: JSON | str) -> list[JSON]:
    """One pass of the job controller + kubelet for ``job`` (see :class:`FakeJobController`)."""
    return FakeJobController(k8s).sync(job)


# ---- what a kubelet/scheduler does to a pod -------------------------------------------------


def _container_names(pod: JSON) -> list[str]:
    return [c["name"] for c in pod["spec"]["containers"]]


def set_pod_running(k8s: K8s, name: str) -> JSON:
    pod = k8s.pod(name)
    now = _now()
    status = {
        "phase": "Running",
        "podIP": f"10.244.0.{sum(map(ord, name)) % 250 + 2}",
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
        ],
        "containerStatuses": [
            {
                "name": c,
                "ready": True,
                "restartCount": 0,
                "image": "image",
                "imageID": "",
                "started": True,
                "state": {"running": {"startedAt": now}},
            }
            for c in _container_names(pod)
        ],
    }
    return k8s.to_dict(
        k8s.core.patch_namespaced_pod_status(name, k8s.namespace, {"status": status})
    )


def _terminate_pod(
    k8s: K8s, name: str, exit_code: int, extra_conditions: list[JSON], message: str
) -> JSON:
    pod = k8s.pod(name)
    now = _now()
    phase = "Succeeded" if exit_code == 0 else "Failed"
    status = {
        "phase": phase,
        "message": message,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "PodCompleted" if exit_code == 0 else "PodFailed",
                "lastTransitionTime": now,
            },
            *extra_conditions,
        ],
        "containerStatuses": [
            {
                "name": c,
                "ready": False,
                "restartCount": 0,
                "image": "image",
                "imageID": "",
                "started": False,
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Completed" if exit_code == 0 else "Error",
                        "startedAt": (pod.get("status") or {}).get("startTime") or now,
                        "finishedAt": now,
                    }
                },
            }
            for c in _container_names(pod)
        ],
    }
    return k8s.to_dict(
        k8s.core.patch_namespaced_pod_status(name, k8s.namespace, {"status": status})
    )


def fail_pod(
    k8s: K8s, name: str, exit_code: int = 1, controller: FakeJobController | None = None
) -> JSON:
    """The pod's containers exited with ``exit_code`` (non-zero: phase Failed); the job
    controller then reflects it in the Job's status."""
    controller = controller or FakeJobController(k8s)
    with controller.lock:  # not between the kubelet's create and its "running" report
        pod = _terminate_pod(k8s, name, exit_code, [], f"container exited with {exit_code}")
        _sync_owner(pod, controller)
    return pod


def succeed_pod(k8s: K8s, name: str, controller: FakeJobController | None = None) -> JSON:
    return fail_pod(k8s, name, 0, controller)


def preempt_pod(
    k8s: K8s,
    name: str,
    reason: str = "PreemptionByScheduler",
    exit_code: int = 143,
    controller: FakeJobController | None = None,
) -> JSON:
    """A disruption as the scheduler/kubelet reports it: the ``DisruptionTarget`` condition with
    ``reason``, phase Failed, containers terminated by SIGTERM (143 by default); then the job
    controller's view of it."""
    condition = _condition("DisruptionTarget", reason, f"{reason}: the pod is being disrupted")
    controller = controller or FakeJobController(k8s)
    with controller.lock:
        pod = _terminate_pod(k8s, name, exit_code, [condition], f"preempted ({reason})")
        _sync_owner(pod, controller)
    return pod


def _sync_owner(pod: JSON, controller: FakeJobController) -> None:
    job = pod["metadata"].get("labels", {}).get(JOB_NAME_LABEL)
    if job is not None:
        controller.sync(job)


# --------------------------------------------------------------------------------------------
# The operator


def olmojob_crd() -> JSON:
    """The OLMoJob CRD from the operator's single source of truth."""
    from olmo_operator.crd import crd

    return crd()


class Operator:
    """The real kopf operator (``olmo_operator.handlers``) run by ``kopf.testing.KopfRunner``
    in a thread; ``restart()`` stops it and starts a fresh one against the same cluster."""

    ARGS = ("run", "-m", "olmo_operator.handlers", "--standalone", "--namespace", NAMESPACE)

    def __init__(self, *extra_args: str):
        self.args = [*self.ARGS, *extra_args]
        self.runner: Any = None
        self.outputs: list[str] = []

    def start(self) -> Operator:
        from kopf.testing import KopfRunner

        self.runner = KopfRunner(self.args, timeout=30)
        self.runner.__enter__()
        return self

    def stop(self) -> None:
        if self.runner is None:
            return
        runner, self.runner = self.runner, None
        try:
            runner.__exit__(None, None, None)
        finally:  # keep the log even when the operator failed
            if runner.future.done() and runner.future.exception() is None:
                self.outputs.append(runner.output)

    def restart(self) -> Operator:
        self.stop()
        return self.start()

    @property
    def output(self) -> str:
        return "\n".join(self.outputs)


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    """A fresh API server on a localhost port; KUBECONFIG points at it (for kopf and for the
    ``kubernetes`` package, which reads the variable at import time)."""
    kubeconfig = tmp_path / "kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
    )
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)  # never the in-cluster login
    with ApiServer(KubeEmulator(), kubeconfig) as server:
        yield server
        # The emulator's own failures (not injected faults) would be silent 500s otherwise.
        emulator = server.emulator
        injected = sum(len(f.hits) for f in emulator.faults if f.code >= 500)
        crashed = [r for r in list(emulator.audit) if r.code >= 500]
        assert len(crashed) == injected and not emulator.errors, (crashed, emulator.errors)


@pytest.fixture
def k8s(emulator: ApiServer) -> Iterator[K8s]:
    api = K8s.from_kubeconfig(emulator.kubeconfig)
    yield api
    api.close()


@pytest.fixture
def olmojob_resource(emulator: ApiServer) -> JSON:
    """The OLMoJob CRD, registered in the emulator (a cluster would have it installed)."""
    crd = olmojob_crd()
    emulator.call(emulator.emulator.register_crd, crd)
    return crd


@pytest.fixture
def job_controller(k8s: K8s) -> Iterator[FakeJobController]:
    controller = FakeJobController(k8s).start()
    yield controller
    controller.stop()
    # 404/409: races with the operator's deletes, which a real controller also shrugs off.
    real = [e for e in controller.errors if getattr(e, "status", None) not in (404, 409)]
    assert not real, f"the fake job controller failed: {real!r}"


@pytest.fixture
def operator(olmojob_resource: JSON, monkeypatch: pytest.MonkeyPatch) -> Iterator[Operator]:
    """The real operator (``kopf run -m olmo_operator.handlers --standalone -n default``) with
    short timers, against the ``emulator``."""
    with running_operator(monkeypatch) as op:
        yield op


@contextlib.contextmanager
def running_operator(monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[Operator]:
    """The real operator with ``OPERATOR_ENV`` plus ``env``; after it stopped, no reconcile may
    have failed (the daemon logs unexpected exceptions and carries on: bugs all the same)."""
    for key, value in {**OPERATOR_ENV, **env}.items():
        monkeypatch.setenv(key, value)
    op = Operator(*(["--verbose"] if os.environ.get("OLMO_TEST_OPERATOR_VERBOSE") else [])).start()
    try:
        yield op
    finally:
        op.stop()
        # The operator ran in this process: what its startup configured must not outlive it.
        from olmo_operator import handlers
        from olmo_operator.features import Features

        handlers.STATE.features = Features()
    assert "reconcile failed" not in op.output, op.output[-6000:]


@pytest.fixture
def make_olmojob(k8s: K8s, olmojob_resource: JSON) -> Callable[..., JSON]:
    """``make_olmojob(name, **spec)``: create an OLMoJob from :func:`olmojob_spec`."""

    def make(name: str, **spec: Any) -> JSON:
        return k8s.create_olmojob(name, olmojob_spec(**spec))

    return make


SPOT_POOL = {
    "name": "spot",
    "nodeSelector": {"cloud.google.com/gke-spot": "true"},
    "tolerations": [
        {
            "key": "cloud.google.com/gke-spot",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        }
    ],
    "preemptible": True,
    "maxPreemptions": 2,
}
ON_DEMAND_POOL = {"name": "on-demand", "nodeSelector": {"cloud.google.com/machine-family": "a3"}}


def olmojob_spec(**overrides: Any) -> JSON:
    """A small valid OLMoJob spec (2 nodes × 8 GPUs, a spot pool falling back to on-demand);
    keyword arguments replace top-level fields."""
    spec: JSON = {
        "model": {"preset": "tiny"},
        "dataset": {"claimName": "olmo-tokens"},
        "image": "registry.example.com/olmo/trainer:test",
        "checkpoint": {"claimName": "olmo-checkpoints"},
        "nodes": 2,
        "gpusPerNode": 8,
        "terminationGracePeriodSeconds": 5,
        "nodePools": [copy.deepcopy(SPOT_POOL), copy.deepcopy(ON_DEMAND_POOL)],
    }
    spec.update(copy.deepcopy(overrides))
    return spec
