"""The identity of the pods that report progress: a ServiceAccount whose Role may only get and
patch this OLMoJob's status (the trainer's and the eval worker's progress reports)."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.resources.metadata import metadata
from olmo_operator.resources.names import progress_account_name
from olmo_operator.spec import OLMoJob


def progress_rbac(job: OLMoJob) -> list[dict[str, Any]]:
    """ServiceAccount + Role (get/patch this OLMoJob's status only) + RoleBinding."""
    name = progress_account_name(job.name)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(job, name, c.TRAINER),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(job, name, c.TRAINER),
            "rules": [
                {
                    "apiGroups": [c.GROUP],
                    "resources": [f"{c.PLURAL}/status"],
                    "resourceNames": [job.name],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(job, name, c.TRAINER),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": job.namespace}],
        },
    ]
