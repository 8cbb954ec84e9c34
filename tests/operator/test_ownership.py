"""Whose object a child name holds: this OLMoJob's, a stale one's (an earlier OLMoJob of the
same name), or someone else's; and which listed children a reconcile may see as its own."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.ownership import Claim, claim, own_children


def owner(uid: str, name: str = "run", kind: str = c.KIND) -> dict[str, Any]:
    api_version = c.API_VERSION if kind == c.KIND else "batch/v1"
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


def obj(name: str, *owners: dict[str, Any], job: str | None = "run", uid: str = "") -> dict:
    meta: dict[str, Any] = {"name": name, "uid": uid or f"uid-{name}"}
    if job is not None:
        meta["labels"] = {c.LABEL_JOB: job}
    if owners:
        meta["ownerReferences"] = list(owners)
    return {"metadata": meta}


WANTED = obj("run-a1", owner("new"))


def test_claims() -> None:
    assert claim(obj("run-a1", owner("new")), WANTED) is Claim.OURS
    # A deleted OLMoJob of the same name whose garbage collection has not finished.
    assert claim(obj("run-a1", owner("old")), WANTED) is Claim.STALE
    # Labelled for this OLMoJob and owned by nobody (orphaned).
    assert claim(obj("run-a1"), WANTED) is Claim.STALE
    # Someone else's: no owner and no label, another kind of owner, another OLMoJob.
    assert claim(obj("run-a1", job=None), WANTED) is Claim.FOREIGN
    assert claim(obj("run-a1", owner("x", "app", kind="Deployment")), WANTED) is Claim.FOREIGN
    assert claim(obj("run-a1", owner("x", "other")), WANTED) is Claim.FOREIGN
    # Nothing to compare with (an object created without an owner): as before, ours.
    assert claim(obj("run-a1", job=None), obj("run-a1")) is Claim.OURS


def test_only_own_children_are_seen() -> None:
    ours = obj("run-a2", owner("new"), uid="j-ours")
    stale_job = obj("run-a1", owner("old"), uid="j-stale")
    orphan = obj("run-svc")
    children = {
        "jobs": [ours, stale_job],
        "services": [orphan, obj("run-a2", owner("new"))],
        "pods": [
            obj("run-a2-0", owner("j-ours", "run-a2", kind="Job")),
            obj("run-a1-0", owner("j-stale", "run-a1", kind="Job")),
            # A stale Job of the same name as ours, already gone: its pod still lingers.
            obj("run-a2-0-old", owner("j-gone", "run-a2", kind="Job")),
            # Our own ended attempt's pod, its Job already deleted: still seen (it may run).
            obj("run-a0-0", owner("j-deleted", "run-a0", kind="Job")),
        ],
    }
    seen = own_children(children, "new")
    names = {key: [o["metadata"]["name"] for o in items] for key, items in seen.items()}
    assert names == {
        "jobs": ["run-a2"],
        "services": ["run-a2"],
        "pods": ["run-a2-0", "run-a0-0"],
    }
    assert own_children(children, None) == children
