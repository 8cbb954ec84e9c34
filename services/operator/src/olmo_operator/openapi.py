"""OpenAPI v3 nodes written by hand: small builders (for the status, which the operator writes
and never parses) and the Kubernetes types an OLMoJob passes on to its pods as they are
(tolerations, env vars, resource requirements), as kubebuilder takes them from ``corev1``.

The OLMoJob's own spec fields are not here: they are declared once, typed, in
:mod:`olmo_operator.spec`, and :mod:`olmo_operator.typed_schema` writes their schema.
"""

from __future__ import annotations

from typing import Any


def string(description: str, **markers: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **markers}


def integer(description: str, **markers: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **markers}


def time(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "description": description}


def obj(
    description: str, properties: dict[str, Any], *, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "description": description, "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def array(description: str, items: dict[str, Any], **markers: Any) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": items, **markers}


def list_map(*keys: str) -> dict[str, Any]:
    """Markers of a list whose items are unique by ``keys`` (merged by key in patches)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def free_object(description: str) -> dict[str, Any]:
    """An object kept whole, whatever its fields (validated by whoever reads it)."""
    return {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }


# --------------------------------------------------------------------------------------------
# Kubernetes types (no description: the field that holds one gives it)

QUANTITY: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
}

_QUANTITIES = {"type": "object", "additionalProperties": QUANTITY}

RESOURCES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "limits": {**_QUANTITIES, "description": "Maximum amount of each resource."},
        "requests": {**_QUANTITIES, "description": "Minimum amount of each resource."},
    },
}
"""Resource requirements of a container (``limits``, ``requests``)."""

TOLERATION = obj(
    "A toleration, as in a pod spec.",
    {
        "key": string("Taint key; empty with operator Exists matches every taint."),
        "operator": string("How key and value match.", enum=["Exists", "Equal"]),
        "value": string("Taint value (operator Equal)."),
        "effect": string(
            "Taint effect to match; empty matches all.",
            enum=["NoSchedule", "PreferNoSchedule", "NoExecute"],
        ),
        "tolerationSeconds": integer("How long a NoExecute taint is tolerated."),
    },
)


def _key_ref(what: str) -> dict[str, Any]:
    return obj(
        f"A key of a {what} in the pod's namespace.",
        {
            "name": string(f"{what} name."),
            "key": string("The key.", minLength=1),
            "optional": {"type": "boolean", "description": f"Whether the {what} may be absent."},
        },
        required=("key",),
    )


ENV_SOURCES: dict[str, Any] = {
    "secretKeyRef": _key_ref("Secret"),
    "configMapKeyRef": _key_ref("ConfigMap"),
    "fieldRef": obj(
        "A field of the pod (metadata.name, status.podIP, ...).",
        {
            "apiVersion": string("Version of the schema the fieldPath is written in."),
            "fieldPath": string("Path of the field.", minLength=1),
        },
        required=("fieldPath",),
    ),
    "resourceFieldRef": obj(
        "A resource of a container (limits.cpu, requests.memory, ...).",
        {
            "containerName": string("Container name (default: this one)."),
            "resource": string("The resource.", minLength=1),
            "divisor": {**QUANTITY, "description": "Unit the value is given in (default 1)."},
        },
        required=("resource",),
    ),
}
"""The sources of an env var's value, each with the keys Kubernetes requires."""

ENV_VAR = {
    **obj(
        "An environment variable, as in a container spec: a literal value or valueFrom.",
        {
            "name": string("Variable name.", minLength=1),
            "value": string("Literal value."),
            "valueFrom": {
                **obj("Source of the value: exactly one of its fields.", ENV_SOURCES),
                "oneOf": [{"required": [key]} for key in ENV_SOURCES],
            },
        },
        required=("name",),
    ),
    "not": {"required": ["value", "valueFrom"]},
}


def env_var_problem(var: Any) -> str | None:
    """What is wrong with an env var item, as the schema above says it (for objects that did
    not go through admission); None when nothing is."""
    if not isinstance(var, dict):
        return "must be an object"
    if "value" in var and "valueFrom" in var:
        return "value and valueFrom are exclusive"
    source = var.get("valueFrom")
    if source is None:
        return None
    if not isinstance(source, dict):
        return "valueFrom must be an object"
    given = [key for key in source if key in ENV_SOURCES]
    if len(given) != 1 or len(source) != 1:
        return f"valueFrom needs exactly one of {', '.join(ENV_SOURCES)}, got {sorted(source)}"
    key = given[0]
    ref = source[key]
    if not isinstance(ref, dict):
        return f"valueFrom.{key} must be an object"
    for field in ENV_SOURCES[key].get("required", ()):
        if not ref.get(field):
            return f"valueFrom.{key}.{field} is required"
    return None
