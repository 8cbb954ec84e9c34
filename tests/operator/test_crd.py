"""The OLMoJob CRD: generated once from Python, copies in k8s/ and helm/ never drift, the schema
is structural and accepts the examples while rejecting broken objects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from olmo_operator import cli
from olmo_operator import contract as c
from olmo_operator.crd import (
    CRD_PATHS,
    apply_defaults,
    crd,
    crd_yaml,
    openapi_schema,
    to_json_schema,
)
from olmo_operator.spec import SpecError, parse_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO_ROOT / "k8s" / "examples").glob("olmojob-*.yaml"))


def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(
        to_json_schema(openapi_schema()), format_checker=jsonschema.FormatChecker()
    )


def _errors(obj: dict[str, Any]) -> list[str]:
    return [e.message for e in _validator().iter_errors(obj)]


def _olmojobs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == c.KIND]


# --------------------------------------------------------------------------------------------
# Generated files


@pytest.mark.parametrize("rel", CRD_PATHS)
def test_checked_in_crd_matches_the_generated_text(rel: str) -> None:
    path = REPO_ROOT / rel
    assert path.is_file(), f"{rel} is missing: run `olmo-operator crd --write`"
    assert path.read_text() == crd_yaml(), f"{rel} drifted: run `olmo-operator crd --write`"


def test_crd_check_command_fails_on_drift_and_write_repairs_it(tmp_path: Path, capsys) -> None:
    assert cli.main(["crd", "--check", str(tmp_path)]) == 1
    assert cli.main(["crd", "--write", str(tmp_path)]) == 0
    assert cli.main(["crd", "--check", str(tmp_path)]) == 0
    (tmp_path / CRD_PATHS[1]).write_text(crd_yaml().replace("Preemptions", "Preempted"))
    assert cli.main(["crd", "--check", str(tmp_path)]) == 1
    assert "helm/crds/olmojobs.yaml" in capsys.readouterr().err


def test_crd_command_prints_the_yaml(capsys) -> None:
    assert cli.main(["crd"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == crd()


def test_repo_root_is_found_from_the_package() -> None:
    assert cli.find_repo_root() == REPO_ROOT


# --------------------------------------------------------------------------------------------
# The definition


def test_crd_identity_subresource_and_columns() -> None:
    doc = crd()
    spec = doc["spec"]
    assert doc["metadata"]["name"] == "olmojobs.olmo-k8s.io"
    assert spec["group"] == "olmo-k8s.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "OLMoJob" and spec["names"]["plural"] == "olmojobs"
    assert spec["names"]["shortNames"] == ["olmo"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {col["name"]: col for col in version["additionalPrinterColumns"]}
    assert [n for n, col in columns.items() if not col.get("priority")] == [
        "Phase",
        "Step",
        "Restarts",
        "Preemptions",
        "Age",
    ]
    assert columns["Step"]["jsonPath"] == ".status.step"
    assert columns["Preemptions"]["jsonPath"] == ".status.restarts.preemptions"
    assert columns["Age"]["type"] == "date"
    # kubectl get olmojobs -o wide: the goodput ledger's ratio and the attempt's node count
    assert columns["Goodput"] == {
        "name": "Goodput", "type": "number", "jsonPath": ".status.goodput.ratio", "priority": 1
    }  # fmt: skip
    assert columns["Nodes"]["jsonPath"] == ".status.nodes" and columns["Nodes"]["priority"] == 1


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for key, sub in (schema.get("properties") or {}).items():
        out += _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        out += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += _walk(schema["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    """Every node has a type (or is int-or-string / preserve-unknown), defaults validate against
    their own schema, and oneOf branches carry no types (Kubernetes' structural rules)."""
    for path, node in _walk(openapi_schema()):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if node.get("type") == "object":
            assert not ("properties" in node and "additionalProperties" in node), path
        for branch in node.get("oneOf", []):
            assert set(branch) <= {"required"}, path
        if "default" in node:
            jsonschema.validate(node["default"], to_json_schema(node))


def test_every_spec_field_is_described() -> None:
    spec = openapi_schema()["properties"]["spec"]
    missing = [p for p, node in _walk(spec) if "description" not in node and p.count(".") <= 2]
    assert not [p for p in missing if not p.endswith("{}") and not p.endswith("[]")], missing


def test_status_has_the_fields_the_operator_and_the_trainer_write() -> None:
    status = openapi_schema()["properties"]["status"]["properties"]
    for key in (
        "phase",
        "conditions",
        "attempt",
        "restarts",
        "nodePool",
        "nodePoolIndex",
        "step",
        "tokens",
        "latestCheckpoint",
        "lastEval",
        "startTime",
        "completionTime",
        "message",
        "observedGeneration",
        "progress",
        "lastEvalFailure",
        "lastResume",
    ):
        assert key in status, key
    assert status["phase"]["enum"] == list(c.PHASES)
    # The operator's own record now (the pods report into a ConfigMap): typed, not free-form.
    assert "x-kubernetes-preserve-unknown-fields" not in status["progress"]


# --------------------------------------------------------------------------------------------
# Examples and invalid objects


def test_there_are_examples_for_tiny_1b_and_7b() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"olmojob-tiny-cpu.yaml", "olmojob-1b.yaml", "olmojob-7b.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd(path: Path) -> None:
    docs = _olmojobs(path)
    assert docs, f"{path.name} has no OLMoJob"
    for doc in docs:
        assert _errors(doc) == []


def _tiny() -> dict[str, Any]:
    return _olmojobs(REPO_ROOT / "k8s" / "examples" / "olmojob-tiny-cpu.yaml")[0]


def _with(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(_tiny())
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return obj


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.model", {"preset": "3b"}, "is not one of"),
        ("spec.model", {"preset": "tiny", "config": "x: 1"}, "is valid under each of"),
        ("spec.model", {}, "is not valid under any of the given schemas"),
        ("spec.image", _DELETE, "'image' is a required property"),
        ("spec.nodes", 0, "less than the minimum"),
        ("spec.gpusPerNode", -1, "less than the minimum"),
        ("spec.nodes", "2", "is not of type 'integer'"),
        ("spec.checkpoint.keepLast", 0, "less than the minimum"),
        ("spec.checkpoint", {"interval": 10}, "is not valid under any of the given schemas"),
        (
            "spec.checkpoint",
            {"claimName": "c", "uri": "s3://bucket/runs"},
            "is valid under each of",
        ),
        ("spec.checkpoint", {"uri": "s3://Bucket/runs"}, "does not match"),
        ("spec.checkpoint", {"uri": "s3://bucket/runs/"}, "does not match"),
        ("spec.checkpoint", {"uri": "https://bucket/runs"}, "does not match"),
        ("spec.dataset", {"uri": "gs://b"}, "does not match"),
        ("spec.dataset", {"uri": "s3:/bucket/tokens"}, "does not match"),
        ("spec.dataset", {"claimName": "d", "uri": "s3://bucket/t"}, "is valid under each of"),
        ("spec.dataset", {"path": "tokens"}, "is not valid under any of the given schemas"),
        ("spec.storage", {"endpoint": "minio:9000"}, "does not match"),
        ("spec.storage", {"serviceAccountName": "Bad_Name"}, "does not match"),
        ("spec.storage", {"scratchSizeLimit": "lots"}, "does not match"),
        ("spec.storage", {"secretRef": {"googleCredentialsKey": "k.json"}}, "'name' is a required"),
        ("spec.dataset.path", "/abs/path", "does not match"),
        ("spec.imagePullPolicy", "Sometimes", "is not one of"),
        ("spec.nodePools", [{"preemptible": True}], "'name' is a required property"),
        (
            "spec.nodePools",
            [{"name": "a", "tolerations": [{"operator": "Maybe"}]}],
            "is not one of",
        ),
        ("spec.wandb", {"mode": "loud"}, "is not one of"),
        ("spec.overrides", ["no-equals-sign"], "does not match"),
        ("spec.resources", {"limits": {"cpu": "lots"}}, "does not match"),
        ("spec.replicas", 3, "Additional properties are not allowed"),
        ("metadata.name", "x" * 43, "is too long"),
        ("metadata.name", "1st-run", "does not match"),
        ("status.phase", "Exploded", "is not one of"),
    ],
)
def test_invalid_objects_are_rejected(path: str, value: Any, expected: str) -> None:
    obj = _with(path, value)
    errors = _errors(obj)
    assert any(expected in e for e in errors), errors
    # The operator's parser reads the spec with the same declaration, so it refuses the same
    # spec, except inside what it passes on to Kubernetes as is (resources, tolerations) and for
    # fields the API server prunes.
    if path.startswith("spec.") and (path, expected) not in SCHEMA_ONLY:
        with pytest.raises(SpecError):
            parse_spec(obj["spec"], job_name="run")


SCHEMA_ONLY = {
    ("spec.resources", "does not match"),
    ("spec.nodePools", "is not one of"),
    ("spec.replicas", "Additional properties are not allowed"),
}


def test_metadata_takes_any_object_meta_field() -> None:
    obj = _with("metadata", {"name": "olmo-tiny", "namespace": "ml", "labels": {"team": "nlp"}})
    assert _errors(obj) == []


def test_quantities_accept_integers_and_strings() -> None:
    assert _errors(_with("spec.resources", {"limits": {"cpu": 4, "memory": "8Gi"}})) == []


def test_progress_is_the_operators_typed_record() -> None:
    rejected = {"field": "step", "reason": "must be an integer", "time": "2026-01-01T00:00:00Z"}
    record = {"attempt": 2, "step": 3, "rejected": {"trainer": rejected}}
    assert _errors(_with("status", {"progress": record})) == []
    assert _errors(_with("status", {"progress": {"step": "3"}})) != []


# --------------------------------------------------------------------------------------------
# Defaults


def test_defaults_fill_in_like_the_api_server() -> None:
    spec_schema = openapi_schema()["properties"]["spec"]
    spec = apply_defaults(
        spec_schema,
        {
            "model": {"preset": "tiny"},
            "image": "img",
            "dataset": {"claimName": "d"},
            "checkpoint": {"claimName": "k"},
            "nodePools": [{"name": "spot", "preemptible": True}],
        },
    )
    assert spec["nodes"] == 1 and spec["gpusPerNode"] == 8 and spec["maxFailures"] == 3
    assert spec["checkpoint"] == {
        "claimName": "k",
        "interval": 1000,
        "keepLast": 3,
        "requireEvaluated": False,
    }
    # dataset.path has no schema default (it means nothing with dataset.uri): the parser fills
    # it in for a claim.
    assert spec["dataset"] == {"claimName": "d"}
    assert parse_spec(spec, job_name="x").dataset.path == "tokens"
    assert spec["nodePools"][0]["maxPreemptions"] == 3
    # Objects that are absent get no defaults (their parent does not exist).
    assert "eval" not in spec and "wandb" not in spec
    assert (
        _errors(
            {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": "x"}, "spec": spec}
        )
        == []
    )


def test_readme_documents_every_spec_field() -> None:
    readme = (REPO_ROOT / "services" / "operator" / "README.md").read_text()
    spec = openapi_schema()["properties"]["spec"]["properties"]
    missing = [k for k in spec if f"`{k}" not in readme and f"`{k}." not in readme]
    for parent in ("dataset", "checkpoint", "eval", "wandb", "storage"):
        for key in spec[parent]["properties"]:
            if key not in readme:
                missing.append(f"{parent}.{key}")
    assert not missing, f"services/operator/README.md does not mention {missing}"
