"""The identity of the pods that report progress: a ServiceAccount whose Role may only get and
patch the job's progress ConfigMap (:mod:`.progress_channel`), and nothing on the OLMoJob.

Kubernetes RBAC cannot limit a patch of ``olmojobs/status`` to one field: a pod allowed to
report progress there could rewrite ``status.restarts`` or ``status.phase`` (reset its failure
count, declare itself Succeeded). So the pods write a ConfigMap the operator owns and
validates, and only the operator writes the status."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.resources.metadata import metadata
from olmo_operator.resources.names import progress_account_name
from olmo_operator.resources.progress_channel import progress_config_map_name
from olmo_operator.spec import OLMoJob


def _accounts(job: OLMoJob) -> list[str]:
    """The progress ServiceAccount, and the workload-identity one the pods run under when
    ``spec.storage.serviceAccountName`` is set (so that they can still report progress)."""
    out = [progress_account_name(job.name)]
    storage_account = job.spec.storage.service_account_name
    if storage_account is not None and storage_account not in out:
        out.append(storage_account)
    return out


def progress_rbac(job: OLMoJob) -> list[dict[str, Any]]:
    """ServiceAccount + Role (get/patch of ``<job>-progress`` only) + RoleBinding (of the
    progress ServiceAccount and, with workload identity, the pods' own)."""
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
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [progress_config_map_name(job.name)],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(job, name, c.TRAINER),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {"kind": "ServiceAccount", "name": account, "namespace": job.namespace}
                for account in _accounts(job)
            ],
        },
    ]
