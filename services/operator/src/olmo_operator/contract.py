"""Names shared between the operator, the pods it starts and the people who read its objects.

Everything another component relies on is spelled here once: the custom resource's identity,
the labels on every child object, the paths and environment the pods see, and the progress
reports the trainer and the eval worker write into the ``<job>-progress`` ConfigMap. The trainer side of the
progress contract lives in ``olmo/progress.py`` (torch-free, standard library only); a test keeps
the two in agreement.
"""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# The custom resource

GROUP = "olmo-k8s.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "OLMoJob"
PLURAL = "olmojobs"
SINGULAR = "olmojob"
SHORT_NAMES = ("olmo",)
CATEGORIES = ("olmo-k8s",)

MAX_NAME_LENGTH = 42
"""Longest OLMoJob name: children are named ``<job>-a<attempt>`` and their pods
``<job>-a<attempt>-<index>``, which must stay DNS labels (63 characters)."""
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""OLMoJob names are DNS-1035 labels, because the headless Service takes its name from them."""

PRESETS = ("tiny", "1b", "7b", "65b")
"""Model presets with a config file at ``/app/configs/<preset>.yaml`` in the trainer image."""

# --------------------------------------------------------------------------------------------
# Phases, components, causes

PENDING = "Pending"
PREPARING_DATA = "PreparingData"
RUNNING = "Running"
RESTARTING = "Restarting"
SUSPENDED = "Suspended"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
PHASES = (PENDING, PREPARING_DATA, RUNNING, RESTARTING, SUSPENDED, SUCCEEDED, FAILED)
TERMINAL_PHASES = (SUCCEEDED, FAILED)

TRAINER = "trainer"
DATAPREP = "dataprep"
EVALWORKER = "evalworker"
ROTATION = "rotation"
COMPONENTS = (TRAINER, DATAPREP, EVALWORKER, ROTATION)

# --------------------------------------------------------------------------------------------
# Labels and annotations on every child object

LABEL_JOB = f"{GROUP}/job"
"""The owning OLMoJob's name."""
LABEL_ATTEMPT = f"{GROUP}/attempt"
"""The attempt number (trainer Job, Service, pods, config)."""
LABEL_COMPONENT = f"{GROUP}/component"
"""One of ``COMPONENTS``."""
ANNOTATION_NODE_POOL = f"{GROUP}/node-pool"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MANAGED_BY = "olmo-operator"
APP_NAME = "olmo"
PART_OF = "olmo-k8s"

# --------------------------------------------------------------------------------------------
# What the pods see

TRAINER_CONTAINER = "trainer"
RENDEZVOUS_PORT = 29500
CHECKPOINTS_MOUNT = "/checkpoints"
DATA_MOUNT = "/data"
CONFIG_MOUNT = "/etc/olmo"
CONFIG_FILE = "config.yaml"
IMAGE_CONFIGS_DIR = "/app/configs"
PIPELINE_MOUNT = "/config"
PIPELINE_FILE = "pipeline.yaml"
SHM_MOUNT = "/dev/shm"

IMAGE_UID = 10001
"""The images' user and group (``USER 10001:10001`` in ``docker/*.Dockerfile``): every pod runs
as this uid and gid, and its volumes get it as ``fsGroup``."""
IMAGE_HOME = "/home/olmo"
"""The images' ``HOME``. Every pod mounts an emptyDir here: the root filesystem is read-only."""
TMP_MOUNT = "/tmp"
"""Every pod mounts an emptyDir here (``TMPDIR``)."""

WRITABLE_ENV: tuple[tuple[str, str], ...] = (
    ("HOME", IMAGE_HOME),
    ("TMPDIR", TMP_MOUNT),
    ("XDG_CACHE_HOME", f"{IMAGE_HOME}/.cache"),
    ("XDG_CONFIG_HOME", f"{IMAGE_HOME}/.config"),
    ("XDG_DATA_HOME", f"{IMAGE_HOME}/.local/share"),
    ("HF_HOME", f"{IMAGE_HOME}/.cache/huggingface"),
    ("TRITON_CACHE_DIR", f"{IMAGE_HOME}/.triton/cache"),
    ("CUDA_CACHE_PATH", f"{IMAGE_HOME}/.nv/ComputeCache"),
    ("MPLCONFIGDIR", f"{IMAGE_HOME}/.config/matplotlib"),
    ("WANDB_CACHE_DIR", f"{IMAGE_HOME}/.cache/wandb"),
    ("WANDB_CONFIG_DIR", f"{IMAGE_HOME}/.config/wandb"),
    ("WANDB_DATA_DIR", f"{IMAGE_HOME}/.local/share/wandb"),
)
"""Environment of every container the operator creates: each folder a library writes by default
(caches, config, JIT builds: the XDG folders, Hugging Face, Triton, the CUDA JIT cache,
matplotlib, W&B) is inside ``IMAGE_HOME`` or ``TMP_MOUNT``, the only writable places besides the
pod's volumes.

Left to the image on purpose: ``TORCH_EXTENSIONS_DIR`` (torch's C++ extensions, DeepSpeed's
JIT-built ops), which defaults to ``$XDG_CACHE_HOME/torch_extensions`` — inside ``IMAGE_HOME``
— and which an image with prebuilt ops sets to where they are (overriding it would make every
pod build them again: a minute or two of g++); ``OLMO_CACHE_DIR``, where the data-prep image
bakes its tokenizer (unset, it is under ``~/.cache``)."""

TORCH_EXTENSIONS_DEFAULT = f"{IMAGE_HOME}/.cache/torch_extensions"
"""Where torch builds C++ extensions in a pod whose image does not set ``TORCH_EXTENSIONS_DIR``
(``$XDG_CACHE_HOME/torch_extensions``)."""

ENV_JOB_NAME = "OLMOJOB_NAME"
ENV_JOB_NAMESPACE = "OLMOJOB_NAMESPACE"
ENV_ATTEMPT = "OLMOJOB_ATTEMPT"
ENV_JOB_UID = "OLMOJOB_UID"
"""The OLMoJob's uid, for the trainer's run-directory fence (``olmo/checkpoints/fence.py``):
attempt numbers restart when a job is re-created, so the fence orders attempts per uid."""
ENV_GRACE = "OLMO_TERMINATION_GRACE_SECONDS"
ENV_WANDB_KEY = "WANDB_API_KEY"

# Object storage (spec.checkpoint.uri, spec.dataset.uri, spec.storage)
SCRATCH_MOUNT = "/scratch"
"""An emptyDir (``spec.storage.scratchSizeLimit``) of the trainer and eval pods that use object
storage, mounted twice: ``staging`` and ``data-cache`` sub-folders (created by the kubelet)."""
SCRATCH_SIZE_DEFAULT = "100Gi"
ENV_STAGING_DIR = "OLMO_STAGING_DIR"
"""Where the trainer writes a checkpoint before uploading it, the eval worker downloads one."""
ENV_DATA_CACHE_DIR = "OLMO_DATA_CACHE_DIR"
"""The bounded local cache of token shards downloaded from a store."""
ENV_S3_ENDPOINT = "AWS_ENDPOINT_URL"
ENV_GOOGLE_CREDENTIALS = "GOOGLE_APPLICATION_CREDENTIALS"
STORAGE_CREDENTIALS_MOUNT = "/var/run/secrets/olmo-k8s.io/storage"
"""Where ``spec.storage.secretRef.googleCredentialsKey`` is mounted (a file named after it)."""

ENV_PREFLIGHT_TIMEOUT = "OLMO_PREFLIGHT_TIMEOUT_SECONDS"
"""The trainer runs its preflight (``olmo/train/preflight.py``) with this time limit (absent or 0:
none)."""
ENV_COLLECTIVE_TIMEOUT = "OLMO_COLLECTIVE_TIMEOUT_SECONDS"
"""The trainer's process-group timeout: a rank blocked in a collective this long fails."""
ENV_NODE_NAME = "OLMO_NODE_NAME"
"""The pod's node (``spec.nodeName``), which the preflight names when a check fails there."""
COLLECTIVE_TIMEOUT_MARGIN_SECONDS = 60
"""The collective timeout is ``hangTimeoutSeconds`` plus this: the operator, which sees every
rank, declares the hang first; the trainer's timeout ends a rank whose operator is away."""

EXIT_PREEMPTED = 75
"""The trainer's "preempted, resumable" exit code (``olmo/train/exit_codes.py``: PREEMPTED)."""

# --------------------------------------------------------------------------------------------
# The progress contract: the pods report into a ConfigMap the operator owns and validates.
#
# The operator creates ``<job>-progress`` (a ConfigMap with the job's labels and owner, no
# attempt label: it outlives restarts) and gives the pods a Role that may only get/patch that
# one ConfigMap — nothing on the OLMoJob. Each writer owns one data key holding one JSON
# document (its whole state, newest wins), so a merge patch by one never touches the other's:
#   data.trainer (rank 0): {"attempt": A, "step": S, "tokens": T,
#                           "latestCheckpoint": {"step": S, "path": P, "time": ISO},
#                           "rotation": {"deleted": [P, ...], "time": ISO},
#                           "upload": {"step": S, "seconds": F, "bytes": B, "files": N,
#                                      "time": ISO},   (run directory on an object store)
#                           "checkpointBlockedSeconds": F,  (idem: a save's stall)
#                           "resume": {"step": S, "path": P,
#                                      "skipped": [{"path": P, "reason": R}, ...]},
#                           "state": "starting"|"preflight"|"training"|"saving"|"evaluating",
#                           "stateSince": ISO,   (state changes are reported at once)
#                           "stepSeconds": F, "tokensPerSecond": F, "mfu": F,  (recent steps)
#                           "saveSeconds": F,    (how long the latest save stopped training)
#                           "preflight": {"passed": B, "seconds": F, "time": ISO,
#                                         "failures": [{"node": N, "nodeRank": K,
#                                                       "check": C, "message": M}, ...]},
#                           "updated": ISO}
#   (latestCheckpoint may also carry "tokens": T)
#   data.eval (eval worker): {"lastEval": {"step": S, "headline": {task: accuracy}, "time": ISO},
#                             "lastEvalFailure": {"step": S, "message": M, "time": ISO},
#                             "updated": ISO}
# The operator validates each document (olmo_operator.progress_validation), mirrors the
# validated fields into the top-level status and turns changes into Events; ``status.progress``
# is its own record of what it accepted and rejected (never written by the pods).

STATUS_PROGRESS = "progress"
PROGRESS_TRAINER = "trainer"
PROGRESS_EVAL = "eval"
PROGRESS_SOURCES = (PROGRESS_TRAINER, PROGRESS_EVAL)
PROGRESS_REJECTED = "rejected"
PROGRESS_ATTEMPT = "attempt"
PROGRESS_STEP = "step"
PROGRESS_TOKENS = "tokens"
PROGRESS_LATEST_CHECKPOINT = "latestCheckpoint"
PROGRESS_ROTATION = "rotation"
PROGRESS_RESUME = "resume"
PROGRESS_UPLOAD = "upload"
PROGRESS_BLOCKED = "checkpointBlockedSeconds"
UPLOAD_STEP = "step"
UPLOAD_SECONDS = "seconds"
UPLOAD_BYTES = "bytes"
UPLOAD_FILES = "files"
UPLOAD_TIME = "time"
PROGRESS_STATE = "state"
PROGRESS_STATE_SINCE = "stateSince"
TRAINER_STATES = ("starting", "preflight", "training", "saving", "evaluating")
"""What the trainer reports it is doing (``state``); ``goodput`` charges time by it."""
PROGRESS_STEP_SECONDS = "stepSeconds"
PROGRESS_TOKENS_PER_SECOND = "tokensPerSecond"
PROGRESS_MFU = "mfu"
PROGRESS_SAVE_SECONDS = "saveSeconds"
PROGRESS_PREFLIGHT = "preflight"
PREFLIGHT_PASSED = "passed"
PREFLIGHT_SECONDS = "seconds"
PREFLIGHT_TIME = "time"
PREFLIGHT_FAILURES = "failures"
PREFLIGHT_NODE = "node"
PREFLIGHT_NODE_RANK = "nodeRank"
PREFLIGHT_CHECK = "check"
PREFLIGHT_MESSAGE = "message"
PREFLIGHT_CHECKS = ("device", "collective", "storage")
CHECKPOINT_TOKENS = "tokens"
PROGRESS_LAST_EVAL = "lastEval"
PROGRESS_LAST_EVAL_FAILURE = "lastEvalFailure"
PROGRESS_UPDATED = "updated"
CHECKPOINT_STEP = "step"
CHECKPOINT_PATH = "path"
CHECKPOINT_TIME = "time"
ROTATION_DELETED = "deleted"
ROTATION_TIME = "time"
RESUME_STEP = "step"
RESUME_PATH = "path"
RESUME_SKIPPED = "skipped"
SKIPPED_PATH = "path"
SKIPPED_REASON = "reason"
EVAL_STEP = "step"
EVAL_HEADLINE = "headline"
EVAL_TIME = "time"
EVAL_FAILURE_STEP = "step"
EVAL_FAILURE_MESSAGE = "message"
EVAL_FAILURE_TIME = "time"

# --------------------------------------------------------------------------------------------
# Operator configuration (environment)

ENV_RECONCILE_SECONDS = "OLMO_OPERATOR_RECONCILE_SECONDS"
ENV_BACKOFF_BASE = "OLMO_OPERATOR_BACKOFF_BASE_SECONDS"
ENV_BACKOFF_MAX = "OLMO_OPERATOR_BACKOFF_MAX_SECONDS"
ENV_NAMESPACES = "OLMO_OPERATOR_NAMESPACES"
ENV_STOP_WAIT = "OLMO_OPERATOR_TERMINATION_WAIT_SECONDS"
ENV_FAILURE_SETTLE = "OLMO_OPERATOR_FAILURE_SETTLE_SECONDS"
ENV_PREEMPTION_BACKOFF_BASE = "OLMO_OPERATOR_PREEMPTION_BACKOFF_BASE_SECONDS"
ENV_PREEMPTION_BACKOFF_MAX = "OLMO_OPERATOR_PREEMPTION_BACKOFF_MAX_SECONDS"
ENV_POLICY = "OLMO_OPERATOR_POLICY"
"""The operator policy, JSON (``olmo_operator.policy``): what an OLMoJob may ask for."""
ENV_NETWORK_POLICY = "OLMO_OPERATOR_NETWORK_POLICY"
"""``true``: each OLMoJob gets a NetworkPolicy that admits its trainer pods' traffic only from
the same job's trainer pods (``olmo_operator.resources.network_policy``)."""

# --------------------------------------------------------------------------------------------
# Node capacity: feature switches (set by the chart) and the external APIs' names

ENV_FEATURE_PROVISIONING = "OLMO_FEATURE_PROVISIONING"
"""``true``: pools may set ``provisioning`` (cluster-autoscaler ProvisioningRequests; chart value
``operator.provisioning.enabled``)."""
ENV_FEATURE_KARPENTER = "OLMO_FEATURE_KARPENTER"
"""``true``: pools may be ``managed: karpenter`` (operator-owned Karpenter NodePools; chart value
``operator.karpenter.enabled``)."""
ENV_FEATURE_TERMINATION_NOTICES = "OLMO_FEATURE_TERMINATION_NOTICES"
"""``true``: the operator watches Nodes for impending-termination signals and ends the attempt
on them at once (chart value ``operator.terminationNotices.enabled``)."""
CHART_PROVISIONING = "operator.provisioning.enabled"
CHART_KARPENTER = "operator.karpenter.enabled"
CHART_TERMINATION_NOTICES = "operator.terminationNotices.enabled"

PROVISIONING_API_VERSION = "autoscaling.x-k8s.io/v1"
PROVISIONING_GROUP, PROVISIONING_VERSION, PROVISIONING_PLURAL = (
    "autoscaling.x-k8s.io",
    "v1",
    "provisioningrequests",
)
ANNOTATION_CONSUME_PROVISIONING = "autoscaling.x-k8s.io/consume-provisioning-request"
"""On a pod: the ProvisioningRequest whose capacity it consumes (cluster-autoscaler, Kueue)."""
ANNOTATION_PROVISIONING_CLASS = "autoscaling.x-k8s.io/provisioning-class-name"

KARPENTER_API_VERSION = "karpenter.sh/v1"
KARPENTER_GROUP, KARPENTER_VERSION, KARPENTER_PLURAL = "karpenter.sh", "v1", "nodepools"
KARPENTER_NODEPOOL_LABEL = "karpenter.sh/nodepool"
"""Karpenter labels every node with the NodePool that launched it."""
KARPENTER_CAPACITY_TYPE = "karpenter.sh/capacity-type"
KARPENTER_DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
ZONE_LABEL = "topology.kubernetes.io/zone"
LABEL_JOB_NAMESPACE = f"{GROUP}/job-namespace"
"""On a cluster-scoped object (a NodePool): the owning OLMoJob's namespace."""
LABEL_JOB_UID = f"{GROUP}/job-uid"
"""On a cluster-scoped object: the owning OLMoJob's uid (it cannot have a namespaced owner)."""
TAINT_JOB = f"{GROUP}/job"
"""The NoSchedule taint of an operator-owned NodePool's nodes; its value names the OLMoJob and
only that job's trainer pods tolerate it."""
NODEPOOL = "nodepool"
