"""What the chart does about who may run what: the operator policy it passes, the
NetworkPolicies, and the one-operator-per-namespace markers (issue 15, items 6, 9 and 10)."""

from __future__ import annotations

import collections
import copy
import json
from typing import Any

import helm_python
import pytest
import yaml

from olmo_operator import contract, resources
from olmo_operator.policy import Policy, check
from olmo_operator.spec import parse_job
from tests.deploy.test_chart import (
    JOB_CASES,
    NAMESPACE,
    WATCH_MARKER,
    Rendered,
    case,
    chart,
    render,
    rules,
)

CLUSTER_MARKER = "olmo-operator-watch-all-namespaces"


def operator_env(r: Rendered) -> dict[str, str]:
    (container,) = r.one("Deployment")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def chart_policy(r: Rendered) -> Policy:
    """The policy the chart's operator starts with, read by the operator's own parser."""
    return Policy.from_json(operator_env(r)[contract.ENV_POLICY])


def docs_of(values: dict[str, Any], release: str, namespace: str) -> list[dict[str, Any]]:
    files = chart().render(copy.deepcopy(values), name=release, namespace=namespace)
    return [
        doc
        for path, text in sorted(files.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def identities(docs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(kind, namespace, name): what Helm refuses to create twice across releases."""
    return [(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs]


# --------------------------------------------------------------------------------------------
# The operator policy


def test_the_chart_passes_a_restrictive_policy_to_the_operator():
    policy = chart_policy(case("defaults"))
    assert policy.allowed_images == (
        "olmo-k8s/trainer:0.1.0",
        "olmo-k8s/dataprep:0.1.0",
        "olmo-k8s/evalworker:0.1.0",
    )
    assert policy.allowed_image_prefixes == ()
    assert policy.allowed_env_secrets == ()
    assert policy.allowed_image_pull_secrets == ()
    assert policy.allowed_tolerations == ()
    assert policy.allowed_claims == ("olmo-7b-data", "olmo-7b-checkpoints")
    assert policy.allowed_namespaces == (NAMESPACE,)


@pytest.mark.parametrize("key", JOB_CASES)
def test_the_charts_own_olmojob_complies_with_the_charts_policy(key):
    """Every configuration of the chart (spot pools and their tolerations, W&B Secrets, pull
    Secrets, existing claims, image overrides) still runs under the policy it installs."""
    r = case(key)
    assert check(parse_job(r.olmojob), chart_policy(r)) == []


def test_an_olmojob_asking_for_more_is_refused_by_the_charts_policy():
    r = case("defaults")
    job = copy.deepcopy(r.olmojob)
    job["spec"]["image"] = "attacker.example/miner:latest"
    job["spec"]["env"] = [
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "cloud-admin", "key": "t"}}}
    ]
    job["spec"]["checkpoint"]["claimName"] = "someone-elses-claim"
    job["spec"]["nodePools"] = [
        {
            "name": "cp",
            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
        }
    ]
    fields = [m.split(" ")[0] for m in check(parse_job(job), chart_policy(r))]
    assert fields == [
        "spec.image",
        "spec.env[0].valueFrom.secretKeyRef.name",
        "spec.checkpoint.claimName",
        "spec.nodePools[0].tolerations[0]",
    ]


def test_policy_values_add_to_the_charts_own():
    r = render(
        {
            "operator": {
                "policy": {
                    "allowedImagePrefixes": ["ghcr.io/my-org/"],
                    "allowedEnvSecrets": ["hf-token"],
                    "allowedClaims": ["shared-data"],
                    "allowedTolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}],
                    "allowedNamespaces": ["ml", "team-*"],
                }
            },
            "wandb": {"existingSecret": "wandb"},
        }
    )
    policy = chart_policy(r)
    assert policy.allowed_image_prefixes == ("ghcr.io/my-org/",)
    assert policy.allowed_env_secrets == ("wandb", "hf-token")
    assert policy.allowed_claims == ("olmo-7b-data", "olmo-7b-checkpoints", "shared-data")
    assert [str(t) for t in policy.allowed_tolerations] == [
        "{key: 'nvidia.com/gpu', effect: NoSchedule}"
    ]
    assert policy.allowed_namespaces == ("ml", "team-*")


def test_spot_pool_tolerations_are_allowed_by_key_and_effect():
    r = render({"nodePools": [{"name": "spot", "preemptible": True, "tolerations": [
        {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
         "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists"},
    ]}]})  # fmt: skip
    assert [str(t) for t in chart_policy(r).allowed_tolerations] == [
        "{key: 'cloud.google.com/gke-spot', effect: NoSchedule}",
        "{key: 'dedicated'}",
    ]


def test_a_cluster_wide_operator_must_be_told_its_namespaces():
    with pytest.raises(helm_python.HelmRenderError) as error:
        render({"operator": {"clusterWide": True}})
    assert "operator.clusterWide=true needs operator.policy.allowedNamespaces" in str(error.value)
    assert chart_policy(case("cluster-wide")).allowed_namespaces == ("*",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"allowedImagePrefixes": ["reg.io/team"]}, "at '/operator/policy/allowedImagePrefixes/0'"),
        ({"allowedTolerations": [{"effect": "NoSchedule"}]}, "missing property 'key'"),
        ({"allowedClaims": "data"}, "at '/operator/policy/allowedClaims': got string"),
        ({"allowSecrets": []}, "additional properties 'allowSecrets' not allowed"),
    ],
)
def test_schema_rejects_bad_policy_values(values, message):
    with pytest.raises(helm_python.HelmValuesError) as error:
        render({"operator": {"policy": values}})
    assert message in str(error.value)


# --------------------------------------------------------------------------------------------
# NetworkPolicies


def network_policies(r: Rendered) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in r.of_kind("NetworkPolicy")}


def scrapers(policy: dict[str, Any]) -> list[str]:
    (rule,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "metrics"]
    (peer,) = rule["from"]
    (expression,) = peer["namespaceSelector"]["matchExpressions"]
    assert (expression["key"], expression["operator"]) == ("kubernetes.io/metadata.name", "In")
    return expression["values"]


def test_network_policies_are_on_by_default():
    r = case("defaults")
    policies = network_policies(r)
    assert sorted(policies) == ["olmo-7b-evalworker-metrics", "olmo-7b-operator"]
    assert operator_env(r)[contract.ENV_NETWORK_POLICY] == "true"
    # The operator's pod: metrics from the release namespace, health from the helm test pod.
    operator = policies["olmo-7b-operator"]
    deployment = r.one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert operator["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert operator["spec"]["policyTypes"] == ["Ingress"]
    assert scrapers(operator) == [NAMESPACE]
    (health,) = [x for x in operator["spec"]["ingress"] if x["ports"][0]["port"] == "health"]
    (test_pod,) = [
        d
        for d in r.docs
        if d.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    assert health["from"][0]["podSelector"]["matchLabels"].items() <= (
        test_pod["metadata"]["labels"].items()
    )
    # The eval workers the operator creates, on their named metrics port.
    evalworker = policies["olmo-7b-evalworker-metrics"]
    eval_pod = resources.eval_deployment(parse_job(r.olmojob))["spec"]["template"]
    assert evalworker["spec"]["podSelector"]["matchLabels"].items() <= (
        eval_pod["metadata"]["labels"].items()
    )
    (port,) = eval_pod["spec"]["containers"][0]["ports"]
    assert port["name"] == "metrics" and scrapers(evalworker) == [NAMESPACE]


def test_metrics_namespaces_and_every_watched_namespace():
    r = render(
        {
            "operator": {"watchNamespaces": [NAMESPACE, "research"]},
            "networkPolicy": {"metricsNamespaces": ["monitoring", "ops"]},
        }
    )
    evals = [d for d in r.of_kind("NetworkPolicy") if "evalworker" in d["metadata"]["name"]]
    assert sorted(d["metadata"]["namespace"] for d in evals) == [NAMESPACE, "research"]
    for policy in r.of_kind("NetworkPolicy"):
        assert scrapers(policy) == ["monitoring", "ops"]


def test_no_network_policies_when_disabled():
    r = render({"networkPolicy": {"enabled": False}})
    assert r.of_kind("NetworkPolicy") == []
    assert operator_env(r)[contract.ENV_NETWORK_POLICY] == "false"
    assert not any(
        res == "networkpolicies" for _, res, _ in rules(r.one("Role", "olmo-7b-operator"))
    )


def test_the_operator_may_create_the_per_job_network_policy():
    for r in (case("defaults"), case("everything-on")):
        job = parse_job(r.olmojob)
        policy = resources.network_policy(job)
        assert policy["metadata"]["namespace"] == NAMESPACE
        for role in r.of_kind("Role", "operator"):
            granted = rules(role)
            for verb in ("get", "create", "delete"):
                assert ("networking.k8s.io", "networkpolicies", verb) in granted
    wide = rules(case("cluster-wide").one("ClusterRole", "ml-olmo-7b-operator"))
    assert ("networking.k8s.io", "networkpolicies", "create") in wide


# --------------------------------------------------------------------------------------------
# One operator per namespace


def test_each_watched_namespace_is_claimed_by_one_marker():
    r = case("everything-on")  # watches ml and research
    markers = [d for d in r.of_kind("ConfigMap") if d["metadata"]["name"] == WATCH_MARKER]
    assert sorted(m["metadata"]["namespace"] for m in markers) == [NAMESPACE, "research"]
    for marker in markers:
        assert marker["metadata"]["annotations"]["olmo-k8s.io/operator-release"] == "ml/olmo-7b"
    # Within one release nothing is rendered twice (Helm would refuse its own install).
    for key in ("defaults", "everything-on", "cluster-wide", "operator-only"):
        counts = collections.Counter(identities(case(key).docs))
        assert [k for k, n in counts.items() if n > 1] == [], key


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # Two namespaced installs in one namespace.
        (({}, "olmo-7b", NAMESPACE), ({}, "olmo-1b", NAMESPACE)),
        # A release in ml also watching research, and one installed in research.
        (
            ({"operator": {"watchNamespaces": [NAMESPACE, "research"]}}, "a", NAMESPACE),
            ({}, "b", "research"),
        ),
        # Two cluster-wide operators, from different namespaces.
        (
            (
                {"operator": {"clusterWide": True, "policy": {"allowedNamespaces": ["*"]}}},
                "a",
                NAMESPACE,
            ),
            (
                {"operator": {"clusterWide": True, "policy": {"allowedNamespaces": ["*"]}}},
                "b",
                "research",
            ),
        ),
    ],
)
def test_a_second_install_watching_the_same_namespace_collides(first, second):
    """Helm refuses to install a release whose objects exist owned by another release: the
    two renders share a marker."""
    shared = set(identities(docs_of(*first))) & set(identities(docs_of(*second)))
    markers = {s for s in shared if s[2] in (WATCH_MARKER, CLUSTER_MARKER)}
    assert markers, shared


def test_installs_watching_different_namespaces_do_not_collide():
    a = identities(docs_of({}, "a", NAMESPACE))
    b = identities(docs_of({}, "b", "research"))
    assert set(a) & set(b) == set()
    # A release without an operator (its job run by another release's) claims nothing.
    c = identities(docs_of({"operator": {"enabled": False}}, "c", NAMESPACE))
    assert set(a) & set(c) == set()


def test_a_cluster_wide_install_is_marked_cluster_wide():
    marker = case("cluster-wide").one("ClusterRole", CLUSTER_MARKER)
    assert marker["rules"] == []  # a marker: it grants nothing
    assert [
        d
        for d in case("cluster-wide").of_kind("ConfigMap")
        if d["metadata"]["name"] == WATCH_MARKER
    ] == []


def test_the_markers_can_be_turned_off():
    r = render({"operator": {"singleOperatorCheck": False}})
    assert [d for d in r.of_kind("ConfigMap") if d["metadata"]["name"] == WATCH_MARKER] == []


def test_policy_json_is_what_the_operator_reads():
    raw = json.loads(operator_env(case("everything-on"))[contract.ENV_POLICY])
    assert set(raw) == {
        "allowedImages",
        "allowedImagePrefixes",
        "allowedEnvSecrets",
        "allowedImagePullSecrets",
        "allowedTolerations",
        "allowedClaims",
        "allowedServiceAccounts",
        "allowedNamespaces",
    }
    assert raw["allowedImagePullSecrets"] == ["registry"]
    assert raw["allowedNamespaces"] == [NAMESPACE, "research"]
