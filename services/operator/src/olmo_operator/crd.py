"""The ``OLMoJob`` CustomResourceDefinition, defined once, in Python.

``crd()`` is the single source of truth: ``olmo-operator crd --write`` renders it to
``k8s/crd/olmojobs.yaml`` and ``helm/crds/olmojobs.yaml`` (a test fails when either drifts), the
operator fills in its ``default:`` values the way the API server does (:func:`apply_defaults`;
needed for objects that were stored before a default existed, and for API servers that do not
default), and the tests validate example objects against it through :func:`to_json_schema`.

The schema is *structural* (every field typed; ``oneOf`` only lists required keys), so the API
server prunes unknown fields and rejects wrong types, out-of-range numbers and unknown enum
values at admission, before the operator sees the object.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from olmo_operator import contract as c

# --------------------------------------------------------------------------------------------
# Schema building blocks


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _integer(description: str, *, minimum: int | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "description": description, **extra}
    if minimum is not None:
        out["minimum"] = minimum
    return out


def _boolean(description: str, default: bool) -> dict[str, Any]:
    return {"type": "boolean", "description": description, "default": default}


def _object(
    description: str, properties: dict[str, Any], *, required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "description": description, "properties": properties}
    if required:
        out["required"] = list(required)
    out.update(extra)
    return out


def _array(description: str, items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": items, **extra}


def _string_map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"},
    }


def _free_object(description: str) -> dict[str, Any]:
    """An object passed through to Kubernetes as is (validated by the API server later)."""
    return {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }


_QUANTITY = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
}


def _resources(description: str) -> dict[str, Any]:
    quantities = {"type": "object", "additionalProperties": _QUANTITY}
    return _object(
        description,
        {
            "limits": {**quantities, "description": "Maximum amount of each resource."},
            "requests": {**quantities, "description": "Minimum amount of each resource."},
        },
    )


def _secret_key_ref(description: str, default_key: str) -> dict[str, Any]:
    return _object(
        description,
        {
            "name": _string("Secret name (same namespace).", minLength=1),
            "key": _string("Key within the Secret.", default=default_key, minLength=1),
        },
        required=("name",),
    )


def _config_map_key_ref(description: str, default_key: str) -> dict[str, Any]:
    return _object(
        description,
        {
            "name": _string("ConfigMap name (same namespace).", minLength=1),
            "key": _string("Key within the ConfigMap.", default=default_key, minLength=1),
        },
        required=("name",),
    )


_TOLERATION = _object(
    "A toleration, as in a pod spec.",
    {
        "key": _string("Taint key; empty with operator Exists matches every taint."),
        "operator": _string("How key and value match.", enum=["Exists", "Equal"]),
        "value": _string("Taint value (operator Equal)."),
        "effect": _string(
            "Taint effect to match; empty matches all.",
            enum=["NoSchedule", "PreferNoSchedule", "NoExecute"],
        ),
        "tolerationSeconds": _integer("How long a NoExecute taint is tolerated."),
    },
)

_ENV_VAR = _object(
    "An environment variable, as in a container spec.",
    {
        "name": _string("Variable name.", minLength=1),
        "value": _string("Literal value."),
        "valueFrom": _free_object("Source of the value (secretKeyRef, configMapKeyRef, ...)."),
    },
    required=("name",),
)

# A relative path inside a volume: no leading slash, no empty components. ("..": rejected by the
# operator with a clear message, since Kubernetes regular expressions have no lookahead.)
_RELATIVE_PATH = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"
_ISO_TIME = {"type": "string", "format": "date-time"}

# --------------------------------------------------------------------------------------------
# spec


def _spec_schema() -> dict[str, Any]:
    model = _object(
        "The model and training config: exactly one of preset, config or configMapRef.",
        {
            "preset": _string(
                f"A config shipped in the trainer image at {c.IMAGE_CONFIGS_DIR}/<preset>.yaml.",
                enum=list(c.PRESETS),
            ),
            "config": _string(
                "A whole training config (YAML), mounted into the pods as a file.", minLength=1
            ),
            "configMapRef": _config_map_key_ref(
                "A training config (YAML) stored in a ConfigMap.", c.CONFIG_FILE
            ),
        },
        oneOf=[{"required": ["preset"]}, {"required": ["config"]}, {"required": ["configMapRef"]}],
    )
    prepare = _object(
        "Run the data-prep pipeline (an Indexed Job) into the dataset volume before training.",
        {
            "pipelineConfigMap": _config_map_key_ref(
                "The olmo-dataprep pipeline config.", c.PIPELINE_FILE
            ),
            "workers": _integer(
                "Data-prep workers (completions = parallelism of the Indexed Job).",
                minimum=1,
                maximum=1024,
                default=1,
            ),
            "image": _string("Data-prep image (default: spec.image)."),
            "resources": _resources("Resources of each data-prep pod."),
        },
        required=("pipelineConfigMap",),
    )
    dataset = _object(
        f"Token shards: a PersistentVolumeClaim mounted read-only at {c.DATA_MOUNT} (read-write "
        "for data-prep).",
        {
            "claimName": _string("PersistentVolumeClaim holding the dataset.", minLength=1),
            "path": _string(
                "Folder of token shards (with manifest.json) inside the volume.",
                default="tokens",
                pattern=_RELATIVE_PATH,
            ),
            "prepare": prepare,
        },
        required=("claimName",),
    )
    node_pool = _object(
        "A node pool the trainer may run on. Pools are tried in order.",
        {
            "name": _string("Pool name (shown in status.nodePool).", minLength=1, maxLength=63),
            "nodeSelector": _string_map("Node labels the trainer pods require."),
            "tolerations": _array("Tolerations for the pool's taints.", _TOLERATION),
            "preemptible": _boolean(
                "Spot/preemptible capacity: after maxPreemptions preemptions here the job "
                "moves to the next pool.",
                False,
            ),
            "maxPreemptions": _integer(
                "Preemptions on this (preemptible) pool before falling back to the next pool.",
                minimum=1,
                default=3,
            ),
        },
        required=("name",),
    )
    checkpoint = _object(
        f"Checkpoints: a shared PersistentVolumeClaim mounted at {c.CHECKPOINTS_MOUNT} on every "
        "trainer pod (ReadWriteMany for more than one node) and the retention policy.",
        {
            "claimName": _string("PersistentVolumeClaim for the run directory.", minLength=1),
            "path": _string(
                "Run directory inside the volume (default: the OLMoJob's name).",
                pattern=_RELATIVE_PATH,
            ),
            "interval": _integer("Save a checkpoint every N steps.", minimum=1, default=1000),
            "keepLast": _integer(
                "Keep the newest N complete checkpoints (the newest is never deleted).",
                minimum=1,
                default=3,
            ),
            "keepEvery": _integer(
                "Also keep every checkpoint whose step is a multiple of this.", minimum=1
            ),
            "requireEvaluated": _boolean(
                "Never delete a checkpoint the eval worker has not evaluated (needs eval.enabled).",
                False,
            ),
        },
        required=("claimName",),
    )
    evaluation = _object(
        "The eval worker: a Deployment that evaluates every new checkpoint.",
        {
            "enabled": _boolean("Run the eval worker.", False),
            "tasks": _array(
                "Downstream tasks to evaluate (default: the worker's own list).",
                {"type": "string", "minLength": 1},
            ),
            "limit": _integer("Evaluate at most N examples per task.", minimum=1),
            "image": _string("Eval worker image (default: spec.image)."),
            "resources": _resources("Resources of the eval worker pod."),
            "nodeSelector": _string_map(
                "Node labels the eval worker pod requires (e.g. a large-memory CPU pool)."
            ),
            "tolerations": _array("Tolerations of the eval worker pod.", _TOLERATION),
        },
    )
    wandb = _object(
        "Weights & Biases logging.",
        {
            "project": _string("W&B project."),
            "entity": _string("W&B entity (team or user)."),
            "mode": _string(
                "online needs secretRef; offline writes runs into the run directory.",
                enum=["online", "offline", "disabled"],
            ),
            "secretRef": _secret_key_ref(
                f"Secret holding the W&B API key (env {c.ENV_WANDB_KEY}).", "api-key"
            ),
        },
    )
    properties: dict[str, Any] = {
        "model": model,
        "dataset": dataset,
        "image": _string("Trainer image (torch, DeepSpeed, the olmo package).", minLength=1),
        "imagePullPolicy": _string(
            "Image pull policy of every pod.",
            enum=["Always", "IfNotPresent", "Never"],
            default="IfNotPresent",
        ),
        "imagePullSecrets": {
            "type": "array",
            "description": "Secrets (in the OLMoJob's namespace) for pulling the images of every "
            "pod from a private registry.",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": _string("Secret name.", minLength=1)},
            },
        },
        "nodes": _integer(
            "Trainer pods (one per node): completions = parallelism of the Indexed Job.",
            minimum=1,
            maximum=4096,
            default=1,
        ),
        "gpusPerNode": _integer(
            "GPUs per trainer pod (nvidia.com/gpu) and processes per pod; 0 trains on CPU.",
            minimum=0,
            maximum=64,
            default=8,
        ),
        "processesPerNode": _integer(
            "Trainer processes per pod when gpusPerNode is 0 (CPU, gloo).",
            minimum=1,
            maximum=256,
            default=1,
        ),
        "resources": _resources(
            "Extra resources of each trainer pod (cpu, memory, ...); nvidia.com/gpu comes from "
            "gpusPerNode."
        ),
        "nodePools": _array(
            "Ordered node pools: start on the first, fall back to the next after maxPreemptions "
            "preemptions on a preemptible pool, stay on the last. Empty: no node selection.",
            node_pool,
            maxItems=16,
            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        ),
        "maxFailures": _integer(
            "Restarts after failures (not preemptions) before the job is Failed.",
            minimum=0,
            default=3,
        ),
        "checkpoint": checkpoint,
        "eval": evaluation,
        "wandb": wandb,
        "suspend": _boolean(
            "Stop the current attempt (pods deleted, checkpoints kept); false again resumes "
            "from the latest checkpoint.",
            False,
        ),
        "ttlSecondsAfterFinished": _integer(
            "Delete the OLMoJob (and its children) this long after it succeeded or failed.",
            minimum=0,
        ),
        "queueName": _string(
            f"Kueue LocalQueue: Jobs get the {c.KUEUE_QUEUE_LABEL} label and start suspended "
            "until Kueue admits them.",
            minLength=1,
        ),
        "priorityClassName": _string("PriorityClass of the trainer and eval pods.", minLength=1),
        "terminationGracePeriodSeconds": _integer(
            "Seconds between SIGTERM and SIGKILL; the trainer saves a checkpoint on SIGTERM when "
            f"its last save fits (also passed as {c.ENV_GRACE}).",
            minimum=0,
            default=120,
        ),
        "maxSteps": _integer("Override the config's max_steps.", minimum=1),
        "overrides": _array(
            "Extra trainer config overrides, each passed as --set KEY=VALUE (VALUE read as YAML).",
            {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=.*$"},
        ),
        "env": _array("Extra environment variables of the trainer pods.", _ENV_VAR),
    }
    return _object(
        "What to train, on which nodes, and how to survive failures.",
        properties,
        required=("model", "dataset", "image", "checkpoint"),
    )


# --------------------------------------------------------------------------------------------
# status


def _status_schema() -> dict[str, Any]:
    checkpoint = _object(
        "A complete checkpoint.",
        {
            "step": _integer("Training step."),
            "path": _string("Checkpoint folder."),
            "time": {**_ISO_TIME, "description": "When it was saved."},
        },
    )
    last_eval = _object(
        "The newest evaluation.",
        {
            "step": _integer("Checkpoint step evaluated."),
            "headline": {
                "type": "object",
                "description": "Headline metric per task (accuracy).",
                "additionalProperties": {"type": "number"},
            },
            "time": {**_ISO_TIME, "description": "When the evaluation finished."},
        },
    )
    condition = _object(
        "A condition (Kubernetes convention).",
        {
            "type": _string("Condition type."),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _string("CamelCase reason."),
            "message": _string("Human-readable detail."),
            "lastTransitionTime": {**_ISO_TIME, "description": "When status last changed."},
        },
        required=("type", "status"),
    )
    properties: dict[str, Any] = {
        "phase": _string("Where the job is.", enum=list(c.PHASES)),
        "message": _string("Why it is there."),
        "conditions": _array(
            "DataPrepared, Running, Suspended, Complete, Failed, CheckpointsRotated.",
            condition,
            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        ),
        "observedGeneration": _integer("metadata.generation last seen by the operator."),
        "attempt": _integer("Current attempt (1-based; a restart starts the next one)."),
        "restarts": _object(
            "Restarts by cause.",
            {
                "failures": _integer("Restarts after failures (spend maxFailures)."),
                "preemptions": _integer("Restarts after preemptions (free)."),
            },
        ),
        "nodePool": _string("Node pool of the current attempt."),
        "nodePoolIndex": _integer("Index of nodePool in spec.nodePools."),
        "nodePoolPreemptions": _integer("Preemptions on the current node pool."),
        "restartAt": {**_ISO_TIME, "description": "When the next attempt starts (backoff)."},
        "failureSeenAt": {
            **_ISO_TIME,
            "description": "When a failed pod of the current attempt was first seen: the attempt "
            "ends as a failure only after the settle window, unless a preemption signal appears.",
        },
        "lastRestart": _object(
            "The latest restart.",
            {
                "cause": _string("Preemption or Failure.", enum=["Preemption", "Failure"]),
                "reason": _string("The signal that decided the cause."),
                "message": _string("Detail."),
                "attempt": _integer("The attempt that ended."),
                "time": {**_ISO_TIME, "description": "When it ended."},
            },
        ),
        "step": _integer("Latest training step reported by the trainer."),
        "tokens": _integer("Tokens trained on so far."),
        "latestCheckpoint": checkpoint,
        "lastEval": last_eval,
        "lastRotation": _object(
            "The latest checkpoint rotation reported by the trainer.",
            {
                "deleted": _array("Deleted checkpoint folders.", {"type": "string"}),
                "time": {**_ISO_TIME, "description": "When."},
            },
        ),
        "finalRotation": _object(
            "The rotation Job run after the job succeeded.",
            {
                "phase": _string("Its state.", enum=["Running", "Succeeded", "Failed"]),
                "message": _string("Its summary line."),
                "completionTime": {**_ISO_TIME, "description": "When it finished."},
            },
        ),
        "startTime": {**_ISO_TIME, "description": "When the first attempt started."},
        "completionTime": {**_ISO_TIME, "description": "When the job succeeded or failed."},
        c.STATUS_PROGRESS: _free_object(
            "Written by the trainer (rank 0) and the eval worker: attempt, step, tokens, "
            "latestCheckpoint, rotation, lastEval, updated. Read by the operator."
        ),
    }
    return _object("Observed state, written by the operator.", properties)


# --------------------------------------------------------------------------------------------
# The CRD


def openapi_schema() -> dict[str, Any]:
    """The OLMoJob's openAPIV3Schema."""
    return {
        "type": "object",
        "description": "An OLMo pretraining run on Kubernetes.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "maxLength": c.MAX_NAME_LENGTH,
                        "pattern": c.NAME_PATTERN,
                    }
                },
            },
            "spec": _spec_schema(),
            "status": _status_schema(),
        },
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    columns = [
        ("Phase", "string", ".status.phase", 0),
        ("Step", "integer", ".status.step", 0),
        ("Restarts", "integer", ".status.restarts.failures", 0),
        ("Preemptions", "integer", ".status.restarts.preemptions", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Attempt", "integer", ".status.attempt", 1),
        ("Pool", "string", ".status.nodePool", 1),
        ("Checkpoint", "integer", ".status.latestCheckpoint.step", 1),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{c.PLURAL}.{c.GROUP}",
            "labels": {"app.kubernetes.io/name": "olmo", "app.kubernetes.io/part-of": c.PART_OF},
        },
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": c.KIND,
                "listKind": f"{c.KIND}List",
                "plural": c.PLURAL,
                "singular": c.SINGULAR,
                "shortNames": list(c.SHORT_NAMES),
                "categories": list(c.CATEGORIES),
            },
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": n, "type": t, "jsonPath": p, **({"priority": pr} if pr else {})}
                        for n, t, p, pr in columns
                    ],
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


HEADER = (
    "# Generated by `olmo-operator crd --write` from services/operator/src/olmo_operator/crd.py.\n"
    "# Do not edit: change crd.py and regenerate (a test fails when this file drifts).\n"
)


def crd_yaml() -> str:
    """The CRD as the YAML text written to ``k8s/crd/`` and ``helm/crds/``."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)


CRD_PATHS = ("k8s/crd/olmojobs.yaml", "helm/crds/olmojobs.yaml")
"""Where the generated YAML lives, relative to the repository root."""

# --------------------------------------------------------------------------------------------
# Using the schema


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """A copy of ``value`` with the schema's ``default:`` values filled in, as the API server
    defaults a structural schema: a default applies where its parent object exists."""
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: Mapping[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default_in_place(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key, item in value.items():
                if key not in (schema.get("properties") or {}):
                    _default_in_place(extra, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _default_in_place(schema["items"], item)


def to_json_schema(schema: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """The structural schema as plain JSON Schema (for ``jsonschema``).

    ``x-kubernetes-*`` keys are dropped (``int-or-string`` becomes its ``anyOf``). With
    ``strict`` objects reject unknown fields, as the API server does under ``kubectl``'s default
    strict field validation; objects marked ``x-kubernetes-preserve-unknown-fields`` and the
    root's ``metadata`` (any ObjectMeta field) stay open.
    """
    out = _convert(schema, strict)
    metadata = (out.get("properties") or {}).get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("additionalProperties", None)
    return out


def _convert(schema: Mapping[str, Any], strict: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: _convert(v, strict) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = _convert(value, strict)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [_convert(v, strict) for v in value]
        else:
            out[key] = copy.deepcopy(value)
    if (
        strict
        and schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out
