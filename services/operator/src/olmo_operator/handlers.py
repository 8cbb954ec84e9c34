"""kopf handlers: thin glue between the API and the pure lifecycle.

Every trigger — an OLMoJob created, changed or found at operator start, and a periodic loop
per OLMoJob every ``OLMO_OPERATOR_RECONCILE_SECONDS`` (default 10; a kopf daemon, so that the
interval is read when the operator starts rather than when this module is first imported) —
runs the same :func:`reconcile`: re-read the
OLMoJob, list its labelled children, read the nodes of an ended attempt's pods, ask
:func:`olmo_operator.lifecycle.next_action`, and apply the answer (status patch, deletes, creates,
Events, metrics). Reconciles of one object never overlap (a lock per object), and all state is in
the OLMoJob's status and its children, so a restarted operator carries on where it stopped.

Run it with ``olmo-operator run`` or ``kopf run -m olmo_operator.handlers [--standalone]
[--namespace NS]``; the Kubernetes client is configured from the pod's ServiceAccount or from
``$KUBECONFIG``.

Environment, read when the operator starts: ``OLMO_OPERATOR_RECONCILE_SECONDS`` (default 10),
``OLMO_OPERATOR_BACKOFF_BASE_SECONDS`` / ``OLMO_OPERATOR_BACKOFF_MAX_SECONDS`` (restart backoff
after failures, default 10 / 600) and ``OLMO_OPERATOR_TERMINATION_WAIT_SECONDS`` (default 30).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from olmo_operator import contract as c
from olmo_operator import kube, metrics
from olmo_operator.failures import failed_pods, termination_signal
from olmo_operator.features import Features, feature_problems
from olmo_operator.lifecycle import (
    Action,
    ActionKind,
    ObjectRef,
    Observed,
    Timing,
    invalid_spec_action,
    job_failed,
    next_action,
)
from olmo_operator.lifecycle.refused import permanent as permanent_refusal
from olmo_operator.lifecycle.refused import refused_create_action
from olmo_operator.policy import Policy, enforce
from olmo_operator.progress import apply_merge_patch
from olmo_operator.resources import attempt_name, with_network_policy
from olmo_operator.resources.network_policy import enabled_from_env
from olmo_operator.spec import SpecError, parse_job

log = logging.getLogger(__name__)


def reconcile_seconds() -> float:
    raw = os.environ.get(c.ENV_RECONCILE_SECONDS, "10")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{c.ENV_RECONCILE_SECONDS} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{c.ENV_RECONCILE_SECONDS} must be positive, got {raw!r}")
    return value


class _State:
    """Process-wide operator state: the API client, timing, per-object locks."""

    def __init__(self) -> None:
        self.api: kube.Kube | None = None
        self.timing = Timing()
        self.reconcile_seconds = 10.0
        self.policy = Policy()
        self.network_policy = False
        self.features = Features()
        # Nodes announcing their termination (OLMO_FEATURE_TERMINATION_NOTICES), by name.
        self.notices: dict[str, dict[str, Any]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self.last_warning: dict[tuple[str, str], str] = {}
        # Set by a child's watch event to reconcile its OLMoJob now rather than on the next tick.
        self._wake: dict[tuple[str, str], asyncio.Event] = {}

    def wake_event(self, namespace: str, name: str) -> asyncio.Event:
        """A new wake-up event for the loop of (namespace, name), bound to the running event
        loop (a restarted operator runs a new loop)."""
        with self._guard:
            event = self._wake[(namespace, name)] = asyncio.Event()
            return event

    def wake(self, namespace: str, name: str) -> None:
        with self._guard:
            event = self._wake.get((namespace, name))
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        with self._guard:
            events = list(self._wake.values())
        for event in events:
            event.set()

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def tracked(self) -> int:
        with self._guard:
            return len(self._locks)

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
            self.last_warning.pop((namespace, name), None)
            self._wake.pop((namespace, name), None)


STATE = _State()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: logging.Logger, **_: Any) -> None:
    kube.load_config()
    STATE.api = kube.Kube()
    STATE.timing = Timing.from_env()
    STATE.reconcile_seconds = reconcile_seconds()
    STATE.policy = Policy.from_env()
    STATE.network_policy = enabled_from_env(os.environ)
    STATE.features = Features.from_env()
    _register_feature_watches(STATE.features)
    settings.persistence.finalizer = f"{c.GROUP}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    # Events come from explicit kopf.event calls (phase changes, restarts, checkpoints); log lines
    # are posted as Events only from warnings up (child watch events would otherwise flood them).
    settings.posting.level = logging.WARNING
    logger.info(
        "olmo-operator: reconcile every %gs, backoff %gs..%gs",
        STATE.reconcile_seconds,
        STATE.timing.backoff_base_seconds,
        STATE.timing.backoff_max_seconds,
    )
    logger.info(
        "olmo-operator: policy %s; per-job NetworkPolicies %s; features: %s",
        STATE.policy,
        "on" if STATE.network_policy else "off",
        STATE.features,
    )


_REGISTERED: set[str] = set()


def _register_feature_watches(features: Features) -> None:
    """Watch Nodes (termination notices) and Karpenter NodePools (orphans) only when the chart
    enabled those features: a cluster without them, or an operator without the permissions,
    watches nothing more. Registered once per process (kopf's registry is global); the handlers
    read ``STATE.features`` again, so a later operator run without the feature ignores them."""
    if features.termination_notices and "nodes" not in _REGISTERED:
        kopf.on.event("", "v1", "nodes", id="termination-notices")(on_node_event)
        _REGISTERED.add("nodes")
    if features.karpenter and "nodepools" not in _REGISTERED:
        kopf.on.event(
            c.KARPENTER_GROUP,
            c.KARPENTER_VERSION,
            c.KARPENTER_PLURAL,
            labels={c.LABEL_COMPONENT: c.NODEPOOL},
            id="nodepool-orphans",
        )(on_node_pool_event)
        _REGISTERED.add("nodepools")


def on_node_event(body: Mapping[str, Any], type: str | None, **_: Any) -> None:
    """A Node changed: remember it while it carries an impending-termination signal
    (:data:`olmo_operator.failures.TERMINATION_SIGNALS`) and wake every OLMoJob's loop when a
    new one appears (each checks whether its running pods sit on it)."""
    if not STATE.features.termination_notices:
        return
    name = (body.get("metadata") or {}).get("name")
    if not name:
        return
    if type != "DELETED" and termination_signal(body) is not None:
        new = name not in STATE.notices
        STATE.notices[name] = {"metadata": {"name": name}, "spec": dict(body.get("spec") or {})}
        if new:
            STATE.wake_all()
    else:
        STATE.notices.pop(name, None)


def on_node_pool_event(body: Mapping[str, Any], type: str | None, **_: Any) -> None:
    """Collect an orphaned NodePool: its OLMoJob (namespace, name, uid in its labels) is gone
    (e.g. deleted while the operator was down)."""
    api = STATE.api
    if type == "DELETED" or api is None or not STATE.features.karpenter:
        return
    meta = body.get("metadata") or {}
    node_pool_labels = meta.get("labels") or {}
    namespace = node_pool_labels.get(c.LABEL_JOB_NAMESPACE)
    job = node_pool_labels.get(c.LABEL_JOB)
    if not namespace or not job or meta.get("deletionTimestamp"):
        return
    owner = api.get_olmojob(namespace, job)
    uid = node_pool_labels.get(c.LABEL_JOB_UID)
    if owner is None or (uid and (owner.get("metadata") or {}).get("uid") != uid):
        log.info(
            "NodePool %s: OLMoJob %s/%s is gone; deleting it", meta.get("name"), namespace, job
        )
        api.delete(namespace, ObjectRef(c.KARPENTER_API_VERSION, "NodePool", meta["name"]))


@kopf.on.create(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.resume(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.PLURAL, field="spec")
def on_change(name: str, namespace: str, logger: logging.Logger, **_: Any) -> None:
    try:
        reconcile(namespace, name, logger)
    except StatusConflict as e:  # the periodic loop (reconcile_periodically) tries again
        logger.info("reconcile: %s", e)


@kopf.daemon(c.GROUP, c.VERSION, c.PLURAL, cancellation_timeout=1)
async def reconcile_periodically(
    name: str, namespace: str, stopped: kopf.DaemonStopped, logger: logging.Logger, **_: Any
) -> None:
    """The loop: reconcile every ``OLMO_OPERATOR_RECONCILE_SECONDS``, and at once when one of
    the OLMoJob's Jobs or Pods changes (``on_child_event``), until the object goes. Each
    reconcile runs in a worker thread. On shutdown kopf cancels the wait (no ``stopped.wait``,
    whose helper task can end in a TimeoutError when cancelled)."""
    wake = STATE.wake_event(namespace, name)
    while not stopped:
        wake.clear()
        try:
            await asyncio.to_thread(reconcile, namespace, name, logger)
        except StatusConflict as e:  # normal when many write the object: no warning, no Event
            logger.info("reconcile: %s", e)
        except kopf.TemporaryError as e:
            logger.warning("reconcile: %s", e)
        except Exception:
            logger.exception("reconcile failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=STATE.reconcile_seconds)


@kopf.on.event("batch", "v1", "jobs", labels={c.LABEL_JOB: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={c.LABEL_JOB: kopf.PRESENT})
async def on_child_event(labels: Mapping[str, str], namespace: str, **_: Any) -> None:
    """A Job or Pod of an OLMoJob changed (a pod failed, a Job completed, a deletion finished):
    wake that OLMoJob's loop. Several events in a row coalesce into one reconcile."""
    STATE.wake(namespace, labels[c.LABEL_JOB])


@kopf.on.delete(c.GROUP, c.VERSION, c.PLURAL, optional=True)
def on_delete(name: str, namespace: str, **_: Any) -> None:
    metrics.PHASES.forget(namespace, name)
    metrics.JOBS_METRICS.forget(namespace, name)
    STATE.forget(namespace, name)


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL, id="olmojob-gone")
def on_olmojob_event(
    type: str | None, name: str, namespace: str, uid: str | None, **_: Any
) -> None:
    """An OLMoJob is gone: its Karpenter NodePools (cluster-scoped, so not garbage-collected
    with it) go too. Its namespaced children are owned by it and collected by the API server."""
    if type != "DELETED" or not STATE.features.karpenter or STATE.api is None:
        return
    for pool in STATE.api.list_node_pools(namespace, name, uid):
        STATE.api.delete(
            namespace, ObjectRef(c.KARPENTER_API_VERSION, "NodePool", pool["metadata"]["name"])
        )


@kopf.on.probe(id="olmojobs")
def probe(**_: Any) -> int:
    """Liveness detail: how many OLMoJobs this operator tracks."""
    return STATE.tracked()


# --------------------------------------------------------------------------------------------


CONFLICT_RETRIES = 5
"""How many times in a row a reconcile is redone at once when its status write finds the
OLMoJob changed since it was read; then it is retried later (:class:`StatusConflict`)."""


class StatusConflict(kopf.TemporaryError):
    """The OLMoJob kept changing under the reconcile (kopf's own annotations, the pods'
    reports, another operator): retried later, and not worth a warning."""


def reconcile(namespace: str, name: str, logger: logging.Logger | None = None) -> Action | None:
    """One reconcile of one OLMoJob; returns the applied action (None: the object is gone).

    Decisions are fenced: the status patch, applied first, carries the ``resourceVersion`` the
    decision was made from, so a decision made from an outdated read (the object changed since:
    another writer, or a second operator) is refused (409) before anything of it is applied
    (no child created, no restart counted twice), and the reconcile is redone from a fresh read
    at once, at most :data:`CONFLICT_RETRIES` times."""
    logger = logger or log
    api = STATE.api
    if api is None:
        raise kopf.TemporaryError("the Kubernetes client is not configured yet", delay=1)
    with STATE.lock(namespace, name), metrics.RECONCILE_SECONDS.time():
        for _ in range(CONFLICT_RETRIES):
            try:
                return _reconcile_once(api, namespace, name, logger)
            except kube.Conflict:
                log.debug("%s/%s changed since it was read: deciding again", namespace, name)
    raise StatusConflict(
        f"{c.KIND} {namespace}/{name} changed during {CONFLICT_RETRIES} reconciles in a row",
        delay=STATE.reconcile_seconds,
    )


def _reconcile_once(
    api: kube.Kube, namespace: str, name: str, logger: logging.Logger
) -> Action | None:
    """Read, decide, apply. A create the API server refuses for good is decided on once more
    (:func:`refused_create_action`: phase Failed) instead of being retried forever."""
    obj: dict[str, Any] | None = None
    try:
        obj = api.get_olmojob(namespace, name)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return None
        status = obj.get("status") or {}
        uid = (obj.get("metadata") or {}).get("uid")
        features = STATE.features
        children = api.list_children(
            namespace, name, owner_uid=uid, provisioning=features.provisioning
        )
        if features.karpenter:
            children["node_pools"] = api.list_node_pools(namespace, name, uid)
        now = dt.datetime.now(dt.UTC)
        try:
            job = parse_job(obj)
            problems = feature_problems(job.spec, features)
            if problems:
                raise SpecError("; ".join(problems))
        except SpecError as e:
            action = invalid_spec_action(status, e, Observed(now=now, **_tuples(children)))
        else:
            nodes = _nodes_of_ended_attempt(api, name, status, children)
            notices = _notices(status, children) if features.termination_notices else {}
            observed = Observed(now=now, nodes=nodes, notices=notices, **_tuples(children))
            action = enforce(job, status, STATE.policy, observed) or next_action(
                job, status, observed, STATE.timing
            )
            if STATE.network_policy:
                action = with_network_policy(action, job)
        try:
            _apply(api, obj, action, logger)
        except _CreateRefused as refused:
            action = refused_create_action(
                job, refused.status, observed, refused.child, refused.error.detail, STATE.timing
            )
            _apply(api, refused.obj, action, logger)
    except kube.Conflict:
        raise
    except kube.ApiError as e:
        _warn_once(obj, namespace, name, str(e))
        raise kopf.TemporaryError(str(e), delay=max(STATE.reconcile_seconds, 5)) from None
    phase = action.status.get("phase") or status.get("phase")
    metrics.PHASES.set(namespace, name, phase)
    metrics.JOBS_METRICS.update(namespace, name, apply_merge_patch(status, action.status), now)
    return action


def _tuples(children: Mapping[str, list[dict[str, Any]]]) -> dict[str, tuple[dict[str, Any], ...]]:
    return {key: tuple(items) for key, items in children.items()}


def _notices(
    status: Mapping[str, Any], children: Mapping[str, list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """The nodes with a termination notice (``STATE.notices``) that run a pod of the current
    attempt."""
    attempt = str(status.get("attempt") or "")
    out = {}
    for pod in children.get("pods", []):
        pod_labels = pod["metadata"].get("labels") or {}
        if pod_labels.get(c.LABEL_ATTEMPT) != attempt:
            continue
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node in STATE.notices:
            out[node] = STATE.notices[node]
    return out


def _nodes_of_ended_attempt(
    api: kube.Kube,
    job: str,
    status: Mapping[str, Any],
    children: Mapping[str, list[dict[str, Any]]],
) -> dict[str, dict[str, Any] | None]:
    """The nodes of the current attempt's pods, read only when the attempt has ended badly
    (a missing node is None; one the operator may not read is left out)."""
    attempt = status.get("attempt")
    if not attempt:
        return {}
    pods = [
        p
        for p in children.get("pods", [])
        if (p["metadata"].get("labels") or {}).get(c.LABEL_ATTEMPT) == str(attempt)
        and (p["metadata"].get("labels") or {}).get(c.LABEL_COMPONENT) == c.TRAINER
    ]
    current = next(
        (
            j
            for j in children.get("jobs", [])
            if j["metadata"]["name"] == attempt_name(job, attempt)
        ),
        None,
    )
    if not (failed_pods(pods) or (current is not None and job_failed(current))):
        return {}
    nodes: dict[str, dict[str, Any] | None] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name and node_name not in nodes:
            node = api.read_node(node_name)
            if node is not kube.UNKNOWN:
                nodes[node_name] = node  # type: ignore[assignment]
    return nodes


class _CreateRefused(Exception):
    """A create of ``child`` refused for good; ``obj``: the OLMoJob as the action left it."""

    def __init__(self, obj: dict[str, Any], child: Mapping[str, Any], error: kube.ApiError):
        super().__init__(str(error))
        self.obj, self.child, self.error = obj, child, error

    @property
    def status(self) -> dict[str, Any]:
        return self.obj.get("status") or {}


def _has_effect(action: Action) -> bool:
    return bool(
        action.status or action.create or action.delete or action.events or action.delete_job
    )


def _apply(api: kube.Kube, obj: dict[str, Any], action: Action, logger: logging.Logger) -> None:
    """Apply ``action``, decided from ``obj``: the status patch first, with ``obj``'s
    resourceVersion (an action without status changes still checks it, writing nothing), so
    that :class:`kube.Conflict` stops an outdated decision before any of its effects."""
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    current = obj
    if _has_effect(action):
        version = meta.get("resourceVersion")
        current = api.patch_status(namespace, name, action.status, version) or obj
    for ref in action.delete:
        api.delete(namespace, ref)
    for child in action.create:
        try:
            created = api.create(namespace, child)
        except kube.ApiError as e:
            if not permanent_refusal(e.status, name_conflict=isinstance(e, kube.NameConflict)):
                raise
            raise _CreateRefused(current, child, e) from None
        if created:
            logger.debug("created %s %s", child["kind"], child["metadata"]["name"])
    for event in action.events:
        kopf.event(obj, type=event.type, reason=event.reason, message=event.message)
    if action.new_attempt is not None:
        metrics.ATTEMPTS.inc()
    if action.kind is ActionKind.RESTART and action.failure is not None:
        metrics.RESTARTS.labels(cause=action.failure.cause.value).inc()
    if action.kind is not ActionKind.WAIT:
        logger.info("%s: %s", action.kind.value, action.message or action.status.get("message"))
    if action.delete_job:
        api.delete_olmojob(namespace, name)


def _warn_once(obj: dict[str, Any] | None, namespace: str, name: str, message: str) -> None:
    """Post an API refusal as a Warning Event, once per distinct message."""
    key = (namespace, name)
    if obj is None or STATE.last_warning.get(key) == message:
        log.warning("%s/%s: %s", namespace, name, message)
        return
    STATE.last_warning[key] = message
    kopf.warn(obj, reason="ApiError", message=message)
