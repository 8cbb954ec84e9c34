"""An in-memory Kubernetes API server for running the real kopf operator in tests.

kmock's ``KubernetesEmulator`` (pinned in the root ``pyproject.toml``) gives us the HTTP server,
request parsing, the resource registry and API discovery. Its object store is too naive for a
kopf operator (see ``/work/shared/notes/kubernetes-testing.md``), so :class:`KubeEmulator`
replaces the object-serving half with the apiserver semantics an operator relies on:

- metadata: ``uid``, ``resourceVersion`` (one counter, bumped on every write; no-op writes are
  not writes), ``creationTimestamp``, ``generation`` (bumped when anything but metadata/status
  changes), ``generateName``; 201 on create, 409 on name conflicts and stale resourceVersions;
- patches: JSON merge, strategic merge (built-in kinds only: 415 for custom resources, as a real
  server answers), JSON patch with ``test`` (a failed test is 422), server-side apply as a merge;
  PUT replaces; the ``/status`` subresource changes only ``status`` and the main resource never
  changes ``status`` (for resources that have the subresource);
- list/watch with label selectors (``=``, ``==``, ``!=``, ``in``, ``notin``, ``k``, ``!k``) and
  field selectors (``path=value``, ``path!=value``), watch ``resourceVersion`` replay,
  ``timeoutSeconds``, ``sendInitialEvents``; deletecollection;
- deletion: finalizers and ``deletionTimestamp``, owner-reference garbage collection with the
  ``Background``/``Foreground``/``Orphan`` policies and the real defaults (batch/v1 Jobs orphan
  their pods unless told otherwise); pods' ``eviction`` subresource;
- a few validations and defaults a real server applies and that operators trip on: DNS names
  (Services are DNS-1035 labels, Job names at most 63 characters), label syntax (also of a pod
  spec's ``nodeSelector``), Job ``restartPolicy``/``podFailurePolicy``/Indexed rules and
  immutable template, Deployment
  selectors, Job selector generation, CRD ``default:`` values; namespaces must exist;
- CRDs (registered from a dict or created through the API) become discoverable resources;
- fault injection: :meth:`KubeEmulator.inject_fault` makes the next N matching requests fail.

:class:`ApiServer` serves an emulator on a real localhost port from a background thread (with
its own event loop) and writes a kubeconfig for it, so any client (kopf, ``kubernetes``) can
talk to it. The emulator runs no controllers except the garbage collector: tests play the
kubelet and the job controller themselves.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import copy
import datetime
import gzip
import importlib.resources
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
from kmock._internal import rendering

JSON = dict[str, Any]

SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-kmock",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T00:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
ALL_VERBS = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
# batch/v1 Jobs orphan their pods on delete unless a propagation policy says otherwise
# (kept for backwards compatibility by the real apiserver).
ORPHAN_BY_DEFAULT = {("batch", "v1", "jobs")}

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
DNS1123_LABEL = re.compile(rf"^{_DNS_LABEL}$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
CREATED = aiohttp.web.ResponseKey("created", str)
"""The name of the object a create made (response storage, for the audit record)."""
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# --------------------------------------------------------------------------------------------
# Errors answered as Kubernetes Status objects


class ApiError(Exception):
    """An answer with a non-2xx code, rendered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None):
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def body(self) -> JSON:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def _details(kind: str, name: str | None) -> JSON:
    return {"kind": kind, **({"name": name} if name else {})}


def not_found(plural: str, name: str | None = None) -> ApiError:
    message = f'{plural} "{name}" not found' if name else "the server could not find the resource"
    return ApiError(404, "NotFound", message, _details(plural, name))


def invalid(kind: str, name: str | None, causes: list[str]) -> ApiError:
    message = f'{kind} "{name or ""}" is invalid: ' + "; ".join(causes)
    return ApiError(422, "Invalid", message, _details(kind, name))


def conflict(plural: str, name: str, message: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {plural} "{name}": {message}',
        _details(plural, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


# --------------------------------------------------------------------------------------------
# Selectors


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=":
                return present and value in self.values
            case "!=":
                return not present or value not in self.values
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
        raise AssertionError(self.op)


_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<eq>==|=|!=)\s*(?P<value>[-A-Za-z0-9_.]*)"
    r"|\s(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
            continue
        depth += char == "("
        depth -= char == ")"
        current.append(char)
    terms.append("".join(current))
    return [t for t in terms if t.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    """``a=b,c!=d,e in (f,g),h notin (i),j,!k`` → requirements (all must hold)."""
    requirements = []
    for term in _split_terms(text or ""):
        m = _REQUIREMENT.match(term)
        if m is None or (m["neg"] and (m["eq"] or m["set"])):
            raise bad_request(f"unable to parse requirement: {term.strip()!r}")
        if m["neg"]:
            requirements.append(Requirement(m["key"], "!"))
        elif m["eq"]:
            op = "!=" if m["eq"] == "!=" else "="
            requirements.append(Requirement(m["key"], op, frozenset([m["value"]])))
        elif m["set"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(Requirement(m["key"], m["set"], values))
        else:
            requirements.append(Requirement(m["key"], "exists"))
    return requirements


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    """``metadata.name=x,status.phase!=Failed`` → (path, op, value) triples."""
    out = []
    for term in _split_terms(text or ""):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if m is None:
            raise bad_request(f"invalid field selector: {term.strip()!r}")
        out.append((m[1], "!=" if m[2] == "!=" else "=", m[3]))
    return out


def _field(obj: JSON, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Selector:
    labels: tuple[Requirement, ...] = ()
    fields: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Selector:
        return cls(
            tuple(parse_label_selector(params.get("labelSelector"))),
            tuple(parse_field_selector(params.get("fieldSelector"))),
        )

    def matches(self, obj: JSON) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        return all((_field(obj, path) == value) == (op == "=") for path, op, value in self.fields)


# --------------------------------------------------------------------------------------------
# Patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Merge keys of the lists that a strategic merge patch merges item by item (the rest replace).
STRATEGIC_MERGE_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "containerStatuses": ("name",),
    "initContainerStatuses": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
}
STRATEGIC_MERGE_SETS = {"finalizers"}


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """An approximation of Kubernetes' strategic merge patch, good for the built-in kinds.

    Lists of known merge keys merge item by item (``$patch: delete`` removes an item),
    ``finalizers`` merge as sets, ``$patch: replace`` replaces a map, other lists replace.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _strategic_merge_list(key, result[key], value)
        elif isinstance(value, list):
            result[key] = [
                {k: v for k, v in item.items() if k != "$patch"} if isinstance(item, dict) else item
                for item in value
                if not (isinstance(item, dict) and item.get("$patch") == "delete")
            ]
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _strategic_merge_list(key: str, old: list, new: list) -> list:
    if key in STRATEGIC_MERGE_SETS:
        return old + [item for item in new if item not in old]
    dicts = [item for item in old + new if isinstance(item, dict)]
    merge_key = next(
        (k for k in STRATEGIC_MERGE_KEYS.get(key, ()) if all(k in item for item in dicts)), None
    )
    if merge_key is None or len(dicts) != len(old) + len(new):
        return copy.deepcopy(new)
    result = [copy.deepcopy(item) for item in old]
    for item in new:
        index = next((i for i, o in enumerate(result) if o[merge_key] == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def apply_json_patch(obj: JSON, ops: Any, kind: str, name: str) -> JSON:
    if not isinstance(ops, list):
        raise bad_request("a JSON patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(obj, ops)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise invalid(kind, name, [f"the JSON patch failed: {e}"]) from e


# --------------------------------------------------------------------------------------------
# Validation and defaults of the kinds operators create


def _name_rule(res: kmock.resource) -> tuple[re.Pattern[str], int, str]:
    if res.plural == "services":
        return DNS1035_LABEL, 63, "a DNS-1035 label"
    if res.plural in ("namespaces", "jobs"):
        return DNS1123_SUBDOMAIN if res.plural == "jobs" else DNS1123_LABEL, 63, "63 characters"
    if res.plural == "events":
        return re.compile(r"^[^/%]+$"), 253, "a path segment name"
    return DNS1123_SUBDOMAIN, 253, "a DNS-1123 subdomain"


def _label_causes(labels: Any, where: str) -> list[str]:
    causes = []
    if labels is None:
        return causes
    if not isinstance(labels, dict):
        return [f"{where}: must be a map"]
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            not LABEL_NAME.match(name)
            or len(name) > 63
            or (prefix and (not DNS1123_SUBDOMAIN.match(prefix) or len(prefix) > 253))
        ):
            causes.append(f"{where}: Invalid value: {key!r}: not a qualified name")
        if not isinstance(value, str):
            causes.append(f"{where}[{key}]: Invalid value: {value!r}: must be a string")
        elif value and (len(value) > 63 or not LABEL_NAME.match(value)):
            causes.append(f"{where}[{key}]: Invalid value: {value!r}: not a valid label value")
    return causes


def _pod_spec_causes(spec: Any, where: str, restart_policies: set[str] | None = None) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{where}: Required value"]
    causes = []
    containers = spec.get("containers")
    if not containers:
        causes.append(f"{where}.containers: Required value")
    for i, c in enumerate(containers or []):
        if not c.get("name") or not DNS1123_LABEL.match(str(c.get("name"))):
            causes.append(f"{where}.containers[{i}].name: Invalid value: {c.get('name')!r}")
        if not c.get("image"):
            causes.append(f"{where}.containers[{i}].image: Required value")
        names = [e.get("name") for e in c.get("env") or []]
        if not all(names):
            causes.append(f"{where}.containers[{i}].env: every variable needs a name")
    policy = spec.get("restartPolicy", "Always")
    if restart_policies is not None and policy not in restart_policies:
        causes.append(f"{where}.restartPolicy: Unsupported value: {policy!r}")
    causes += _label_causes(spec.get("nodeSelector"), f"{where}.nodeSelector")
    for key in ("hostname", "subdomain"):
        value = spec.get(key)
        if value is not None and (not DNS1123_LABEL.match(value) or len(value) > 63):
            causes.append(f"{where}.{key}: Invalid value: {value!r}: must be a DNS-1123 label")
    return causes


def _job_causes(obj: JSON) -> list[str]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    causes = _pod_spec_causes(template.get("spec"), "spec.template.spec", {"Never", "OnFailure"})
    causes += _label_causes((template.get("metadata") or {}).get("labels"), "spec.template.labels")
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        causes.append(f"spec.completionMode: Unsupported value: {mode!r}")
    if mode == "Indexed" and spec.get("completions") is None:
        causes.append("spec.completions: Required value: when completion mode is Indexed")
    policy = spec.get("podFailurePolicy")
    if policy is not None:
        if (template.get("spec") or {}).get("restartPolicy") != "Never":
            causes.append(
                "spec.podFailurePolicy: Invalid value: only allowed when "
                "spec.template.spec.restartPolicy is Never"
            )
        for i, rule in enumerate(policy.get("rules") or []):
            action = rule.get("action")
            if action not in ("FailJob", "Ignore", "Count", "FailIndex"):
                causes.append(f"spec.podFailurePolicy.rules[{i}].action: Unsupported {action!r}")
            if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
                causes.append(
                    f"spec.podFailurePolicy.rules[{i}]: FailIndex needs backoffLimitPerIndex"
                )
            if bool(rule.get("onExitCodes")) == bool(rule.get("onPodConditions")):
                causes.append(
                    f"spec.podFailurePolicy.rules[{i}]: exactly one of onExitCodes and "
                    "onPodConditions is required"
                )
            exit_codes = rule.get("onExitCodes") or {}
            if exit_codes and exit_codes.get("operator") not in ("In", "NotIn"):
                causes.append(f"spec.podFailurePolicy.rules[{i}].onExitCodes.operator: Unsupported")
            if exit_codes.get("operator") == "In" and 0 in (exit_codes.get("values") or []):
                causes.append(f"spec.podFailurePolicy.rules[{i}].onExitCodes.values: 0 with In")
    for key in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            causes.append(f"spec.{key}: Invalid value: {value!r}: must be a non-negative integer")
    return causes


def _deployment_causes(obj: JSON) -> list[str]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    causes = _pod_spec_causes(template.get("spec"), "spec.template.spec", {"Always"})
    selector = (spec.get("selector") or {}).get("matchLabels")
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        causes.append("spec.selector: Required value")
    elif any(labels.get(k) != v for k, v in selector.items()):
        causes.append("spec.template.metadata.labels: Invalid value: `selector` does not match")
    return causes


def validate(res: kmock.resource, kind: str, obj: JSON, old: JSON | None) -> None:
    """Raise 422 for the mistakes a real apiserver rejects (a subset; see the module doc)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    pattern, limit, what = _name_rule(res)
    causes = []
    if not pattern.match(name) or len(name) > limit:
        causes.append(f"metadata.name: Invalid value: {name!r}: must be {what} (max {limit})")
    causes += _label_causes(meta.get("labels"), "metadata.labels")
    if (res.group, res.plural) == ("batch", "jobs"):
        causes += _job_causes(obj)
        if old is not None:
            for key in ("template", "completionMode", "selector"):
                if (obj.get("spec") or {}).get(key) != (old.get("spec") or {}).get(key):
                    causes.append(f"spec.{key}: Invalid value: field is immutable")
    elif (res.group, res.plural) == ("apps", "deployments"):
        causes += _deployment_causes(obj)
    elif (res.group, res.plural) == ("", "pods"):
        causes += _pod_spec_causes(obj.get("spec"), "spec")
    if causes:
        raise invalid(kind, name, causes)


def apply_schema_defaults(value: Any, schema: JSON | None) -> Any:
    """Fill ``default:`` values of a structural OpenAPI v3 schema, as the apiserver does."""
    if not schema or not isinstance(value, dict) or schema.get("type") not in (None, "object"):
        if isinstance(value, list) and schema and isinstance(schema.get("items"), dict):
            return [apply_schema_defaults(item, schema["items"]) for item in value]
        return value
    for key, sub in (schema.get("properties") or {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = apply_schema_defaults(value[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in value:
            if key not in (schema.get("properties") or {}):
                value[key] = apply_schema_defaults(value[key], extra)
    return value


# --------------------------------------------------------------------------------------------
# Routing


@dataclass(frozen=True)
class Route:
    kind: str  # root, version, api, apis, group, resources, object
    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_route(path: str) -> Route | None:
    """Map an API path (trailing slashes allowed) to what it addresses; None if not the API."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return Route("root")
    if parts == ["version"]:
        return Route("version")
    if parts[0] == "api":
        if len(parts) == 1:
            return Route("api")
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return Route("apis")
        if len(parts) == 2:
            return Route("group", group=parts[1])
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return Route("resources", group, version)
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] == "status"):
        if len(rest) == 3 and rest[2] == "finalize":
            pass
        else:
            namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return Route("object", group, version, plural, namespace, name, subresource)


# --------------------------------------------------------------------------------------------
# Watches and faults


@dataclass(eq=False)
class Watcher:
    resource: kmock.resource
    namespace: str | None
    name: str | None
    selector: Selector
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def event_for(self, kind: str, obj: JSON, old: JSON | None) -> JSON | None:
        """The event this watcher sees for a change, if any (selectors turn changes into
        ADDED/DELETED when an object starts/stops matching, as a real server does)."""
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return None
        if self.name is not None and meta.get("name") != self.name:
            return None
        now = self.selector.matches(obj)
        before = old is not None and self.selector.matches(old)
        if kind == "MODIFIED":
            if now and not before:
                kind = "ADDED"
            elif before and not now:
                kind, now = "DELETED", True
        if not now:
            return None
        return {"type": kind, "object": obj}


@dataclass
class Fault:
    """The next ``times`` requests matching ``method`` and ``path`` (a regex searched in the
    path, query excluded) are answered with ``code`` instead of being served."""

    method: str
    path: re.Pattern[str]
    code: int
    times: int
    reason: str = ""
    hits: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.times - len(self.hits)


@dataclass(frozen=True)
class AuditRecord:
    """One answered request (``name`` is the created object's name for a create)."""

    method: str
    path: str
    code: int
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    time: float = 0.0
    """``time.monotonic()`` when the answer was ready (the same clock in every thread)."""


FAULT_REASONS = {
    409: (
        "Conflict",
        "the object has been modified; please apply your changes to the latest version",
    ),
    429: ("TooManyRequests", "the server has received too many requests"),
    500: ("InternalError", "an error on the server (injected) has prevented the request"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
}


# --------------------------------------------------------------------------------------------
# The emulator


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with apiserver semantics good enough for a kopf operator.

    Built-in resources come from kmock's bundled discovery data; custom resources are added
    with :meth:`register_crd` or by creating a CRD through the API. Namespaces ``default`` and
    ``kube-system`` exist from the start. Every object is also visible in kmock's
    ``objects`` view (with its version history), and every request in ``audit``.
    """

    namespaces: tuple[str, ...] = ("default", "kube-system")
    event_log_size: int = 100_000

    _live: dict[kmock.resource, dict[tuple[str | None, str], JSON]] = attrs.field(
        factory=lambda: collections.defaultdict(dict), init=False
    )
    _uids: dict[str, tuple[kmock.resource, str | None, str]] = attrs.field(factory=dict, init=False)
    _rv: itertools.count = attrs.field(factory=lambda: itertools.count(1), init=False)
    _last_rv: int = attrs.field(default=0, init=False)
    _log: collections.deque = attrs.field(init=False)
    _watchers: set[Watcher] = attrs.field(factory=set, init=False)
    _schemas: dict[kmock.resource, JSON] = attrs.field(factory=dict, init=False)
    faults: list[Fault] = attrs.field(factory=list, init=False)
    _faults_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _ips: itertools.count = attrs.field(factory=lambda: itertools.count(10), init=False)
    audit: list[AuditRecord] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._log = collections.deque(maxlen=self.event_log_size)
        # kmock's bundled discovery data (its load_bundled() uses a deprecated importlib call).
        bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz")
        self.resources.load_data(gzip.decompress(bundled.read_bytes()))
        for namespace in self.namespaces:
            self.create_object(
                kmock.resource("", "v1", "namespaces"), None, {"metadata": {"name": namespace}}
            )

    # ---- public helpers (call them in the server's loop: ApiServer.call) ------------------

    def register_crd(self, crd: JSON, store: bool = True) -> list[kmock.resource]:
        """Make a CRD's served versions discoverable and servable; store the CRD object too
        (unless it is being created through the API)."""
        spec = crd["spec"]
        names = spec["names"]
        group = spec["group"]
        added = []
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            res = kmock.resource(group, version["name"], names["plural"])
            subresources = set((version.get("subresources") or {}).keys())
            self.resources[res] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                verbs=ALL_VERBS,
                shortnames=set(names.get("shortNames") or ()),
                categories=set(names.get("categories") or ()),
                subresources=subresources,
            )
            self._schemas[res] = (version.get("schema") or {}).get("openAPIV3Schema") or {}
            added.append(res)
        if store and (None, crd["metadata"]["name"]) not in self._live[CRDS]:
            self.create_object(CRDS, None, crd, _register=False)
        return added

    def create_object(self, res: kmock.resource, namespace: str | None, body: JSON, **kw) -> JSON:
        return self._create(res, namespace, body, {}, **kw)

    def inject_fault(
        self, method: str, path: str, code: int = 500, times: int = 1, reason: str = ""
    ) -> Fault:
        """Answer the next ``times`` requests matching (method, path regex) with ``code``."""
        fault = Fault(method.upper(), re.compile(path), code, times, reason)
        with self._faults_lock:
            self.faults.append(fault)
        return fault

    def count(self, method: str, plural: str, code: int | None = None, **where: str) -> int:
        """How many audited requests match, e.g. ``count("POST", "jobs", code=201)``."""
        return sum(
            1
            for r in list(self.audit)
            if r.method == method.upper()
            and r.plural == plural
            and (code is None or r.code == code)
            and all(getattr(r, k) == v for k, v in where.items())
        )

    def close_watches(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

    # ---- request dispatch --------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's own request parser fails on some valid paths (``/api/v1/namespaces``), so
        # parse the HTTP side here and leave the Kubernetes side to ``parse_route``.
        try:
            request = await _parse_request(raw_request, id=len(self._requests))
            self._requests.append(request)
            return await self._handle(request)
        except Exception as e:
            if self._errors:
                self._errors[-1].append(e)
            return await self._render_error(e)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path
        method = str(request.method.value if hasattr(request.method, "value") else request.method)
        method = method.upper()
        route = parse_route(path)
        record = {}
        if route is not None and route.kind == "object":
            record = {
                "plural": route.plural,
                "namespace": route.namespace,
                "name": route.name,
                "subresource": route.subresource,
            }
        try:
            fault = self._take_fault(method, path)
            if fault is not None:
                reason, message = FAULT_REASONS.get(fault.code, ("InternalError", "injected"))
                raise ApiError(fault.code, fault.reason or reason, message)
            if route is None:
                response = await super(kmock.KubernetesEmulator, self)._handle(request)
            elif route.kind == "object":
                response = await self._serve_object(request, method, route)
            else:
                response = aiohttp.web.json_response(await self._serve_discovery(request, route))
        except ApiError as e:
            response = aiohttp.web.json_response(e.body(), status=e.code)
        except kmock.KubernetesError as e:
            body = ApiError(e.status, e.reason or "NotFound", e.message or "").body()
            response = aiohttp.web.json_response(body, status=e.status)
        if CREATED in response:
            record["name"] = response[CREATED]
        self.audit.append(
            AuditRecord(method, path, response.status, **record, time=time.monotonic())
        )
        return response

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._faults_lock:
            for fault in self.faults:
                if (
                    fault.remaining > 0
                    and fault.method in (method, "*")
                    and fault.path.search(path)
                ):
                    fault.hits.append(f"{method} {path}")
                    return fault
        return None

    async def _serve_discovery(self, request: rendering.Request, route: Route) -> Any:
        if route.kind == "root":
            return await self._serve_root(request)
        if route.kind == "version":
            return dict(SERVER_VERSION)
        if route.kind == "api":
            return await self._serve_api(request)
        if route.kind == "apis":
            return await self._serve_apis(request)
        fake = rendering.Request(resource=kmock.resource(group=route.group, version=route.version))
        if route.kind == "group":
            fake = rendering.Request(resource=kmock.resource(group=route.group))
            return await self._serve_group(fake)
        return await self._serve_version(fake)

    async def _serve_object(
        self, request: rendering.Request, method: str, route: Route
    ) -> aiohttp.web.StreamResponse:
        res = kmock.resource(route.group, route.version, route.plural)
        if res not in self.resources:
            raise not_found(route.plural or "")
        info = self.resources[res]
        namespace = route.namespace if info.namespaced else None
        if route.namespace is not None and not info.namespaced:
            raise not_found(route.plural or "")
        params = dict(request.params)
        sub = route.subresource
        if sub is not None and sub not in info.subresources:
            raise not_found(f"{route.plural}/{sub}", route.name)
        if route.name is None:
            if method == "GET" and params.get("watch") in ("true", "1"):
                return await self._watch(request, res, namespace, None, params)
            if method == "GET":
                return aiohttp.web.json_response(self._list(res, namespace, params))
            if method == "POST":
                if info.namespaced and namespace is None:
                    raise ApiError(405, "MethodNotAllowed", "create needs a namespace")
                body = request.data
                obj = self._create(res, namespace, body, params)
                response = aiohttp.web.json_response(obj, status=201)
                response[CREATED] = obj["metadata"]["name"]
                return response
            if method == "DELETE":
                return aiohttp.web.json_response(
                    self._delete_collection(res, namespace, params, request.data)
                )
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if info.namespaced and namespace is None:
            raise not_found(route.plural or "", route.name)
        if method == "GET" and params.get("watch") in ("true", "1"):
            return await self._watch(request, res, namespace, route.name, params)
        if method == "GET":
            return aiohttp.web.json_response(self._fetch(res, namespace, route.name))
        if method == "PUT":
            obj = self._replace(res, namespace, route.name, request.data, sub, params)
            return aiohttp.web.json_response(obj)
        if method == "PATCH":
            content_type = _header(request, "Content-Type").split(";")[0].strip()
            obj, created = self._patch(
                res, namespace, route.name, request, content_type, sub, params
            )
            return aiohttp.web.json_response(obj, status=201 if created else 200)
        if method == "DELETE":
            obj, done = self._delete(res, namespace, route.name, params, request.data)
            return aiohttp.web.json_response(obj, status=200 if done else 202)
        if method == "POST" and (res.plural, sub) == ("pods", "eviction"):
            return aiohttp.web.json_response(self._evict(namespace, route.name), status=201)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed here")

    # ---- storage ------------------------------------------------------------------------------

    def _kind(self, res: kmock.resource) -> str:
        return self.resources[res].kind or (res.plural or "").capitalize()

    def _api_version(self, res: kmock.resource) -> str:
        return f"{res.group}/{res.version}" if res.group else str(res.version)

    def _bump(self) -> str:
        self._last_rv = next(self._rv)
        return str(self._last_rv)

    def _live_obj(self, res: kmock.resource, namespace: str | None, name: str) -> JSON:
        obj = self._live[res].get((namespace, name))
        if obj is None:
            raise not_found(res.plural or "", name)
        return obj

    def _store(self, res: kmock.resource, kind: str, obj: JSON, old: JSON | None) -> None:
        """Record a new state (or a removal, kind=DELETED) and tell the watchers."""
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        ns, name = key
        if kind == "DELETED":
            self._live[res].pop(key, None)
            self._uids.pop(meta["uid"], None)
            self.objects[res, ns, name].delete()
        else:
            self._live[res][key] = obj
            self._uids[meta["uid"]] = (res, ns, name)
            if kind == "ADDED" and (res, ns, name) not in self.objects:
                self.objects[res, ns, name] = [obj]
            else:
                self.objects[res, ns, name].history.append(obj)
        rv = int(meta["resourceVersion"])
        self._log.append((rv, res, kind, obj, old))
        for watcher in list(self._watchers):
            if watcher.resource == res:
                event = watcher.event_for(kind, obj, old)
                if event is not None:
                    watcher.queue.put_nowait(event)

    def _select(self, res: kmock.resource, namespace: str | None, selector: Selector) -> list[JSON]:
        items = [
            obj
            for (ns, _), obj in self._live[res].items()
            if (namespace is None or ns == namespace) and selector.matches(obj)
        ]
        return sorted(
            items, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"])
        )

    def _list(self, res: kmock.resource, namespace: str | None, params: dict[str, str]) -> JSON:
        items = self._select(res, namespace, Selector.from_params(params))
        return {
            "apiVersion": self._api_version(res),
            "kind": f"{self._kind(res)}List",
            "metadata": {"resourceVersion": str(self._last_rv)},
            "items": items,
        }

    def _fetch(self, res: kmock.resource, namespace: str | None, name: str) -> JSON:
        return self._live_obj(res, namespace, name)

    # ---- create -------------------------------------------------------------------------------

    def _create(
        self,
        res: kmock.resource,
        namespace: str | None,
        body: Any,
        params: dict[str, str],
        _register: bool = True,
    ) -> JSON:
        kind = self._kind(res)
        if not isinstance(body, dict):
            raise bad_request(f"the body of a {kind} must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if self.resources[res].namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = namespace
            namespaces = kmock.resource("", "v1", "namespaces")
            if (None, namespace) not in self._live[namespaces]:
                raise not_found("namespaces", namespace)
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(kind, None, ["metadata.name: Required value: name or generateName"])
            while True:
                suffix = "".join(random.choices(GENERATE_ALPHABET, k=5))
                candidate = meta["generateName"] + suffix
                if (meta.get("namespace"), candidate) not in self._live[res]:
                    meta["name"] = candidate
                    break
        name = meta["name"]
        if (meta.get("namespace"), name) in self._live[res]:
            raise ApiError(
                409, "AlreadyExists", f'{res.plural} "{name}" already exists', _details(kind, name)
            )
        obj["apiVersion"] = self._api_version(res)
        obj["kind"] = kind
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(key, None)
        if "status" in self.resources[res].subresources:
            obj.pop("status", None)
        self._default(res, obj)
        validate(res, kind, obj, None)
        if params.get("dryRun"):
            return obj
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta["resourceVersion"] = self._bump()
        if (res.group, res.plural) == ("batch", "jobs") and not obj["spec"].get("manualSelector"):
            _generate_job_selector(obj)
        if res == CRDS:
            if _register:
                self.register_crd(obj, store=False)
            obj["status"] = _crd_status(obj)
        self._store(res, "ADDED", obj, None)
        return obj

    def _default(self, res: kmock.resource, obj: JSON) -> None:
        if res in self._schemas:
            apply_schema_defaults(obj, self._schemas[res])
        if (res.group, res.plural) == ("batch", "jobs"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("parallelism", 1)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            if spec.get("completionMode") == "NonIndexed":
                spec.setdefault("completions", 1)
        if (res.group, res.plural) == ("", "services"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec.get("clusterIP") is None:
                n = next(self._ips)
                spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"

    # ---- update -------------------------------------------------------------------------------

    def _commit_update(
        self, res: kmock.resource, old: JSON, new: JSON, subresource: str | None, dry_run: bool
    ) -> JSON:
        """Apply the apiserver's rules to a candidate new state, store it, return it."""
        kind = self._kind(res)
        info = self.resources[res]
        new = copy.deepcopy(new)
        old_meta, meta = old["metadata"], new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        for key in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        if "status" in info.subresources:
            if subresource == "status":
                new = {**copy.deepcopy(old), "status": new.get("status")}
                if new["status"] is None:
                    new.pop("status")
                meta = new["metadata"]
            elif "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if old_meta.get("deletionTimestamp"):
            # New finalizers cannot be added to an object being deleted.
            meta["finalizers"] = [
                f for f in meta.get("finalizers") or [] if f in (old_meta.get("finalizers") or [])
            ]
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        self._default(res, new)
        if _strip(new) == _strip(old) and meta == old_meta:
            return old  # a no-op write: no new resourceVersion, no event
        validate(res, kind, new, old)
        if dry_run:
            return new
        ignored = ("metadata", "status") if "status" in info.subresources else ("metadata",)
        if _strip(new, ignored) != _strip(old, ignored):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = self._bump()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(res, new)
            return new
        self._store(res, "MODIFIED", new, old)
        return new

    def _check_resource_version(self, res: kmock.resource, old: JSON, body: Any) -> None:
        wanted = (
            ((body or {}).get("metadata") or {}).get("resourceVersion")
            if isinstance(body, dict)
            else None
        )
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise conflict(
                res.plural or "",
                old["metadata"]["name"],
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )

    def _replace(
        self,
        res: kmock.resource,
        namespace: str | None,
        name: str,
        body: Any,
        sub: str | None,
        params: dict[str, str],
    ) -> JSON:
        old = self._live_obj(res, namespace, name)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        if (body.get("metadata") or {}).get("name") not in (None, name):
            raise bad_request("the name of the object does not match the name on the URL")
        self._check_resource_version(res, old, body)
        return self._commit_update(res, old, body, sub, bool(params.get("dryRun")))

    def _patch(
        self,
        res: kmock.resource,
        namespace: str | None,
        name: str,
        request: rendering.Request,
        content_type: str,
        sub: str | None,
        params: dict[str, str],
    ) -> tuple[JSON, bool]:
        kind = self._kind(res)
        body = request.data
        if content_type == "application/apply-patch+yaml":
            if not params.get("fieldManager"):
                raise bad_request("PATCH with apply requires a fieldManager")
            body = yaml.safe_load(request.text) if request.text else None
            if (namespace, name) not in self._live[res]:
                body = dict(
                    body or {}, metadata=dict((body or {}).get("metadata") or {}, name=name)
                )
                return self._create(res, namespace, body, params), True
        old = self._live_obj(res, namespace, name)
        if content_type == "application/json-patch+json":
            new = apply_json_patch(old, body, kind, name)
        elif content_type in ("application/merge-patch+json", "application/apply-patch+yaml"):
            self._check_resource_version(res, old, body)
            new = merge_patch(old, body)
        elif content_type == "application/strategic-merge-patch+json":
            if res in self._schemas:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/json-patch+json, application/merge-patch+json, "
                    f"application/apply-patch+yaml (strategic merge is not supported for {kind})",
                )
            self._check_resource_version(res, old, body)
            new = strategic_merge_patch(old, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")
        if not isinstance(new, dict):
            raise bad_request("the patched object is not a JSON object")
        return self._commit_update(res, old, new, sub, bool(params.get("dryRun"))), False

    # ---- delete and garbage collection ---------------------------------------------------

    def _delete(
        self,
        res: kmock.resource,
        namespace: str | None,
        name: str,
        params: dict[str, str],
        options: Any,
    ) -> tuple[JSON, bool]:
        """Delete (or start deleting) one object; returns (object, deleted right away)."""
        obj = self._live_obj(res, namespace, name)
        options = options if isinstance(options, dict) else {}
        pre = options.get("preconditions") or {}
        meta = obj["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise conflict(res.plural or "", name, "the UID in the precondition does not match")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(
                res.plural or "", name, "the resourceVersion in the precondition does not match"
            )
        policy = options.get("propagationPolicy") or params.get("propagationPolicy")
        orphan = options.get("orphanDependents")
        if orphan is None and "orphanDependents" in params:
            orphan = params["orphanDependents"] == "true"
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan else "Background"
        if policy is None:
            policy = (
                "Orphan"
                if (res.group, res.version, res.plural) in ORPHAN_BY_DEFAULT
                else "Background"
            )
        if policy not in ("Orphan", "Background", "Foreground"):
            raise bad_request(f"unknown propagationPolicy {policy!r}")
        if options.get("dryRun") or params.get("dryRun"):
            return obj, True
        return self._delete_now(res, obj, policy)

    def _delete_now(self, res: kmock.resource, obj: JSON, policy: str) -> tuple[JSON, bool]:
        meta = obj["metadata"]
        if policy == "Orphan":
            self._orphan_dependents(meta["uid"])
        finalizers = list(meta.get("finalizers") or [])
        foreground = policy == "Foreground" and bool(self._dependents(meta["uid"]))
        if foreground and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if meta.get("deletionTimestamp"):
            if finalizers != list(meta.get("finalizers") or []):
                new = copy.deepcopy(obj)
                new["metadata"]["finalizers"] = finalizers
                new["metadata"]["resourceVersion"] = self._bump()
                self._store(res, "MODIFIED", new, obj)
                obj = new
            if "foregroundDeletion" in finalizers:
                asyncio.get_running_loop().call_soon(self._collect, meta["uid"], True)
            return obj, False
        if finalizers:
            new = copy.deepcopy(obj)
            new["metadata"].update(
                deletionTimestamp=_now(),
                deletionGracePeriodSeconds=0,
                finalizers=finalizers,
                resourceVersion=self._bump(),
            )
            self._store(res, "MODIFIED", new, obj)
            if "foregroundDeletion" in finalizers:
                asyncio.get_running_loop().call_soon(self._collect, meta["uid"], True)
            return new, False
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = self._bump()
        self._remove(res, gone)
        return gone, True

    def _remove(self, res: kmock.resource, obj: JSON) -> None:
        """The object is gone for good: tell watchers, then collect what it owned."""
        self._store(res, "DELETED", obj, None)
        uid = obj["metadata"]["uid"]
        try:  # the garbage collector works in the background, after this request
            asyncio.get_running_loop().call_soon(self._collect, uid, False)
        except RuntimeError:  # not in the server's loop (set-up code): collect now
            self._collect(uid, False)
        if res == kmock.resource("", "v1", "namespaces"):
            for other, objects in list(self._live.items()):
                for key in [k for k in objects if k[0] == obj["metadata"]["name"]]:
                    if key in objects:
                        self._delete_now(other, objects[key], "Background")
        for ref in obj["metadata"].get("ownerReferences") or []:
            self._maybe_finish_foreground(ref.get("uid"))

    def _dependents(self, uid: str) -> list[tuple[kmock.resource, JSON]]:
        return [
            (res, obj)
            for res, objects in self._live.items()
            for obj in objects.values()
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
        ]

    def _orphan_dependents(self, uid: str) -> None:
        for res, obj in self._dependents(uid):
            new = copy.deepcopy(obj)
            refs = [r for r in obj["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences")
            new["metadata"]["resourceVersion"] = self._bump()
            self._store(res, "MODIFIED", new, obj)

    def _collect(self, uid: str, foreground: bool) -> None:
        """The garbage collector: dependents of a gone (or foreground-deleted) owner go too,
        unless another owner of theirs still exists (then only the dangling reference goes)."""
        if foreground and uid not in self._uids:
            return
        for res, stale in self._dependents(uid):
            key = (stale["metadata"].get("namespace"), stale["metadata"]["name"])
            obj = self._live[res].get(key)
            if obj is None or obj["metadata"]["uid"] != stale["metadata"]["uid"]:
                continue  # already collected as a side effect of an earlier deletion
            others = [
                r
                for r in obj["metadata"]["ownerReferences"]
                if r.get("uid") != uid and r.get("uid") in self._uids
            ]
            if others:
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = others
                new["metadata"]["resourceVersion"] = self._bump()
                self._store(res, "MODIFIED", new, obj)
            elif not obj["metadata"].get("deletionTimestamp"):
                self._delete_now(res, obj, "Foreground" if foreground else "Background")
        if foreground:
            self._maybe_finish_foreground(uid)

    def _maybe_finish_foreground(self, uid: str | None) -> None:
        if uid is None or uid not in self._uids or self._dependents(uid):
            return
        res, ns, name = self._uids[uid]
        obj = self._live[res][(ns, name)]
        finalizers = obj["metadata"].get("finalizers") or []
        if not obj["metadata"].get("deletionTimestamp") or "foregroundDeletion" not in finalizers:
            return
        self._commit_update(
            res,
            obj,
            merge_patch(
                obj,
                {"metadata": {"finalizers": [f for f in finalizers if f != "foregroundDeletion"]}},
            ),
            None,
            False,
        )

    def _delete_collection(
        self, res: kmock.resource, namespace: str | None, params: dict[str, str], options: Any
    ) -> JSON:
        items = self._select(res, namespace, Selector.from_params(params))
        deleted = []
        for obj in items:
            meta = obj["metadata"]
            obj, _ = self._delete(res, meta.get("namespace"), meta["name"], params, options)
            deleted.append(obj)
        return {
            "apiVersion": self._api_version(res),
            "kind": f"{self._kind(res)}List",
            "metadata": {"resourceVersion": str(self._last_rv)},
            "items": deleted,
        }

    def _evict(self, namespace: str | None, name: str) -> JSON:
        pods = kmock.resource("", "v1", "pods")
        pod = self._live_obj(pods, namespace, name)
        status = copy.deepcopy(pod.get("status") or {})
        conditions = [
            c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"
        ]
        conditions.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "EvictionByEvictionAPI",
                "message": "Eviction API: evicting",
                "lastTransitionTime": _now(),
            }
        )
        pod = self._commit_update(
            pods, pod, {**pod, "status": {**status, "conditions": conditions}}, "status", False
        )
        self._delete_now(pods, pod, "Background")
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }

    # ---- watch --------------------------------------------------------------------------------

    async def _watch(
        self,
        request: rendering.Request,
        res: kmock.resource,
        namespace: str | None,
        name: str | None,
        params: dict[str, str],
    ) -> aiohttp.web.StreamResponse:
        selector = Selector.from_params(params)
        watcher = Watcher(res, namespace, name, selector)
        since = params.get("resourceVersion") or ""
        initial: list[JSON] = []
        if since in ("", "0") or params.get("sendInitialEvents") == "true":
            initial = [
                {"type": "ADDED", "object": o} for o in self._select(res, namespace, selector)
            ]
            initial = [
                e for e in initial if name is None or e["object"]["metadata"]["name"] == name
            ]
            if params.get("sendInitialEvents") == "true":
                initial.append(_bookmark(self._api_version(res), self._kind(res), self._last_rv))
        else:
            if not since.isdigit():
                raise bad_request(f"invalid resourceVersion {since!r}")
            oldest = self._log[0][0] if self._log else self._last_rv + 1
            if int(since) < oldest - 1 and int(since) < self._last_rv:
                gone = ApiError(410, "Expired", f"too old resource version: {since}").body()
                initial = [{"type": "ERROR", "object": gone}]
            else:
                for rv, r, kind, obj, old in list(self._log):
                    if rv > int(since) and r == res:
                        event = watcher.event_for(kind, obj, old)
                        if event is not None:
                            initial.append(event)
        self._watchers.add(watcher)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        deadline = None
        if params.get("timeoutSeconds"):
            deadline = asyncio.get_running_loop().time() + float(params["timeoutSeconds"])
        try:
            await response.prepare(request._raw_request)
            for event in initial:
                await response.write(json.dumps(event).encode() + b"\n")
            if initial and initial[-1]["type"] == "ERROR":
                return response
            while True:
                timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if timeout is not None and timeout <= 0:
                    break
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout)
                except TimeoutError:
                    break
                if event is None:
                    break
                await response.write(json.dumps(event).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(watcher)
        return response


def _generate_job_selector(job: JSON) -> None:
    """What the apiserver adds to a Job without ``manualSelector``: a uid-based selector and the
    matching pod template labels (plus the job-name labels)."""
    uid, name = job["metadata"]["uid"], job["metadata"]["name"]
    template_meta = job["spec"].setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.setdefault("labels", {})
    for prefix in ("batch.kubernetes.io/", ""):
        labels[f"{prefix}controller-uid"] = uid
        labels[f"{prefix}job-name"] = name
    job["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}


def _strip(obj: JSON, ignored: tuple[str, ...] = ("metadata",)) -> JSON:
    return {k: v for k, v in obj.items() if k not in ignored}


async def _parse_request(raw: aiohttp.web.BaseRequest, id: int) -> rendering.Request:
    try:
        return await rendering.Request._parse(raw, id=id)
    except ValueError:  # kmock's guess of the Kubernetes side failed: keep the HTTP facts
        body = await raw.read()
        text = body.decode("utf-8", errors="replace")
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        return rendering.Request(
            id=id,
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=dict(raw.query),
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            data=data,
            body=body,
            text=text,
        )


def _header(request: rendering.Request, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), "")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bookmark(api_version: str, kind: str, rv: int) -> JSON:
    return {
        "type": "BOOKMARK",
        "object": {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {
                "resourceVersion": str(rv),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        },
    }


def _crd_status(crd: JSON) -> JSON:
    return {
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
        ],
    }


# --------------------------------------------------------------------------------------------
# Serving on a real port


class _QuietTestServer(aiohttp.test_utils.RawTestServer):
    """aiohttp's raw test server without access logs (one line per request otherwise) and
    with a short shutdown grace."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        server = aiohttp.web.Server(
            self._handler, loop=self._loop, debug=debug, access_log=None, **kwargs
        )
        return aiohttp.web.ServerRunner(server, debug=debug, shutdown_timeout=2, **kwargs)


class ApiServer:
    """Serve a :class:`KubeEmulator` on ``127.0.0.1:<free port>`` from a background thread.

    ``with ApiServer(kubeconfig=path) as server:`` starts it and writes a kubeconfig pointing at
    it; ``server.emulator`` is the emulator, ``server.call(fn, *args)`` runs ``fn`` in the
    server's event loop (the safe way to touch the emulator's state from a test thread).
    """

    def __init__(
        self,
        emulator: KubeEmulator | None = None,
        kubeconfig: Path | None = None,
        access_log: bool = False,
    ):
        self.emulator = emulator if emulator is not None else KubeEmulator()
        self.kubeconfig = kubeconfig
        self.access_log = access_log
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ApiServer:
        self._thread.start()
        if not self._started.wait(30) or self._error is not None:
            raise RuntimeError(f"the API emulator did not start: {self._error!r}")
        if self.kubeconfig is not None:
            write_kubeconfig(self.kubeconfig, self.url)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in the server's loop; return its result."""
        assert self._loop is not None

        async def run() -> Any:
            return fn(*args, **kwargs)

        future: concurrent.futures.Future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(30)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:  # reported to start()
            self._error = e
            self._started.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server_cls = _QuietTestServer if not self.access_log else aiohttp.test_utils.RawTestServer
        async with (
            self.emulator,
            kmock.Server(self.emulator, host="127.0.0.1", server_cls=server_cls) as server,
        ):
            self.url = f"http://{server.host}:{server.port}"
            self._started.set()
            await self._stop.wait()
            self.emulator.close_watches()
            await asyncio.sleep(0.05)  # let the watch streams end before the server closes


def kubeconfig_dict(url: str, namespace: str = "default") -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
    }


def write_kubeconfig(path: Path, url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig_dict(url)))
    return path
