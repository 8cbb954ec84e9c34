"""The API emulator behaves like a Kubernetes apiserver where operators depend on it, seen
through the official ``kubernetes`` client."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from .conftest import (
    COMPLETION_INDEX,
    NAMESPACE,
    K8s,
    fail_pod,
    fake_job_controller,
    preempt_pod,
    succeed_pod,
    wait_for,
)
from .emulator import CRDS, merge_patch, parse_label_selector, strategic_merge_patch

WIDGETS_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "default": 3},
                                    "color": {"type": "string"},
                                },
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def config_map(name: str, labels: dict | None = None, **meta) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}, **meta}, "data": {"k": "v"}}


def job_body(name: str, **spec) -> dict:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}
    return {"metadata": {"name": name}, "spec": {"template": template, **spec}}


def pod_body(name: str, owner: dict | None = None) -> dict:
    meta = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "image": "i"}]}}


@pytest.fixture
def widgets(k8s: K8s) -> str:
    client.ApiextensionsV1Api(k8s.api).create_custom_resource_definition(WIDGETS_CRD)
    return "widgets"


def create_widget(k8s: K8s, name: str, **spec) -> dict:
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }
    return k8s.custom.create_namespaced_custom_object(
        "example.com", "v1", NAMESPACE, "widgets", body
    )


def status_code(e: pytest.ExceptionInfo) -> int:
    return e.value.status


# ---- create and metadata ---------------------------------------------------------------------


def test_create_answers_201_with_server_metadata(k8s):
    data, code, _ = k8s.core.create_namespaced_config_map_with_http_info(NAMESPACE, config_map("a"))
    assert code == 201
    meta = data.metadata
    assert meta.uid and meta.creation_timestamp and meta.generation == 1
    assert meta.namespace == NAMESPACE and data.kind == "ConfigMap"
    fetched = k8s.core.read_namespaced_config_map("a", NAMESPACE).metadata
    assert (fetched.uid, fetched.resource_version) == (meta.uid, meta.resource_version)


def test_custom_object_create_returns_the_object(k8s, widgets):
    widget = create_widget(k8s, "w")
    assert widget["metadata"]["uid"] and widget["metadata"]["resourceVersion"]
    assert widget["spec"] == {"size": 3}  # the schema's default applied


def test_every_write_bumps_resource_version_and_noops_do_not(k8s):
    first = k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a")).metadata
    second = k8s.core.patch_namespaced_config_map("a", NAMESPACE, {"data": {"k": "w"}}).metadata
    assert int(second.resource_version) > int(first.resource_version)
    assert second.generation == 2
    labelled = k8s.core.patch_namespaced_config_map(
        "a", NAMESPACE, {"metadata": {"labels": {"x": "y"}}}
    )
    assert int(labelled.metadata.resource_version) > int(second.resource_version)
    assert labelled.metadata.generation == 2  # metadata-only changes keep the generation
    same = k8s.core.patch_namespaced_config_map("a", NAMESPACE, {"data": {"k": "w"}}).metadata
    assert same.resource_version == labelled.metadata.resource_version


def test_duplicate_names_conflict(k8s):
    k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a"))
    with pytest.raises(ApiException) as e:
        k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a"))
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"


def test_generate_name(k8s):
    made = {
        k8s.core.create_namespaced_config_map(
            NAMESPACE, config_map("", generateName="cm-")
        ).metadata.name
        for _ in range(3)
    }
    assert len(made) == 3 and all(n.startswith("cm-") and len(n) == 8 for n in made)


def test_namespaces_exist_and_are_required(k8s):
    assert {"default", "kube-system"} <= {n.metadata.name for n in k8s.core.list_namespace().items}
    assert k8s.core.read_namespace("default").metadata.uid
    with pytest.raises(ApiException) as e:
        k8s.core.create_namespaced_config_map("nowhere", config_map("a"))
    assert e.value.status == 404


def test_unknown_objects_and_resources_are_404(k8s):
    with pytest.raises(ApiException) as e:
        k8s.core.read_namespaced_config_map("missing", NAMESPACE)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        k8s.custom.list_namespaced_custom_object("example.com", "v1", NAMESPACE, "gadgets")
    assert e.value.status == 404


# ---- selectors -----------------------------------------------------------------------------


def test_label_selectors(k8s):
    k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a", {"app": "x", "tier": "1"}))
    k8s.core.create_namespaced_config_map(NAMESPACE, config_map("b", {"app": "y"}))
    k8s.core.create_namespaced_config_map(NAMESPACE, config_map("c"))

    def names(selector: str) -> list[str]:
        items = k8s.core.list_namespaced_config_map(NAMESPACE, label_selector=selector).items
        return sorted(i.metadata.name for i in items)

    assert names("app=x") == ["a"]
    assert names("app==y") == ["b"]
    assert names("app!=x") == ["b", "c"]
    assert names("app") == ["a", "b"]
    assert names("!app") == ["c"]
    assert names("app in (x,y),tier") == ["a"]
    assert names("app notin (x)") == ["b", "c"]
    assert names("") == ["a", "b", "c"]
    with pytest.raises(ApiException) as e:
        names("app in x")
    assert e.value.status == 400


def test_field_selectors(k8s):
    for name in ("a", "b"):
        k8s.core.create_namespaced_config_map(NAMESPACE, config_map(name))
    items = k8s.core.list_namespaced_config_map(NAMESPACE, field_selector="metadata.name=b").items
    assert [i.metadata.name for i in items] == ["b"]
    items = k8s.core.list_namespaced_config_map(NAMESPACE, field_selector="metadata.name!=b").items
    assert [i.metadata.name for i in items] == ["a"]


def test_selector_parser_handles_sets_with_commas():
    requirements = parse_label_selector("a in (x, y),b notin (z),!c,d")
    assert [(r.key, r.op, sorted(r.values)) for r in requirements] == [
        ("a", "in", ["x", "y"]),
        ("b", "notin", ["z"]),
        ("c", "!", []),
        ("d", "exists", []),
    ]


# ---- patches and the status subresource ----------------------------------------------------


def test_status_subresource_is_isolated_for_builtin_kinds(k8s):
    created = k8s.batch.create_namespaced_job(NAMESPACE, job_body("j"))
    assert created.status is None or created.status.active is None
    k8s.batch.patch_namespaced_job_status(
        "j", NAMESPACE, {"status": {"active": 2}, "spec": {"parallelism": 5}}
    )
    job = k8s.batch.read_namespaced_job("j", NAMESPACE)
    assert job.status.active == 2 and job.spec.parallelism == 1 and job.metadata.generation == 1
    k8s.batch.patch_namespaced_job(
        "j", NAMESPACE, {"status": {"active": 0}, "spec": {"parallelism": 3}}
    )
    job = k8s.batch.read_namespaced_job("j", NAMESPACE)
    assert job.status.active == 2 and job.spec.parallelism == 3 and job.metadata.generation == 2


def test_status_subresource_is_isolated_for_custom_resources(k8s, widgets):
    create_widget(k8s, "w", size=1)
    patch = {"spec": {"size": 9}, "status": {"phase": "Running"}}
    k8s.custom.patch_namespaced_custom_object_status(
        "example.com", "v1", NAMESPACE, "widgets", "w", patch
    )
    widget = k8s.custom.get_namespaced_custom_object("example.com", "v1", NAMESPACE, "widgets", "w")
    assert widget["spec"]["size"] == 1 and widget["status"] == {"phase": "Running"}
    patch = {"spec": {"size": 2}, "status": {"phase": "Failed"}}
    k8s.custom.patch_namespaced_custom_object("example.com", "v1", NAMESPACE, "widgets", "w", patch)
    widget = k8s.custom.get_namespaced_custom_object("example.com", "v1", NAMESPACE, "widgets", "w")
    assert widget["spec"]["size"] == 2 and widget["status"] == {"phase": "Running"}
    assert widget["metadata"]["generation"] == 2


def test_failed_json_patch_test_is_422(k8s):
    cm = k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a"))
    stale = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]
    with pytest.raises(ApiException) as e:
        k8s.core.patch_namespaced_config_map("a", NAMESPACE, stale)
    assert e.value.status == 422
    fresh = [dict(stale[0], value=cm.metadata.resource_version), stale[1]]
    assert k8s.core.patch_namespaced_config_map("a", NAMESPACE, fresh).metadata.finalizers == [
        "x/y"
    ]


def test_stale_resource_version_conflicts(k8s):
    cm = k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a"))
    k8s.core.patch_namespaced_config_map("a", NAMESPACE, {"data": {"k": "2"}})
    stale = {"metadata": {"resourceVersion": cm.metadata.resource_version}, "data": {"k": "3"}}
    with pytest.raises(ApiException) as e:
        k8s.core.patch_namespaced_config_map("a", NAMESPACE, stale)
    assert e.value.status == 409
    body = k8s.to_dict(cm)
    body["data"] = {"k": "4"}
    with pytest.raises(ApiException) as e:
        k8s.core.replace_namespaced_config_map("a", NAMESPACE, body)
    assert e.value.status == 409
    body["metadata"].pop("resourceVersion")
    assert k8s.core.replace_namespaced_config_map("a", NAMESPACE, body).data == {"k": "4"}


def test_strategic_merge_is_for_builtin_kinds_only(k8s, widgets):
    create_widget(k8s, "w")
    with pytest.raises(ApiException) as e:
        k8s.custom.patch_namespaced_custom_object(
            "example.com",
            "v1",
            NAMESPACE,
            "widgets",
            "w",
            {"spec": {"size": 1}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert e.value.status == 415


def test_strategic_merge_merges_lists_by_key():
    pod = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}
    patch = {"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "c", "image": "3"}]}}
    merged = strategic_merge_patch(pod, patch)
    assert [(c["name"], c["image"]) for c in merged["spec"]["containers"]] == [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
    ]
    removed = strategic_merge_patch(
        merged, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}
    )
    assert [c["name"] for c in removed["spec"]["containers"]] == ["b", "c"]
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {
        "a": {"c": 2, "d": 3}
    }


# ---- validation and server-side defaults ----------------------------------------------------


def test_names_and_jobs_are_validated(k8s):
    cases = [
        lambda: k8s.core.create_namespaced_service(
            NAMESPACE, {"metadata": {"name": "1svc"}, "spec": {}}
        ),
        lambda: k8s.batch.create_namespaced_job(NAMESPACE, job_body("j" * 64)),
        lambda: k8s.core.create_namespaced_config_map(
            NAMESPACE, config_map("a", {"bad key!": "v"})
        ),
        lambda: k8s.batch.create_namespaced_job(NAMESPACE, job_body("j", completionMode="Indexed")),
    ]
    on_failure = job_body(
        "j",
        podFailurePolicy={
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
        },
    )
    on_failure["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    cases.append(lambda: k8s.batch.create_namespaced_job(NAMESPACE, on_failure))
    for case in cases:
        with pytest.raises(ApiException) as e:
            case()
        assert e.value.status == 422, e.value.body


def test_job_template_is_immutable_and_selector_generated(k8s):
    job = k8s.batch.create_namespaced_job(NAMESPACE, job_body("j"))
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert job.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "j"
    assert job.spec.backoff_limit == 6 and job.spec.completion_mode == "NonIndexed"
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "other"}]}}}}
    with pytest.raises(ApiException) as e:
        k8s.batch.patch_namespaced_job("j", NAMESPACE, patch)
    assert e.value.status == 422
    assert k8s.batch.patch_namespaced_job("j", NAMESPACE, {"spec": {"suspend": True}}).spec.suspend


# ---- deletion ------------------------------------------------------------------------------


def test_finalizers_hold_deletion_until_removed(k8s):
    k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a", finalizers=["x.io/hold"]))
    k8s.core.delete_namespaced_config_map("a", NAMESPACE)
    held = k8s.core.read_namespaced_config_map("a", NAMESPACE)
    assert held.metadata.deletion_timestamp is not None
    k8s.core.patch_namespaced_config_map("a", NAMESPACE, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        k8s.core.read_namespaced_config_map("a", NAMESPACE)
    assert e.value.status == 404


def test_garbage_collection_follows_owner_references(k8s):
    owner = k8s.to_dict(k8s.core.create_namespaced_config_map(NAMESPACE, config_map("owner")))
    other = k8s.to_dict(k8s.core.create_namespaced_config_map(NAMESPACE, config_map("other")))
    k8s.core.create_namespaced_pod(NAMESPACE, pod_body("child", owner))
    shared = pod_body("shared", owner)
    shared["metadata"]["ownerReferences"] += pod_body("x", other)["metadata"]["ownerReferences"]
    k8s.core.create_namespaced_pod(NAMESPACE, shared)
    k8s.core.delete_namespaced_config_map("owner", NAMESPACE, propagation_policy="Background")
    wait_for(
        lambda: (
            [p.metadata.name for p in k8s.core.list_namespaced_pod(NAMESPACE).items] == ["shared"]
        )
    )
    refs = k8s.core.read_namespaced_pod("shared", NAMESPACE).metadata.owner_references
    assert [r.name for r in refs] == ["other"]


def test_foreground_deletion_waits_for_dependents(k8s):
    owner = k8s.to_dict(k8s.core.create_namespaced_config_map(NAMESPACE, config_map("owner")))
    child = pod_body("child", owner)
    child["metadata"]["finalizers"] = ["x.io/hold"]
    k8s.core.create_namespaced_pod(NAMESPACE, child)
    k8s.core.delete_namespaced_config_map("owner", NAMESPACE, propagation_policy="Foreground")
    wait_for(lambda: k8s.core.read_namespaced_pod("child", NAMESPACE).metadata.deletion_timestamp)
    assert (
        "foregroundDeletion"
        in k8s.core.read_namespaced_config_map("owner", NAMESPACE).metadata.finalizers
    )
    k8s.core.patch_namespaced_pod("child", NAMESPACE, {"metadata": {"finalizers": None}})
    wait_for(
        lambda: (
            not k8s.core.list_namespaced_config_map(
                NAMESPACE, field_selector="metadata.name=owner"
            ).items
        )
    )


def test_jobs_orphan_their_pods_by_default_as_batch_v1_does(k8s):
    for name, policy in (("orphaning", None), ("collecting", "Background")):
        job = k8s.to_dict(k8s.batch.create_namespaced_job(NAMESPACE, job_body(name)))
        k8s.core.create_namespaced_pod(NAMESPACE, pod_body(f"{name}-pod", job))
        k8s.batch.delete_namespaced_job(name, NAMESPACE, propagation_policy=policy)
    wait_for(
        lambda: (
            [p.metadata.name for p in k8s.core.list_namespaced_pod(NAMESPACE).items]
            == ["orphaning-pod"]
        )
    )
    assert not k8s.core.read_namespaced_pod("orphaning-pod", NAMESPACE).metadata.owner_references


def test_delete_collection_by_selector(k8s):
    for name, labels in (("a", {"x": "1"}), ("b", {"x": "1"}), ("c", {"x": "2"})):
        k8s.core.create_namespaced_config_map(NAMESPACE, config_map(name, labels))
    k8s.core.delete_collection_namespaced_config_map(NAMESPACE, label_selector="x=1")
    assert [c.metadata.name for c in k8s.core.list_namespaced_config_map(NAMESPACE).items] == ["c"]


def test_eviction_marks_the_disruption_and_deletes(k8s):
    k8s.core.create_namespaced_pod(NAMESPACE, pod_body("p"))
    seen = []
    ready = threading.Event()

    def watch_pod():
        stream = watch.Watch().stream(
            k8s.core.list_namespaced_pod,
            NAMESPACE,
            field_selector="metadata.name=p",
            timeout_seconds=2,
        )
        ready.set()
        for event in stream:
            seen.append(
                (event["type"], event["object"].status and event["object"].status.conditions)
            )
            if event["type"] == "DELETED":
                break

    thread = threading.Thread(target=watch_pod)
    thread.start()
    ready.wait()
    time.sleep(0.2)
    eviction = {"metadata": {"name": "p", "namespace": NAMESPACE}}
    k8s.core.create_namespaced_pod_eviction("p", NAMESPACE, eviction)
    thread.join(5)
    assert seen[-1][0] == "DELETED"
    conditions = seen[-1][1]
    assert [(c.type, c.reason) for c in conditions] == [
        ("DisruptionTarget", "EvictionByEvictionAPI")
    ]


# ---- watch ---------------------------------------------------------------------------------


def test_watch_streams_changes_and_resumes_from_a_resource_version(k8s):
    rv = k8s.core.list_namespaced_config_map(NAMESPACE).metadata.resource_version
    k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a", {"w": "1"}))
    k8s.core.create_namespaced_config_map(NAMESPACE, config_map("b"))
    k8s.core.patch_namespaced_config_map("a", NAMESPACE, {"data": {"k": "2"}})
    k8s.core.patch_namespaced_config_map("a", NAMESPACE, {"metadata": {"labels": {"w": "0"}}})
    k8s.core.delete_namespaced_config_map("b", NAMESPACE)
    started = time.monotonic()
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            k8s.core.list_namespaced_config_map, NAMESPACE, resource_version=rv, timeout_seconds=1
        )
    ]
    assert events == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    assert 0.8 < time.monotonic() - started < 5  # the server honoured timeoutSeconds
    selected = []
    stream = watch.Watch()
    for e in stream.stream(
        k8s.core.list_namespaced_config_map, NAMESPACE, resource_version=rv, label_selector="w=1"
    ):
        selected.append((e["type"], e["object"].metadata.name))
        if len(selected) == 3:
            stream.stop()
    assert selected == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]  # a stops matching


# ---- discovery and CRDs ----------------------------------------------------------------------


def test_discovery_with_trailing_slashes(emulator):
    def get(path: str) -> dict:
        with urllib.request.urlopen(emulator.url + path) as response:
            return json.load(response)

    assert get("/version/")["gitVersion"]
    assert get("/api/")["versions"] == ["v1"]
    core = {r["name"] for r in get("/api/v1/")["resources"]}
    assert {"pods", "pods/status", "services", "namespaces", "events"} <= core
    assert "batch" in {g["name"] for g in get("/apis/")["groups"]}
    assert get("/apis/batch/")["preferredVersion"]["version"] == "v1"
    assert "jobs/status" in {r["name"] for r in get("/apis/batch/v1/")["resources"]}


def test_created_crds_become_discoverable(emulator, k8s, widgets):
    with urllib.request.urlopen(emulator.url + "/apis/example.com/v1") as response:
        resources = {r["name"]: r for r in json.load(response)["resources"]}
    assert resources["widgets"]["kind"] == "Widget" and resources["widgets"]["namespaced"]
    assert "widgets/status" in resources
    crd = client.ApiextensionsV1Api(k8s.api).read_custom_resource_definition("widgets.example.com")
    assert {c.type for c in crd.status.conditions} == {"Established", "NamesAccepted"}
    history = emulator.call(
        lambda: emulator.emulator.objects[CRDS, None, crd.metadata.name].history
    )
    assert len(history) == 1  # stored once, by the create


# ---- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [409, 500])
def test_injected_faults_answer_the_next_matching_requests(emulator, k8s, code):
    fault = emulator.emulator.inject_fault(
        "POST", r"/namespaces/default/configmaps$", code, times=2
    )
    for _ in range(2):
        with pytest.raises(ApiException) as e:
            k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a"))
        assert e.value.status == code
    assert fault.remaining == 0 and len(fault.hits) == 2
    k8s.core.read_namespace("default")  # other requests are untouched
    assert k8s.core.create_namespaced_config_map(NAMESPACE, config_map("a")).metadata.uid
    assert emulator.emulator.count("POST", "configmaps", code=201) == 1
    assert emulator.emulator.count("POST", "configmaps", code=code) == 2


# ---- the job controller / kubelet stand-in of the integration tests ------------------------


def indexed_job(name: str, nodes: int = 2, **spec) -> dict:
    body = job_body(
        name, completionMode="Indexed", completions=nodes, parallelism=nodes, backoffLimit=0, **spec
    )
    body["spec"]["template"]["spec"]["subdomain"] = name
    body["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "spot"}
    body["spec"]["podFailurePolicy"] = {
        "rules": [
            {
                "action": "FailJob",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "c", "operator": "In", "values": [75]},
            },
        ]
    }
    return body


def test_fake_job_controller_runs_indexed_pods(k8s):
    k8s.batch.create_namespaced_job(NAMESPACE, indexed_job("train-a1"))
    pods = sorted(fake_job_controller(k8s, "train-a1"), key=lambda p: p["metadata"]["name"])
    assert [p["metadata"]["labels"][COMPLETION_INDEX] for p in pods] == ["0", "1"]
    for index, pod in enumerate(pods):
        assert pod["metadata"]["name"].startswith(f"train-a1-{index}-")
        assert (
            pod["spec"]["hostname"] == f"train-a1-{index}"
            and pod["spec"]["subdomain"] == "train-a1"
        )
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["containers"][0]["env"][0]["name"] == "JOB_COMPLETION_INDEX"
        node = k8s.core.read_node(pod["spec"]["nodeName"])
        assert node.metadata.labels["pool"] == "spot"
    fake_job_controller(k8s, "train-a1")
    assert len(k8s.pods()) == 2  # a second pass creates nothing
    assert k8s.job("train-a1")["status"]["active"] == 2


def test_fake_job_controller_fails_the_job_by_pod_failure_policy(k8s):
    k8s.batch.create_namespaced_job(NAMESPACE, indexed_job("train-a1"))
    pods = fake_job_controller(k8s, "train-a1")
    preempt_pod(k8s, pods[0]["metadata"]["name"])
    job = k8s.job("train-a1")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy" and "DisruptionTarget" in failed["message"]
    assert [p["metadata"]["name"] for p in k8s.pods()] == [pods[0]["metadata"]["name"]]
    k8s.batch.create_namespaced_job(NAMESPACE, indexed_job("train-a2"))
    pods = fake_job_controller(k8s, "train-a2")
    fail_pod(k8s, pods[1]["metadata"]["name"], exit_code=75)
    failed = next(c for c in k8s.job("train-a2")["status"]["conditions"] if c["type"] == "Failed")
    assert "exit code 75" in failed["message"]


def test_fake_job_controller_completes_and_counts_backoff(k8s):
    k8s.batch.create_namespaced_job(NAMESPACE, indexed_job("train-a1"))
    for pod in fake_job_controller(k8s, "train-a1"):
        succeed_pod(k8s, pod["metadata"]["name"])
    status = k8s.job("train-a1")["status"]
    assert status["succeeded"] == 2 and status["completedIndexes"] == "0-1"
    assert {c["type"] for c in status["conditions"]} == {"SuccessCriteriaMet", "Complete"}
    k8s.batch.create_namespaced_job(NAMESPACE, indexed_job("train-b1"))
    pods = fake_job_controller(k8s, "train-b1")
    fail_pod(k8s, pods[0]["metadata"]["name"], exit_code=1)
    failed = next(c for c in k8s.job("train-b1")["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"


def test_fake_job_controller_in_the_background_and_suspend(k8s, job_controller):
    k8s.batch.create_namespaced_job(NAMESPACE, indexed_job("train-a1", nodes=3))
    wait_for(lambda: [(p.get("status") or {}).get("phase") for p in k8s.pods()] == ["Running"] * 3)
    k8s.batch.patch_namespaced_job("train-a1", NAMESPACE, {"spec": {"suspend": True}})
    wait_for(lambda: not k8s.pods())
    wait_for(
        lambda: any(
            c["type"] == "Suspended"
            for c in (k8s.job("train-a1").get("status") or {}).get("conditions") or []
        )
    )


def test_server_side_apply_creates_then_merges(k8s):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1"}}
    for data in ({"k": "1"}, {"j": "2"}):
        k8s.core.patch_namespaced_config_map(
            "a", NAMESPACE, dict(body, data=data), field_manager="test",
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip
    assert k8s.core.read_namespaced_config_map("a", NAMESPACE).data == {"k": "1", "j": "2"}


def test_deleting_a_namespace_deletes_its_objects(k8s):
    k8s.core.create_namespace({"metadata": {"name": "scratch"}})
    k8s.core.create_namespaced_config_map("scratch", config_map("a"))
    k8s.core.delete_namespace("scratch")
    assert not k8s.core.list_config_map_for_all_namespaces().items
