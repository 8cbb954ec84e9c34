"""What the CRD's schema says first, before the API server refuses the objects made from a spec:
queueName is a label value, paths have no '.'/'..' components, env valueFrom has the shape
Kubernetes requires. The operator's parser refuses the same (objects that skipped admission)."""

from __future__ import annotations

from typing import Any

import pytest

from olmo_operator.spec import SpecError, parse_spec
from tests.operator.test_crd import _errors, _with

SECRET = {"secretKeyRef": {"name": "s", "key": "k"}}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.queueName", "team queue"),
        ("spec.queueName", "-team"),
        ("spec.queueName", "q" * 64),
        ("spec.checkpoint.path", "../other-run"),
        ("spec.checkpoint.path", "runs/../../etc"),
        ("spec.checkpoint.path", "runs/./x"),
        ("spec.checkpoint.path", ".."),
        ("spec.dataset.path", "tokens/.."),
        ("spec.env", [{"name": "A", "value": "1", "valueFrom": SECRET}]),
        ("spec.env", [{"name": "A", "valueFrom": {}}]),
        (
            "spec.env",
            [{"name": "A", "valueFrom": {**SECRET, "configMapKeyRef": {"name": "c", "key": "k"}}}],
        ),
        ("spec.env", [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
        ("spec.env", [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c"}}}]),
        ("spec.env", [{"name": "A", "valueFrom": {"fieldRef": {"apiVersion": "v1"}}}]),
        ("spec.env", [{"name": "A", "valueFrom": {"resourceFieldRef": {"divisor": "1"}}}]),
        ("spec.env", [{"name": "A", "valueFrom": {"secretRef": {"name": "s"}}}]),
    ],
)
def test_the_schema_and_the_parser_refuse(path: str, value: Any) -> None:
    obj = _with(path, value)
    assert _errors(obj), f"the CRD accepts {path}={value!r}"
    with pytest.raises(SpecError):
        parse_spec(obj["spec"], job_name="run")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.queueName", "team-a.gpu_queue"),
        ("spec.checkpoint.path", "runs/v1..2/.hidden/...x"),
        ("spec.dataset.path", "tokens/..more"),
        ("spec.env", [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": SECRET}]),
        ("spec.env", [{"name": "A", "valueFrom": {"configMapKeyRef": {"key": "k"}}}]),
        ("spec.env", [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        (
            "spec.env",
            [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
        ),
    ],
)
def test_the_schema_and_the_parser_accept(path: str, value: Any) -> None:
    obj = _with(path, value)
    assert _errors(obj) == []
    parse_spec(obj["spec"], job_name="run")


def test_startup_timeout_is_positive_and_defaults_to_half_an_hour() -> None:
    assert _errors(_with("spec.startupTimeoutSeconds", 0))
    spec = parse_spec(_with("spec.startupTimeoutSeconds", 90)["spec"], job_name="run")
    assert spec.startup_timeout_seconds == 90
    obj = _with("spec.env", [])
    obj["spec"].pop("startupTimeoutSeconds", None)
    assert parse_spec(obj["spec"], job_name="run").startup_timeout_seconds == 1800
