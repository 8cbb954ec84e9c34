"""Object storage in the OLMoJob: ``checkpoint.uri`` / ``dataset.uri`` instead of the claims,
``spec.storage`` (credentials, endpoint, workload identity, scratch), and what the trainer Job,
eval Deployment, rotation Job and data-prep Job get for such a spec: the URIs in their
arguments, credentials and scratch in their environment, and no PersistentVolumeClaim for a use
that is in a bucket. Specs with claims keep their objects byte for byte (golden files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from olmo_operator import contract as c
from olmo_operator.crd import openapi_schema, to_json_schema
from olmo_operator.policy import Policy, check
from olmo_operator.resources import (
    AttemptState,
    dataprep_job,
    desired_objects,
    eval_deployment,
    progress_rbac,
    rotation_job,
    trainer_job,
)
from olmo_operator.spec import SpecError, parse_job
from tests.operator.olmojobs import by_kind, container_of, env_of, olmojob, sets_of

BUCKET_RUNS = "s3://ml-bucket/runs"
BUCKET_TOKENS = "s3://ml-bucket/tokens/dolma"
PREPARE = {"pipelineConfigMap": {"name": "p"}, "workers": 1}


def bucket_job(name: str = "run", **spec: Any) -> dict[str, Any]:
    """An OLMoJob with its run directories and dataset in S3, keys from a Secret, MinIO."""
    base: dict[str, Any] = {
        "dataset": {"uri": BUCKET_TOKENS, "prepare": PREPARE},
        "checkpoint": {"uri": BUCKET_RUNS, "requireEvaluated": True},
        "eval": {"enabled": True},
        "storage": {
            "secretRef": {"name": "s3-keys"},
            "endpoint": "http://minio.storage:9000",
            "scratchSizeLimit": "500Gi",
        },
    }
    base.update(spec)
    return olmojob(name, **base)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def claims_of(obj: dict[str, Any]) -> list[str]:
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(obj)["volumes"]
        if "persistentVolumeClaim" in v
    ]


def mounts_of(obj: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container_of(obj)["volumeMounts"]}


def volume(obj: dict[str, Any], name: str) -> dict[str, Any]:
    (out,) = [v for v in pod_spec(obj)["volumes"] if v["name"] == name]
    return out


def every_workload(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    parsed = parse_job(job)
    return {
        "trainer": trainer_job(parsed, AttemptState(2)),
        "eval": eval_deployment(parsed),
        "rotation": rotation_job(parsed),
        "dataprep": dataprep_job(parsed),
    }


# --------------------------------------------------------------------------------------------
# The spec


def test_uris_replace_the_claims_and_name_the_run_directory():
    spec = parse_job(bucket_job("llm")).spec
    assert spec.checkpoint.claim_name is None and spec.dataset.claim_name is None
    assert spec.run_dir == f"{BUCKET_RUNS}/llm"  # <uri>/<the OLMoJob's name>
    assert spec.data_dir == BUCKET_TOKENS and spec.dataset.path is None
    assert spec.storage.scratch_size_limit == "500Gi"
    custom = bucket_job(checkpoint={"uri": "gs://team-ckpt", "path": "exp/7b"})
    assert parse_job(custom).spec.run_dir == "gs://team-ckpt/exp/7b"
    # Claims keep their meaning and defaults.
    claims = parse_job(olmojob()).spec
    assert (claims.run_dir, claims.data_dir) == ("/checkpoints/run", "/data/tokens")
    assert claims.storage.scratch_size_limit == c.SCRATCH_SIZE_DEFAULT
    assert not claims.uses_object_storage


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("checkpoint", {}, "spec.checkpoint needs exactly one of claimName, uri (got none)"),
        (
            "checkpoint",
            {"claimName": "ckpt", "uri": BUCKET_RUNS},
            "spec.checkpoint needs exactly one of claimName, uri (got claimName, uri)",
        ),
        ("dataset", {"path": "tokens"}, "spec.dataset needs exactly one of claimName, uri"),
        (
            "dataset",
            {"claimName": "data", "uri": BUCKET_TOKENS},
            "spec.dataset needs exactly one of claimName, uri (got claimName, uri)",
        ),
        (
            "dataset",
            {"uri": BUCKET_TOKENS, "path": "v2"},
            f"spec.dataset.path is a folder inside the dataset volume (claimName); with "
            f"spec.dataset.uri name the folder in the uri itself ({BUCKET_TOKENS}/v2)",
        ),
        (
            "dataset",
            {"uri": BUCKET_TOKENS, "prepare": {"pipelineConfigMap": {"name": "p"}, "workers": 2}},
            "spec.dataset.prepare.workers is 2: with spec.dataset.uri data-prep runs one worker",
        ),
    ],
)
def test_exactly_one_of_claim_and_uri(field: str, value: dict[str, Any], message: str):
    with pytest.raises(SpecError) as e:
        parse_job(olmojob(**{field: value}))
    assert str(e.value).startswith(message)


@pytest.mark.parametrize(
    "uri",
    [
        "https://ml-bucket/runs",  # not a store
        "file:///checkpoints",
        "s3://",  # no bucket
        "s3:///runs",
        "s3://ab",  # too short a bucket name
        "s3://ML-Bucket/runs",  # upper case
        "s3://ml-bucket/runs/",  # trailing slash
        "s3://ml-bucket//runs",  # empty segment
        "gs://ml-bucket/../other",
        "s3://ml-bucket/my runs",
    ],
)
def test_bad_uris_are_refused_naming_the_field(uri: str):
    with pytest.raises(SpecError) as e:
        parse_job(olmojob(checkpoint={"uri": uri}))
    assert str(e.value) == (
        "spec.checkpoint.uri must be an object-store URI s3://BUCKET[/PREFIX] or "
        "gs://BUCKET[/PREFIX] (a lowercase bucket name of 3 to 222 characters, no empty segment, "
        f"no trailing '/'), got {uri!r}"
    )
    with pytest.raises(SpecError, match=r"^spec\.dataset\.uri must be an object-store URI"):
        parse_job(olmojob(dataset={"uri": uri}))


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ({"endpoint": "minio:9000"}, "spec.storage.endpoint must be an http:// or https:// URL"),
        ({"serviceAccountName": "Olmo_SA"}, "spec.storage.serviceAccountName must be a valid"),
        ({"scratchSizeLimit": "a lot"}, "spec.storage.scratchSizeLimit must be a quantity"),
        (
            {"secretRef": {"googleCredentialsKey": "k.json"}},
            "spec.storage.secretRef.name is required",
        ),
    ],
)
def test_bad_storage_settings_are_refused(storage: dict[str, Any], message: str):
    with pytest.raises(SpecError, match=f"^{message}"):
        parse_job(bucket_job(storage=storage))


def test_the_schema_generated_from_the_spec_has_the_new_fields():
    spec = openapi_schema()["properties"]["spec"]["properties"]
    for use in ("dataset", "checkpoint"):
        node = spec[use]
        assert node["oneOf"] == [{"required": ["claimName"]}, {"required": ["uri"]}]
        assert "required" not in node
        uri = node["properties"]["uri"]
        assert uri["type"] == "string" and uri["pattern"].startswith("^(s3|gs)://")
    assert "default" not in spec["dataset"]["properties"]["path"]
    storage = spec["storage"]["properties"]
    assert set(storage) == {"secretRef", "endpoint", "serviceAccountName", "scratchSizeLimit"}
    assert storage["scratchSizeLimit"]["default"] == c.SCRATCH_SIZE_DEFAULT
    assert storage["secretRef"]["required"] == ["name"]
    validator = jsonschema.Draft7Validator(to_json_schema(openapi_schema()))
    assert list(validator.iter_errors(bucket_job())) == []


# --------------------------------------------------------------------------------------------
# The pods


def test_the_trainer_reads_and_writes_the_buckets_through_scratch():
    job = trainer_job(parse_job(bucket_job()), AttemptState(2))
    main = container_of(job)
    args = main["args"]
    assert args[args.index("--run-dir") + 1] == f"{BUCKET_RUNS}/run"
    assert f'data.paths=["{BUCKET_TOKENS}"]' in sets_of(args)
    assert claims_of(job) == []
    assert mounts_of(job) == {
        c.SHM_MOUNT: "dshm",
        c.SCRATCH_MOUNT: "scratch",
        c.TMP_MOUNT: "tmp",
        c.IMAGE_HOME: "home",
    }
    assert volume(job, "scratch") == {"name": "scratch", "emptyDir": {"sizeLimit": "500Gi"}}
    env = env_of(main)
    assert env[c.ENV_STAGING_DIR] == "/scratch/staging"
    assert env[c.ENV_DATA_CACHE_DIR] == "/scratch/data-cache"
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert main["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]
    # The trainer still reports progress with its own ServiceAccount's token.
    assert pod_spec(job)["serviceAccountName"] == "run-progress"


def test_the_eval_worker_watches_the_bucket_prefix():
    deployment = eval_deployment(parse_job(bucket_job()))
    main = container_of(deployment)
    assert main["args"][:2] == ["watch", f"{BUCKET_RUNS}/run"]
    assert claims_of(deployment) == []
    assert set(mounts_of(deployment)) == {c.SCRATCH_MOUNT, c.TMP_MOUNT, c.IMAGE_HOME}
    env = env_of(main)
    assert env[c.ENV_STAGING_DIR] == "/scratch/staging"
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert main["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]


def test_rotation_and_data_prep_use_the_uris_with_credentials_and_no_scratch():
    parsed = parse_job(bucket_job())
    rotation = rotation_job(parsed)
    args = container_of(rotation)["args"]
    assert args[:3] == ["olmo-ckpt", "rotate", f"{BUCKET_RUNS}/run"]
    assert "--require-evaluated" in args
    prep = dataprep_job(parsed)
    prep_args = container_of(prep)["args"]
    assert prep_args[prep_args.index("--output") + 1] == BUCKET_TOKENS
    assert set(mounts_of(prep)) == {c.PIPELINE_MOUNT, c.TMP_MOUNT, c.IMAGE_HOME}
    for obj in (rotation, prep):
        main = container_of(obj)
        assert claims_of(obj) == []
        assert c.ENV_STAGING_DIR not in env_of(main) and c.SCRATCH_MOUNT not in mounts_of(obj)
        assert env_of(main)["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
        assert main["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]
        assert pod_spec(obj)["automountServiceAccountToken"] is False


def test_checkpoints_in_a_bucket_with_the_dataset_on_a_claim():
    job = bucket_job(dataset={"claimName": "data", "path": "dolma", "prepare": PREPARE}, storage={})
    objects = every_workload(job)
    trainer = objects["trainer"]
    assert claims_of(trainer) == ["data"]
    assert mounts_of(trainer)[c.DATA_MOUNT] == "data" and c.CHECKPOINTS_MOUNT not in mounts_of(
        trainer
    )
    assert 'data.paths=["/data/dolma"]' in sets_of(container_of(trainer)["args"])
    assert volume(trainer, "scratch")["emptyDir"] == {"sizeLimit": c.SCRATCH_SIZE_DEFAULT}
    assert claims_of(objects["eval"]) == ["data"]
    assert claims_of(objects["rotation"]) == []
    assert claims_of(objects["dataprep"]) == ["data"]
    # No credentials configured: none given (the node's or the cluster's identity applies).
    for obj in objects.values():
        assert "envFrom" not in container_of(obj)
        assert "AWS_ENDPOINT_URL" not in env_of(container_of(obj))


def test_a_gcp_key_file_is_mounted_and_named():
    job = bucket_job(
        checkpoint={"uri": "gs://team-ckpt"},
        dataset={"uri": "gs://team-data/tokens", "prepare": PREPARE},
        storage={"secretRef": {"name": "gcp-key", "googleCredentialsKey": "key.json"}},
    )
    for name, obj in every_workload(job).items():
        main = container_of(obj)
        assert "envFrom" not in main, name
        path = f"{c.STORAGE_CREDENTIALS_MOUNT}/key.json"
        assert env_of(main)[c.ENV_GOOGLE_CREDENTIALS] == path
        assert mounts_of(obj)[c.STORAGE_CREDENTIALS_MOUNT] == "storage-credentials"
        assert volume(obj, "storage-credentials")["secret"] == {
            "secretName": "gcp-key",
            "items": [{"key": "key.json", "path": "key.json"}],
            "defaultMode": 0o440,
        }


def test_workload_identity_runs_every_pod_under_the_service_account():
    job = bucket_job(storage={"serviceAccountName": "olmo-storage"})
    for name, obj in every_workload(job).items():
        spec = pod_spec(obj)
        assert spec["serviceAccountName"] == "olmo-storage", name
        assert "automountServiceAccountToken" not in spec, name
        assert "envFrom" not in container_of(obj)
    # ... and that account may report progress (the progress Role, nothing more).
    _, role, binding = progress_rbac(parse_job(job))
    assert [s["name"] for s in binding["subjects"]] == ["run-progress", "olmo-storage"]
    assert role["rules"][0]["resourceNames"] == ["run-progress"]


def test_user_env_still_wins_over_the_storage_env():
    job = bucket_job(env=[{"name": c.ENV_STAGING_DIR, "value": "/dev/shm/stage"}])
    main = container_of(trainer_job(parse_job(job), AttemptState(1)))
    names = [e["name"] for e in main["env"]]
    assert names.index(c.ENV_STAGING_DIR) < len(names) - 1
    assert env_of(main)[c.ENV_STAGING_DIR] == "/dev/shm/stage"  # the last one is what runs


@pytest.mark.parametrize("kube_version", ["1.30.0", kubernetes_validate.latest_version()])
def test_bucket_objects_are_valid_kubernetes_objects(kube_version: str):
    jobs = [
        bucket_job(),
        bucket_job(storage={"serviceAccountName": "sa", "endpoint": "https://s3.example.com"}),
        bucket_job(storage={"secretRef": {"name": "k", "googleCredentialsKey": "key.json"}}),
    ]
    for job in jobs:
        parsed = parse_job(job)
        objects = [
            *desired_objects(parsed, AttemptState(1)),
            dataprep_job(parsed),
            rotation_job(parsed),
        ]
        assert set(by_kind(objects)) >= {"Job", "Deployment", "RoleBinding"}
        for obj in objects:
            kubernetes_validate.validate(obj, kube_version, strict=True)


# --------------------------------------------------------------------------------------------
# The policy


def test_the_policy_bounds_the_storage_secret_and_service_account():
    job = parse_job(bucket_job(storage={"secretRef": {"name": "keys"}, "serviceAccountName": "sa"}))
    strict = Policy(allowed_env_secrets=(), allowed_service_accounts=(), allowed_claims=())
    assert check(job, strict) == [
        "spec.storage.secretRef.name 'keys' is not in allowedEnvSecrets []",
        "spec.storage.serviceAccountName 'sa' is not in allowedServiceAccounts []",
    ]
    allowed = Policy(
        allowed_env_secrets=("keys",), allowed_service_accounts=("sa",), allowed_claims=()
    )
    assert check(job, allowed) == []  # no claim used: allowedClaims [] is no obstacle
    assert Policy.from_json('{"allowedServiceAccounts": ["sa"]}').allowed_service_accounts == (
        "sa",
    )


def test_the_bucket_example_runs_without_a_volume_claim():
    path = Path(__file__).parents[2] / "k8s" / "examples" / "olmojob-7b-buckets.yaml"
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == c.KIND]
    doc["metadata"].update(namespace="ml", uid="u")
    for name, obj in every_workload(
        {**doc, "spec": {**doc["spec"], "dataset": {**doc["spec"]["dataset"], "prepare": PREPARE}}}
    ).items():
        assert claims_of(obj) == [], name
        assert pod_spec(obj)["serviceAccountName"] == "olmo-train", name
