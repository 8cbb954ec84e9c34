"""Why did an attempt end? Preemption (free restart) or failure (spends the restart budget).

Strong signals prove a disruption wherever they appear, because nothing the gang does to itself
produces them: a ``DisruptionTarget`` pod condition (scheduler preemption, taint manager, eviction
API, pod GC, kubelet shutdown), a pod reason such as ``Evicted``, a node that is gone or not
Ready, a node tainted for termination (GKE spot/preemptible, AWS node-termination-handler,
cluster autoscaler, Karpenter, out-of-service), or a Job failed by the ``DisruptionTarget`` rule
of its pod failure policy.

Self-inflicted ends come first, before any preemption signal: a container killed for exceeding
its memory limit (``OOMKilled``) or a pod the kubelet evicted for exceeding its own limits
(ephemeral storage, emptyDir size: ``EvictedOverLimit``) is the job's own doing, and restarting
it for free would loop forever — on a spot node as anywhere else. Node-pressure evictions that
do not blame the pod's own limits stay preemptions.

Weak signals count only on the pod that failed first: the trainer's exit code 75 ("preempted,
resumable") and a kill by signal on a spot node. When one rank crashes, the Job controller
stops the other ranks with SIGTERM and they, too, exit 75 — later than the root cause, which is
why the order matters.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from olmo_operator import contract as c


class Cause(enum.StrEnum):
    PREEMPTION = "Preemption"
    FAILURE = "Failure"


@dataclass(frozen=True)
class Failure:
    cause: Cause
    reason: str
    """The deciding signal, CamelCase (``DisruptionTarget``, ``NodeGone``, ``ExitCode1``, ...)."""
    message: str
    pod: str | None = None


PREEMPTED_POD_REASONS = frozenset(
    {"Evicted", "Preempting", "Terminated", "NodeShutdown", "Shutdown", "NodeLost"}
)
"""``pod.status.reason`` values set when the node or the scheduler took the pod away
("Terminated"/"NodeShutdown": graceful node shutdown)."""


@dataclass(frozen=True)
class TerminationSignal:
    """A Node taint by which a cloud (or its handler) announces that the node is going away."""

    key: str
    provider: str
    meaning: str
    imminent: bool = True
    """The node will be taken soon: the operator ends the attempt at once (with
    ``OLMO_FEATURE_TERMINATION_NOTICES``) so that the trainer checkpoints within the notice.
    A hint that is not imminent (an AWS rebalance recommendation) only classifies an attempt
    that ended anyway."""


TERMINATION_SIGNALS: tuple[TerminationSignal, ...] = (
    TerminationSignal(
        "cloud.google.com/impending-node-termination",
        "GKE",
        "spot/preemptible VM termination notice (graceful node shutdown, ~30 s)",
    ),
    TerminationSignal(
        "aws-node-termination-handler/spot-itn",
        "AWS",
        "EC2 spot interruption notice (node-termination-handler, 2 min)",
    ),
    TerminationSignal(
        "aws-node-termination-handler/asg-lifecycle-termination",
        "AWS",
        "Auto Scaling group terminating the instance (node-termination-handler)",
    ),
    TerminationSignal(
        "aws-node-termination-handler/scheduled-maintenance",
        "AWS",
        "EC2 scheduled event: instance stop/retirement (node-termination-handler)",
    ),
    TerminationSignal(
        "aws-node-termination-handler/rebalance-recommendation",
        "AWS",
        "EC2 rebalance recommendation: elevated spot interruption risk",
        imminent=False,
    ),
    TerminationSignal(
        "remediator.kubernetes.azure.com/unschedulable",
        "Azure",
        "AKS node auto-drain: a scheduled event (Preempt of a spot VM, Redeploy)",
    ),
    TerminationSignal(
        "karpenter.sh/disrupted",
        "Karpenter",
        "Karpenter is draining the node (spot interruption, expiry, drift)",
    ),
    TerminationSignal(
        "ToBeDeletedByClusterAutoscaler",
        "cluster-autoscaler",
        "the cluster autoscaler is removing the node",
    ),
)
"""The one table of impending-termination signals on a Node, per cloud. Sources: GKE "graceful
node shutdown" docs; aws-node-termination-handler's taint constants (pkg/node/node.go); AKS
"node auto-drain" docs; Karpenter v1's ``karpenter.sh/disrupted:NoSchedule``; cluster-autoscaler's
scale-down taint."""

TERMINATION_TAINTS = frozenset(
    {
        *(signal.key for signal in TERMINATION_SIGNALS),
        "karpenter.sh/disruption",  # Karpenter before v1
        "node.kubernetes.io/out-of-service",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
        "node.cloudprovider.kubernetes.io/shutdown",
    }
)
"""Node taints that announce the node is going away (or is gone): an attempt that ended on such
a node ended by a preemption."""

SPOT_NODE_LABELS = {
    "cloud.google.com/gke-spot": "true",
    "cloud.google.com/gke-preemptible": "true",
    "kubernetes.azure.com/scalesetpriority": "spot",
    "eks.amazonaws.com/capacityType": "SPOT",
    "karpenter.sh/capacity-type": "spot",
}
"""Labels of spot/preemptible nodes (GKE, AKS, EKS managed node groups, Karpenter)."""

SIGNAL_EXIT_CODES = frozenset({137, 143})  # SIGKILL, SIGTERM


def classify_failure(
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> Failure:
    """Classify an ended attempt from its Job, its pods and what is known of their nodes.

    ``nodes`` maps a node name to the Node object, or to None when the node does not exist any
    more; nodes that could not be read are simply absent.
    """
    nodes = nodes or {}

    # The pod's own limits first: they outrank every preemption signal (a kubelet over-limit
    # eviction also carries DisruptionTarget/Evicted).
    for pod in pods:
        own = _over_own_limits(pod)
        if own is not None:
            return own

    # The Job's own verdict when its pod failure policy fired.
    for cond in _conditions(job):
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            message = cond.get("message") or ""
            if cond.get("reason") == "PodFailurePolicy" and "DisruptionTarget" in message:
                return Failure(Cause.PREEMPTION, "DisruptionTarget", message)

    for pod in pods:
        strong = _strong_signal(pod, nodes)
        if strong is not None:
            return strong

    failed = sorted((p for p in pods if _pod_failed(p)), key=_failure_time)
    if failed:
        first = failed[0]
        name = _name(first)
        code = _trainer_exit_code(first)
        if code == c.EXIT_PREEMPTED:
            return Failure(
                Cause.PREEMPTION,
                f"ExitCode{code}",
                f"pod {name}: trainer exited {code} (preempted, resumable)",
                name,
            )
        node_name = (first.get("spec") or {}).get("nodeName")
        node = nodes.get(node_name) if node_name else None
        if code in SIGNAL_EXIT_CODES and node is not None and _is_spot(node):
            return Failure(
                Cause.PREEMPTION,
                "KilledOnSpotNode",
                f"pod {name}: killed by signal (exit {code}) on spot node {node_name}",
                name,
            )
        detail = _termination_detail(first)
        return Failure(
            Cause.FAILURE,
            f"ExitCode{code}" if code is not None else (first["status"].get("reason") or "Failed"),
            f"pod {name}: {detail}",
            name,
        )

    for cond in _conditions(job):
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            message = cond.get("message") or ""
            if f"exit code {c.EXIT_PREEMPTED}" in message:
                return Failure(Cause.PREEMPTION, f"ExitCode{c.EXIT_PREEMPTED}", message)
            return Failure(
                Cause.FAILURE, cond.get("reason") or "JobFailed", message or "the Job failed"
            )
    return Failure(Cause.FAILURE, "JobFailed", "the attempt ended without a successful Job")


# --------------------------------------------------------------------------------------------
# Pod and node inspection

OVER_LIMIT = re.compile(r"\bexceed(?:s|ed)\b.*\blimit\b", re.IGNORECASE | re.DOTALL)
"""A kubelet eviction message that blames the pod's own limits: "Container trainer exceeded its
local ephemeral storage limit", "Pod ephemeral local storage usage exceeds the total limit of
containers", "Usage of EmptyDir volume "x" exceeds the limit". Node-pressure evictions ("The
node was low on resource: ...") do not match."""


def _over_own_limits(pod: Mapping[str, Any]) -> Failure | None:
    """``OOMKilled`` in any container (current or last state), or an eviction over the pod's own
    limits (pod reason ``Evicted``, or ``DisruptionTarget`` by ``TerminationByKubelet``)."""
    name = _name(pod)
    status = pod.get("status") or {}
    for cs in [
        *(status.get("containerStatuses") or []),
        *(status.get("initContainerStatuses") or []),
    ]:
        for state in (cs.get("state") or {}, cs.get("lastState") or {}):
            terminated = state.get("terminated") or {}
            if terminated.get("reason") == "OOMKilled":
                code = terminated.get("exitCode")
                return Failure(
                    Cause.FAILURE,
                    "OOMKilled",
                    f"pod {name}: container {cs.get('name') or '?'} was OOMKilled "
                    f"(exit {code}): it exceeded its memory limit",
                    name,
                )
    messages = []
    if status.get("reason") == "Evicted":
        messages.append(status.get("message") or "")
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "DisruptionTarget"
            and cond.get("status") == "True"
            and cond.get("reason") == "TerminationByKubelet"
        ):
            messages.append(cond.get("message") or "")
    for message in messages:
        if OVER_LIMIT.search(message):
            return Failure(
                Cause.FAILURE,
                "EvictedOverLimit",
                f"pod {name}: evicted for exceeding its own limits: {message.strip()[-300:]}",
                name,
            )
    return None


def _strong_signal(
    pod: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any] | None]
) -> Failure | None:
    name = _name(pod)
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            reason = cond.get("reason") or "DisruptionTarget"
            return Failure(
                Cause.PREEMPTION,
                "DisruptionTarget",
                f"pod {name}: {reason}" + (f": {cond['message']}" if cond.get("message") else ""),
                name,
            )
    if status.get("reason") in PREEMPTED_POD_REASONS:
        detail = status.get("message") or status["reason"]
        return Failure(Cause.PREEMPTION, status["reason"], f"pod {name}: {detail}", name)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name and node_name in nodes:
        node = nodes[node_name]
        if node is None:
            return Failure(Cause.PREEMPTION, "NodeGone", f"node {node_name} of pod {name} is gone")
        if not _node_ready(node):
            return Failure(
                Cause.PREEMPTION, "NodeNotReady", f"node {node_name} of pod {name} is not Ready"
            )
        taint = _termination_taint(node)
        if taint is not None:
            return Failure(
                Cause.PREEMPTION,
                "NodeTerminating",
                f"node {node_name} of pod {name} has taint {taint}",
                name,
            )
    return None


def _conditions(obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not obj:
        return []
    return list((obj.get("status") or {}).get("conditions") or [])


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "?")


def _pod_failed(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return True
    code = _trainer_exit_code(pod)
    return code is not None and code != 0


def _trainer_state(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("name") == c.TRAINER_CONTAINER:
            return cs
    return statuses[0] if statuses else None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    cs = _trainer_state(pod)
    if cs is None:
        return None
    state = cs.get("state") or {}
    return state.get("terminated") or (cs.get("lastState") or {}).get("terminated")


def _trainer_exit_code(pod: Mapping[str, Any]) -> int | None:
    terminated = _terminated(pod)
    if terminated is None or terminated.get("exitCode") is None:
        return None
    return int(terminated["exitCode"])


def _failure_time(pod: Mapping[str, Any]) -> tuple[str, str]:
    """Sort key: when the pod failed (RFC 3339 strings in UTC sort chronologically)."""
    terminated = _terminated(pod) or {}
    when = terminated.get("finishedAt")
    if not when:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("lastTransitionTime"):
                when = cond["lastTransitionTime"]
    return (when or "9999", _name(pod))


def _termination_detail(pod: Mapping[str, Any]) -> str:
    terminated = _terminated(pod)
    if terminated is None:
        status = pod.get("status") or {}
        return status.get("message") or status.get("reason") or "failed"
    parts = [f"trainer exited {terminated.get('exitCode')}"]
    if terminated.get("reason"):
        parts.append(f"({terminated['reason']})")
    if terminated.get("message"):
        parts.append(f": {str(terminated['message']).strip()[-300:]}")
    return " ".join(parts)


def _node_ready(node: Mapping[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return True  # no Ready condition reported: nothing says it is broken


def _termination_taint(node: Mapping[str, Any]) -> str | None:
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("key") in TERMINATION_TAINTS:
            return str(taint["key"])
    return None


def _is_spot(node: Mapping[str, Any]) -> bool:
    node_labels = (node.get("metadata") or {}).get("labels") or {}
    return any(node_labels.get(k) == v for k, v in SPOT_NODE_LABELS.items())


def failed_pods(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods that failed (phase Failed, or the trainer container exited non-zero)."""
    return [p for p in pods if _pod_failed(p)]


def termination_signal(node: Mapping[str, Any] | None) -> TerminationSignal | None:
    """The imminent termination signal ``node`` carries (:data:`TERMINATION_SIGNALS`), if any."""
    by_key = {signal.key: signal for signal in TERMINATION_SIGNALS if signal.imminent}
    for taint in ((node or {}).get("spec") or {}).get("taints") or []:
        signal = by_key.get(taint.get("key"))
        if signal is not None:
            return signal
    return None


def termination_notice(
    pods: Iterable[Mapping[str, Any]], notices: Mapping[str, Mapping[str, Any]]
) -> Failure | None:
    """A running attempt whose pod sits on a node in ``notices`` (nodes with an impending-
    termination signal) ends now, as a preemption: the verdict, or None."""
    for pod in sorted(pods, key=_name):
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or _pod_failed(pod):
            continue
        signal = termination_signal(notices.get(node_name))
        if signal is not None:
            return Failure(
                Cause.PREEMPTION,
                "TerminationNotice",
                f"node {node_name} of pod {_name(pod)} announced its termination: taint "
                f"{signal.key} ({signal.provider}: {signal.meaning})",
                _name(pod),
            )
    return None
