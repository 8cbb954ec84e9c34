"""The one config system: strict pydantic models loaded from YAML with ``--set`` overrides.

Every component (model, trainer, data-prep, eval) describes its settings as subclasses of
``StrictConfig``. A config file is YAML; any field can be overridden from the command line as
``--set section.key=value`` where ``value`` is parsed as YAML. Unknown keys, wrong types and
impossible combinations raise ``ConfigError`` whose message names the key and what was expected.

This module must not import torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ConfigError",
    "Fraction",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveInt",
    "StrictConfig",
    "apply_overrides",
    "dump_yaml",
    "load_yaml",
    "parse_override",
    "validate",
]


class ConfigError(ValueError):
    """A configuration problem, with a message meant for the person who wrote the config."""


class StrictConfig(BaseModel):
    """Base for every config section: no unknown keys, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True, frozen=False)


# Constrained field types shared by every config section.
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-5`` as a float, as YAML 1.2 does (PyYAML reads a string)."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(source: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from a file path; errors name the file."""
    path = Path(source)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        data = yaml.load(text, Loader=_Yaml12Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_value(text: str) -> Any:
    """Parse one override value the way it would be read from the YAML file."""
    try:
        return yaml.load(text, Loader=_Yaml12Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse override value {text!r}: {e}") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b.c=1"`` → (["a", "b", "c"], 1)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} must look like section.key=value")
    return key.split("."), parse_value(value)


def apply_overrides(
    data: Mapping[str, Any], overrides: Iterable[str], schema: type[BaseModel] | None = None
) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.path=value`` overrides applied.

    When ``schema`` is given, an override naming a key the schema does not have fails here with
    the list of valid keys at that level (a typo should never silently create a new key).
    """
    result = _deep_copy(data)
    for item in overrides:
        path, value = parse_override(item)
        node: dict[str, Any] = result
        model: type[BaseModel] | None = schema
        for depth, part in enumerate(path):
            if model is not None and part not in model.model_fields:
                where = ".".join(path[:depth]) or "the top level"
                valid = ", ".join(sorted(model.model_fields))
                raise ConfigError(
                    f"override {'.'.join(path)}: unknown key {part!r} in {where} "
                    f"(valid keys: {valid})"
                )
            if depth == len(path) - 1:
                node[part] = value
                break
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {'.'.join(path)}: {'.'.join(path[: depth + 1])} is not a section"
                )
            node = child
            model = _section_model(model, part)
    return result


def _section_model(model: type[BaseModel] | None, field: str) -> type[BaseModel] | None:
    if model is None:
        return None
    annotation = model.model_fields[field].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


T = TypeVar("T", bound=BaseModel)


def validate(schema: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Validate raw data into ``schema``; turn pydantic's errors into one readable ConfigError."""
    try:
        return schema.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid {source}:"]
    for item in error.errors(include_url=False):
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"].startswith("value_error"):
            message = message.removeprefix("Value error, ")
        elif "input" in item and not item["type"].startswith("missing"):
            value = item["input"]
            message = f"{message} (got {value!r} of type {type(value).__name__})"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def dump_yaml(config: BaseModel) -> str:
    """Serialise a config back to YAML that ``load_yaml`` + ``validate`` read unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
