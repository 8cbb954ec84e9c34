"""The ``OLMoJob`` CustomResourceDefinition, generated in Python.

``crd()`` is what ``olmo-operator crd --write`` renders to ``k8s/crd/olmojobs.yaml`` and
``helm/crds/olmojobs.yaml`` (a test fails when either drifts). The spec's schema is generated
from its typed declaration (:class:`olmo_operator.spec.JobSpec`, through
:func:`olmo_operator.typed_schema.object_schema`), the same declaration the operator parses
objects with; this module adds what is no spec field: identity and names, the status schema
(written by the operator, never parsed), the status subresource and the printer columns. The
tests validate objects against it through :func:`to_json_schema`, and :func:`apply_defaults`
defaults an object the way the API server does.

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
from olmo_operator.openapi import array, integer, list_map, obj, string, time
from olmo_operator.spec import JobSpec
from olmo_operator.typed_schema import object_schema

# --------------------------------------------------------------------------------------------
# status


def _status_schema() -> dict[str, Any]:
    checkpoint = obj(
        "A complete checkpoint.",
        {
            "step": integer("Training step."),
            "path": string("Checkpoint folder."),
            "time": time("When it was saved."),
        },
    )
    last_eval = obj(
        "The newest evaluation.",
        {
            "step": integer("Checkpoint step evaluated."),
            "headline": {
                "type": "object",
                "description": "Headline metric per task (accuracy).",
                "additionalProperties": {"type": "number"},
            },
            "time": time("When the evaluation finished."),
        },
    )
    condition = obj(
        "A condition (Kubernetes convention).",
        {
            "type": string("Condition type."),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": string("CamelCase reason."),
            "message": string("Human-readable detail."),
            "lastTransitionTime": time("When status last changed."),
        },
        required=("type", "status"),
    )
    rejection = obj(
        "A rejected report of this source (cleared by its next valid one).",
        {
            "field": string("The field at fault."),
            "reason": string("What is wrong with it."),
            "message": string("The ProgressRejected Event's message."),
            "time": time("When the operator rejected it."),
        },
    )
    properties: dict[str, Any] = {
        "phase": string("Where the job is.", enum=list(c.PHASES)),
        "message": string("Why it is there."),
        "conditions": array(
            "DataPrepared, Running, Suspended, Complete, Failed, CheckpointsRotated.",
            condition,
            **list_map("type"),
        ),
        "observedGeneration": integer("metadata.generation last seen by the operator."),
        "attempt": integer("Current attempt (1-based; a restart starts the next one)."),
        "restarts": obj(
            "Restarts by cause.",
            {
                "failures": integer("Restarts after failures (spend maxFailures)."),
                "preemptions": integer("Restarts after preemptions (spend maxPreemptions)."),
            },
        ),
        "nodePool": string("Node pool of the current attempt."),
        "nodePoolIndex": integer("Index of nodePool in spec.nodePools."),
        "nodePoolPreemptions": integer("Preemptions on the current node pool."),
        "restartAt": time("When the next attempt starts (backoff)."),
        "failureSeenAt": time(
            "When a failed pod of the current attempt was first seen: the attempt ends as a "
            "failure only after the settle window, unless a preemption signal appears."
        ),
        "lastRestart": obj(
            "The latest restart.",
            {
                "cause": string("Preemption or Failure.", enum=["Preemption", "Failure"]),
                "reason": string("The signal that decided the cause."),
                "message": string("Detail."),
                "attempt": integer("The attempt that ended."),
                "time": time("When it ended."),
            },
        ),
        "lastProvisioning": obj(
            "The latest outcome of a ProvisioningRequest (a pool with provisioning).",
            {
                "pool": string("The node pool."),
                "attempt": integer("The attempt that asked."),
                "outcome": string(
                    "Provisioned, or why the job moved on.",
                    enum=["Provisioned", "Failed", "CapacityRevoked", "BookingExpired", "TimedOut"],
                ),
                "message": string("The request's condition message."),
                "time": time("When it was seen."),
            },
        ),
        "step": integer("Latest training step reported by the trainer."),
        "tokens": integer("Tokens trained on so far."),
        "latestCheckpoint": checkpoint,
        "lastEval": last_eval,
        "lastUpload": obj(
            "The latest checkpoint upload to object storage (checkpoint.uri), reported by the "
            "trainer once the checkpoint was complete on the store.",
            {
                "step": integer("Training step of the checkpoint."),
                "seconds": {"type": "number", "description": "Upload time."},
                "bytes": integer("Bytes uploaded."),
                "files": integer("Files uploaded."),
                "time": time("When the upload finished."),
            },
        ),
        "lastSaveBlockedSeconds": {
            "type": "number",
            "description": "How long the latest save stopped training (checkpoint.uri: the local "
            "save plus the wait for the previous upload).",
        },
        "lastRotation": obj(
            "The latest checkpoint rotation reported by the trainer.",
            {
                "deleted": array("Deleted checkpoint folders.", {"type": "string"}),
                "time": time("When."),
            },
        ),
        "noProgress": obj(
            "Attempts since the last one that saved a newer complete checkpoint "
            "(spec.maxAttemptsWithoutProgress).",
            {
                "attempts": integer("Attempts in a row that ended without progress."),
                "preemptions": integer(
                    "Of those, preemptions (the exponent of the preemption backoff)."
                ),
                "baselineStep": integer(
                    "Step of the newest complete checkpoint when progress was last seen."
                ),
            },
        ),
        "finalEval": obj(
            "How the eval worker ended after the trainer succeeded.",
            {
                "phase": string(
                    "Evaluated: the final checkpoint was evaluated; Failed: the eval worker "
                    "gave up on it; TimedOut: eval.finalTimeoutSeconds passed.",
                    enum=["Evaluated", "Failed", "TimedOut"],
                ),
                "message": string("Detail."),
                "time": time("When the eval worker was removed."),
            },
        ),
        "finalRotation": obj(
            "The rotation Job run after the job succeeded.",
            {
                "phase": string("Its state.", enum=["Running", "Succeeded", "Failed"]),
                "message": string("Its summary line."),
                "completionTime": time("When it finished."),
            },
        ),
        "startTime": time("When the first attempt started."),
        "completionTime": time("When the job succeeded or failed."),
        "lastEvalFailure": obj(
            "The newest checkpoint the eval worker gave up on (no attempts left).",
            {
                "step": integer("Checkpoint step."),
                "message": string("The last attempt's error."),
                "time": time("When the worker gave up."),
            },
        ),
        "lastResume": obj(
            "How the trainer of an attempt resumed, when it skipped unreadable checkpoints.",
            {
                "attempt": integer("The attempt."),
                "step": integer("Step of the checkpoint it resumed from."),
                "path": string("That checkpoint's folder."),
                "skipped": array(
                    "Newer checkpoints it could not read.",
                    obj(
                        "A skipped checkpoint.",
                        {"path": string("Its folder."), "reason": string("Why.")},
                    ),
                ),
            },
        ),
        c.STATUS_PROGRESS: obj(
            "The operator's record of the pods' progress reports (the <job>-progress "
            "ConfigMap; the pods cannot write the status). Written by the operator only.",
            {
                "attempt": integer("Attempt of the last accepted trainer report."),
                "step": integer("Its step (never decreases within an attempt)."),
                "updated": time("When the trainer sent it."),
                "rejected": obj(
                    "The reports ignored, by source; one ProgressRejected Event each.",
                    {"trainer": rejection, "eval": rejection},
                ),
            },
        ),
    }
    return obj("Observed state, written by the operator.", properties)


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
            "spec": object_schema(JobSpec),
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
    "# Generated by `olmo-operator crd --write` from services/operator/src/olmo_operator/crd.py\n"
    "# (the spec from spec.py). Do not edit: change those and regenerate (a test fails when this\n"
    "# file drifts).\n"
)


class _Dumper(yaml.SafeDumper):
    """Writes a node shared by several fields (a toleration, a quantity) out in full at each
    place, not as a YAML alias a reader has to look up."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml() -> str:
    """The CRD as the YAML text written to ``k8s/crd/`` and ``helm/crds/``."""
    text = yaml.dump(crd(), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + text


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
