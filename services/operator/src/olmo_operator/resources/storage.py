"""What the pods of an OLMoJob that uses object storage get (``spec.storage``,
``spec.checkpoint.uri``, ``spec.dataset.uri``).

- Credentials, for every pod that touches storage (trainer, eval worker, data-prep, rotation):
  ``storage.secretRef`` either as environment (``envFrom``: every key of the Secret becomes a
  variable of the same name, e.g. ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) or, with
  ``googleCredentialsKey``, as that one key mounted read-only as a file named by
  ``GOOGLE_APPLICATION_CREDENTIALS``; ``storage.endpoint`` as ``AWS_ENDPOINT_URL``. The
  pods' storage clients read these standard names themselves (``olmo/storage.py``).
- Identity: with ``storage.serviceAccountName`` every pod runs under that ServiceAccount
  (workload identity: GKE's ``iam.gke.io/gcp-service-account`` or EKS's
  ``eks.amazonaws.com/role-arn`` annotation on it), with its API token mounted (EKS's pod
  identity needs a token; the trainer and eval worker report progress with it: :mod:`.rbac`
  binds the progress Role to that account too). Without it, the data-prep and rotation pods
  keep having no identity and no token.
- Scratch, for the trainer and the eval worker when the run directory or the dataset is in
  object storage: one emptyDir (``storage.scratchSizeLimit``) at ``/scratch``, with
  ``OLMO_STAGING_DIR`` (checkpoints written before upload, downloaded before evaluation) and
  ``OLMO_DATA_CACHE_DIR`` (the bounded cache of downloaded token shards) inside it; the
  programs create these folders.

A spec without ``storage`` and with claims only gets none of this: its objects are unchanged.
"""

from __future__ import annotations

import posixpath
from typing import Any

from olmo_operator import contract as c
from olmo_operator.resources.pod import pvc_volume
from olmo_operator.spec import JobSpec

SCRATCH_VOLUME = "scratch"
CREDENTIALS_VOLUME = "storage-credentials"


def _env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def staging_dir() -> str:
    return posixpath.join(c.SCRATCH_MOUNT, "staging")


def data_cache_dir() -> str:
    return posixpath.join(c.SCRATCH_MOUNT, "data-cache")


def storage_env(spec: JobSpec, *, scratch: bool = False) -> list[dict[str, Any]]:
    """The endpoint, the GCP key file's path, and (``scratch``, when the job uses object
    storage) the staging and data-cache folders."""
    storage = spec.storage
    out = []
    if storage.endpoint is not None:
        out.append(_env(c.ENV_S3_ENDPOINT, storage.endpoint))
    secret = storage.secret
    if secret is not None and secret.google_credentials_key is not None:
        path = posixpath.join(c.STORAGE_CREDENTIALS_MOUNT, secret.google_credentials_key)
        out.append(_env(c.ENV_GOOGLE_CREDENTIALS, path))
    if scratch and spec.uses_object_storage:
        out += [
            _env(c.ENV_STAGING_DIR, staging_dir()),
            _env(c.ENV_DATA_CACHE_DIR, data_cache_dir()),
        ]
    return out


def storage_env_from(spec: JobSpec) -> dict[str, Any]:
    """``{"envFrom": ...}`` when the Secret's keys are the environment, else ``{}``."""
    secret = spec.storage.secret
    if secret is None or secret.google_credentials_key is not None:
        return {}
    return {"envFrom": [{"secretRef": {"name": secret.name}}]}


def claim_volumes(spec: JobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): the checkpoint volume and the dataset volume (read-only), each only
    when that use is on a PersistentVolumeClaim rather than in object storage."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if spec.checkpoint.claim_name is not None:
        mounts.append({"name": "checkpoints", "mountPath": c.CHECKPOINTS_MOUNT})
        volumes.append(pvc_volume("checkpoints", spec.checkpoint.claim_name))
    if spec.dataset.claim_name is not None:
        mounts.append({"name": "data", "mountPath": c.DATA_MOUNT, "readOnly": True})
        volumes.append(pvc_volume("data", spec.dataset.claim_name, read_only=True))
    return volumes, mounts


def storage_volumes(
    spec: JobSpec, *, scratch: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): the scratch emptyDir (``scratch``, when the job uses object storage)
    and the GCP key file."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if scratch and spec.uses_object_storage:
        volumes.append(
            {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": spec.storage.scratch_size_limit}}
        )
        mounts.append({"name": SCRATCH_VOLUME, "mountPath": c.SCRATCH_MOUNT})
    secret = spec.storage.secret
    if secret is not None and secret.google_credentials_key is not None:
        key = secret.google_credentials_key
        volumes.append(
            {
                "name": CREDENTIALS_VOLUME,
                "secret": {
                    "secretName": secret.name,
                    "items": [{"key": key, "path": key}],
                    "defaultMode": 0o440,  # owner and group: fsGroup is the images' gid
                },
            }
        )
        mounts.append(
            {"name": CREDENTIALS_VOLUME, "mountPath": c.STORAGE_CREDENTIALS_MOUNT, "readOnly": True}
        )
    return volumes, mounts


def pod_account(spec: JobSpec, default: str | None) -> str | None:
    """The ServiceAccount of a pod: the workload-identity one when given, else ``default``."""
    return spec.storage.service_account_name or default
