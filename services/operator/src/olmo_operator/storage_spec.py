"""The object-storage parts of the OLMoJob spec: the URI of a bucket prefix
(``spec.checkpoint.uri``, ``spec.dataset.uri``) and ``spec.storage`` (credentials, endpoint,
workload identity, local scratch), declared like the rest of :mod:`olmo_operator.spec`: typed
fields whose :func:`~olmo_operator.typed_schema.prop` metadata is both the CRD schema and the
parser. What the pods get from them is in :mod:`olmo_operator.resources.storage`.
"""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator import openapi
from olmo_operator.typed_schema import Pattern, prop, spec_type

# An object-store location: s3:// or gs://, a bucket name (lowercase letters, digits, '.', '-',
# '_'; 3 to 222 characters, starting and ending with a letter or digit), then an optional prefix
# of non-empty segments (no "//", no trailing "/", no "." or ".." segment).
OBJECT_URI = Pattern(
    r"^(s3|gs)://[a-z0-9][-a-z0-9._]{1,220}[a-z0-9](/[^/\s]+)*$",
    must="be an object-store URI s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX] (a lowercase "
    "bucket name of 3 to 222 characters, no empty segment, no trailing '/')",
    also=lambda uri: not {".", ".."} & set(uri.split("://", 1)[-1].split("/")[1:]),
)
ENDPOINT = Pattern(
    r"^https?://[^/\s]+(/[^\s]*)?$",
    must="be an http:// or https:// URL (an S3-compatible endpoint)",
)
DNS_SUBDOMAIN = Pattern(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    must="be a valid ServiceAccount name (lowercase DNS subdomain)",
)
QUANTITY = Pattern(openapi.QUANTITY["pattern"], must="be a quantity such as 100Gi")


@spec_type
class StorageSecret:
    """A Secret with the object-storage credentials (same namespace)."""

    name: str = prop("name", "Secret name.", required=True, min_length=1)
    google_credentials_key: str | None = prop(
        "googleCredentialsKey",
        "The key holding a GCP service-account key file (JSON): only that key is mounted, as a "
        f"file named by env {c.ENV_GOOGLE_CREDENTIALS}. Without it every key of the Secret "
        "becomes an environment variable of the same name (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, ...).",
        min_length=1,
        pattern=Pattern(r"^[-._a-zA-Z0-9]+$", must="be a valid Secret key"),
    )


@spec_type
class Storage:
    """Object storage: credentials and endpoint of every pod, the local scratch of pods that
    use checkpoint.uri or dataset.uri."""

    secret: StorageSecret | None = prop(
        "secretRef",
        "Credentials from a Secret, given to every pod (trainer, eval worker, data-prep, "
        "rotation).",
    )
    endpoint: str | None = prop(
        "endpoint",
        f"S3-compatible endpoint (MinIO, Ceph, R2, ...), env {c.ENV_S3_ENDPOINT} of every pod.",
        pattern=ENDPOINT,
    )
    service_account_name: str | None = prop(
        "serviceAccountName",
        "Workload identity: every pod runs under this ServiceAccount (annotated with "
        "iam.gke.io/gcp-service-account on GKE, eks.amazonaws.com/role-arn on EKS); the "
        "operator also lets it report progress.",
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    scratch_size_limit: str = prop(
        "scratchSizeLimit",
        f"sizeLimit of the emptyDir of trainer and eval pods that use object storage: "
        f"checkpoints staged before upload or after download ({c.ENV_STAGING_DIR}) and cached "
        f"token shards ({c.ENV_DATA_CACHE_DIR}). Counts against the node's ephemeral storage.",
        default=c.SCRATCH_SIZE_DEFAULT,
        pattern=QUANTITY,
    )
