"""The Helm chart (helm/), rendered and linted with Helm's own engine in-process.

`helm_python` (PyPI helm-python-sdk) embeds Helm's Go SDK, so templates, `values.schema.json`,
`fail` messages and lint are Helm's, not a re-implementation; no helm binary or cluster is needed.
Every rendered manifest is validated with kubernetes-validate (strict: unknown fields fail) for
Kubernetes 1.30 (the chart's kubeVersion floor) and the newest bundled version; the OLMoJob is a
custom resource, so it is validated against the CRD the chart ships and then read by the
operator's own parser, which is what a real operator would do with it.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from olmo_operator import contract, failures, resources
from olmo_operator import crd as operator_crd
from olmo_operator.cli import _parser as operator_cli_parser
from olmo_operator.spec import parse_job
from tests.deploy import ROOT, operator_presets

CHART = ROOT / "helm"
EXAMPLES = CHART / "examples"
NAMESPACE = "ml"
WATCH_MARKER = "olmo-operator-watch"  # the ConfigMap claiming a watched namespace
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CLOUD_EXAMPLES = ("values-gke-spot.yaml", "values-aws-spot.yaml", "values-azure-spot.yaml")
BUCKET_EXAMPLES = ("values-gke-buckets.yaml", "values-aws-buckets.yaml")
# Operator-provisioned and operator-owned node pools: tests/deploy/test_chart_nodepools.py.
NODEPOOL_EXAMPLES = ("values-eks-karpenter.yaml", "values-gke-queued-provisioning.yaml")
# The images' user (USER 10001:10001), spelled once in the operator's contract.
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": contract.IMAGE_UID,
    "runAsGroup": contract.IMAGE_UID,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": contract.IMAGE_UID,
    "runAsGroup": contract.IMAGE_UID,
    "fsGroup": contract.IMAGE_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
)
# Everything optional switched on at once, so that no template branch goes unrendered.
EVERYTHING_ON = {
    "image": {"tag": "1.2.3", "pullSecrets": ["registry"], "trainer": "reg.example/t:9"},
    "operator": {
        "watchNamespaces": [NAMESPACE, "research"],
        "logLevel": "debug",
        "podAnnotations": {"a": "b"},
        "podLabels": {"team": "ml"},
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "priorityClassName": "system-cluster-critical",
        "service": {"annotations": {"prometheus.io/scrape": "true"}},
        "serviceAccount": {"annotations": {"iam": "role"}},
    },
    "job": {
        "labels": {"team": "ml"},
        "annotations": {"note": "x"},
        "maxSteps": 1_000_000,
        "ttlSecondsAfterFinished": 604_800,
        "queueName": "llm",
        "priorityClassName": "training",
        "overrides": ["optimizer.lr=1e-4"],
        "env": [{"name": "NCCL_DEBUG", "value": "WARN"}],
    },
    "dataset": {"path": "dolma/v1_7", "prepare": {"enabled": True, "pipeline": "sources: []\n"}},
    "checkpoint": {"path": "runs/a", "requireEvaluated": True},
    "wandb": {"apiKey": "k", "entity": "team", "project": "p"},
    "storage": {"data": {"storageClassName": "-"}, "checkpoints": {"storageClassName": "fast"}},
}


# --------------------------------------------------------------------------------------------
# Rendering


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(str(CHART))


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


class Rendered:
    """The documents of one render, and NOTES.txt."""

    def __init__(self, values: dict[str, Any], release: str):
        self.values = values
        self.release = release
        files = chart().render(copy.deepcopy(values), name=release, namespace=NAMESPACE)
        self.notes = next(text for path, text in files.items() if path.endswith("NOTES.txt"))
        self.docs = [
            doc
            for path, text in sorted(files.items())
            if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text)
            if doc
        ]

    def of_kind(self, kind: str, component: str | None = None) -> list[dict[str, Any]]:
        return [
            d
            for d in self.docs
            if d["kind"] == kind
            and (
                component is None
                or d["metadata"]["labels"]["app.kubernetes.io/component"] == component
            )
        ]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    @property
    def olmojob(self) -> dict[str, Any]:
        return self.one("OLMoJob")


def render(values: dict[str, Any] | None = None, release: str = "olmo-7b") -> Rendered:
    return Rendered(values or {}, release)


CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    **{f"preset-{p}": {"preset": p} for p in ("tiny", "1b", "7b", "65b")},
    **{name.removesuffix(".yaml"): example(name) for name in CLOUD_EXAMPLES},
    "values-kind": example("values-kind.yaml"),
    "everything-on": EVERYTHING_ON,
    "cluster-wide": {
        "operator": {
            "clusterWide": True,
            "metrics": {"enabled": False},
            "policy": {"allowedNamespaces": ["*"]},
        }
    },
    "existing-claims-and-secret": {
        "storage": {"data": {"existingClaim": "dolma"}, "checkpoints": {"existingClaim": "ckpt"}},
        "wandb": {"existingSecret": "wandb", "existingSecretKey": "token"},
        "eval": {"enabled": False},
        "job": {"model": {"configMapRef": {"name": "my-config"}}},
    },
    "operator-only": {"job": {"enabled": False}},
}
JOB_CASES = sorted(k for k, v in CASES.items() if v.get("job", {}).get("enabled", True))


@functools.cache
def case(key: str) -> Rendered:
    """``helm install olmo-7b ./helm`` with the values of ``CASES[key]`` (rendered once)."""
    return Rendered(CASES[key], "olmo-7b")


@pytest.fixture(params=sorted(CASES))
def rendered(request) -> Rendered:
    return case(request.param)


@pytest.fixture(params=JOB_CASES)
def rendered_job(request) -> Rendered:
    return case(request.param)


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "Pod":
        return [doc["spec"]]
    if doc["kind"] in ("Deployment", "Job"):
        return [doc["spec"]["template"]["spec"]]
    return []


# --------------------------------------------------------------------------------------------
# Helm's own checks


@pytest.mark.parametrize("key", sorted(CASES))
def test_strict_lint_is_clean(key):
    result = helm_python.lint(str(CHART), copy.deepcopy(CASES[key]), strict=True)
    assert result["errors"] == []
    assert result["messages"] == []


def test_crds_folder_holds_the_generated_crd_unchanged():
    """helm/crds is written by `olmo-operator crd --write`; both copies must be the same text."""
    ours = (CHART / "crds/olmojobs.yaml").read_text()
    assert ours == (ROOT / "k8s/crd/olmojobs.yaml").read_text()
    assert [c["name"] for c in chart().crds] == ["crds/olmojobs.yaml"]
    assert yaml.safe_load(ours)["metadata"]["name"] == "olmojobs.olmo-k8s.io"


# --------------------------------------------------------------------------------------------
# Every manifest is valid Kubernetes


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CHART / "crds/olmojobs.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    return operator_crd.to_json_schema(version["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_passes_strict_kubernetes_validation(kube_version):
    seen: set[str] = set()  # the cases share most objects: validate each distinct one once
    for key in sorted(CASES):
        for doc in case(key).docs:
            text = json.dumps(doc, sort_keys=True)
            if doc["kind"] == "OLMoJob" or text in seen:
                continue  # OLMoJob: a custom resource, no built-in schema (checked below)
            seen.add(text)
            try:
                kubernetes_validate.validate(doc, kube_version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{key}: {doc['kind']} {doc['metadata']['name']}: {e.message}")
    assert len(seen) > 30


def test_the_olmojob_is_valid_for_the_shipped_crd_and_the_operator(rendered_job):
    rendered = rendered_job
    job = rendered.olmojob
    assert job["apiVersion"] == "olmo-k8s.io/v1alpha1"
    jsonschema.validate(job, crd_schema())
    parsed = parse_job(job)  # the operator's reading: raises SpecError on what a schema misses
    assert parsed.name == rendered.release and parsed.namespace == NAMESPACE


def test_the_operator_runs_eval_and_dataprep_with_their_own_images():
    """The trainer image has neither olmo-eval nor olmo-dataprep: the OLMoJob must name both."""
    r = case("everything-on")
    job = parse_job(r.olmojob)
    eval_pod = resources.eval_deployment(job)["spec"]["template"]["spec"]
    dataprep_pod = resources.dataprep_job(job)["spec"]["template"]["spec"]
    assert eval_pod["containers"][0]["image"] == "olmo-k8s/evalworker:1.2.3"
    assert dataprep_pod["containers"][0]["image"] == "olmo-k8s/dataprep:1.2.3"
    assert job.spec.image == "reg.example/t:9"  # a full reference replaces repository/name:tag
    defaults = case("defaults").olmojob["spec"]
    assert defaults["eval"]["image"] == "olmo-k8s/evalworker:0.1.0"  # appVersion by default
    assert defaults["image"] == "olmo-k8s/trainer:0.1.0"


# --------------------------------------------------------------------------------------------
# The values schema refuses bad values, saying where and why


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"preset": "13b"}, "at '/preset': value must be one of '', 'tiny', '1b', '7b', '65b'"),
        ({"presets": {"7b": {"nodes": -1}}}, "at '/presets/7b/nodes': minimum: got -1, want 1"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"operator": {"healthPort": "8080"}}, "at '/operator/healthPort': got string, want"),
        ({"nodePools": [{"name": "a", "spot": True}]}, "additional properties 'spot' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
        ({"storage": {"data": {"accessModes": []}}}, "at '/storage/data/accessModes'"),
        ({"job": {"overrides": ["no-equals-sign"]}}, "at '/job/overrides/0'"),
        ({"wandb": {"mode": "cloud"}}, "at '/wandb/mode': value must be one of"),
        ({"operator": {"watchNamespaces": ["Bad_NS"]}}, "at '/operator/watchNamespaces/0'"),
    ],
)
def test_schema_rejects_bad_values_with_a_clear_message(values, message):
    with pytest.raises(helm_python.HelmValuesError) as error:
        render(values)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("values", "release", "message"),
    [
        ({"wandb": {"mode": "online"}}, "olmo-7b", "wandb.mode=online needs the W&B API key"),
        (
            {"wandb": {"existingSecret": "a", "apiKey": "b"}},
            "olmo-7b",
            "wandb.existingSecret and wandb.apiKey are exclusive",
        ),
        ({}, "olmo-" + "x" * 40, "is 45 characters long; at most 42"),
        ({}, "7b", "must be a DNS-1035 label"),
        (
            {"operator": {"watchNamespaces": ["other"]}},
            "olmo-7b",
            'does not include the release namespace "ml"',
        ),
        (
            {"job": {"model": {"config": "a: 1", "configMapRef": {"name": "c"}}}},
            "olmo-7b",
            "job.model.config and job.model.configMapRef.name are exclusive",
        ),
        (
            {"dataset": {"prepare": {"enabled": True}}},
            "olmo-7b",
            "dataset.prepare.enabled needs the olmo-dataprep pipeline config",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(values, release, message):
    with pytest.raises(helm_python.HelmRenderError) as error:
        render(values, release)
    assert message in str(error.value)


def test_schema_covers_every_value_and_closes_every_object():
    """Every key of values.yaml is described, and every object refuses unknown keys."""
    schema = chart().schema

    def resolve(node):
        if "$ref" in node:
            return resolve(schema["definitions"][node["$ref"].rsplit("/", 1)[1]])
        if "allOf" in node:
            return resolve(node["allOf"][0])
        return node

    def walk(value, node, where):
        node = resolve(node)
        assert "description" in node or "$ref" in node, f"{where}: no description"
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{where} accepts unknown keys"
            for key, sub in value.items():
                assert key in node["properties"], f"{where}.{key} is not in the schema"
                walk(sub, node["properties"][key], f"{where}.{key}")

    walk(chart().values, schema, "values")
    # Every definition that describes an object with fixed keys is closed too.
    for name, node in schema["definitions"].items():
        if node.get("type") == "object" and "properties" in node:
            assert node["additionalProperties"] is False, name


# --------------------------------------------------------------------------------------------
# Presets and how the chart picks one


def test_presets_are_the_operators():
    presets = operator_presets()
    assert set(chart().values["presets"]) == set(presets)
    assert chart().schema["properties"]["preset"]["enum"] == ["", *presets]
    for preset in presets:
        assert (ROOT / "configs" / f"{preset}.yaml").is_file()


def test_helm_install_olmo_7b_with_defaults_starts_a_7b_job():
    r = case("defaults")  # helm install olmo-7b ./helm
    job = r.olmojob
    sizing = chart().values["presets"]["7b"]
    assert job["metadata"]["name"] == "olmo-7b"
    assert job["spec"]["model"] == {"preset": "7b"}
    assert (job["spec"]["nodes"], job["spec"]["gpusPerNode"]) == (8, 8)
    assert (sizing["nodes"], sizing["gpusPerNode"]) == (8, 8)
    assert "batch.micro_batch_size=2" in job["spec"]["overrides"]
    assert 'preset 7b (from the release name "olmo-7b")' in r.notes


@pytest.mark.parametrize(
    ("release", "preset_value", "expected", "reason"),
    [
        ("olmo-1b", "", "1b", "from the release name"),
        ("olmo-tiny", "", "tiny", "from the release name"),
        ("run-65b", "", "65b", "from the release name"),
        ("tiny", "", "tiny", "from the release name"),
        ("my-run", "", "7b", "the default"),
        ("olmo-17b", "", "7b", "the default"),  # "17b" is no preset: not read as "7b"
        ("olmo-1b", "65b", "65b", "set by the value preset"),
    ],
)
def test_preset_comes_from_the_value_then_the_release_name_then_7b(
    release, preset_value, expected, reason
):
    r = render({"preset": preset_value}, release)
    assert r.olmojob["spec"]["model"]["preset"] == expected
    assert r.olmojob["metadata"]["labels"]["olmo-k8s.io/preset"] == expected
    assert f"preset {expected} ({reason}" in r.notes


@pytest.mark.parametrize("preset", ["tiny", "1b", "7b", "65b"])
def test_each_preset_sizes_the_job(preset):
    spec = case(f"preset-{preset}").olmojob["spec"]
    sizing = chart().values["presets"][preset]
    assert spec["nodes"] == sizing["nodes"]
    assert spec["gpusPerNode"] == sizing["gpusPerNode"]
    assert spec["resources"]["requests"].keys() >= {"cpu", "memory"}
    assert spec["overrides"][:2] == [
        f"batch.micro_batch_size={sizing['microBatchSize']}",
        f"model.activation_checkpointing={str(sizing['activationCheckpointing']).lower()}",
    ]
    assert spec["checkpoint"]["interval"] == sizing["checkpoint"]["interval"]
    assert spec["terminationGracePeriodSeconds"] == sizing["terminationGracePeriodSeconds"]
    if preset == "tiny":
        assert spec["gpusPerNode"] == 0 and spec["processesPerNode"] >= 1  # CPU only
    else:
        assert spec["gpusPerNode"] == 8
    # Bigger models never get fewer nodes.
    nodes = [chart().values["presets"][p]["nodes"] for p in ("tiny", "1b", "7b", "65b")]
    assert nodes == sorted(nodes)


def test_one_preset_number_can_be_changed_on_the_command_line():
    r = render({"presets": {"7b": {"nodes": 16, "microBatchSize": 1}}})
    spec = r.olmojob["spec"]
    assert spec["nodes"] == 16 and "batch.micro_batch_size=1" in spec["overrides"]
    assert spec["gpusPerNode"] == 8  # the rest of the preset stays


def test_make_train_values_name_the_job_after_the_release_and_tag_the_images():
    """`make train SIZE=s` runs helm upgrade --install olmo-s --set preset=s --set image.tag=V
    and waits for olmojob/olmo-s."""
    for size in operator_presets():
        r = render({"preset": size, "image": {"tag": "dev"}}, f"olmo-{size}")
        job = r.olmojob
        assert job["metadata"]["name"] == f"olmo-{size}"
        assert job["spec"]["image"] == "olmo-k8s/trainer:dev"
        deployment = r.one("Deployment")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "olmo-k8s/operator:dev"
        )
        # The selector `make train` follows the logs with is in NOTES.txt too.
        assert f"olmo-k8s.io/component=trainer,olmo-k8s.io/job=olmo-{size}" in r.notes


def test_job_values_reach_the_olmojob():
    spec = case("everything-on").olmojob["spec"]
    assert spec["maxSteps"] == 1_000_000  # not 1e+06
    assert spec["ttlSecondsAfterFinished"] == 604_800
    assert spec["queueName"] == "llm" and spec["priorityClassName"] == "training"
    assert spec["overrides"][-1] == "optimizer.lr=1e-4"
    assert spec["env"] == [{"name": "NCCL_DEBUG", "value": "WARN"}]
    assert spec["checkpoint"]["path"] == "runs/a" and spec["checkpoint"]["requireEvaluated"]
    assert spec["dataset"]["path"] == "dolma/v1_7"
    inline = render({"job": {"model": {"config": "run_name: x\n"}}}).olmojob["spec"]["model"]
    assert inline == {"config": "run_name: x\n"}
    ref = case("existing-claims-and-secret").olmojob["spec"]
    assert ref["model"] == {"configMapRef": {"name": "my-config", "key": "config.yaml"}}
    assert ref["eval"]["enabled"] is False and ref["checkpoint"]["requireEvaluated"] is False


# --------------------------------------------------------------------------------------------
# Node pools (spot first, on-demand last)


@pytest.mark.parametrize("name", CLOUD_EXAMPLES)
def test_cloud_examples_put_spot_pools_first_and_an_on_demand_pool_last(name):
    pools = case(name.removesuffix(".yaml")).olmojob["spec"]["nodePools"]
    assert pools == example(name)["nodePools"]
    *spot, last = pools
    assert spot and all(p["preemptible"] for p in spot)
    assert not last.get("preemptible", False)
    for pool in spot:  # the operator recognises these nodes as spot capacity
        labels = pool["nodeSelector"].items()
        assert any(failures.SPOT_NODE_LABELS.get(k) == v for k, v in labels), pool["name"]
    for key, value in last["nodeSelector"].items():
        assert failures.SPOT_NODE_LABELS.get(key) != value


def test_cloud_specific_spot_selection():
    gke = example("values-gke-spot.yaml")["nodePools"][0]
    assert gke["nodeSelector"]["cloud.google.com/gke-spot"] == "true"
    azure = example("values-azure-spot.yaml")["nodePools"][0]
    assert azure["nodeSelector"]["kubernetes.azure.com/scalesetpriority"] == "spot"
    assert {
        "key": "kubernetes.azure.com/scalesetpriority",
        "operator": "Equal",
        "value": "spot",
        "effect": "NoSchedule",
    } in azure["tolerations"]
    aws = example("values-aws-spot.yaml")["nodePools"]
    assert aws[0]["nodeSelector"]["eks.amazonaws.com/capacityType"] == "SPOT"
    assert aws[-1]["nodeSelector"]["eks.amazonaws.com/capacityType"] == "ON_DEMAND"


# --------------------------------------------------------------------------------------------
# The operator: Deployment, probes, Service, RBAC


def operator_args(r: Rendered) -> list[str]:
    (container,) = r.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["olmo-operator"]
    return container["args"]


def test_operator_deployment_runs_the_real_cli_with_probes_on_its_health_port():
    r = case("defaults")
    args = operator_cli_parser().parse_args(operator_args(r))  # the operator's own parser
    assert args.command == "run" and args.standalone
    assert args.namespace == [NAMESPACE] and not args.all_namespaces
    deployment = r.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": args.liveness_port, "metrics": args.metrics_port}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    service = r.one("Service")
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports


def test_operator_watch_scope_options():
    wide = case("cluster-wide")
    args = operator_cli_parser().parse_args(operator_args(wide))
    assert args.all_namespaces and args.namespace == [] and args.metrics_port == 0
    many = operator_cli_parser().parse_args(operator_args(case("everything-on")))
    assert many.namespace == [NAMESPACE, "research"] and many.debug


def rules(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in doc["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


KIND_RESOURCES = {
    "Job": ("batch", "jobs"),
    "Pod": ("", "pods"),
    "Service": ("", "services"),
    "ConfigMap": ("", "configmaps"),
    "Deployment": ("apps", "deployments"),
    "ServiceAccount": ("", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
}


def operator_children(r: Rendered) -> list[dict[str, Any]]:
    """Everything the operator creates for this release's OLMoJob (its own pure functions)."""
    job = parse_job(r.olmojob)
    objects = resources.desired_objects(job, resources.AttemptState(attempt=1))
    objects += [resources.dataprep_job(job), resources.rotation_job(job)]
    return objects


def test_namespaced_role_grants_what_the_operator_does_and_cluster_role_only_reads():
    r = case("everything-on")  # inline config, eval, data-prep: every kind of child
    role = r.one("Role", "olmo-7b-operator")
    granted = rules(role)
    for child in operator_children(r):
        group, resource = KIND_RESOURCES[child["kind"]]
        # get: a name already taken is read to see whose it is (kube.create on 409).
        for verb in ("get", "create", "delete"):
            assert (group, resource, verb) in granted, (child["kind"], verb)
    for verb in ("get", "list", "watch", "patch", "delete"):
        assert ("olmo-k8s.io", "olmojobs", verb) in granted
    assert {("olmo-k8s.io", "olmojobs/status", v) for v in ("get", "patch")} <= granted
    # RBAC forbids granting more than one holds: the pods' Role must be within the operator's.
    (pods_role,) = [o for o in operator_children(r) if o["kind"] == "Role"]
    for group, resource, verb in rules(pods_role):
        assert (group, resource, verb) in granted
    # No wildcards, no secrets.
    assert not any("*" in item for rule in granted for item in rule)
    assert not any(resource == "secrets" for _, resource, _ in granted)
    # The ClusterRole: cluster-scoped reads only.
    cluster = rules(r.one("ClusterRole"))
    assert cluster == {
        ("", "nodes", "get"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
    }
    # A Role + RoleBinding in each watched namespace, bound to the operator's account.
    bindings = r.of_kind("RoleBinding", "operator")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == [NAMESPACE, "research"]
    account = r.one("ServiceAccount", "olmo-7b-operator")["metadata"]["name"]
    for binding in bindings + r.of_kind("ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]


def test_cluster_wide_operator_gets_its_namespaced_rules_through_the_cluster_role():
    r = case("cluster-wide")
    assert r.of_kind("Role", "operator") == [] and r.of_kind("RoleBinding", "operator") == []
    cluster = rules(r.one("ClusterRole", "ml-olmo-7b-operator"))
    assert ("olmo-k8s.io", "olmojobs", "watch") in cluster
    assert ("batch", "jobs", "create") in cluster
    assert ("", "namespaces", "list") not in cluster  # kopf needs no namespace list cluster-wide


def test_operator_can_be_left_out_and_the_job_kept():
    r = render({"operator": {"enabled": False}})
    kinds = {d["kind"] for d in r.docs}
    assert kinds == {"OLMoJob", "PersistentVolumeClaim"}
    assert "operator.enabled=false" in r.notes


# --------------------------------------------------------------------------------------------
# Hooks


def test_helm_test_hook_checks_the_operator_healthz():
    r = case("defaults")
    tests = [d for d in r.docs if d["metadata"].get("annotations", {}).get("helm.sh/hook")]
    (pod,) = [d for d in tests if d["metadata"]["annotations"]["helm.sh/hook"] == "test"]
    assert pod["kind"] == "Pod" and pod["spec"]["restartPolicy"] == "Never"
    service = r.one("Service")
    health = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "health")
    url = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{health}/healthz"
    (container,) = pod["spec"]["containers"]
    assert container["command"][0] == "python" and url in container["args"][0]


def test_uninstall_hook_deletes_only_this_releases_olmojob_before_the_operator_goes():
    r = case("defaults")
    hooks = [
        d
        for d in r.docs
        if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-delete"
    ]
    assert sorted(d["kind"] for d in hooks) == ["Job", "Role", "RoleBinding", "ServiceAccount"]
    role = next(d for d in hooks if d["kind"] == "Role")
    assert role["rules"] == [
        {
            "apiGroups": ["olmo-k8s.io"],
            "resources": ["olmojobs"],
            "resourceNames": ["olmo-7b"],
            "verbs": ["get", "delete"],
        }
    ]
    job = next(d for d in hooks if d["kind"] == "Job")
    weights = {d["kind"]: int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for d in hooks}
    assert weights["ServiceAccount"] < weights["Job"]  # its account exists first
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert 'namespace, name = "ml", "olmo-7b"' in script
    compile(script, "cleanup", "exec")  # valid Python
    assert render({"cleanup": {"enabled": False}}).of_kind("Job") == []


# --------------------------------------------------------------------------------------------
# Security context and labels of everything the chart creates


def test_every_pod_runs_with_the_restricted_profile(rendered):
    specs = [spec for doc in rendered.docs for spec in pod_specs(doc)]
    assert specs, "no pods rendered"
    for spec in specs:
        assert spec["securityContext"].items() >= RESTRICTED_POD.items()
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security.items() >= RESTRICTED_CONTAINER.items(), container["name"]
            assert "requests" in container["resources"] and "limits" in container["resources"]


def test_every_pod_has_a_writable_tmp_under_its_read_only_root(rendered):
    """kopf, the Kubernetes client and Python's tempfile write to /tmp: an emptyDir there."""
    for doc in rendered.docs:
        for spec in pod_specs(doc):
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for container in spec["containers"]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in mounts, (doc["metadata"]["name"], container["name"])
                assert volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"]


def test_the_operator_runs_as_the_image_user_with_a_read_only_root():
    deployment = case("defaults").one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == 10001
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsUser"] == 10001
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]


def test_the_pods_the_operator_makes_of_the_charts_job_are_restricted_too(rendered_job):
    """The chart's OLMoJob, through the operator's own builders: each pod the operator would
    create runs as the chart's user, read-only, with writable /tmp and HOME."""
    job = parse_job(rendered_job.olmojob)
    objects = [
        *resources.desired_objects(job, resources.AttemptState(1)),
        resources.rotation_job(job),
    ]
    if job.spec.dataset.prepare is not None:
        objects.append(resources.dataprep_job(job))
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Job", "Deployment")]
    assert len(pods) >= 2
    for pod in pods:
        # The same user as the chart's own pods (RESTRICTED_POD: test above).
        assert pod["securityContext"].items() >= RESTRICTED_POD.items()
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/tmp", contract.IMAGE_HOME} <= mounts


def test_every_object_has_the_standard_labels(rendered):
    for doc in rendered.docs:
        labels = doc["metadata"]["labels"]
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{doc['kind']} {doc['metadata']['name']}: {missing}"
        assert labels["app.kubernetes.io/name"] == "olmo"
        assert labels["app.kubernetes.io/instance"] == rendered.release
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == chart().metadata["appVersion"]
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "PersistentVolume"):
            assert doc["metadata"]["namespace"] in (NAMESPACE, "research")
        if doc["kind"] in ("Deployment", "Job"):
            template_labels = doc["spec"]["template"]["metadata"]["labels"]
            assert all(k in template_labels for k in STANDARD_LABELS)


# --------------------------------------------------------------------------------------------
# Storage and W&B


def test_default_storage_is_two_readwritemany_claims_sized_by_the_preset():
    r = case("preset-65b")
    claims = {c["metadata"]["name"]: c for c in r.of_kind("PersistentVolumeClaim")}
    assert set(claims) == {"olmo-7b-data", "olmo-7b-checkpoints"}
    sizes = chart().values["presets"]["65b"]["storage"]
    for volume, claim in (("data", "olmo-7b-data"), ("checkpoints", "olmo-7b-checkpoints")):
        spec = claims[claim]["spec"]
        assert spec["accessModes"] == ["ReadWriteMany"]
        assert spec["resources"]["requests"]["storage"] == sizes[volume]
        assert "storageClassName" not in spec  # the cluster's default class
        assert claims[claim]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    spec = r.olmojob["spec"]
    assert spec["dataset"]["claimName"] == "olmo-7b-data"
    assert spec["checkpoint"]["claimName"] == "olmo-7b-checkpoints"
    assert r.of_kind("PersistentVolume") == []


def test_storage_class_options_and_existing_claims():
    claims = {
        c["metadata"]["name"]: c for c in case("everything-on").of_kind("PersistentVolumeClaim")
    }
    assert claims["olmo-7b-data"]["spec"]["storageClassName"] == ""  # "-": no class
    assert claims["olmo-7b-checkpoints"]["spec"]["storageClassName"] == "fast"
    r = case("existing-claims-and-secret")
    assert r.of_kind("PersistentVolumeClaim") == []
    assert r.olmojob["spec"]["dataset"]["claimName"] == "dolma"
    assert r.olmojob["spec"]["checkpoint"]["claimName"] == "ckpt"
    gke = case("values-gke-spot").of_kind("PersistentVolumeClaim")
    assert {c["spec"]["storageClassName"] for c in gke} == {"premium-rwx"}


def test_kind_storage_binds_both_claims_to_the_folder_every_kind_worker_mounts():
    r = case("values-kind")
    kind_config = yaml.safe_load((ROOT / "k8s/kind/cluster.yaml").read_text())
    mounts = {
        m["containerPath"]
        for node in kind_config["nodes"]
        if node["role"] == "worker"
        for m in node["extraMounts"]
    }
    volumes = {v["metadata"]["name"]: v for v in r.of_kind("PersistentVolume")}
    assert len(volumes) == 2
    for claim in r.of_kind("PersistentVolumeClaim"):
        volume = volumes[claim["spec"]["volumeName"]]
        assert volume["spec"]["hostPath"]["path"] in mounts
        assert volume["spec"]["claimRef"]["name"] == claim["metadata"]["name"]
        assert volume["spec"]["claimRef"]["namespace"] == NAMESPACE
        assert claim["spec"]["storageClassName"] == volume["spec"]["storageClassName"] == ""
        assert claim["spec"]["accessModes"] == volume["spec"]["accessModes"] == ["ReadWriteMany"]
    assert r.olmojob["spec"]["model"] == {"preset": "tiny"}
    assert r.olmojob["spec"]["gpusPerNode"] == 0


def test_wandb_key_from_an_existing_secret_a_value_or_none():
    existing = case("existing-claims-and-secret")
    assert existing.olmojob["spec"]["wandb"] == {
        "mode": "online",
        "project": "olmo-7b",
        "secretRef": {"name": "wandb", "key": "token"},
    }
    assert existing.of_kind("Secret") == []
    created = case("everything-on")
    secret = created.one("Secret")
    assert secret["stringData"] == {"api-key": "k"}
    assert created.olmojob["spec"]["wandb"]["secretRef"] == {
        "name": secret["metadata"]["name"],
        "key": "api-key",
    }
    assert "https://wandb.ai/team/p" in created.notes
    assert "stored in this Helm release" in created.notes
    none = case("defaults")
    assert none.olmojob["spec"]["wandb"] == {"mode": "offline", "project": "olmo-7b"}
    assert "/checkpoints/olmo-7b/wandb" in none.notes


def test_dataprep_pipeline_is_stored_in_a_configmap_the_olmojob_names():
    r = case("everything-on")
    config_map = r.one("ConfigMap", "olmo-7b-pipeline")
    assert config_map["data"] == {"pipeline.yaml": "sources: []\n"}
    prepare = r.olmojob["spec"]["dataset"]["prepare"]
    assert prepare["pipelineConfigMap"] == {
        "name": config_map["metadata"]["name"],
        "key": "pipeline.yaml",
    }
    existing = render(
        {"dataset": {"prepare": {"enabled": True, "existingConfigMap": {"name": "p", "key": "k"}}}}
    )
    assert existing.of_kind("ConfigMap", "job") == []
    assert [m["metadata"]["name"] for m in existing.of_kind("ConfigMap")] == [WATCH_MARKER]
    assert existing.olmojob["spec"]["dataset"]["prepare"]["pipelineConfigMap"] == {
        "name": "p",
        "key": "k",
    }


def test_notes_say_what_to_run_next():
    notes = case("defaults").notes
    for line in (
        "kubectl -n ml get olmojobs",
        "kubectl -n ml logs -f -l olmo-k8s.io/component=trainer,olmo-k8s.io/job=olmo-7b",
        "helm test olmo-7b -n ml",
        "/checkpoints/olmo-7b/eval/stepNNNNNN.json",
        "kubectl apply --server-side -f helm/crds/olmojobs.yaml",
    ):
        assert line in notes


def test_readme_documents_every_top_level_value_and_each_preset():
    readme = (CHART / "README.md").read_text()
    for key in chart().values:
        assert f"`{key}" in readme, key
    for preset in operator_presets():
        assert f"| `{preset}` |" in readme
    for name in (*CLOUD_EXAMPLES, *BUCKET_EXAMPLES, *NODEPOOL_EXAMPLES):
        assert f"examples/{name}" in readme


def test_examples_exist():
    named = (*CLOUD_EXAMPLES, *BUCKET_EXAMPLES, *NODEPOOL_EXAMPLES)
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted([*named, "values-kind.yaml"])
    assert all(isinstance(example(name), dict) for name in named)


def test_chart_metadata():
    meta = chart().metadata
    assert meta["name"] == "olmo" and meta["apiVersion"] == "v2"
    assert meta["kubeVersion"] == ">=1.30.0-0"
    assert (CHART / "values.schema.json").is_file()


def test_image_pull_secrets_reach_the_olmojob_and_its_pods():
    from olmo_operator.resources import AttemptState, desired_objects
    from olmo_operator.spec import parse_job

    job = render({"image": {"pullSecrets": ["regcred"]}}).olmojob
    assert job["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    trainer = next(
        o for o in desired_objects(parse_job(job), AttemptState(1)) if o["kind"] == "Job"
    )
    assert trainer["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert "imagePullSecrets" not in render().olmojob["spec"]


def test_eval_worker_placement_values_reach_the_olmojob():
    toleration = {"key": "pool", "operator": "Equal", "value": "cpu", "effect": "NoSchedule"}
    values = {"eval": {"nodeSelector": {"pool": "cpu"}, "tolerations": [toleration]}}
    evaluation = render(values).olmojob["spec"]["eval"]
    assert evaluation["nodeSelector"] == {"pool": "cpu"}
    assert evaluation["tolerations"] == [toleration]
