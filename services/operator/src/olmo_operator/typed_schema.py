"""Typed fields that are their own schema: one declaration per field drives both the CRD's
OpenAPI v3 schema and the parser of the objects the API server hands back.

The kubebuilder idea (Go types with ``json:`` tags and ``+kubebuilder:validation`` markers are
the CRD source) in Python: a frozen, keyword-only dataclass whose fields are declared with
:func:`prop` — JSON name, description, ``required``, ``default``, ``enum``, ``pattern``,
``minimum``/``maximum``, ``min_length``/``max_length``, ``max_items``, ``list_map_keys``,
``nullable``. The field's annotation gives the OpenAPI type: ``str``/``int``/``float``/``bool``, a nested
dataclass (an object), ``tuple[T, ...]`` (an array), ``dict[str, str]`` (a string map),
``X | None`` (may be absent). A value passed on to Kubernetes as it is (``dict[str, Any]``,
``tuple[dict[str, Any], ...]``) takes its OpenAPI node from ``schema=``.

:func:`object_schema` writes the schema; :func:`parse` reads a mapping into the dataclass with
the same metadata: defaults where a field is absent (as the API server defaults), then the same
checks the API server makes, so an object that skipped admission (or a unit test) gets a
:class:`SpecError` that names the field's path (``spec.nodePools[1].maxPreemptions``). Unknown
fields are ignored, as the API server prunes them; ``null`` counts as absent unless the field is
``nullable``. A field that is absent, not required and without a default is empty: ``None``,
``()``, ``{}`` or, for a nested dataclass, that dataclass with its own defaults.

An object's description is its field's; a class docstring describes objects that are no field
(list items, the top-level spec). Class variable ``ONE_OF`` (JSON names) asks for exactly one of
those fields. Rules across fields beyond that are written by hand by the caller.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import types
from collections.abc import Callable, Mapping
from typing import Any, Union, get_args, get_origin, get_type_hints

from olmo_operator.openapi import list_map

spec_type = dataclasses.dataclass(frozen=True, kw_only=True)
"""How every spec class is declared (keyword-only, so fields keep the schema's order)."""


class SpecError(ValueError):
    """The object cannot be used as written; the message names the field."""


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""``Prop.default`` of a field without one."""


@dataclasses.dataclass(frozen=True)
class Pattern:
    """A string format: the regular expression the API server checks, what the error says the
    value ``must`` do, and an ``also`` test for what a Kubernetes regular expression cannot say
    (it has no lookahead)."""

    regex: str
    must: str
    also: Callable[[str], bool] | None = None

    def matches(self, value: str) -> bool:
        return re.search(self.regex, value) is not None and (self.also is None or self.also(value))


@dataclasses.dataclass(frozen=True)
class Prop:
    """A field's metadata; made by :func:`prop`."""

    name: str
    description: str
    required: bool = False
    default: Any = NO_DEFAULT
    enum: tuple[str, ...] = ()
    pattern: Pattern | None = None
    minimum: int | None = None
    maximum: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    max_items: int | None = None
    list_map_keys: tuple[str, ...] = ()
    nullable: bool = False
    schema: Mapping[str, Any] | None = None
    wire: Any = None
    convert: Callable[[Any], Any] | None = None


def prop(name: str, description: str, **markers: Any) -> Any:
    """A dataclass field named ``name`` in JSON, described by ``description``.

    ``markers`` are :class:`Prop`'s: ``default`` is the schema's and the dataclass's default;
    ``enum``, ``pattern`` and the length bounds of a ``tuple[str, ...]`` apply to its items,
    ``max_items`` and ``list_map_keys`` (``x-kubernetes-list-type: map``: those keys are unique)
    to the list. ``wire=T, convert=f``: the field is ``T`` on the wire and ``f(T)`` in Python.
    """
    meta = Prop(name, description, **markers)
    if meta.default is NO_DEFAULT:
        return dataclasses.field(metadata={"prop": meta})
    return dataclasses.field(default=meta.default, metadata={"prop": meta})


@functools.cache
def props(cls: type) -> tuple[tuple[dataclasses.Field[Any], Prop, Any], ...]:
    """``(field, metadata, wire type)`` of each field of ``cls``, in declaration order."""
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta: Prop = f.metadata["prop"]
        tp = meta.wire if meta.wire is not None else hints[f.name]
        inner, optional = _optional(tp)
        if meta.nullable and not optional:
            raise TypeError(f"{cls.__name__}.{f.name}: nullable needs an Optional type")
        fillable = optional or dataclasses.is_dataclass(inner) or get_origin(inner) in (tuple, dict)
        if not (meta.required or meta.default is not NO_DEFAULT or fillable):
            raise TypeError(f"{cls.__name__}.{f.name}: give a default, required=True or None")
        out.append((f, meta, tp))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Types


def _optional(tp: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, else ``(tp, False)``."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(get_args(tp)):
            return args[0], True
    return tp, False


def _item_type(tp: Any) -> Any:
    """``T`` of ``tuple[T, ...]`` (an array), ``dict[str, T]`` (a map), else None."""
    args = get_args(tp)
    if get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    if get_origin(tp) is dict and args[0] is str:
        return args[1]
    return None


_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _description(cls: type) -> str:
    doc = inspect.cleandoc(cls.__doc__ or "")
    if not doc or doc.startswith(f"{cls.__name__}("):  # the signature dataclass makes up
        raise TypeError(f"{cls.__name__} needs a docstring: it describes the object")
    return " ".join(doc.split("\n\n")[0].split())


# --------------------------------------------------------------------------------------------
# The schema


def object_schema(cls: type, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI v3 object schema of dataclass ``cls``."""
    properties = {meta.name: _node(tp, meta) for _, meta, tp in props(cls)}
    out: dict[str, Any] = {
        "type": "object",
        "description": description or _description(cls),
        "properties": properties,
    }
    required = [meta.name for _, meta, _ in props(cls) if meta.required]
    if required:
        out["required"] = required
    one_of = getattr(cls, "ONE_OF", ())
    if one_of:
        out["oneOf"] = [{"required": [key]} for key in one_of]
    return out


def _node(tp: Any, meta: Prop) -> dict[str, Any]:
    tp, _ = _optional(tp)
    item = _item_type(tp)
    if dataclasses.is_dataclass(tp):
        node = object_schema(tp, meta.description)  # type: ignore[arg-type]
    elif get_origin(tp) is tuple:
        node = {"type": "array", "description": meta.description, "items": _items(item, meta)}
        if meta.max_items is not None:
            node["maxItems"] = meta.max_items
        if meta.list_map_keys:
            node.update(list_map(*meta.list_map_keys))
    elif get_origin(tp) is dict and item is str:
        node = {"type": "object", "description": meta.description}
        node["additionalProperties"] = {"type": "string"}
    elif tp in _SCALARS:
        node = {"type": _SCALARS[tp], "description": meta.description, **_scalar_markers(meta)}
    else:  # plain data: its given node, described after its type, where a reader looks
        given = _given_schema(meta)
        node = {"type": given["type"], "description": meta.description, **given}
    if meta.default is not NO_DEFAULT:
        node["default"] = meta.default
    if meta.nullable:
        node["nullable"] = True
    return node


def _items(tp: Any, meta: Prop) -> dict[str, Any]:
    if dataclasses.is_dataclass(tp):
        return object_schema(tp)  # type: ignore[arg-type]
    if tp in _SCALARS:
        return {"type": _SCALARS[tp], **_scalar_markers(meta)}
    return dict(_given_schema(meta))


def _given_schema(meta: Prop) -> Mapping[str, Any]:
    if meta.schema is None:
        raise TypeError(f"{meta.name}: plain data needs schema= (its OpenAPI node)")
    return meta.schema


def _scalar_markers(meta: Prop) -> dict[str, Any]:
    pairs = [
        ("enum", list(meta.enum) or None),
        ("pattern", meta.pattern.regex if meta.pattern else None),
        ("minimum", meta.minimum),
        ("maximum", meta.maximum),
        ("minLength", meta.min_length),
        ("maxLength", meta.max_length),
    ]
    return {key: value for key, value in pairs if value is not None}


# --------------------------------------------------------------------------------------------
# The parser


def parse(cls: type, raw: Any, path: str) -> Any:
    """``raw`` (the object at ``path``) read into dataclass ``cls``. Raises :class:`SpecError`."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path} must be an object, got {raw!r}")
    values: dict[str, Any] = {}
    for f, meta, tp in props(cls):
        where = f"{path}.{meta.name}"
        value = raw.get(meta.name)
        if value is None and meta.nullable and meta.name in raw:
            values[f.name] = None
            continue
        if value is None and meta.default is not NO_DEFAULT:
            value = meta.default
        if value is None:
            if meta.required:
                raise SpecError(f"{where} is required")
            values[f.name] = _empty(tp, where)
            continue
        value = _read(tp, value, meta, where)
        values[f.name] = meta.convert(value) if meta.convert else value
    _check_one_of(cls, raw, path)
    return cls(**values)


def _empty(tp: Any, where: str) -> Any:
    tp, optional = _optional(tp)
    if optional:
        return None
    if dataclasses.is_dataclass(tp):
        return parse(tp, {}, where)  # type: ignore[arg-type]
    return get_origin(tp)()  # () or {}: props() allows no other type here


def _check_one_of(cls: type, raw: Mapping[str, Any], path: str) -> None:
    one_of = getattr(cls, "ONE_OF", ())
    given = [key for key in one_of if raw.get(key) is not None]
    if one_of and len(given) != 1:
        raise SpecError(
            f"{path} needs exactly one of {', '.join(one_of)} (got {', '.join(given) or 'none'})"
        )


def _read(tp: Any, value: Any, meta: Prop, where: str) -> Any:
    tp, _ = _optional(tp)
    item = _item_type(tp)
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, where)  # type: ignore[arg-type]
    if get_origin(tp) is tuple:
        if not isinstance(value, list | tuple):
            raise SpecError(f"{where} must be a list, got {value!r}")
        if meta.max_items is not None and len(value) > meta.max_items:
            raise SpecError(f"{where} has {len(value)} items; at most {meta.max_items} are allowed")
        items = tuple(_read(item, v, meta, f"{where}[{i}]") for i, v in enumerate(value))
        _check_unique(value, meta.list_map_keys, where)
        return items
    if get_origin(tp) is dict:
        if not isinstance(value, Mapping):
            raise SpecError(f"{where} must be an object, got {value!r}")
        if item is str:
            return {k: _scalar(str, v, Prop(k, ""), f"{where}[{k!r}]") for k, v in value.items()}
        return dict(value)
    return _scalar(tp, value, meta, where)


def _check_unique(items: list[Any], keys: tuple[str, ...], where: str) -> None:
    seen: dict[tuple[Any, ...], int] = {}
    for i, item in enumerate(items if keys else ()):
        key = tuple(item.get(k) for k in keys)
        if key in seen:
            names = "/".join(keys)
            raise SpecError(
                f"{where}[{i}] has the {names} of {where}[{seen[key]}] "
                f"({'/'.join(map(str, key))}): each {names} must be unique"
            )
        seen[key] = i


def _scalar(tp: Any, value: Any, meta: Prop, where: str) -> Any:
    if tp is bool and not isinstance(value, bool):
        raise SpecError(f"{where} must be true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SpecError(f"{where} must be an integer, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise SpecError(f"{where} must be a string, got {value!r}")
    if tp is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise SpecError(f"{where} must be a number, got {value!r}")
        value = float(value)
    if meta.minimum is not None and value < meta.minimum:
        raise SpecError(f"{where} must be at least {meta.minimum}, got {value}")
    if meta.maximum is not None and value > meta.maximum:
        raise SpecError(f"{where} must be at most {meta.maximum}, got {value}")
    if tp is str:
        _check_string(value, meta, where)
    return value


def _check_string(value: str, meta: Prop, where: str) -> None:
    if meta.min_length == 1 and not value:
        raise SpecError(f"{where} must be a non-empty string")
    if meta.min_length is not None and len(value) < meta.min_length:
        raise SpecError(f"{where} must be at least {meta.min_length} characters long")
    if meta.max_length is not None and len(value) > meta.max_length:
        raise SpecError(
            f"{where} must be at most {meta.max_length} characters long, got {len(value)}"
        )
    if meta.enum and value not in meta.enum:
        raise SpecError(f"{where} must be one of {', '.join(meta.enum)}, got {value!r}")
    if meta.pattern is not None and not meta.pattern.matches(value):
        raise SpecError(f"{where} must {meta.pattern.must}, got {value!r}")
