"""An OLMoJob object read into typed, defaulted values.

The API server already validated the object against the CRD's schema; :func:`parse_job` fills
in the schema's defaults (from the same schema, :func:`olmo_operator.crd.apply_defaults`) and
checks the few rules a structural schema cannot express. A :class:`SpecError` names the field,
and the operator turns it into phase Failed with that message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from olmo_operator import contract as c
from olmo_operator.crd import apply_defaults, openapi_schema


class SpecError(ValueError):
    """The OLMoJob cannot be run as written."""


@dataclass(frozen=True)
class ConfigRef:
    name: str
    key: str


@dataclass(frozen=True)
class Model:
    preset: str | None = None
    config: str | None = None
    config_map: ConfigRef | None = None


@dataclass(frozen=True)
class Prepare:
    pipeline: ConfigRef
    workers: int = 1
    image: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    claim_name: str
    path: str = "tokens"
    prepare: Prepare | None = None


@dataclass(frozen=True)
class NodePool:
    name: str
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    preemptible: bool = False
    max_preemptions: int = 3


@dataclass(frozen=True)
class Checkpoint:
    claim_name: str
    path: str
    interval: int = 1000
    keep_last: int = 3
    keep_every: int | None = None
    require_evaluated: bool = False


@dataclass(frozen=True)
class Eval:
    enabled: bool = False
    tasks: tuple[str, ...] = ()
    limit: int | None = None
    image: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class WandB:
    project: str | None = None
    entity: str | None = None
    mode: str | None = None
    secret: ConfigRef | None = None


@dataclass(frozen=True)
class JobSpec:
    model: Model
    dataset: Dataset
    image: str
    checkpoint: Checkpoint
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    nodes: int = 1
    gpus_per_node: int = 8
    processes_per_node: int = 1
    resources: dict[str, Any] = field(default_factory=dict)
    node_pools: tuple[NodePool, ...] = ()
    max_failures: int = 3
    eval: Eval = field(default_factory=Eval)
    wandb: WandB | None = None
    suspend: bool = False
    ttl_seconds_after_finished: int | None = None
    queue_name: str | None = None
    priority_class_name: str | None = None
    termination_grace_period_seconds: int = 120
    max_steps: int | None = None
    overrides: tuple[str, ...] = ()
    env: tuple[dict[str, Any], ...] = ()

    @property
    def procs_per_node(self) -> int:
        """Trainer processes per pod: one per GPU, or ``processesPerNode`` on CPU."""
        return self.gpus_per_node if self.gpus_per_node > 0 else self.processes_per_node

    @property
    def run_dir(self) -> str:
        return f"{c.CHECKPOINTS_MOUNT}/{self.checkpoint.path}"

    @property
    def data_dir(self) -> str:
        return f"{c.DATA_MOUNT}/{self.dataset.path}"

    def node_pool(self, index: int) -> NodePool | None:
        """The pool at ``index`` (clamped to the list, which may have shrunk), or None."""
        if not self.node_pools:
            return None
        return self.node_pools[max(0, min(index, len(self.node_pools) - 1))]


@dataclass(frozen=True)
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
    """Read ``spec`` (defaults filled in from the CRD). Raises :class:`SpecError`."""
    spec_schema = openapi_schema()["properties"]["spec"]
    s = apply_defaults(spec_schema, dict(raw))
    for key in spec_schema["required"]:
        if key not in s:
            raise SpecError(f"spec.{key} is required")
    if not isinstance(s["image"], str) or not s["image"]:
        raise SpecError("spec.image must be a non-empty string")

    m = s["model"]
    given = [k for k in ("preset", "config", "configMapRef") if m.get(k) is not None]
    if len(given) != 1:
        raise SpecError(
            "spec.model needs exactly one of preset, config, configMapRef "
            f"(got {', '.join(given) or 'none'})"
        )
    if m.get("preset") is not None and m["preset"] not in c.PRESETS:
        raise SpecError(f"spec.model.preset must be one of {', '.join(c.PRESETS)}")
    model = Model(
        preset=m.get("preset"),
        config=m.get("config"),
        config_map=_ref(m["configMapRef"], c.CONFIG_FILE) if m.get("configMapRef") else None,
    )

    d = s["dataset"]
    prepare = None
    if d.get("prepare"):
        p = d["prepare"]
        if not p.get("pipelineConfigMap"):
            raise SpecError("spec.dataset.prepare.pipelineConfigMap is required")
        prepare = Prepare(
            pipeline=_ref(p["pipelineConfigMap"], c.PIPELINE_FILE),
            workers=_int(p.get("workers", 1), "spec.dataset.prepare.workers", minimum=1),
            image=p.get("image"),
            resources=dict(p.get("resources") or {}),
        )
    dataset = Dataset(
        claim_name=_required_str(d, "claimName", "spec.dataset"),
        path=_relative_path(d.get("path", "tokens"), "spec.dataset.path"),
        prepare=prepare,
    )

    k = s["checkpoint"]
    checkpoint = Checkpoint(
        claim_name=_required_str(k, "claimName", "spec.checkpoint"),
        path=_relative_path(k.get("path") or job_name, "spec.checkpoint.path"),
        interval=_int(k.get("interval", 1000), "spec.checkpoint.interval", minimum=1),
        keep_last=_int(k.get("keepLast", 3), "spec.checkpoint.keepLast", minimum=1),
        keep_every=(
            _int(k["keepEvery"], "spec.checkpoint.keepEvery", minimum=1)
            if k.get("keepEvery") is not None
            else None
        ),
        require_evaluated=bool(k.get("requireEvaluated", False)),
    )

    pools = []
    for i, pool in enumerate(s.get("nodePools") or []):
        pools.append(
            NodePool(
                name=_required_str(pool, "name", f"spec.nodePools[{i}]"),
                node_selector=dict(pool.get("nodeSelector") or {}),
                tolerations=tuple(pool.get("tolerations") or ()),
                preemptible=bool(pool.get("preemptible", False)),
                max_preemptions=_int(
                    pool.get("maxPreemptions", 3), f"spec.nodePools[{i}].maxPreemptions", minimum=1
                ),
            )
        )
    if len({p.name for p in pools}) != len(pools):
        raise SpecError("spec.nodePools names must be unique")

    e = s.get("eval") or {}
    evaluation = Eval(
        enabled=bool(e.get("enabled", False)),
        tasks=tuple(e.get("tasks") or ()),
        limit=_int(e["limit"], "spec.eval.limit", minimum=1) if e.get("limit") else None,
        image=e.get("image"),
        resources=dict(e.get("resources") or {}),
        node_selector=dict(e.get("nodeSelector") or {}),
        tolerations=tuple(dict(t) for t in e.get("tolerations") or ()),
    )

    wandb = None
    if s.get("wandb"):
        w = s["wandb"]
        wandb = WandB(
            project=w.get("project"),
            entity=w.get("entity"),
            mode=w.get("mode"),
            secret=_ref(w["secretRef"], "api-key") if w.get("secretRef") else None,
        )

    return JobSpec(
        model=model,
        dataset=dataset,
        image=s["image"],
        checkpoint=checkpoint,
        image_pull_policy=s.get("imagePullPolicy", "IfNotPresent"),
        image_pull_secrets=tuple(r["name"] for r in s.get("imagePullSecrets") or ()),
        nodes=_int(s.get("nodes", 1), "spec.nodes", minimum=1),
        gpus_per_node=_int(s.get("gpusPerNode", 8), "spec.gpusPerNode", minimum=0),
        processes_per_node=_int(s.get("processesPerNode", 1), "spec.processesPerNode", minimum=1),
        resources=dict(s.get("resources") or {}),
        node_pools=tuple(pools),
        max_failures=_int(s.get("maxFailures", 3), "spec.maxFailures", minimum=0),
        eval=evaluation,
        wandb=wandb,
        suspend=bool(s.get("suspend", False)),
        ttl_seconds_after_finished=(
            _int(s["ttlSecondsAfterFinished"], "spec.ttlSecondsAfterFinished", minimum=0)
            if s.get("ttlSecondsAfterFinished") is not None
            else None
        ),
        queue_name=s.get("queueName") or None,
        priority_class_name=s.get("priorityClassName") or None,
        termination_grace_period_seconds=_int(
            s.get("terminationGracePeriodSeconds", 120),
            "spec.terminationGracePeriodSeconds",
            minimum=0,
        ),
        max_steps=_int(s["maxSteps"], "spec.maxSteps", minimum=1) if s.get("maxSteps") else None,
        overrides=tuple(_override(o, i) for i, o in enumerate(s.get("overrides") or ())),
        env=tuple(s.get("env") or ()),
    )


def _ref(raw: Mapping[str, Any], default_key: str) -> ConfigRef:
    if not raw.get("name"):
        raise SpecError("a name is required in every ConfigMap/Secret reference")
    return ConfigRef(name=raw["name"], key=raw.get("key") or default_key)


def _required_str(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}.{key} is required")
    return value


def _int(value: Any, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where} must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(f"{where} must be at least {minimum}, got {value}")
    return value


def _relative_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where} must be a non-empty relative path")
    parts = value.split("/")
    if value.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise SpecError(f"{where} must be a relative path inside the volume, got {value!r}")
    return value


def _override(value: Any, index: int) -> str:
    if not isinstance(value, str) or "=" not in value or value.startswith("="):
        raise SpecError(f"spec.overrides[{index}] must look like KEY=VALUE, got {value!r}")
    return value
