"""The OLMoJob lifecycle: from (job, status, observed children) to the next action.

:func:`next_action` is a pure function. It returns one :class:`Action`: a merge patch for the
status (operator-owned fields only), objects to create, objects to delete, Events to post, and
whether to delete the OLMoJob itself (TTL). The kopf handlers apply it in that order — status
first, so that a decision (a new attempt number, a restart counted) is recorded before it has any
effect, and a restarted operator neither counts a failure twice nor creates duplicates (names are
deterministic per attempt; objects of attempts other than ``status.attempt`` are deleted).

Phases::

    (new) ─▶ PreparingData ─▶ Running ◀──────────────┐
       │         (data-prep Job)  │ attempt ended     │ restartAt reached,
       │                          ▼                   │ old pods gone
       │                     Restarting ──────────────┘
       │                          │ failures > maxFailures
       └──────────────▶ Pending   ▼
     (Kueue suspended)        Failed        Running ─▶ Succeeded (─▶ rotation Job, TTL)
    any ─(spec.suspend)─▶ Suspended ─(suspend false)─▶ next attempt
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from olmo_operator import contract as c
from olmo_operator.failures import Cause, Failure, classify_failure, failed_pods
from olmo_operator.progress import Event, mirror_progress
from olmo_operator.resources import (
    AttemptState,
    attempt_name,
    dataprep_job,
    dataprep_name,
    desired_objects,
    eval_deployment,
    eval_name,
    rotation_job,
    rotation_name,
)
from olmo_operator.retention import requires_evaluated
from olmo_operator.spec import OLMoJob, SpecError

# --------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class Timing:
    """Restart timing (from the environment in the operator, explicit in tests)."""

    backoff_base_seconds: float = 10.0
    backoff_max_seconds: float = 600.0
    termination_wait_seconds: float = 30.0
    """After a restart, wait at most the pods' grace period plus this for the old pods to go."""
    failure_settle_seconds: float = 60.0
    """A failed pod with no preemption signal yet ends its attempt as a failure only this long
    after it was first seen. When a spot node is reclaimed, the other nodes' trainers lose their
    peer and exit 1 at once, before the node turns NotReady or the victim pod gets its
    DisruptionTarget condition (a node is marked NotReady ~40-50 s after it stops answering);
    the window lets those signals arrive, so the attempt counts as the preemption it was."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Timing:
        env = os.environ if environ is None else environ
        return cls(
            backoff_base_seconds=_env_float(env, c.ENV_BACKOFF_BASE, 10.0),
            backoff_max_seconds=_env_float(env, c.ENV_BACKOFF_MAX, 600.0),
            termination_wait_seconds=_env_float(env, c.ENV_STOP_WAIT, 30.0),
            failure_settle_seconds=_env_float(env, c.ENV_FAILURE_SETTLE, 60.0),
        )

    def backoff(self, failures: int) -> float:
        """Seconds before the restart after the ``failures``-th failure: base·2^(n-1), capped."""
        if failures < 1:
            return 0.0
        return min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (failures - 1))


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True)
class Observed:
    """What exists now: the OLMoJob's children (labelled ``olmo-k8s.io/job=<name>``) and the
    nodes of the pods of an ended attempt (None: the node is gone; absent: unknown)."""

    now: dt.datetime
    jobs: tuple[Mapping[str, Any], ...] = ()
    pods: tuple[Mapping[str, Any], ...] = ()
    services: tuple[Mapping[str, Any], ...] = ()
    deployments: tuple[Mapping[str, Any], ...] = ()
    config_maps: tuple[Mapping[str, Any], ...] = ()
    nodes: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        return cls(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


class ActionKind(enum.StrEnum):
    WAIT = "Wait"
    PREPARE_DATA = "PrepareData"
    START_ATTEMPT = "StartAttempt"
    RESTART = "Restart"
    SUCCEED = "Succeed"
    FAIL = "Fail"
    SUSPEND = "Suspend"
    ROTATE = "Rotate"
    DELETE = "Delete"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    message: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    """JSON merge patch for ``.status`` (None values remove a field)."""
    create: tuple[dict[str, Any], ...] = ()
    delete: tuple[ObjectRef, ...] = ()
    events: tuple[Event, ...] = ()
    failure: Failure | None = None
    """Why the attempt ended (kinds RESTART and FAIL after a trainer failure)."""
    new_attempt: int | None = None
    """The attempt number started by this action (not set when an attempt is re-created)."""
    delete_job: bool = False
    """Delete the OLMoJob itself (ttlSecondsAfterFinished has passed)."""


# --------------------------------------------------------------------------------------------
# Small readers


def now_iso(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def _attempt_of(obj: Mapping[str, Any]) -> int | None:
    raw = _labels(obj).get(c.LABEL_ATTEMPT)
    return int(raw) if raw is not None and str(raw).isdigit() else None


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _condition_true(obj: Mapping[str, Any] | None, kind: str) -> bool:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return True
    return False


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def _pod_done(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def job_suspended(job: Mapping[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def job_succeeded(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]] = ()) -> bool:
    """Complete condition, or every index succeeded (as counted by the Job or seen on pods)."""
    if _condition_true(job, "Complete") or _condition_true(job, "SuccessCriteriaMet"):
        return True
    spec, status = job.get("spec") or {}, job.get("status") or {}
    completions = spec.get("completions") or 1
    if (status.get("succeeded") or 0) >= completions:
        return True
    indexes = set()
    for pod in pods:
        if (pod.get("status") or {}).get("phase") == "Succeeded":
            meta = pod.get("metadata") or {}
            index = (meta.get("annotations") or {}).get(
                "batch.kubernetes.io/job-completion-index"
            ) or (meta.get("labels") or {}).get("batch.kubernetes.io/job-completion-index")
            indexes.add(index if index is not None else _name(pod))
    return len(indexes) >= completions


def job_failed(job: Mapping[str, Any]) -> bool:
    if _condition_true(job, "Failed") or _condition_true(job, "FailureTarget"):
        return True
    return (job.get("status") or {}).get("failed", 0) > 0


# --------------------------------------------------------------------------------------------
# The children, sorted


def with_kind(
    objs: Iterable[Mapping[str, Any]], api_version: str, kind: str
) -> list[Mapping[str, Any]]:
    """Items of a list response carry no apiVersion/kind: put them back."""
    out = []
    for obj in objs:
        if obj.get("kind") and obj.get("apiVersion"):
            out.append(obj)
        else:
            out.append({**obj, "apiVersion": api_version, "kind": kind})
    return out


@dataclass
class _Children:
    name: str
    trainer_jobs: list[Mapping[str, Any]]
    trainer_pods: list[Mapping[str, Any]]
    services: list[Mapping[str, Any]]
    config_maps: list[Mapping[str, Any]]
    dataprep: Mapping[str, Any] | None
    dataprep_pods: list[Mapping[str, Any]]
    rotation: Mapping[str, Any] | None
    rotation_pods: list[Mapping[str, Any]]
    eval: Mapping[str, Any] | None

    @classmethod
    def of(cls, name: str, observed: Observed) -> _Children:
        jobs = with_kind(observed.jobs, "batch/v1", "Job")
        pods = with_kind(observed.pods, "v1", "Pod")
        services = with_kind(observed.services, "v1", "Service")
        deployments = with_kind(observed.deployments, "apps/v1", "Deployment")
        config_maps = with_kind(observed.config_maps, "v1", "ConfigMap")

        def mine(objs: Iterable[Mapping[str, Any]], component: str) -> list[Mapping[str, Any]]:
            return [
                o
                for o in objs
                if _labels(o).get(c.LABEL_JOB) == name
                and _labels(o).get(c.LABEL_COMPONENT) == component
            ]

        def named(objs: list[Mapping[str, Any]], wanted: str) -> Mapping[str, Any] | None:
            return next((o for o in objs if _name(o) == wanted), None)

        return cls(
            name=name,
            trainer_jobs=mine(jobs, c.TRAINER),
            trainer_pods=mine(pods, c.TRAINER),
            services=mine(services, c.TRAINER),
            config_maps=mine(config_maps, c.TRAINER),
            dataprep=named(mine(jobs, c.DATAPREP), dataprep_name(name)),
            dataprep_pods=mine(pods, c.DATAPREP),
            rotation=named(mine(jobs, c.ROTATION), rotation_name(name)),
            rotation_pods=mine(pods, c.ROTATION),
            eval=named(mine(deployments, c.EVALWORKER), eval_name(name)),
        )

    def trainer_job(self, attempt: int) -> Mapping[str, Any] | None:
        wanted = attempt_name(self.name, attempt)
        return next((j for j in self.trainer_jobs if _name(j) == wanted), None)

    def attempt_pods(self, attempt: int) -> list[Mapping[str, Any]]:
        return [p for p in self.trainer_pods if _attempt_of(p) == attempt]

    def _attempt_objects(self) -> list[Mapping[str, Any]]:
        return [*self.trainer_jobs, *self.services, *self.config_maps, *self.trainer_pods]

    def of_attempt(self, attempt: int) -> list[Mapping[str, Any]]:
        return [o for o in self._attempt_objects() if _attempt_of(o) == attempt]

    def not_of_attempt(self, attempt: int) -> list[Mapping[str, Any]]:
        return [
            o
            for o in self._attempt_objects()
            if _attempt_of(o) is not None and _attempt_of(o) != attempt
        ]


def _ref(obj: Mapping[str, Any]) -> ObjectRef:
    return ObjectRef(obj["apiVersion"], obj["kind"], _name(obj))


# --------------------------------------------------------------------------------------------
# The plan being built


class _Plan:
    def __init__(self, job: OLMoJob, status: Mapping[str, Any], observed: Observed, timing: Timing):
        self.job, self.spec, self.old, self.observed, self.timing = (
            job,
            job.spec,
            status,
            observed,
            timing,
        )
        self.now = observed.now
        self.kids = _Children.of(job.name, observed)
        self.patch: dict[str, Any] = {}
        self.create: list[dict[str, Any]] = []
        self.delete: list[ObjectRef] = []
        self.events: list[Event] = []
        self.kind = ActionKind.WAIT
        self.message = ""
        self.failure: Failure | None = None
        self.new_attempt: int | None = None
        self.delete_job = False
        self._conditions = [dict(x) for x in status.get("conditions") or []]

    # status -----------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The status value after this plan (patched or old)."""
        if key in self.patch:
            return self.patch[key]
        value = self.old.get(key)
        return default if value is None else value

    def set(self, **fields: Any) -> None:
        self.patch.update(fields)

    @property
    def phase(self) -> str:
        return self.get("phase", "")

    def to_phase(self, phase: str, message: str) -> None:
        self.set(phase=phase, message=message)
        self.message = message

    def condition(self, kind: str, value: bool, reason: str, message: str = "") -> None:
        status = "True" if value else "False"
        for cond in self._conditions:
            if cond.get("type") == kind:
                if cond.get("status") != status:
                    cond["lastTransitionTime"] = now_iso(self.now)
                cond.update(status=status, reason=reason, message=message)
                return
        self._conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now_iso(self.now),
            }
        )

    def has_condition(self, kind: str) -> bool:
        return any(x.get("type") == kind and x.get("status") == "True" for x in self._conditions)

    # effects ----------------------------------------------------------------------------

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def remove(self, objs: Iterable[Mapping[str, Any]]) -> None:
        for obj in objs:
            ref = _ref(obj)
            if not _deleting(obj) and ref not in self.delete:
                self.delete.append(ref)

    def finish(self) -> Action:
        old_conditions = list(self.old.get("conditions") or [])
        if self._conditions != old_conditions:
            self.patch["conditions"] = self._conditions
        old_phase, new_phase = self.old.get("phase") or "", self.patch.get("phase")
        if new_phase and new_phase != old_phase:
            detail = f": {self.patch.get('message')}" if self.patch.get("message") else ""
            self.events.insert(
                0,
                Event(
                    "Warning" if new_phase == c.FAILED else "Normal",
                    new_phase,
                    f"phase {old_phase or '(new)'} → {new_phase}{detail}",
                ),
            )
        # Only what changed goes into the patch.
        patch = {k: v for k, v in self.patch.items() if self.old.get(k) != v or k == "conditions"}
        return Action(
            kind=self.kind,
            message=self.message,
            status=patch,
            create=tuple(self.create),
            delete=tuple(self.delete),
            events=tuple(self.events),
            failure=self.failure,
            new_attempt=self.new_attempt,
            delete_job=self.delete_job,
        )


# --------------------------------------------------------------------------------------------
# The decision


def next_action(
    job: OLMoJob, status: Mapping[str, Any], observed: Observed, timing: Timing | None = None
) -> Action:
    """Decide what to do next for ``job`` (parsed spec + identity) given its current ``status``
    and its ``observed`` children."""
    plan = _Plan(job, status or {}, observed, timing or Timing())
    progress_patch, progress_events = mirror_progress(plan.old)
    plan.patch.update(progress_patch)
    plan.events.extend(progress_events)
    if job.generation is not None:
        plan.set(observedGeneration=job.generation)
    _decide(plan)
    return plan.finish()


def invalid_spec_action(status: Mapping[str, Any], error: SpecError, observed: Observed) -> Action:
    """An OLMoJob that cannot run: phase Failed with the reason; its running children go."""
    message = f"invalid spec: {error}"
    deletes: list[ObjectRef] = []
    objs = [
        *with_kind(observed.jobs, "batch/v1", "Job"),
        *with_kind(observed.pods, "v1", "Pod"),
        *with_kind(observed.services, "v1", "Service"),
        *with_kind(observed.deployments, "apps/v1", "Deployment"),
    ]
    for obj in objs:
        component = _labels(obj).get(c.LABEL_COMPONENT)
        active = not _deleting(obj) and not (obj["kind"] == "Pod" and _pod_done(obj))
        if component in (c.TRAINER, c.DATAPREP, c.EVALWORKER) and active:
            deletes.append(_ref(obj))
    if status.get("phase") == c.FAILED and status.get("message") == message and not deletes:
        return Action(ActionKind.WAIT, message)
    patch: dict[str, Any] = {"phase": c.FAILED, "message": message}
    if not status.get("completionTime"):
        patch["completionTime"] = now_iso(observed.now)
    events = ()
    if status.get("message") != message:
        events = (Event("Warning", "InvalidSpec", message),)
    return Action(ActionKind.FAIL, message, patch, delete=tuple(deletes), events=events)


def _decide(plan: _Plan) -> None:
    spec, old = plan.spec, plan.old
    attempt = int(old.get("attempt") or 0)

    # Objects of attempts other than the current one never stay (a restart ends an attempt).
    plan.remove(plan.kids.not_of_attempt(attempt))

    if plan.phase in c.TERMINAL_PHASES:
        _after_finish(plan, attempt)
        return
    if spec.suspend:
        _suspend(plan, attempt)
        return

    resuming = plan.phase == c.SUSPENDED
    if resuming:
        plan.condition("Suspended", False, "Resumed", "spec.suspend is false")

    needs_data = spec.dataset.prepare is not None and not plan.has_condition("DataPrepared")
    if needs_data and not _prepare_data(plan):
        return

    if attempt == 0:
        _start(plan, 1, counted=True)
        return
    if resuming:
        _start(plan, attempt + 1, counted=True)
        return
    if plan.phase == c.RESTARTING:
        _restart_when_due(plan, attempt)
        return
    if plan.phase == c.PREPARING_DATA:  # data just became ready; the attempt was never started
        _start(plan, attempt, counted=True)
        return
    _watch_attempt(plan, attempt)


def _start(plan: _Plan, attempt: int, *, counted: bool) -> None:
    """Create (or re-create) everything attempt ``attempt`` needs."""
    spec, job = plan.spec, plan.job
    pool_index = int(plan.get("nodePoolIndex", 0))
    if spec.node_pools:
        pool_index = max(0, min(pool_index, len(spec.node_pools) - 1))
        pool = spec.node_pools[pool_index]
        plan.set(nodePoolIndex=pool_index, nodePool=pool.name)
    state = AttemptState(attempt=attempt, node_pool_index=pool_index)
    plan.create.extend(desired_objects(job, state))
    plan.remove(plan.kids.not_of_attempt(attempt))
    where = f" on node pool {spec.node_pools[pool_index].name}" if spec.node_pools else ""
    if spec.queue_name:
        plan.to_phase(
            c.PENDING,
            f"attempt {attempt}{where} queued in Kueue queue {spec.queue_name}",
        )
    else:
        plan.to_phase(c.RUNNING, f"attempt {attempt}{where}: {spec.nodes} node(s)")
    plan.set(attempt=attempt, restartAt=None, failureSeenAt=None)
    if not plan.get("startTime"):
        plan.set(startTime=now_iso(plan.now))
    plan.condition("Running", True, "AttemptStarted", f"attempt {attempt}")
    plan.kind = ActionKind.START_ATTEMPT
    plan.new_attempt = attempt if counted else None
    if not counted:
        plan.message = f"re-creating the missing objects of attempt {attempt}"


def _prepare_data(plan: _Plan) -> bool:
    """Run the data-prep Job; True once the data is ready (then training may start)."""
    dp = plan.kids.dataprep
    workers = plan.spec.dataset.prepare.workers  # type: ignore[union-attr]
    if dp is None:
        plan.create.append(dataprep_job(plan.job))
        plan.to_phase(c.PREPARING_DATA, f"preparing data with {workers} worker(s)")
        plan.kind = ActionKind.PREPARE_DATA
        return False
    if _deleting(dp):
        plan.message = "waiting for the previous data-prep Job to be deleted"
        return False
    if job_succeeded(dp, plan.kids.dataprep_pods):
        plan.condition("DataPrepared", True, "DataPrepCompleted", f"{plan.spec.data_dir}")
        plan.event("Normal", "DataPrepared", f"token shards written to {plan.spec.data_dir}")
        return True
    if job_failed(dp):
        detail = _condition(dp, "Failed").get("message") or "the data-prep Job failed"
        plan.condition("DataPrepared", False, "DataPrepFailed", detail)
        _fail(plan, f"data preparation failed: {detail}")
        return False
    if job_suspended(dp) and plan.spec.queue_name:
        plan.to_phase(c.PREPARING_DATA, f"data-prep queued in Kueue queue {plan.spec.queue_name}")
    else:
        plan.to_phase(c.PREPARING_DATA, f"preparing data with {workers} worker(s)")
    return False


def _watch_attempt(plan: _Plan, attempt: int) -> None:
    current = plan.kids.trainer_job(attempt)
    if current is None:
        _start(plan, attempt, counted=False)
        return
    if _deleting(current):
        plan.message = f"attempt {attempt}'s Job is being deleted"
        return
    pods = plan.kids.attempt_pods(attempt)
    if job_suspended(current):
        # Kueue has not admitted it (or took it back): nothing counts while it waits.
        queue = plan.spec.queue_name or "?"
        plan.to_phase(c.PENDING, f"attempt {attempt} waiting for admission by Kueue ({queue})")
        return
    if job_succeeded(current, pods):
        _succeed(plan, attempt)
        return
    if job_failed(current) or failed_pods(pods):
        _end_attempt(plan, attempt, current, pods)
        return
    if plan.phase != c.RUNNING:
        where = f" on node pool {plan.get('nodePool')}" if plan.spec.node_pools else ""
        plan.to_phase(c.RUNNING, f"attempt {attempt}{where}: {plan.spec.nodes} node(s)")
    if plan.spec.eval.enabled and plan.kids.eval is None:
        plan.create.append(eval_deployment(plan.job))


def _end_attempt(
    plan: _Plan, attempt: int, current: Mapping[str, Any], pods: list[Mapping[str, Any]]
) -> None:
    spec = plan.spec
    failure = classify_failure(current, pods, plan.observed.nodes)
    if failure.cause is not Cause.PREEMPTION and _settling(plan, attempt, failure):
        return
    plan.failure = failure
    restarts = dict(plan.old.get("restarts") or {})
    failures, preemptions = int(restarts.get("failures", 0)), int(restarts.get("preemptions", 0))
    pool_index = int(plan.get("nodePoolIndex", 0))
    pool_preemptions = int(plan.get("nodePoolPreemptions", 0))

    if failure.cause is Cause.PREEMPTION:
        preemptions += 1
        pool_preemptions += 1
        delay = 0.0
        pool = spec.node_pool(pool_index)
        if (
            pool is not None
            and pool.preemptible
            and pool_preemptions >= pool.max_preemptions
            and pool_index < len(spec.node_pools) - 1
        ):
            nxt = spec.node_pools[pool_index + 1]
            plan.event(
                "Warning",
                "NodePoolFallback",
                f"{pool_preemptions} preemption(s) on node pool {pool.name}: "
                f"moving to node pool {nxt.name}",
            )
            pool_index, pool_preemptions = pool_index + 1, 0
            plan.set(nodePool=nxt.name)
        budget = f"preemption {preemptions}; failures {failures}/{spec.max_failures}"
    else:
        failures += 1
        if failures > spec.max_failures:
            plan.set(restarts={"failures": failures, "preemptions": preemptions})
            plan.event(
                "Warning",
                "AttemptFailed",
                f"attempt {attempt}: {failure.message} "
                f"(failure {failures}, more than maxFailures {spec.max_failures})",
            )
            plan.remove(s for s in plan.kids.services if _attempt_of(s) == attempt)
            _fail(
                plan,
                f"attempt {attempt} failed: {failure.message}; "
                f"{failures} failures exceed maxFailures {spec.max_failures}",
            )
            return
        delay = plan.timing.backoff(failures)
        budget = f"failure {failures}/{spec.max_failures}; preemptions {preemptions}"

    nxt_attempt = attempt + 1
    when = "now" if delay <= 0 else f"in {delay:g}s"
    plan.event(
        "Warning",
        "Preempted" if failure.cause is Cause.PREEMPTION else "AttemptFailed",
        f"attempt {attempt}: {failure.message}; restarting from the latest checkpoint as "
        f"attempt {nxt_attempt} {when} ({budget})",
    )
    restart_at = plan.now + dt.timedelta(seconds=delay)
    plan.set(
        attempt=nxt_attempt,
        restarts={"failures": failures, "preemptions": preemptions},
        nodePoolIndex=pool_index,
        nodePoolPreemptions=pool_preemptions,
        restartAt=now_iso(restart_at),
        failureSeenAt=None,
        lastRestart={
            "cause": failure.cause.value,
            "reason": failure.reason,
            "message": failure.message,
            "attempt": attempt,
            "time": now_iso(plan.now),
        },
    )
    if not spec.node_pools:
        plan.set(nodePoolIndex=None, nodePoolPreemptions=None)
    plan.to_phase(
        c.RESTARTING,
        f"attempt {attempt} ended ({failure.cause.value.lower()}: {failure.reason}); "
        f"attempt {nxt_attempt} starts {when}",
    )
    plan.condition("Running", False, failure.cause.value, failure.message)
    # Gang restart: the whole attempt goes (Job, pods, Service, config); the next one gets new
    # names, so nothing waits for the old objects' deletion to finish.
    plan.remove(plan.kids.of_attempt(attempt))
    plan.kind = ActionKind.RESTART


def _settling(plan: _Plan, attempt: int, failure: Any) -> bool:
    """Whether a failure of ``attempt`` is still inside its settle window (``Timing``): then
    nothing is counted yet and the attempt is left as it is."""
    settle = plan.timing.failure_settle_seconds
    if settle <= 0:
        return False
    seen = parse_time(plan.old.get("failureSeenAt"))
    if seen is None:
        seen = plan.now
        plan.set(failureSeenAt=now_iso(seen))
    until = seen + dt.timedelta(seconds=settle)
    if plan.now >= until:
        return False
    plan.message = (
        f"attempt {attempt}: {failure.message}; waiting until {now_iso(until)} for preemption "
        "signals before counting it as a failure"
    )
    return True


def _restart_when_due(plan: _Plan, attempt: int) -> None:
    restart_at = parse_time(plan.old.get("restartAt"))
    if restart_at is not None and plan.now < restart_at:
        plan.message = f"attempt {attempt} starts at {now_iso(restart_at)} (backoff)"
        return
    lingering = [
        p for p in plan.kids.trainer_pods if _attempt_of(p) != attempt and not _pod_done(p)
    ]
    if lingering:
        ended = parse_time((plan.old.get("lastRestart") or {}).get("time")) or plan.now
        limit = ended + dt.timedelta(
            seconds=plan.spec.termination_grace_period_seconds
            + plan.timing.termination_wait_seconds
        )
        if plan.now < limit:
            plan.message = (
                f"waiting for {len(lingering)} pod(s) of the previous attempt to stop "
                f"(until {now_iso(limit)})"
            )
            return
    _start(plan, attempt, counted=True)


def _succeed(plan: _Plan, attempt: int) -> None:
    step = plan.get("step")
    plan.to_phase(
        c.SUCCEEDED,
        f"attempt {attempt} completed" + (f" at step {step}" if step is not None else ""),
    )
    plan.set(completionTime=now_iso(plan.now), restartAt=None)
    plan.condition("Running", False, "Completed", f"attempt {attempt}")
    plan.condition("Complete", True, "TrainerCompleted", f"attempt {attempt}")
    plan.remove(s for s in plan.kids.services if _attempt_of(s) == attempt)
    plan.kind = ActionKind.SUCCEED


def _fail(plan: _Plan, message: str) -> None:
    plan.to_phase(c.FAILED, message)
    plan.set(completionTime=now_iso(plan.now), restartAt=None)
    plan.condition("Running", False, "Failed", message)
    plan.condition("Failed", True, "Failed", message)
    if plan.kids.eval is not None:
        plan.remove([plan.kids.eval])
    plan.kind = ActionKind.FAIL


def _suspend(plan: _Plan, attempt: int) -> None:
    kids = plan.kids
    active: list[Mapping[str, Any]] = [*kids.of_attempt(attempt)]
    if kids.eval is not None:
        active.append(kids.eval)
    if kids.dataprep is not None and not job_succeeded(kids.dataprep, kids.dataprep_pods):
        active += [kids.dataprep, *kids.dataprep_pods]
    plan.remove(active)
    if plan.phase != c.SUSPENDED:
        plan.to_phase(
            c.SUSPENDED,
            "suspended: pods deleted, checkpoints kept; set spec.suspend to false to resume",
        )
        plan.set(restartAt=None)
        plan.condition("Suspended", True, "SpecSuspend", "spec.suspend is true")
        plan.condition("Running", False, "Suspended", "spec.suspend is true")
        plan.kind = ActionKind.SUSPEND
    elif plan.delete:
        plan.kind = ActionKind.SUSPEND


def _final_checkpoint_evaluated(plan: _Plan) -> bool:
    ckpt = plan.get("latestCheckpoint") or {}
    last_eval = plan.get("lastEval") or {}
    if ckpt.get("step") is None:
        return True
    return last_eval.get("step") is not None and last_eval["step"] >= ckpt["step"]


def _after_finish(plan: _Plan, attempt: int) -> None:
    """Succeeded/Failed: tidy up, rotate once after success, honour the TTL."""
    spec, kids = plan.spec, plan.kids
    plan.remove(s for s in kids.services if _attempt_of(s) == attempt)
    if kids.eval is not None and (
        plan.phase == c.FAILED or not spec.eval.enabled or _final_checkpoint_evaluated(plan)
    ):
        plan.remove([kids.eval])

    rotation_running = False
    if plan.phase == c.SUCCEEDED:
        done = (plan.get("finalRotation") or {}).get("phase") in ("Succeeded", "Failed")
        rj = kids.rotation
        if not done and rj is None:
            if not requires_evaluated(spec) or _final_checkpoint_evaluated(plan):
                plan.create.append(rotation_job(plan.job))
                plan.set(finalRotation={"phase": "Running"})
                plan.kind = ActionKind.ROTATE
                plan.message = f"rotating the checkpoints of {spec.run_dir}"
                rotation_running = True
            else:
                plan.message = "waiting for the final checkpoint's evaluation before rotation"
        elif not done and rj is not None and not _deleting(rj):
            summary = _rotation_summary(kids.rotation_pods)
            if job_succeeded(rj, kids.rotation_pods):
                plan.set(
                    finalRotation={
                        "phase": "Succeeded",
                        "message": summary or "rotation Job succeeded",
                        "completionTime": now_iso(plan.now),
                    }
                )
                plan.condition("CheckpointsRotated", True, "RotationSucceeded", summary)
                plan.event("Normal", "CheckpointsRotated", summary or "final rotation done")
            elif job_failed(rj):
                detail = summary or _condition(rj, "Failed").get("message") or "rotation failed"
                plan.set(
                    finalRotation={
                        "phase": "Failed",
                        "message": detail,
                        "completionTime": now_iso(plan.now),
                    }
                )
                plan.condition("CheckpointsRotated", False, "RotationFailed", detail)
                plan.event("Warning", "RotationFailed", detail)
            else:
                rotation_running = True

    ttl = spec.ttl_seconds_after_finished
    finished = parse_time(plan.get("completionTime"))
    if ttl is not None and finished is not None and not rotation_running:
        due = finished + dt.timedelta(seconds=ttl)
        if plan.now >= due:
            plan.delete_job = True
            plan.kind = ActionKind.DELETE
            plan.message = f"ttlSecondsAfterFinished ({ttl}s) passed: deleting the OLMoJob"
            plan.event("Normal", "TTLExpired", plan.message)


def _rotation_summary(pods: list[Mapping[str, Any]]) -> str:
    """The last line of ``olmo-ckpt rotate``'s output (the container's termination message)."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message") or ""
            lines = [line for line in message.strip().splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
    return ""
