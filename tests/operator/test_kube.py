"""The API layer's tolerance: 409 on create and 404 on delete are success, server hiccups are
retried and then handed to kopf as TemporaryError, refusals are reported (no API server: the
client's methods are replaced by stand-ins that answer like one)."""

from __future__ import annotations

import json
from typing import Any

import kopf
import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from olmo_operator import kube
from olmo_operator.lifecycle import ObjectRef


class Response:
    def __init__(self, body: dict[str, Any]):
        self.data = json.dumps(body).encode()


def api_error(status: int, message: str = "") -> ApiException:
    e = ApiException(status=status, reason="Reason")
    e.body = json.dumps({"message": message})
    return e


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "RETRY_DELAYS", (0.0, 0.0, 0.0))


@pytest.fixture
def api() -> kube.Kube:
    config = kubernetes.client.Configuration()
    config.host = "http://127.0.0.1:9"  # never contacted: every method used is replaced
    return kube.Kube(kubernetes.client.ApiClient(config))


JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "run-a1"}}


def test_create_that_exists_is_done(api: kube.Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    def conflict(*args: Any, **kwargs: Any) -> Any:
        raise api_error(409, "already exists")

    monkeypatch.setattr(api.batch, "create_namespaced_job", conflict)
    assert api.create("ml", JOB) is False


def test_transient_errors_are_retried(api: kube.Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def flaky(namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        calls.append(kwargs)
        if len(calls) < 3:
            raise api_error(503 if len(calls) == 1 else 500)
        return Response(body)

    monkeypatch.setattr(api.batch, "create_namespaced_job", flaky)
    assert api.create("ml", JOB) is True
    assert len(calls) == 3 and all(k == {"_preload_content": False} for k in calls)


def test_persistent_server_errors_become_temporary_errors(
    api: kube.Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise api_error(500)

    monkeypatch.setattr(api.batch, "create_namespaced_job", down)
    with pytest.raises(kopf.TemporaryError, match="after 4 tries"):
        api.create("ml", JOB)


def test_refusals_are_reported_with_the_server_message(
    api: kube.Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise api_error(403, 'jobs.batch is forbidden: User "op" cannot create')

    monkeypatch.setattr(api.batch, "create_namespaced_job", forbidden)
    with pytest.raises(kube.ApiError, match="cannot create") as info:
        api.create("ml", JOB)
    assert info.value.status == 403


def test_deleting_what_is_gone_is_done(api: kube.Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []

    def gone(name: str, namespace: str, **kwargs: Any) -> Any:
        seen.append((name, namespace, kwargs.get("propagation_policy")))
        raise api_error(404)

    monkeypatch.setattr(api.batch, "delete_namespaced_job", gone)
    assert api.delete("ml", ObjectRef("batch/v1", "Job", "run-a1")) is False
    assert seen == [("run-a1", "ml", "Background")]  # Jobs take their pods with them


def test_children_are_filtered_by_label_even_if_the_server_ignores_the_selector(
    api: kube.Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = {"metadata": {"name": "run-a1", "namespace": "ml", "labels": {"olmo-k8s.io/job": "run"}}}
    other = {"metadata": {"name": "x", "namespace": "ml", "labels": {"olmo-k8s.io/job": "x"}}}
    selectors = []

    def lister(namespace: str, label_selector: str, **kwargs: Any) -> Response:
        selectors.append(label_selector)
        return Response({"items": [mine, other]})

    for client, name in (
        (api.batch, "list_namespaced_job"),
        (api.core, "list_namespaced_pod"),
        (api.core, "list_namespaced_service"),
        (api.apps, "list_namespaced_deployment"),
        (api.core, "list_namespaced_config_map"),
    ):
        monkeypatch.setattr(client, name, lister)
    children = api.list_children("ml", "run")
    assert set(selectors) == {"olmo-k8s.io/job=run"}
    assert [o["metadata"]["name"] for o in children["jobs"]] == ["run-a1"]
    assert children["jobs"][0]["kind"] == "Job" and children["pods"][0]["kind"] == "Pod"


def test_nodes_missing_unknown_or_present(api: kube.Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    def read(name: str, **kwargs: Any) -> Any:
        if name == "gone":
            raise api_error(404)
        if name == "secret":
            raise api_error(403)
        return Response({"metadata": {"name": name}})

    monkeypatch.setattr(api.core, "read_node", read)
    assert api.read_node("gone") is None
    assert api.read_node("secret") is kube.UNKNOWN
    assert api.read_node("n1") == {"metadata": {"name": "n1"}}


# --------------------------------------------------------------------------------------------
# 409 on create: whose object holds the name


OWNED_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "run-a1",
        "labels": {"olmo-k8s.io/job": "run"},
        "ownerReferences": [
            {"apiVersion": "olmo-k8s.io/v1alpha1", "kind": "OLMoJob", "name": "run", "uid": "new"}
        ],
    },
}


def _existing(
    api: kube.Kube, monkeypatch: pytest.MonkeyPatch, existing: dict[str, Any]
) -> list[tuple[str, Any]]:
    """The name is taken by ``existing`` until it is deleted; records creates and deletes."""
    calls: list[tuple[str, Any]] = []
    live = {"obj": existing}

    def create(namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        calls.append(("create", body["metadata"]["name"]))
        if live["obj"] is not None:
            raise api_error(409, "already exists")
        return Response(body)

    def read(name: str, namespace: str, **kwargs: Any) -> Any:
        if live["obj"] is None:
            raise api_error(404)
        return Response(live["obj"])

    def delete(name: str, namespace: str, **kwargs: Any) -> Any:
        calls.append(("delete", kwargs.get("body")))
        live["obj"] = None
        return Response({})

    monkeypatch.setattr(api.batch, "create_namespaced_job", create)
    monkeypatch.setattr(api.batch, "read_namespaced_job", read)
    monkeypatch.setattr(api.batch, "delete_namespaced_job", delete)
    return calls


def _owned_by(uid: str, name: str = "run") -> dict[str, Any]:
    ref = {"apiVersion": "olmo-k8s.io/v1alpha1", "kind": "OLMoJob", "name": name, "uid": uid}
    return {"metadata": {"name": "run-a1", "uid": "u-existing", "ownerReferences": [ref]}}


def test_a_409_on_our_own_object_is_done(api: kube.Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _existing(api, monkeypatch, _owned_by("new"))
    assert api.create("ml", OWNED_JOB) is False
    assert calls == [("create", "run-a1")]


def test_a_stale_object_of_the_same_name_is_replaced_not_adopted(
    api: kube.Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _existing(api, monkeypatch, _owned_by("old"))
    assert api.create("ml", OWNED_JOB) is True
    assert calls == [
        ("create", "run-a1"),
        ("delete", {"preconditions": {"uid": "u-existing"}}),  # only that object, no newer one
        ("create", "run-a1"),
    ]


def test_an_orphan_labelled_for_the_job_is_replaced(
    api: kube.Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    orphan = {"metadata": {"name": "run-a1", "uid": "u-1", "labels": {"olmo-k8s.io/job": "run"}}}
    calls = _existing(api, monkeypatch, orphan)
    assert api.create("ml", OWNED_JOB) is True
    assert [c for c, _ in calls] == ["create", "delete", "create"]


def test_someone_elses_object_is_a_name_conflict_and_stays(
    api: kube.Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = {"metadata": {"name": "run-a1", "uid": "u-1"}}
    calls = _existing(api, monkeypatch, theirs)
    with pytest.raises(kube.NameConflict, match="name conflict: Job ml/run-a1") as info:
        api.create("ml", OWNED_JOB)
    assert "no owner" in info.value.detail
    assert calls == [("create", "run-a1")]  # never deleted


def test_a_status_patch_is_conditional_on_the_version_read(
    api: kube.Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[dict[str, Any]] = []

    def patch(group: str, version: str, ns: str, plural: str, name: str, body: Any, **kw: Any):
        bodies.append(body)
        if body.get("metadata", {}).get("resourceVersion") == "7":
            raise api_error(409, "the object has been modified")
        return Response({"metadata": {"resourceVersion": "9"}, "status": body["status"]})

    monkeypatch.setattr(api.custom, "patch_namespaced_custom_object_status", patch)
    after = api.patch_status("ml", "run", {"phase": "Running"}, "8")
    assert bodies[-1] == {"status": {"phase": "Running"}, "metadata": {"resourceVersion": "8"}}
    assert after == {"metadata": {"resourceVersion": "9"}, "status": {"phase": "Running"}}
    with pytest.raises(kube.Conflict):
        api.patch_status("ml", "run", {"phase": "Failed"}, "7")


def test_the_client_parses_dates_with_the_locked_dateutil():
    """kubernetes 37 declares python-dateutil>=3; CI's venv holds 2.9 (botocore's bound, overridden
    in docker/lock.py). The client's one use of it, parsing timestamps, must work on what is
    installed."""
    import datetime

    client = kubernetes.client.ApiClient()
    meta = client.deserialize(
        json.dumps({"name": "x", "creationTimestamp": "2026-12-06T23:10:05Z"}),
        "V1ObjectMeta",
        "application/json",
    )
    assert meta.creation_timestamp == datetime.datetime(2026, 12, 6, 23, 10, 5, tzinfo=datetime.UTC)
