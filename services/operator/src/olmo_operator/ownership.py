"""Whose object is it: the OLMoJob's, a stale one's, or someone else's.

Children have deterministic names (``<job>-a<attempt>``, ``<job>-eval``, ...), so a name can be
taken when the operator creates it. The owner reference decides what that object is:

- **ours**: its owner references hold this OLMoJob's UID (an earlier reconcile created it);
- **stale**: it belongs to an earlier OLMoJob of the same name (owned by an OLMoJob of this name
  with another UID, whose garbage collection has not finished; or labelled for this OLMoJob
  and owned by nobody, i.e. orphaned). It is deleted and created anew, never adopted: its
  spec, status and pods are the old run's;
- **foreign**: anything else (owned by another object, or neither owned nor labelled by this
  OLMoJob). It is never deleted: the operator cannot know what it is for.

The same rule filters what a reconcile sees (:func:`own_children`), so a stale Job or its pods
never count as the current attempt's (their failures are not this job's failures).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

from olmo_operator import contract as c


class Claim(enum.Enum):
    OURS = "ours"
    STALE = "stale"
    FOREIGN = "foreign"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _refs(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(_meta(obj).get("ownerReferences") or [])


def olmojob_refs(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The owner references of ``obj`` that point at an OLMoJob (any version of the group)."""
    return [
        r
        for r in _refs(obj)
        if r.get("kind") == c.KIND and str(r.get("apiVersion", "")).split("/")[0] == c.GROUP
    ]


def owner_uid(obj: Mapping[str, Any]) -> str | None:
    """The UID of the OLMoJob that ``obj`` (an object the operator is about to create) names as
    its owner; None when it names none."""
    refs = olmojob_refs(obj)
    return refs[0].get("uid") if refs else None


def claim(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> Claim:
    """What ``existing`` (an object holding ``wanted``'s name) is to the OLMoJob that owns
    ``wanted``. Without an owner UID on ``wanted`` there is nothing to compare: ours."""
    uid = owner_uid(wanted)
    if uid is None:
        return Claim.OURS
    refs = olmojob_refs(existing)
    if any(r.get("uid") == uid for r in refs):
        return Claim.OURS
    job = ((_meta(wanted).get("labels") or {}).get(c.LABEL_JOB)) or next(
        (r.get("name") for r in olmojob_refs(wanted)), None
    )
    if any(r.get("name") == job for r in refs):
        return Claim.STALE
    labelled = (_meta(existing).get("labels") or {}).get(c.LABEL_JOB) == job
    if labelled and not _refs(existing):
        return Claim.STALE
    return Claim.FOREIGN


def describe_owners(obj: Mapping[str, Any]) -> str:
    """``kind/name`` of each owner, or ``no owner`` (for messages)."""
    refs = _refs(obj)
    if not refs:
        return "no owner"
    return ", ".join(f"{r.get('kind')}/{r.get('name')} (uid {r.get('uid')})" for r in refs)


def own_children(
    children: Mapping[str, Iterable[Mapping[str, Any]]], uid: str | None
) -> dict[str, list[Mapping[str, Any]]]:
    """The labelled children that belong to the OLMoJob with ``uid``.

    Objects the OLMoJob creates (Jobs, Services, ConfigMaps, Deployments) must be owned by it:
    one owned by another OLMoJob, or by nobody, is left out (stale; its name is reclaimed when
    the operator creates it). Pods are owned by their Job: a pod is left out when its Job was
    left out, or when a Job of that name exists with another UID (the pod of a stale Job that
    is gone). Pods whose Job is gone altogether stay (an ended attempt's pods still stopping).
    Without a ``uid`` (an object not stored yet) nothing is filtered.
    """
    if not uid:
        return {key: list(items) for key, items in children.items()}
    out: dict[str, list[Mapping[str, Any]]] = {}
    dropped: set[str] = set()
    for key, items in children.items():
        if key == "pods":
            continue
        kept = []
        for obj in items:
            if any(r.get("uid") == uid for r in olmojob_refs(obj)):
                kept.append(obj)
            elif _meta(obj).get("uid"):
                dropped.add(_meta(obj)["uid"])
        out[key] = kept
    job_uids = {_meta(j).get("name"): _meta(j).get("uid") for j in out.get("jobs", [])}
    pods = []
    for pod in children.get("pods", ()):
        owner = next((r for r in _refs(pod) if r.get("kind") == "Job"), None)
        if owner is not None:
            if owner.get("uid") in dropped:
                continue
            known = job_uids.get(owner.get("name"))
            if known is not None and known != owner.get("uid"):
                continue
        pods.append(pod)
    if "pods" in children:
        out["pods"] = pods
    return out
