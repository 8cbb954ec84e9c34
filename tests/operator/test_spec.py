"""The OLMoJob spec is declared once: each field's metadata makes both the CRD's schema and the
parser's behaviour (defaults, types, bounds, enums, patterns), and the parser's errors name the
field's path."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import pytest

from olmo_operator.crd import apply_defaults, openapi_schema
from olmo_operator.spec import JobSpec, parse_job, parse_spec, spec_type
from olmo_operator.typed_schema import (
    NO_DEFAULT,
    Prop,
    SpecError,
    object_schema,
    parse,
    prop,
    props,
)

MINIMAL: dict[str, Any] = {
    "model": {"preset": "tiny"},
    "image": "img",
    "dataset": {"claimName": "data"},
    "checkpoint": {"claimName": "ckpt"},
}

# Every optional object present (with only what it requires), so that every default applies.
EVERY_OBJECT: dict[str, Any] = {
    "model": {"configMapRef": {"name": "cfg"}},
    "image": "img",
    "dataset": {"claimName": "data", "prepare": {"pipelineConfigMap": {"name": "pipe"}}},
    "checkpoint": {"claimName": "ckpt"},
    "nodePools": [{"name": "spot"}],
    "eval": {},
    "wandb": {"secretRef": {"name": "wandb"}},
    "imagePullSecrets": [{"name": "registry"}],
}


def _spec_schema() -> dict[str, Any]:
    return openapi_schema()["properties"]["spec"]


def _classes(cls: type = JobSpec) -> list[type]:
    """``cls`` and every spec class reachable from its fields."""
    out = [cls]
    for _, _, tp in props(cls):
        for candidate in (tp, *getattr(tp, "__args__", ())):
            for inner in (candidate, *getattr(candidate, "__args__", ())):
                if dataclasses.is_dataclass(inner) and inner not in out:
                    out += [c for c in _classes(inner) if c not in out]  # type: ignore[arg-type]
    return out


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(MINIMAL)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return spec


# --------------------------------------------------------------------------------------------
# One declaration


@pytest.mark.parametrize("default", [5, 7])
def test_one_declaration_sets_the_schema_and_the_parser(default: int) -> None:
    @spec_type
    class Toy:
        """A toy."""

        size: int = prop("size", "How big.", minimum=2, maximum=9, default=default)

    assert object_schema(Toy)["properties"]["size"] == {
        "type": "integer",
        "description": "How big.",
        "minimum": 2,
        "maximum": 9,
        "default": default,
    }
    assert parse(Toy, {}, "toy").size == default
    assert Toy().size == default
    with pytest.raises(SpecError, match=re.escape("toy.size must be at least 2, got 1")):
        parse(Toy, {"size": 1}, "toy")


def test_parser_defaults_are_the_schema_defaults() -> None:
    """Parsing what the API server stores (defaults filled in from the CRD) and parsing the
    object as written give the same spec, for every default of every spec class."""
    written = copy.deepcopy(EVERY_OBJECT)
    assert parse_spec(written, job_name="run") == parse_spec(
        apply_defaults(_spec_schema(), written), job_name="run"
    )
    assert written == EVERY_OBJECT  # parsing leaves the object alone
    spec = parse_spec(written, job_name="run")
    checkpoint_schema = _spec_schema()["properties"]["checkpoint"]["properties"]
    assert spec.checkpoint.keep_last == checkpoint_schema["keepLast"]["default"] == 3
    assert spec.gpus_per_node == _spec_schema()["properties"]["gpusPerNode"]["default"] == 8
    assert spec.model.config_map is not None and spec.model.config_map.key == "config.yaml"
    assert spec.dataset.prepare is not None and spec.dataset.prepare.pipeline.key == "pipeline.yaml"
    assert spec.wandb is not None and spec.wandb.secret is not None
    assert spec.wandb.secret.key == "api-key"
    assert spec.node_pools[0].max_preemptions == 3 and spec.node_pools[0].preemptible is False


def test_every_declared_default_is_in_the_schema() -> None:
    for cls in _classes():
        schema = object_schema(cls)["properties"]
        for f, meta, _ in props(cls):
            if meta.default is NO_DEFAULT:
                assert "default" not in schema[meta.name], f"{cls.__name__}.{f.name}"
            else:
                assert schema[meta.name]["default"] == meta.default == f.default


def test_every_spec_field_has_a_description() -> None:
    classes = _classes()
    assert len(classes) >= 10, classes
    for cls in classes:
        for f, meta, _ in props(cls):
            assert isinstance(meta, Prop)
            assert meta.description.endswith("."), f"{cls.__name__}.{f.name}"

    def walk(node: dict[str, Any], path: str) -> None:
        assert node.get("description"), f"{path} has no description"
        for key, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict) and "properties" in node["items"]:
            walk(node["items"], f"{path}[]")

    walk(_spec_schema(), "spec")


# --------------------------------------------------------------------------------------------
# The parser


def test_a_minimal_spec_gets_the_defaults() -> None:
    spec = parse_spec(MINIMAL, job_name="run")
    assert (spec.nodes, spec.gpus_per_node, spec.processes_per_node) == (1, 8, 1)
    assert (spec.max_failures, spec.termination_grace_period_seconds) == (3, 120)
    assert spec.image_pull_policy == "IfNotPresent" and spec.suspend is False
    assert spec.dataset.path == "tokens" and spec.dataset.prepare is None
    assert spec.checkpoint.path == "run" and spec.run_dir == "/checkpoints/run"
    assert (spec.checkpoint.interval, spec.checkpoint.keep_last) == (1000, 3)
    assert spec.checkpoint.keep_every is None and spec.checkpoint.require_evaluated is False
    assert spec.eval.enabled is False and spec.eval.tasks == () and spec.wandb is None
    assert spec.node_pools == () and spec.node_pool(0) is None
    assert spec.overrides == () and spec.env == () and spec.resources == {}


def test_lists_maps_and_converted_fields_are_read() -> None:
    spec = parse_spec(
        {
            **MINIMAL,
            "imagePullSecrets": [{"name": "a"}, {"name": "b"}],
            "nodePools": [
                {"name": "spot", "preemptible": True, "nodeSelector": {"pool": "spot"}},
                {"name": "ondemand", "tolerations": [{"key": "gpu", "operator": "Exists"}]},
            ],
            "overrides": ["optimizer.lr=1e-4"],
            "env": [{"name": "X", "value": "1"}],
        },
        job_name="run",
    )
    assert spec.image_pull_secrets == ("a", "b")
    assert [p.name for p in spec.node_pools] == ["spot", "ondemand"]
    assert spec.node_pools[0].node_selector == {"pool": "spot"}
    assert spec.node_pools[1].tolerations == ({"key": "gpu", "operator": "Exists"},)
    assert spec.node_pool(5) == spec.node_pools[1]
    assert spec.overrides == ("optimizer.lr=1e-4",) and spec.env == ({"name": "X", "value": "1"},)


def test_null_is_absent_and_unknown_fields_are_ignored() -> None:
    """As the API server prunes them from a structural schema."""
    spec = parse_spec(
        {**MINIMAL, "nodes": None, "replicas": 3, "checkpoint": {"claimName": "k", "x": 1}},
        job_name="run",
    )
    assert spec.nodes == 1 and spec.checkpoint.keep_last == 3


def test_a_nullable_field_keeps_an_explicit_null() -> None:
    @spec_type
    class Toy:
        """A toy."""

        limit: int | None = prop("limit", "A limit.", default=4, nullable=True)

    assert object_schema(Toy)["properties"]["limit"]["nullable"] is True
    assert parse(Toy, {}, "toy").limit == 4
    assert parse(Toy, {"limit": None}, "toy").limit is None


def test_a_field_the_parser_could_not_fill_is_refused_when_declared() -> None:
    @spec_type
    class Toy:
        """A toy."""

        size: int = prop("size", "How big.")

    with pytest.raises(TypeError, match="give a default"):
        object_schema(Toy)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("nodes", "2", "spec.nodes must be an integer, got '2'"),
        ("nodes", True, "spec.nodes must be an integer, got True"),
        ("nodes", 0, "spec.nodes must be at least 1, got 0"),
        ("nodes", 5000, "spec.nodes must be at most 4096, got 5000"),
        ("gpusPerNode", -1, "spec.gpusPerNode must be at least 0, got -1"),
        ("suspend", "yes", "spec.suspend must be true or false, got 'yes'"),
        ("image", "", "spec.image must be a non-empty string"),
        ("image", 3, "spec.image must be a string, got 3"),
        (
            "imagePullPolicy",
            "Sometimes",
            "spec.imagePullPolicy must be one of Always, IfNotPresent, Never, got 'Sometimes'",
        ),
        ("model", {"preset": "3b"}, "spec.model.preset must be one of tiny, 1b, 7b, 65b, got '3b'"),
        ("model", {}, "spec.model needs exactly one of preset, config, configMapRef (got none)"),
        ("model", {"configMapRef": {"key": "k"}}, "spec.model.configMapRef.name is required"),
        ("model", "tiny", "spec.model must be an object, got 'tiny'"),
        ("checkpoint.keepLast", 0, "spec.checkpoint.keepLast must be at least 1, got 0"),
        (
            "checkpoint.path",
            "a/../b",
            "spec.checkpoint.path must be a relative path inside the volume, got 'a/../b'",
        ),
        (
            "dataset.path",
            "/abs",
            "spec.dataset.path must be a relative path inside the volume, got '/abs'",
        ),
        ("dataset.prepare", {"workers": 2}, "spec.dataset.prepare.pipelineConfigMap is required"),
        ("eval.tasks", ["piqa", ""], "spec.eval.tasks[1] must be a non-empty string"),
        ("eval.limit", 0, "spec.eval.limit must be at least 1, got 0"),
        ("wandb.mode", "loud", "spec.wandb.mode must be one of online, offline, disabled"),
        ("nodePools", {"name": "a"}, "spec.nodePools must be a list, got {'name': 'a'}"),
        ("nodePools", [{"name": "a", "maxPreemptions": 0}], "spec.nodePools[0].maxPreemptions"),
        ("nodePools", [{"name": "a"}, {}], "spec.nodePools[1].name is required"),
        ("nodePools", [{"name": "x" * 64}], "spec.nodePools[0].name must be at most 63"),
        ("nodePools", [{"name": f"p{i}"} for i in range(17)], "at most 16 are allowed"),
        (
            "nodePools",
            [{"name": "a", "nodeSelector": {"zone": 1}}],
            "spec.nodePools[0].nodeSelector['zone'] must be a string, got 1",
        ),
        (
            "nodePools",
            [{"name": "a"}, {"name": "b"}, {"name": "a"}],
            "spec.nodePools[2] has the name of spec.nodePools[0] (a): each name must be unique",
        ),
        ("imagePullSecrets", [{}], "spec.imagePullSecrets[0].name is required"),
        ("env", ["X=1"], "spec.env[0] must be an object, got 'X=1'"),
        ("overrides", ["=x"], "spec.overrides[0] must look like KEY=VALUE, got '=x'"),
        ("overrides", ["1st=x"], "spec.overrides[0] must look like KEY=VALUE, got '1st=x'"),
    ],
)
def test_bad_values_are_refused_with_the_fields_path(path: str, value: Any, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(_with(path, value), job_name="run")


@pytest.mark.parametrize("key", ["model", "dataset", "image", "checkpoint"])
def test_required_fields_are_named(key: str) -> None:
    spec = {k: v for k, v in MINIMAL.items() if k != key}
    with pytest.raises(SpecError, match=re.escape(f"spec.{key} is required")):
        parse_spec(spec, job_name="run")


def test_the_job_needs_a_name_and_namespace() -> None:
    with pytest.raises(SpecError, match=r"metadata\.name and metadata\.namespace are required"):
        parse_job({"metadata": {"name": "run"}, "spec": MINIMAL})
    job = parse_job({"metadata": {"name": "run", "namespace": "ml", "uid": "u"}, "spec": MINIMAL})
    assert (job.name, job.namespace, job.uid, job.generation) == ("run", "ml", "u", None)
    assert isinstance(job.spec, JobSpec)
