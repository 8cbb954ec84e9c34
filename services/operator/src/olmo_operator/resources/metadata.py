"""Labels and ownership of every child: the standard ``app.kubernetes.io/*`` labels plus the
operator's own (``olmo-k8s.io/job``, ``component``, ``attempt``), by which the operator lists
and sorts its children, and the OLMoJob as controller owner, so that deleting the OLMoJob
deletes everything it made."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.spec import OLMoJob


def labels(job: str, component: str, attempt: int | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": c.APP_NAME,
        "app.kubernetes.io/instance": job,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": c.PART_OF,
        "app.kubernetes.io/managed-by": c.MANAGED_BY,
        c.LABEL_JOB: job,
        c.LABEL_COMPONENT: component,
    }
    if attempt is not None:
        out[c.LABEL_ATTEMPT] = str(attempt)
    return out


def selector(job: str, component: str, attempt: int | None = None) -> dict[str, str]:
    out = {c.LABEL_JOB: job, c.LABEL_COMPONENT: component}
    if attempt is not None:
        out[c.LABEL_ATTEMPT] = str(attempt)
    return out


def owner_references(job: OLMoJob) -> list[dict[str, Any]]:
    """The OLMoJob as controller owner (omitted when the object has no uid yet)."""
    if not job.uid:
        return []
    return [
        {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND,
            "name": job.name,
            "uid": job.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def metadata(
    job: OLMoJob, name: str, component: str, attempt: int | None = None, **extra: Any
) -> dict[str, Any]:
    """``metadata`` of a child: name, namespace, labels, owner, then ``extra`` fields."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": job.namespace,
        "labels": labels(job.name, component, attempt),
    }
    refs = owner_references(job)
    if refs:
        meta["ownerReferences"] = refs
    meta.update(extra)
    return meta
