"""The OLMoJob spec, declared once: typed fields whose metadata is the CRD's schema.

Each field says its JSON name, description, bounds, enum, pattern and default in one
:func:`~olmo_operator.typed_schema.prop`; :mod:`olmo_operator.crd` writes the OpenAPI schema from
these classes, and :func:`parse_job` reads an object with the same metadata (defaults where a
field is absent, the schema's checks again for objects that skipped admission). Only the rules
that span fields are written by hand, in :func:`parse_spec`. A :class:`SpecError` names the
field, and the operator turns it into phase Failed with that message. The object-storage parts
(``checkpoint.uri``/``dataset.uri``'s pattern, ``spec.storage``) are declared the same way in
:mod:`olmo_operator.storage_spec`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from olmo_operator import contract as c
from olmo_operator import openapi
from olmo_operator.pool_spec import NodePool, pool_problems
from olmo_operator.spec_options import AdaptiveInterval, Eval, Preflight, WandB
from olmo_operator.storage_spec import OBJECT_URI, Storage
from olmo_operator.typed_schema import Pattern, SpecError, parse, prop
from olmo_operator.typed_schema import spec_type as spec_type

# A relative path inside a volume: no leading slash, no empty components, no "." or ".."
# component. Kubernetes regular expressions have no lookahead, so a component is spelled out as
# one that starts with a character other than ".", or "." and then another character, or ".."
# and then at least one more.
_PATH_PART = r"([A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)"
RELATIVE_PATH = Pattern(
    rf"^{_PATH_PART}(/{_PATH_PART})*$",
    must="be a relative path inside the volume",
    also=lambda path: not {".", ".."} & set(path.split("/")),
)
LABEL_VALUE = Pattern(
    r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
    must="be a valid label value (alphanumerics, '-', '_' or '.', starting and ending with an "
    "alphanumeric)",
)
OVERRIDE = Pattern(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=.*$", must="look like KEY=VALUE")


def _resources(description: str) -> Any:
    return prop("resources", description, schema=openapi.RESOURCES)


@spec_type
class ConfigRef:
    """A key of a ConfigMap in the OLMoJob's namespace."""

    name: str = prop("name", "ConfigMap name (same namespace).", required=True, min_length=1)
    key: str = prop("key", "Key within the ConfigMap.", default=c.CONFIG_FILE, min_length=1)


@spec_type
class PipelineRef(ConfigRef):
    """A key of a ConfigMap in the OLMoJob's namespace (the pipeline file by default)."""

    key: str = prop("key", "Key within the ConfigMap.", default=c.PIPELINE_FILE, min_length=1)


@spec_type
class SecretName:
    """A Secret in the OLMoJob's namespace."""

    name: str = prop("name", "Secret name.", required=True, min_length=1)


@spec_type
class Model:
    """The model and training config."""

    ONE_OF: ClassVar[tuple[str, ...]] = ("preset", "config", "configMapRef")

    preset: str | None = prop(
        "preset",
        f"A config shipped in the trainer image at {c.IMAGE_CONFIGS_DIR}/<preset>.yaml.",
        enum=c.PRESETS,
    )
    config: str | None = prop(
        "config", "A whole training config (YAML), mounted into the pods as a file.", min_length=1
    )
    config_map: ConfigRef | None = prop(
        "configMapRef", "A training config (YAML) stored in a ConfigMap."
    )


@spec_type
class Prepare:
    """The data-prep pipeline run before training."""

    pipeline: PipelineRef = prop(
        "pipelineConfigMap", "The olmo-dataprep pipeline config.", required=True
    )
    workers: int = prop(
        "workers",
        "Data-prep workers (completions = parallelism of the Indexed Job).",
        minimum=1,
        maximum=1024,
        default=1,
    )
    image: str | None = prop("image", "Data-prep image (default: spec.image).")
    resources: dict[str, Any] = _resources("Resources of each data-prep pod.")


DATASET_PATH_DEFAULT = "tokens"


@spec_type
class Dataset:
    """Token shards on a PersistentVolumeClaim or in object storage."""

    ONE_OF: ClassVar[tuple[str, ...]] = ("claimName", "uri")

    claim_name: str | None = prop(
        "claimName", "PersistentVolumeClaim holding the dataset.", min_length=1
    )
    # None with a uri; with a claim, None only until parse_spec fills in DATASET_PATH_DEFAULT.
    path: str | None = prop(
        "path",
        f"Folder of token shards (with manifest.json) inside the volume (with claimName only; "
        f"default: {DATASET_PATH_DEFAULT}).",
        pattern=RELATIVE_PATH,
    )
    uri: str | None = prop(
        "uri",
        "Or the folder of token shards (with manifest.json) in object storage: "
        "s3://bucket/prefix or gs://bucket/prefix (credentials: spec.storage).",
        pattern=OBJECT_URI,
    )
    prepare: Prepare | None = prop(
        "prepare",
        "Run the data-prep pipeline (an Indexed Job) into the dataset (volume or uri) before "
        "training.",
    )


@spec_type
class Checkpoint:
    """Where checkpoints go and which are kept."""

    ONE_OF: ClassVar[tuple[str, ...]] = ("claimName", "uri")

    claim_name: str | None = prop(
        "claimName", "PersistentVolumeClaim for the run directory.", min_length=1
    )
    uri: str | None = prop(
        "uri",
        "Or object storage for run directories: s3://bucket/prefix or gs://bucket/prefix; the "
        "run directory is <uri>/<path> (credentials: spec.storage).",
        pattern=OBJECT_URI,
    )
    # None only until parse_spec fills in the OLMoJob's name.
    path: str | None = prop(
        "path",
        "Run directory inside the volume, or under uri (default: the OLMoJob's name).",
        pattern=RELATIVE_PATH,
    )
    interval: int = prop("interval", "Save a checkpoint every N steps.", minimum=1, default=1000)
    adaptive: AdaptiveInterval | None = prop(
        "adaptive",
        "Choose each attempt's save interval by Young/Daly, sqrt(2 × save time × mean time "
        "between interruptions on the current pool), from the measured save and step times, "
        "within [minInterval, maxInterval]; interval is used until an interruption was seen "
        "(status.checkpointInterval says which and why).",
    )
    keep_last: int = prop(
        "keepLast",
        "Keep the newest N complete checkpoints (the newest is never deleted).",
        minimum=1,
        default=3,
    )
    keep_every: int | None = prop(
        "keepEvery", "Also keep every checkpoint whose step is a multiple of this.", minimum=1
    )
    require_evaluated: bool = prop(
        "requireEvaluated",
        "Never delete a checkpoint the eval worker has not evaluated (needs eval.enabled).",
        default=False,
    )


@spec_type
class JobSpec:
    """What to train, on which nodes, and how to survive failures."""

    model: Model = prop(
        "model",
        "The model and training config: exactly one of preset, config or configMapRef.",
        required=True,
    )
    dataset: Dataset = prop(
        "dataset",
        f"Token shards: a PersistentVolumeClaim mounted read-only at {c.DATA_MOUNT} (read-write "
        "for data-prep), or a uri in object storage: exactly one of claimName or uri.",
        required=True,
    )
    image: str = prop(
        "image", "Trainer image (torch, DeepSpeed, the olmo package).", required=True, min_length=1
    )
    image_pull_policy: str = prop(
        "imagePullPolicy",
        "Image pull policy of every pod.",
        enum=("Always", "IfNotPresent", "Never"),
        default="IfNotPresent",
    )
    image_pull_secrets: tuple[str, ...] = prop(
        "imagePullSecrets",
        "Secrets (in the OLMoJob's namespace) for pulling the images of every pod from a "
        "private registry.",
        wire=tuple[SecretName, ...],
        convert=lambda refs: tuple(ref.name for ref in refs),
    )
    nodes: int = prop(
        "nodes",
        "Trainer pods (one per node): completions = parallelism of the Indexed Job.",
        minimum=1,
        maximum=4096,
        default=1,
    )
    gpus_per_node: int = prop(
        "gpusPerNode",
        "GPUs per trainer pod (nvidia.com/gpu) and processes per pod; 0 trains on CPU.",
        minimum=0,
        maximum=64,
        default=8,
    )
    processes_per_node: int = prop(
        "processesPerNode",
        "Trainer processes per pod when gpusPerNode is 0 (CPU, gloo).",
        minimum=1,
        maximum=256,
        default=1,
    )
    resources: dict[str, Any] = _resources(
        "Extra resources of each trainer pod (cpu, memory, ...); nvidia.com/gpu comes from "
        "gpusPerNode."
    )
    node_pools: tuple[NodePool, ...] = prop(
        "nodePools",
        "Ordered node pools: start on the first, fall back to the next after maxPreemptions "
        "preemptions on a preemptible pool, stay on the last. Empty: no node selection.",
        max_items=16,
        list_map_keys=("name",),
    )
    max_failures: int = prop(
        "maxFailures",
        "Restarts after failures (not preemptions) before the job is Failed.",
        minimum=0,
        default=3,
    )
    max_preemptions: int = prop(
        "maxPreemptions",
        "Restarts after preemptions (all node pools together) before the job is Failed "
        "(TooManyPreemptions). Separate from nodePools[].maxPreemptions, which only moves the "
        "job to the next pool.",
        minimum=0,
        default=100,
    )
    max_attempts_without_progress: int = prop(
        "maxAttemptsWithoutProgress",
        "Consecutive attempts (ended by a preemption or a failure) that saved no newer complete "
        "checkpoint than the one they started from before the job is Failed (NoProgress).",
        minimum=1,
        default=10,
    )
    checkpoint: Checkpoint = prop(
        "checkpoint",
        f"Checkpoints: a shared PersistentVolumeClaim mounted at {c.CHECKPOINTS_MOUNT} on every "
        "trainer pod (ReadWriteMany for more than one node) or a uri in object storage (exactly "
        "one of claimName or uri), and the retention policy.",
        required=True,
    )
    storage: Storage = prop(
        "storage", "Object storage: credentials, endpoint, ServiceAccount, local scratch."
    )
    eval: Eval = prop("eval", "The eval worker: a Deployment that evaluates every new checkpoint.")
    wandb: WandB | None = prop("wandb", "Weights & Biases logging.")
    suspend: bool = prop(
        "suspend",
        "Stop the current attempt (pods deleted, checkpoints kept); false again resumes from the "
        "latest checkpoint.",
        default=False,
    )
    ttl_seconds_after_finished: int | None = prop(
        "ttlSecondsAfterFinished",
        "Delete the OLMoJob (and its children) this long after it succeeded or failed.",
        minimum=0,
    )
    queue_name: str | None = prop(
        "queueName",
        f"Kueue LocalQueue: Jobs get the {c.KUEUE_QUEUE_LABEL} label and start suspended until "
        "Kueue admits them.",
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE,
    )
    priority_class_name: str | None = prop(
        "priorityClassName", "PriorityClass of the trainer and eval pods.", min_length=1
    )
    termination_grace_period_seconds: int = prop(
        "terminationGracePeriodSeconds",
        "Seconds between SIGTERM and SIGKILL; the trainer saves a checkpoint on SIGTERM when its "
        f"last save fits (also passed as {c.ENV_GRACE}).",
        minimum=0,
        default=120,
    )
    startup_timeout_seconds: int = prop(
        "startupTimeoutSeconds",
        "An attempt whose pods wait this long to start (image pull errors, container config "
        "errors, unschedulable) fails (counted against maxFailures). Kueue admission waits do "
        "not count.",
        minimum=1,
        default=1800,
    )
    hang_timeout_seconds: int | None = prop(
        "hangTimeoutSeconds",
        "No training progress (a new step, or the trainer starting or ending a save or an "
        "evaluation) for this long ends the attempt with reason Hang and restarts the gang "
        "(counted in status.restarts.hangs, and as a failure). The trainer's collective timeout "
        "is set from it. Absent: 20 × the observed step time, at least 600 s, once a step was "
        "seen; the collective timeout then stays at torch's default (30 min).",
        minimum=10,
    )
    preflight: Preflight = prop("preflight", "Checks before each attempt trains.")
    max_steps: int | None = prop("maxSteps", "Override the config's max_steps.", minimum=1)
    overrides: tuple[str, ...] = prop(
        "overrides",
        "Extra trainer config overrides, each passed as --set KEY=VALUE (VALUE read as YAML).",
        pattern=OVERRIDE,
    )
    env: tuple[dict[str, Any], ...] = prop(
        "env", "Extra environment variables of the trainer pods.", schema=openapi.ENV_VAR
    )

    @property
    def procs_per_node(self) -> int:
        """Trainer processes per pod: one per GPU, or ``processesPerNode`` on CPU."""
        return self.gpus_per_node if self.gpus_per_node > 0 else self.processes_per_node

    @property
    def run_dir(self) -> str:
        """The run directory: ``<uri>/<path>`` in object storage, else inside the volume."""
        if self.checkpoint.uri is not None:
            return f"{self.checkpoint.uri}/{self.checkpoint.path}"
        return f"{c.CHECKPOINTS_MOUNT}/{self.checkpoint.path}"

    @property
    def data_dir(self) -> str:
        """The token-shard folder: the dataset's uri, else inside the volume."""
        if self.dataset.uri is not None:
            return self.dataset.uri
        return f"{c.DATA_MOUNT}/{self.dataset.path}"

    @property
    def uses_object_storage(self) -> bool:
        """Checkpoints or dataset in object storage: the pods that read them get scratch."""
        return self.checkpoint.uri is not None or self.dataset.uri is not None

    def nodes_on(self, index: int) -> int:
        """Trainer pods of an attempt on the pool at ``index``: ``nodes``, or fewer on a pool
        whose ``maxNodes`` is smaller (:func:`~olmo_operator.pool_spec.workable_nodes`)."""
        pool = self.node_pool(index)
        return self.nodes if pool is None else pool.nodes_for(self.nodes)

    def node_pool(self, index: int) -> NodePool | None:
        """The pool at ``index`` (clamped to the list, which may have shrunk), or None."""
        if not self.node_pools:
            return None
        return self.node_pools[max(0, min(index, len(self.node_pools) - 1))]


@dataclasses.dataclass(frozen=True)
class OLMoJob:
    """The parts of an OLMoJob object the operator decides from."""

    name: str
    namespace: str
    uid: str | None
    generation: int | None
    spec: JobSpec


def parse_job(obj: Mapping[str, Any]) -> OLMoJob:
    """Read an OLMoJob object (as the API returns it). Raises :class:`SpecError`."""
    meta = obj.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not name or not namespace:
        raise SpecError("metadata.name and metadata.namespace are required")
    if len(name) > c.MAX_NAME_LENGTH:
        raise SpecError(
            f"metadata.name {name!r} is {len(name)} characters long; at most "
            f"{c.MAX_NAME_LENGTH} leave room for the attempt's Job, Service and pod names"
        )
    spec = parse_spec(obj.get("spec") or {}, job_name=name)
    return OLMoJob(
        name=name,
        namespace=namespace,
        uid=meta.get("uid"),
        generation=meta.get("generation"),
        spec=spec,
    )


def parse_spec(raw: Mapping[str, Any], *, job_name: str) -> JobSpec:
    """Read ``spec``: the declared defaults and checks, then the rules across fields. Raises
    :class:`SpecError`."""
    spec: JobSpec = parse(JobSpec, raw, "spec")
    for i, var in enumerate(spec.env):
        problem = openapi.env_var_problem(var)
        if problem:
            raise SpecError(f"spec.env[{i}]: {problem}")
    # The run directory defaults to the job's name (a DNS label, so a valid relative path),
    # which no schema default can say.
    if spec.checkpoint.path is None:
        checkpoint = dataclasses.replace(spec.checkpoint, path=job_name)
        spec = dataclasses.replace(spec, checkpoint=checkpoint)
    # A path inside the dataset volume means nothing with a uri (the uri names the folder).
    if spec.dataset.uri is not None and spec.dataset.path is not None:
        raise SpecError(
            "spec.dataset.path is a folder inside the dataset volume (claimName); with "
            f"spec.dataset.uri name the folder in the uri itself ({spec.dataset.uri}/"
            f"{spec.dataset.path})"
        )
    # Data-prep workers meet in a shared work folder (olmo_dataprep.pipeline.publish); pods
    # writing to a bucket each have their own, so a second worker would wait forever.
    prepare = spec.dataset.prepare
    if spec.dataset.uri is not None and prepare is not None and prepare.workers > 1:
        raise SpecError(
            f"spec.dataset.prepare.workers is {prepare.workers}: with spec.dataset.uri data-prep "
            "runs one worker (its workers share a work folder, which pods writing to a bucket do "
            "not have); use workers: 1, or prepare into a claim and copy the output"
        )
    adaptive = spec.checkpoint.adaptive
    if adaptive is not None and adaptive.min_interval > adaptive.max_interval:
        raise SpecError(
            f"spec.checkpoint.adaptive: minInterval ({adaptive.min_interval}) must not exceed "
            f"maxInterval ({adaptive.max_interval})"
        )
    problems = pool_problems(spec.node_pools, queued=spec.queue_name is not None)
    if problems:
        raise SpecError("; ".join(problems))
    if spec.dataset.claim_name is not None and spec.dataset.path is None:
        dataset = dataclasses.replace(spec.dataset, path=DATASET_PATH_DEFAULT)
        spec = dataclasses.replace(spec, dataset=dataset)
    return spec
