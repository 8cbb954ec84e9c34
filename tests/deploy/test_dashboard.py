"""The chart's monitoring objects: the Grafana dashboard ConfigMap, the ServiceMonitor and the
PodMonitor (rendered with Helm's engine, with and without the Prometheus Operator's APIs), and
the acceptance check of issue 20: every metric the dashboard queries is really exported, by the
operator (``olmo_operator.metrics.REGISTRY`` after an update from a full status) or by the eval
worker (``olmo_evalworker.server.WorkerMetrics``)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import _native

from olmo_operator import metrics as operator_metrics
from olmo_operator.resources.eval_worker import EVAL_PORT
from tests.deploy import ROOT
from tests.operator.goodput_status import NOW, full_status

CHART = ROOT / "helm"
DASHBOARD = CHART / "dashboards" / "olmo-jobs.json"
NAMESPACE = "ml"
SERVICE_MONITOR = "monitoring.coreos.com/v1/ServiceMonitor"
POD_MONITOR = "monitoring.coreos.com/v1/PodMonitor"
PROMETHEUS_OPERATOR = ("monitoring.coreos.com/v1", SERVICE_MONITOR, POD_MONITOR)

# The monitoring.coreos.com/v1 fields the chart uses (the CRDs' own schemas, trimmed to them):
# kubernetes-validate knows no custom resources.
_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
    "required": ["matchLabels"],
    "additionalProperties": False,
}
_NAMESPACES = {
    "type": "object",
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "additionalProperties": False,
    "minProperties": 1,
}
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_ENDPOINT = {
    "type": "object",
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
        "relabelings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sourceLabels": {
                        "type": "array",
                        "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                    },
                    "targetLabel": {"type": "string"},
                    "action": {"enum": ["replace", "Replace"]},
                },
                "additionalProperties": False,
            },
        },
    },
    "required": ["port"],
    "additionalProperties": False,
}


def _monitor_schema(kind: str, endpoints: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name", "namespace", "labels"],
                "properties": {"name": {"type": "string", "maxLength": 63}},
            },
            "spec": {
                "type": "object",
                "properties": {
                    "selector": _SELECTOR,
                    "namespaceSelector": _NAMESPACES,
                    endpoints: {"type": "array", "items": _ENDPOINT, "minItems": 1},
                },
                "required": ["selector", endpoints],
                "additionalProperties": False,
            },
        },
        "required": ["apiVersion", "kind", "metadata", "spec"],
    }


MONITOR_SCHEMAS = {
    "ServiceMonitor": _monitor_schema("ServiceMonitor", "endpoints"),
    "PodMonitor": _monitor_schema("PodMonitor", "podMetricsEndpoints"),
}


# --------------------------------------------------------------------------------------------
# Rendering with API versions


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(str(CHART))


def render(values: dict[str, Any] | None = None, api_versions: tuple[str, ...] = ()) -> list[dict]:
    """The chart's documents, with ``.Capabilities.APIVersions`` holding ``api_versions``
    (`helm template --api-versions`). ``Chart.render`` of helm-python-sdk 0.2.2 does not expose
    that option, which its native ``helm_render`` takes: called directly here."""
    options = {"name": "olmo-7b", "namespace": NAMESPACE, "api_versions": list(api_versions)}
    payload = _native.call_string(
        "helm_render", chart()._raw(), json.dumps(values or {}), json.dumps(options)
    )
    files: dict[str, str] = json.loads(payload)
    return [
        doc
        for path, text in sorted(files.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_the_monitors_follow_the_prometheus_operator_apis_and_the_switches():
    assert not of_kind(render(), "ServiceMonitor") and not of_kind(render(), "PodMonitor")
    docs = render(api_versions=PROMETHEUS_OPERATOR)
    assert len(of_kind(docs, "ServiceMonitor")) == 1 and len(of_kind(docs, "PodMonitor")) == 1
    only_sm = render(api_versions=(SERVICE_MONITOR,))
    assert len(of_kind(only_sm, "ServiceMonitor")) == 1 and not of_kind(only_sm, "PodMonitor")
    off = {"serviceMonitor": {"enabled": False}, "podMonitor": {"enabled": False}}
    docs = render({"operator": {"monitoring": off}}, PROMETHEUS_OPERATOR)
    assert not of_kind(docs, "ServiceMonitor") and not of_kind(docs, "PodMonitor")
    forced = {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}
    docs = render({"operator": {"monitoring": forced}})  # helm template without the APIs
    assert len(of_kind(docs, "ServiceMonitor")) == 1 and len(of_kind(docs, "PodMonitor")) == 1
    no_metrics = render({"operator": {"metrics": {"enabled": False}}}, PROMETHEUS_OPERATOR)
    assert not of_kind(no_metrics, "ServiceMonitor") and of_kind(no_metrics, "PodMonitor")
    no_operator = render({"operator": {"enabled": False}}, PROMETHEUS_OPERATOR)
    assert not [d for d in no_operator if d["kind"] in ("ServiceMonitor", "PodMonitor")]


def test_the_service_monitor_scrapes_the_operator_service_keeping_the_job_labels():
    docs = render({"operator": {"monitoring": {"labels": {"release": "kps"}}}}, PROMETHEUS_OPERATOR)
    (monitor,) = of_kind(docs, "ServiceMonitor")
    jsonschema.validate(monitor, MONITOR_SCHEMAS["ServiceMonitor"])
    service = next(
        d for d in of_kind(docs, "Service") if d["metadata"]["name"] == "olmo-7b-operator"
    )
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["honorLabels"] is True  # the series' own namespace/job labels win
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["metadata"]["labels"]["release"] == "kps"


@pytest.mark.parametrize("cluster_wide", [False, True])
def test_the_pod_monitor_selects_the_eval_worker_pods(cluster_wide):
    from olmo_operator.resources import eval_deployment
    from olmo_operator.spec import parse_job
    from tests.operator.olmojobs import olmojob

    operator = {"watchNamespaces": [NAMESPACE, "research"], "monitoring": {"scrapeTimeout": "10s"}}
    if cluster_wide:
        operator = {"clusterWide": True, "policy": {"allowedNamespaces": ["*"]}}
    (monitor,) = of_kind(render({"operator": operator}, PROMETHEUS_OPERATOR), "PodMonitor")
    jsonschema.validate(monitor, MONITOR_SCHEMAS["PodMonitor"])
    job = parse_job(olmojob("run", eval={"image": "olmo-evalworker:dev", "tasks": ["piqa"]}))
    pod = eval_deployment(job)["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert ports[endpoint["port"]] == EVAL_PORT
    # the job label comes from the pod's olmo-k8s.io/job label, as Prometheus sanitizes it
    (relabel,) = endpoint["relabelings"]
    job_label = re.sub(r"[^a-zA-Z0-9_]", "_", "olmo-k8s.io/job")
    assert relabel["sourceLabels"] == [f"__meta_kubernetes_pod_label_{job_label}"]
    assert relabel["targetLabel"] == "job" and "olmo-k8s.io/job" in pod["metadata"]["labels"]
    expected = {"any": True} if cluster_wide else {"matchNames": [NAMESPACE, "research"]}
    assert monitor["spec"]["namespaceSelector"] == expected


def dashboards(docs: list[dict]) -> list[dict]:
    return [d for d in of_kind(docs, "ConfigMap") if "olmo-jobs.json" in d.get("data", {})]


def test_the_dashboard_configmap_is_labelled_for_the_grafana_sidecar():
    assert not dashboards(render())  # auto: only next to the Prometheus Operator
    (config,) = dashboards(render(api_versions=PROMETHEUS_OPERATOR))
    kubernetes_validate.validate(config, kubernetes_validate.latest_version(), strict=True)
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["namespace"] == NAMESPACE
    assert "annotations" not in config["metadata"]
    assert json.loads(config["data"]["olmo-jobs.json"]) == json.loads(DASHBOARD.read_text())
    custom = {
        "label": "grafana.example/dashboard",
        "labelValue": "yes",
        "folder": "Training",
        "folderAnnotation": "grafana.example/folder",
        "namespace": "monitoring",
        "enabled": True,
    }
    (config,) = dashboards(render({"operator": {"monitoring": {"grafanaDashboard": custom}}}))
    assert config["metadata"]["labels"]["grafana.example/dashboard"] == "yes"
    assert config["metadata"]["annotations"] == {"grafana.example/folder": "Training"}
    assert config["metadata"]["namespace"] == "monitoring"
    off = {"operator": {"monitoring": {"grafanaDashboard": {"enabled": False}}}}
    assert not dashboards(render(off, PROMETHEUS_OPERATOR))


def test_the_monitoring_values_are_checked():
    bad = {"operator": {"monitoring": {"serviceMonitor": {"enabled": "yes"}}}}
    with pytest.raises(helm_python.HelmValuesError, match="serviceMonitor/enabled"):
        render(bad)
    with pytest.raises(helm_python.HelmValuesError, match="monitoring/interval"):
        render({"operator": {"monitoring": {"interval": "soon"}}})


# --------------------------------------------------------------------------------------------
# Every metric the dashboard queries is exported


PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "atan2", "inf", "nan"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*[a-zA-Z_]\w*\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions (followed
    by ``(``), keywords or label names, once strings, variables, ``{...}`` selectors, ``[...]``
    ranges and the label lists of ``by``/``without``/``on``/``ignoring`` are stripped."""
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("1", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _LABEL_LIST.sub(" ", text)
    return {
        m.group(1)
        for m in _NAME.finditer(text)
        if not m.group(2) and m.group(1).lower() not in PROMQL_WORDS
    }


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets (rows' panels too) and the variables' queries
    (``label_values(SELECTOR, label)``: the selector)."""
    queries = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            queries.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        found = _LABEL_VALUES.match(query)
        queries.append(found.group(1) if found else query)
    return queries


def _samples(registry: Any) -> set[str]:
    return {s.name for family in registry.collect() for s in family.samples}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every series name the operator and the eval worker expose, all labelled children set."""
    from olmo_evalworker.outcomes import Evaluated
    from olmo_evalworker.server import WorkerMetrics

    operator_metrics.JOBS_METRICS.update("test-dashboard", "run", full_status(), NOW)
    try:
        names = _samples(operator_metrics.REGISTRY)
    finally:
        operator_metrics.JOBS_METRICS.forget("test-dashboard", "run")
    worker = WorkerMetrics()
    results = {
        "tasks": {"piqa": {"headline": 0.6}},
        "perplexity": {"aggregate": {"perplexity": 12.0, "bits_per_byte": 1.1}},
    }
    worker.evaluated(Evaluated(100, None, Path("c"), results, Path("r"), 3.0))
    return names | _samples(worker.registry)


def test_metric_names_are_read_from_promql():
    expr = (
        'histogram_quantile(0.95, sum by (le, job) (rate(olmo_reconcile_seconds_bucket{job=~"$job"}'
        "[5m]))) / on (namespace) group_left(pool) olmo_job_cost offset 1h "
        "and time() - olmo_job_checkpoint_timestamp_seconds > bool 3.5e2"
    )
    assert metric_names(expr) == {
        "olmo_reconcile_seconds_bucket",
        "olmo_job_cost",
        "olmo_job_checkpoint_timestamp_seconds",
    }
    assert metric_names('label_replace(up, "a", "$1", "b", "(.*)")') == {"up"}


def test_every_dashboard_query_names_an_exported_metric(exported):
    dashboard = json.loads(DASHBOARD.read_text())
    assert 30 <= dashboard["schemaVersion"] <= 41
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"job", "namespace"}
    used: set[str] = set()
    for query in dashboard_queries(dashboard):
        names = metric_names(query)
        assert names, f"no metric in {query!r}"
        missing = names - exported
        assert not missing, f"{query!r} reads {sorted(missing)}, which nothing exports"
        used |= names
    # the panels issue 20 asks for
    for name in (
        "olmo_job_phase", "olmo_job_step", "olmo_job_tokens_per_second", "olmo_job_mfu",
        "olmo_job_goodput_ratio", "olmo_job_state_seconds", "olmo_job_status_restarts",
        "olmo_job_checkpoint_timestamp_seconds", "olmo_job_upload_seconds",
        "olmo_job_save_seconds", "olmo_job_checkpoint_interval_steps", "olmo_job_cost",
        "olmo_job_eval_score", "olmo_eval_headline",
    ):  # fmt: skip
        assert name in used, name


@pytest.mark.parametrize(
    "expr", ["rate(olmo_job_steps[5m])", "sum by (job) (olmo_eval_score)", "olmo_job_restarts"]
)
def test_a_query_of_a_metric_nothing_exports_is_caught(exported, expr):
    assert metric_names(expr) - exported
