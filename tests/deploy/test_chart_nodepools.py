"""The chart's node-pool features (issue 17, item 4): switches, RBAC, examples, docs.

Three values switch the operator's node-pool features on (``operator.provisioning``,
``operator.karpenter``, ``operator.terminationNotices``; all off by default). Each one sets its
``OLMO_FEATURE_*`` env var on the operator Deployment and grants exactly the permissions that
feature needs, in the chart's namespaced and cluster-wide install modes alike; with the defaults
nothing is granted and the manifests are byte for byte those of a chart without the switches.

The two examples (Karpenter on EKS, GKE queued provisioning) are rendered with Helm's own engine,
linted strictly, validated with kubernetes-validate (strict, the chart's oldest and the newest
Kubernetes), and their OLMoJob against ``helm/crds/olmojobs.yaml`` as it is when the test runs
(the CRD is generated from the operator's typed spec) and by the operator's own parser.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest

from olmo_operator import contract, failures, resources
from olmo_operator.policy import Policy, check
from olmo_operator.spec import parse_job
from tests.deploy.test_chart import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    NODEPOOL_EXAMPLES,
    Rendered,
    chart,
    crd_schema,
    example,
    render,
    rules,
)

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)

SWITCHES = ("provisioning", "karpenter", "terminationNotices")
ENV = {
    "provisioning": contract.ENV_FEATURE_PROVISIONING,
    "karpenter": contract.ENV_FEATURE_KARPENTER,
    "terminationNotices": contract.ENV_FEATURE_TERMINATION_NOTICES,
}
# What each switch adds: (rules where the OLMoJobs are: a Role per watched namespace, or the
# ClusterRole when clusterWide; rules that are cluster-scoped: always the ClusterRole).
PROVISIONING_RULES = {
    *(
        ("autoscaling.x-k8s.io", "provisioningrequests", v)
        for v in ("get", "list", "create", "delete")
    ),
    *(("", "podtemplates", v) for v in ("get", "list", "create", "delete")),
}
KARPENTER_RULES = {
    ("karpenter.sh", "nodepools", v) for v in ("get", "list", "watch", "create", "delete")
}
NODE_WATCH_RULES = {("", "nodes", "list"), ("", "nodes", "watch")}
ADDED: dict[str, tuple[set[Rule], set[Rule]]] = {
    "provisioning": (PROVISIONING_RULES, set()),
    "karpenter": (set(), KARPENTER_RULES),
    "terminationNotices": (set(), NODE_WATCH_RULES),
}
# The install modes whose RBAC differs: a Role in each of two watched namespaces, or one
# ClusterRole for everything.
MODES: dict[str, dict[str, Any]] = {
    "namespaced": {"operator": {"watchNamespaces": [NAMESPACE, "research"]}},
    "cluster-wide": {
        "operator": {"clusterWide": True, "policy": {"allowedNamespaces": ["*"]}},
    },
}
CLUSTER_ROLE = f"{NAMESPACE}-olmo-7b-operator"


def with_switches(values: dict[str, Any], **on: bool) -> dict[str, Any]:
    out = copy.deepcopy(values)
    operator = out.setdefault("operator", {})
    for name, enabled in on.items():
        operator[name] = {"enabled": enabled}
    return out


def raw(values: dict[str, Any]) -> dict[str, str]:
    """{template path: manifest text} of ``helm template olmo-7b`` in namespace ml."""
    return chart().render(copy.deepcopy(values), name="olmo-7b", namespace=NAMESPACE)


def role_rules(r: Rendered) -> dict[tuple[str, str], set[Rule]]:
    """The rules of every operator Role and ClusterRole, by (kind, namespace/name)."""
    out = {}
    for kind in ("Role", "ClusterRole"):
        for doc in r.of_kind(kind, "operator"):
            meta = doc["metadata"]
            out[kind, f"{meta.get('namespace', '')}/{meta['name']}"] = rules(doc)
    return out


def operator_env(r: Rendered) -> dict[str, str]:
    (container,) = r.one("Deployment")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def without_operator_rbac_and_env(r: Rendered) -> list[dict[str, Any]]:
    """Every document, less the operator's rules and env (what the switches may change)."""
    docs = copy.deepcopy(r.docs)
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            doc.pop("rules", None)
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                container.pop("env", None)
    return docs


# --------------------------------------------------------------------------------------------
# Off by default: nothing new


@pytest.mark.parametrize("mode", [None, *MODES])
def test_switches_off_render_byte_identical_to_no_switches(mode):
    """The defaults and all three switches spelled out as false render the same text, so an
    install that does not use the features gets the manifests it had before them."""
    values = MODES[mode] if mode else {}
    off = with_switches(values, provisioning=False, karpenter=False, terminationNotices=False)
    assert raw(off) == raw(values)
    for switch in SWITCHES:
        assert chart().values["operator"][switch] == {"enabled": False}


@pytest.mark.parametrize("mode", [None, *MODES])
def test_defaults_grant_none_of_the_node_pool_apis(mode):
    r = render(MODES[mode] if mode else {})
    granted = set().union(*role_rules(r).values())
    assert not granted & (PROVISIONING_RULES | KARPENTER_RULES | NODE_WATCH_RULES)
    assert {rule for rule in granted if rule[1] == "nodes"} == {("", "nodes", "get")}
    assert not any(name.startswith("OLMO_FEATURE_") for name in operator_env(r))


# --------------------------------------------------------------------------------------------
# Each switch: its env var and exactly its rules


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_adds_exactly_its_rules_and_env(switch, mode):
    base = render(MODES[mode])
    on = render(with_switches(MODES[mode], **{switch: True}))
    namespaced, cluster = ADDED[switch]
    before, after = role_rules(base), role_rules(on)
    assert before.keys() == after.keys()  # no Role or ClusterRole appears or goes
    for (kind, name), granted in before.items():
        expected = set(granted)
        if kind == "ClusterRole" and name == f"/{CLUSTER_ROLE}":
            expected |= cluster | (namespaced if mode == "cluster-wide" else set())
        elif kind == "Role":
            expected |= namespaced
        assert after[kind, name] == expected, (kind, name)
    assert operator_env(on) == {**operator_env(base), ENV[switch]: "true"}
    # Nothing else changes: same objects, same everything but the rules and the env.
    assert without_operator_rbac_and_env(on) == without_operator_rbac_and_env(base)


def test_all_switches_together_grant_the_union_and_no_wildcards():
    on = render(with_switches(MODES["namespaced"], **dict.fromkeys(SWITCHES, True)))
    cluster = rules(on.one("ClusterRole", CLUSTER_ROLE))
    assert cluster >= KARPENTER_RULES | NODE_WATCH_RULES
    assert not PROVISIONING_RULES & cluster  # namespaced objects stay in the Roles
    for role in on.of_kind("Role", "operator"):
        assert rules(role) >= PROVISIONING_RULES
        assert not KARPENTER_RULES & rules(role)  # a Role cannot grant cluster-scoped objects
    granted = set().union(*role_rules(on).values())
    assert not any("*" in item for rule in granted for item in rule)
    assert not any(resource == "secrets" for _, resource, _ in granted)
    assert {n for n in operator_env(on) if n.startswith("OLMO_FEATURE_")} == set(ENV.values())


def test_feature_env_names_and_chart_values_are_the_operators():
    """The operator names the chart values in its refusals: they must exist, and be the ones
    that set its env vars."""
    for switch, value in (
        ("provisioning", contract.CHART_PROVISIONING),
        ("karpenter", contract.CHART_KARPENTER),
        ("terminationNotices", contract.CHART_TERMINATION_NOTICES),
    ):
        assert value == f"operator.{switch}.enabled"
        env = operator_env(render(with_switches({}, **{switch: True})))
        assert env[ENV[switch]] == "true"


def test_a_switch_without_rbac_create_sets_only_the_env():
    r = render({"operator": {"rbac": {"create": False}, "karpenter": {"enabled": True}}})
    assert r.of_kind("ClusterRole", "operator") == [] and r.of_kind("Role", "operator") == []
    assert operator_env(r)[contract.ENV_FEATURE_KARPENTER] == "true"


# --------------------------------------------------------------------------------------------
# Pools asking for what the operator was not installed with


POOL = {"name": "a100"}
PROVISIONED = {**POOL, "provisioning": {"className": "queued-provisioning.gke.io"}}
OWNED = {
    **POOL,
    "managed": "karpenter",
    "karpenter": {
        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"}
    },
}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"nodePools": [POOL, PROVISIONED]},
            "nodePools[1] (a100) sets provisioning, which the operator runs only with "
            "operator.provisioning.enabled=true",
        ),
        (
            {"nodePools": [OWNED]},
            "nodePools[0] (a100) sets managed=karpenter, which the operator runs only with "
            "operator.karpenter.enabled=true",
        ),
        (
            {
                "nodePools": [{**OWNED, "provisioning": PROVISIONED["provisioning"]}],
                "operator": {"provisioning": {"enabled": True}, "karpenter": {"enabled": True}},
            },
            "nodePools[0] (a100) sets both provisioning and managed=karpenter",
        ),
        (
            {
                "nodePools": [PROVISIONED],
                "operator": {"provisioning": {"enabled": True}},
                "job": {"queueName": "llm"},
            },
            "nodePools[0] (a100) sets provisioning and job.queueName is set",
        ),
    ],
)
def test_a_pool_the_operator_cannot_run_is_refused_naming_the_value(values, message):
    with pytest.raises(helm_python.HelmRenderError) as error:
        render(values)
    assert message in str(error.value)


def test_without_the_charts_operator_the_pools_are_another_operators_business():
    r = render({"operator": {"enabled": False}, "nodePools": [PROVISIONED, OWNED]})
    assert [p["name"] for p in r.olmojob["spec"]["nodePools"]] == ["a100", "a100"]


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        ({**POOL, "managed": "karpenter"}, "properties 'karpenter' required, if 'managed' exists"),
        ({**POOL, "karpenter": OWNED["karpenter"]}, "properties 'managed' required"),
        ({**POOL, "managed": "gke"}, "at '/nodePools/0/managed': value must be"),
        ({**POOL, "provisioning": {"className": "Queued_GKE"}}, "/provisioning/className"),
        ({**POOL, "provisioning": {"timeoutSeconds": 60}}, "missing property 'className'"),
        (
            {**POOL, "provisioning": {"className": "x", "parameters": {"a": "x" * 256}}},
            "/provisioning/parameters/a",
        ),
        (
            {**OWNED, "karpenter": {**OWNED["karpenter"], "capacityType": "SPOT"}},
            "/karpenter/capacityType",
        ),
        ({**OWNED, "karpenter": {**OWNED["karpenter"], "expireAfter": "30d"}}, "/expireAfter"),
        ({**OWNED, "karpenter": {"nodeClassRef": {"name": "gpu"}}}, "/karpenter/nodeClassRef"),
    ],
)
def test_schema_rejects_bad_pools(pool, message):
    with pytest.raises(helm_python.HelmValuesError) as error:
        render({"nodePools": [pool]})
    assert message in str(error.value)


# --------------------------------------------------------------------------------------------
# The examples


def example_render(name: str) -> Rendered:
    return render(example(name))


@pytest.mark.parametrize("name", NODEPOOL_EXAMPLES)
def test_example_lints_strictly(name):
    result = helm_python.lint(str(CHART), example(name), strict=True)
    assert result["errors"] == [] and result["messages"] == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", NODEPOOL_EXAMPLES)
def test_example_manifests_pass_strict_kubernetes_validation(name, kube_version):
    docs = [d for d in example_render(name).docs if d["kind"] != "OLMoJob"]
    assert {d["kind"] for d in docs} >= {"Deployment", "ClusterRole", "Role"}
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {e.message}")


@pytest.mark.parametrize("name", NODEPOOL_EXAMPLES)
def test_example_olmojob_is_valid_for_the_shipped_crd(name):
    """Against helm/crds/olmojobs.yaml as it is now: the CRD is generated from the operator's
    typed spec, so a field the chart passes that the operator does not know fails here."""
    job = example_render(name).olmojob
    jsonschema.validate(job, crd_schema())
    assert job["spec"]["nodePools"] == example(name)["nodePools"]


@pytest.mark.parametrize("name", NODEPOOL_EXAMPLES)
def test_example_olmojob_is_read_by_the_operator_and_allowed_by_the_charts_policy(name):
    r = example_render(name)
    job = parse_job(r.olmojob)
    assert [p.name for p in job.spec.node_pools] == [p["name"] for p in example(name)["nodePools"]]
    policy = Policy.from_json(operator_env(r)[contract.ENV_POLICY])
    assert check(job, policy) == []


def group_resource(obj: dict[str, Any]) -> tuple[str, str]:
    group = obj["apiVersion"].rpartition("/")[0]
    return group, {"PodTemplate": "podtemplates"}.get(obj["kind"], obj["kind"].lower() + "s")


@pytest.mark.parametrize("name", NODEPOOL_EXAMPLES)
def test_examples_grant_what_the_operator_does_with_the_capacity_objects_it_builds(name):
    """The operator's own builders make the objects; each kind is granted where it lives: get
    (a taken name is read), list (the job's children), create, delete."""
    r = example_render(name)
    job = parse_job(r.olmojob)
    objects = [
        *resources.attempt_capacity(job, resources.AttemptState(attempt=1, node_pool_index=0)),
        *(
            resources.karpenter_node_pool(job, pool)
            for pool in job.spec.node_pools
            if pool.karpenter_managed
        ),
    ]
    assert objects
    role, cluster = (
        rules(r.one("Role", "olmo-7b-operator")),
        rules(r.one("ClusterRole", CLUSTER_ROLE)),
    )
    for obj in objects:
        group, resource = group_resource(obj)
        granted = cluster if "namespace" not in obj["metadata"] else role
        for verb in ("get", "list", "create", "delete"):
            assert (group, resource, verb) in granted, (obj["kind"], verb)


def test_karpenter_example_spot_first_with_an_on_demand_sibling():
    r = example_render("values-eks-karpenter.yaml")
    env = operator_env(r)
    assert env[contract.ENV_FEATURE_KARPENTER] == "true"
    assert contract.ENV_FEATURE_PROVISIONING not in env
    assert rules(r.one("ClusterRole", CLUSTER_ROLE)) >= KARPENTER_RULES
    spot, on_demand = r.olmojob["spec"]["nodePools"]
    assert spot["preemptible"] and not on_demand.get("preemptible", False)
    assert spot["managed"] == on_demand["managed"] == "karpenter"
    assert (spot["karpenter"]["capacityType"], on_demand["karpenter"]["capacityType"]) == (
        "spot",
        "on-demand",
    )
    # Siblings: the same machines from the same node class, only the capacity type differs.
    same = {k: v for k, v in spot["karpenter"].items() if k != "capacityType"}
    assert same == {k: v for k, v in on_demand["karpenter"].items() if k != "capacityType"}
    assert spot["karpenter"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "gpu",
    }
    keys = {req["key"] for req in spot["karpenter"]["requirements"]}
    assert "karpenter.k8s.aws/instance-family" in keys
    assert "karpenter.k8s.aws/instance-gpu-count" in keys
    gpus = next(
        req["values"]
        for req in spot["karpenter"]["requirements"]
        if req["key"] == "karpenter.k8s.aws/instance-gpu-count"
    )
    assert gpus == [str(r.olmojob["spec"]["gpusPerNode"])]


def test_gke_queued_provisioning_example():
    r = example_render("values-gke-queued-provisioning.yaml")
    env = operator_env(r)
    assert env[contract.ENV_FEATURE_PROVISIONING] == "true"
    assert contract.ENV_FEATURE_KARPENTER not in env
    assert rules(r.one("Role", "olmo-7b-operator")) >= PROVISIONING_RULES
    queued, fallback = r.olmojob["spec"]["nodePools"]
    provisioning = queued["provisioning"]
    assert provisioning["className"] == "queued-provisioning.gke.io"
    # GKE grants queued capacity for at most 7 days; ProvisioningRequest parameters are strings.
    assert 0 < int(provisioning["parameters"]["maxRunDurationSeconds"]) <= 7 * 24 * 3600
    # The pods land on the queued pool by name and tolerate the taint GKE puts on its nodes.
    assert queued["nodeSelector"] == {"cloud.google.com/gke-nodepool": "h100-dws"}
    assert {
        "key": "cloud.google.com/gke-queued",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    } in queued["tolerations"]
    assert "provisioning" not in fallback and "managed" not in fallback
    # The chart's policy lets the pods carry those tolerations (by key and effect).
    policy = json.loads(env[contract.ENV_POLICY])
    assert {"key": "cloud.google.com/gke-queued", "effect": "NoSchedule"} in policy[
        "allowedTolerations"
    ]


# --------------------------------------------------------------------------------------------
# Docs


def test_readme_explains_the_three_ways_pools_work():
    readme = (CHART / "README.md").read_text()
    section = readme.split("## Node pools", 1)[1].split("\n## ", 1)[0]
    for way in ("Pre-existing", "Provisioned per attempt", "Operator-owned"):
        assert f"| **{way}**" in section, way
    for column in ("who creates the nodes", "who pays while idle", "on a spot reclaim"):
        assert column in section.lower(), column
    for value in (
        "operator.provisioning.enabled",
        "operator.karpenter.enabled",
        "operator.terminationNotices.enabled",
    ):
        assert f"`{value}`" in section and f"`{value}`" in readme.split("## Node pools")[0]
    for name in NODEPOOL_EXAMPLES:
        assert f"examples/{name}" in section


def test_readme_names_each_clouds_imminent_termination_taint():
    """The README's list of taints is the operator's table (failures.TERMINATION_SIGNALS)."""
    section = (CHART / "README.md").read_text().split("## Node pools", 1)[1].split("\n## ", 1)[0]
    clouds = [s for s in failures.TERMINATION_SIGNALS if s.provider in ("GKE", "AWS", "Azure")]
    assert {s.provider for s in clouds} == {"GKE", "AWS", "Azure"}
    for signal in clouds:
        if signal.imminent:
            assert f"`{signal.key}`" in section, signal.key
