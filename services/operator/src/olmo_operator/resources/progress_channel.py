"""The ConfigMap the pods report progress into: ``<job>-progress``.

One per OLMoJob, with the job's labels (component ``trainer``) and owner reference but no
attempt label, so that restarts keep it (objects of other attempts are deleted) and deleting
the OLMoJob collects it. It is created empty; the trainer (rank 0) writes its ``trainer`` data
key and the eval worker its ``eval`` key, each one JSON document, and the operator reads and
validates both on every reconcile (``olmo_operator.progress``). The pods' Role
(:mod:`.rbac`) allows get/patch on this one ConfigMap and nothing else.
"""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.resources.metadata import metadata
from olmo_operator.resources.names import progress_account_name
from olmo_operator.spec import OLMoJob


def progress_config_map_name(job: str) -> str:
    """The same name as the progress ServiceAccount and Role (another kind): ``<job>-progress``
    (``olmo.progress.config_map_name`` on the pods' side)."""
    return progress_account_name(job)


def progress_config_map(job: OLMoJob) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(job, progress_config_map_name(job.name), c.TRAINER),
        "data": {},
    }
