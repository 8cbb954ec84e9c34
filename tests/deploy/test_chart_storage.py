"""The chart with object storage: a bucket per use (``storage.data.uri``,
``storage.checkpoints.uri``), credentials by workload identity (``serviceAccount``: GKE and EKS
annotations) or by a Secret (``storage.secretName``), an S3-compatible ``storage.endpoint``.

Rendered with Helm's own engine and validated as ``test_chart.py`` does (kubernetes-validate,
strict, for the chart's oldest and the newest Kubernetes; the OLMoJob against the shipped CRD and
then read by the operator), and the operator's objects built from the rendered OLMoJob are
checked too: the 7b and 65b presets run with no PersistentVolumeClaim at all.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest

from olmo_operator import resources
from olmo_operator.spec import parse_job
from tests.deploy.test_chart import (
    BUCKET_EXAMPLES,
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    Rendered,
    crd_schema,
    example,
    pod_specs,
    render,
)

BUCKETS = {"data": {"uri": "s3://olmo-data/dolma"}, "checkpoints": {"uri": "s3://olmo-ckpt/runs"}}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    # (release, values)
    "gke-7b": ("olmo-7b", example("values-gke-buckets.yaml")),
    "aws-65b": ("olmo-65b", example("values-aws-buckets.yaml")),
    "minio-secret": (
        "olmo-7b",
        {
            "storage": {**BUCKETS, "secretName": "minio-keys", "endpoint": "http://minio.s:9000"},
            "dataset": {"prepare": {"enabled": True, "pipeline": "sources: []\n"}},
            "checkpoint": {"path": "exp/a", "requireEvaluated": True},
        },
    ),
    "gcs-key-file": (
        "olmo-7b",
        {
            "storage": {
                "data": {"uri": "gs://olmo-data/tokens"},
                "checkpoints": {"uri": "gs://olmo-ckpt"},
                "secretName": "gcp-key",
                "googleCredentialsKey": "key.json",
            }
        },
    ),
    "existing-account": ("olmo-7b", {"storage": BUCKETS, "serviceAccount": {"name": "team-sa"}}),
    "checkpoints-only": ("olmo-7b", {"storage": {"checkpoints": BUCKETS["checkpoints"]}}),
}


@functools.cache
def case(key: str) -> Rendered:
    release, values = CASES[key]
    return Rendered(values, release)


def policy(r: Rendered) -> dict[str, Any]:
    (operator,) = [d for d in r.of_kind("Deployment") if d["metadata"]["name"].endswith("operator")]
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    (value,) = [e["value"] for e in container["env"] if e["name"] == "OLMO_OPERATOR_POLICY"]
    return json.loads(value)


def operator_objects(r: Rendered) -> list[dict[str, Any]]:
    """What the operator creates for the rendered OLMoJob (first attempt, data-prep, rotation)."""
    job = parse_job(r.olmojob)
    out = [*resources.desired_objects(job, resources.AttemptState(1)), resources.rotation_job(job)]
    if job.spec.dataset.prepare is not None:
        out.append(resources.dataprep_job(job))
    return out


@pytest.mark.parametrize("key", sorted(CASES))
def test_renders_lint_and_validate(key):
    release, values = CASES[key]
    result = helm_python.lint(str(CHART), values, strict=True)
    assert result["errors"] == [] and result["messages"] == []
    r = case(key)
    jsonschema.validate(r.olmojob, crd_schema())
    parsed = parse_job(r.olmojob)
    assert parsed.name == release and parsed.namespace == NAMESPACE
    for kube_version in KUBE_VERSIONS:
        for doc in [d for d in r.docs if d["kind"] != "OLMoJob"] + operator_objects(r):
            kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.mark.parametrize("key", ["gke-7b", "aws-65b", "minio-secret", "gcs-key-file"])
def test_buckets_need_no_volume_claim_at_all(key):
    r = case(key)
    assert r.of_kind("PersistentVolumeClaim") == [] and r.of_kind("PersistentVolume") == []
    spec = r.olmojob["spec"]
    assert "claimName" not in spec["dataset"] and "path" not in spec["dataset"]
    assert "claimName" not in spec["checkpoint"]
    assert policy(r)["allowedClaims"] == []
    for obj in operator_objects(r):
        for pod in pod_specs(obj):
            assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v], obj["kind"]


def test_the_big_presets_run_from_buckets():
    gke, aws = case("gke-7b"), case("aws-65b")
    assert gke.olmojob["spec"]["nodes"] == 8 and aws.olmojob["spec"]["nodes"] == 32
    assert gke.olmojob["spec"]["dataset"] == {"uri": "gs://my-olmo-data/dolma/v1_7"}
    assert aws.olmojob["spec"]["checkpoint"]["uri"] == "s3://my-olmo-checkpoints/runs"
    trainer = resources.trainer_job(parse_job(aws.olmojob), resources.AttemptState(1))
    args = trainer["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--run-dir") + 1] == "s3://my-olmo-checkpoints/runs/olmo-65b"
    assert 'data.paths=["s3://my-olmo-data/dolma/v1_7"]' in args
    assert "run directory s3://my-olmo-checkpoints/runs/olmo-65b" in aws.notes


@pytest.mark.parametrize(
    ("key", "annotation"),
    [
        (
            "gke-7b",
            {"iam.gke.io/gcp-service-account": "olmo-train@MY_PROJECT.iam.gserviceaccount.com"},
        ),
        ("aws-65b", {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/olmo-train"}),
    ],
)
def test_workload_identity_service_account(key, annotation):
    r = case(key)
    name = f"{r.release}-workload"
    account = r.one("ServiceAccount", name)
    assert account["metadata"]["annotations"] == annotation
    assert r.olmojob["spec"]["storage"] == {"serviceAccountName": name, "scratchSizeLimit": "400Gi"}
    assert name in policy(r)["allowedServiceAccounts"]
    for obj in operator_objects(r):
        for pod in pod_specs(obj):
            assert pod["serviceAccountName"] == name, obj["kind"]


def test_an_existing_service_account_is_named_not_created():
    r = case("existing-account")
    accounts = [a["metadata"]["name"] for a in r.of_kind("ServiceAccount")]
    assert "team-sa" not in accounts and "olmo-7b-workload" not in accounts
    assert r.olmojob["spec"]["storage"] == {"serviceAccountName": "team-sa"}
    assert policy(r)["allowedServiceAccounts"] == ["team-sa"]


def test_secret_credentials_and_an_s3_compatible_endpoint():
    r = case("minio-secret")
    assert r.olmojob["spec"]["storage"] == {
        "secretRef": {"name": "minio-keys"},
        "endpoint": "http://minio.s:9000",
    }
    assert "minio-keys" in policy(r)["allowedEnvSecrets"]
    assert policy(r)["allowedServiceAccounts"] == []
    prep = [o for o in operator_objects(r) if o["metadata"]["name"].endswith("dataprep")]
    (container,) = prep[0]["spec"]["template"]["spec"]["containers"]
    assert container["args"][-1] == "s3://olmo-data/dolma"  # --output: data-prep writes there
    assert container["envFrom"] == [{"secretRef": {"name": "minio-keys"}}]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio.s:9000"} in container["env"]
    gcs = case("gcs-key-file").olmojob["spec"]["storage"]
    assert gcs == {"secretRef": {"name": "gcp-key", "googleCredentialsKey": "key.json"}}


def test_one_bucket_and_one_claim():
    r = case("checkpoints-only")
    (claim,) = r.of_kind("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "olmo-7b-data"
    spec = r.olmojob["spec"]
    assert spec["dataset"] == {"claimName": "olmo-7b-data", "path": "tokens"}
    assert spec["checkpoint"]["uri"] == "s3://olmo-ckpt/runs" and "storage" not in spec
    assert policy(r)["allowedClaims"] == ["olmo-7b-data"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"storage": {"data": {"uri": "s3://Olmo/x"}}}, "at '/storage/data/uri'"),
        ({"storage": {"checkpoints": {"uri": "https://b/x"}}}, "at '/storage/checkpoints/uri'"),
        ({"storage": {"endpoint": "minio:9000"}}, "at '/storage/endpoint'"),
        ({"serviceAccount": {"name": "Bad_Name"}}, "at '/serviceAccount/name'"),
        ({"serviceAccount": {"role": "x"}}, "additional properties 'role' not allowed"),
    ],
)
def test_bad_storage_values_are_refused(values, message):
    with pytest.raises(helm_python.HelmValuesError) as error:
        render(values)
    assert message in str(error.value)


def test_a_key_file_needs_its_secret():
    with pytest.raises(helm_python.HelmRenderError) as error:
        render({"storage": {"googleCredentialsKey": "key.json"}})
    assert "storage.googleCredentialsKey names a key of storage.secretName" in str(error.value)


def test_data_prep_into_a_bucket_runs_one_worker():
    values = {
        "storage": {"data": {"uri": "s3://olmo-data/tokens"}},
        "dataset": {"prepare": {"enabled": True, "pipeline": "sources: []\n", "workers": 4}},
    }
    with pytest.raises(helm_python.HelmRenderError) as error:
        render(values)
    assert "dataset.prepare.workers is 4: with storage.data.uri data-prep runs one worker" in str(
        error.value
    )


def test_examples_are_documented():
    readme = (CHART / "README.md").read_text()
    for name in BUCKET_EXAMPLES:
        assert f"examples/{name}" in readme
