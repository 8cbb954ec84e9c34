"""Kubernetes API calls the operator makes, tolerant the way a reconciler must be.

Creating something that exists (409) is success: names are deterministic, so the object is the
one we wanted. Deleting or reading something gone (404) is success / None. Server hiccups (429,
5xx, dropped connections) are retried a few times with a short backoff and then handed to kopf as
``kopf.TemporaryError``, which retries the whole reconcile later. Everything is read and written
as plain JSON dicts (``_preload_content=False``), the same shape the pure core is tested with.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf
import kubernetes
import urllib3
from kubernetes.client.rest import ApiException

from olmo_operator import contract as c
from olmo_operator.lifecycle import ObjectRef

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
RETRY_DELAYS = (0.1, 0.3, 0.9)


class ApiError(Exception):
    """A request the server refused for good (400, 403, 422, ...)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Unknown:
    """A node that could not be read (e.g. 403: the operator may not get nodes)."""


UNKNOWN = Unknown()


def load_config() -> None:
    """In a pod: the ServiceAccount; elsewhere: ``$KUBECONFIG`` or ``~/.kube/config``."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with retries for transient errors. ApiException 4xx propagate."""
    for attempt, delay in enumerate((*RETRY_DELAYS, None)):
        try:
            return fn(*args, _preload_content=False, **kwargs)
        except ApiException as e:
            if e.status not in RETRYABLE_STATUS:
                raise
            problem = f"{what}: HTTP {e.status} {e.reason}"
        except (urllib3.exceptions.HTTPError, OSError) as e:
            problem = f"{what}: {type(e).__name__}: {e}"
        if delay is None:
            raise kopf.TemporaryError(f"{problem} (after {attempt + 1} tries)", delay=2)
        log.debug("%s; retrying in %.1fs", problem, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")


def _json(response: Any) -> dict[str, Any]:
    data = response.data if hasattr(response, "data") else response
    if not data:
        return {}
    return json.loads(data)


def _refused(what: str, e: ApiException) -> ApiError:
    detail = e.reason or ""
    with contextlib.suppress(ValueError, AttributeError):
        detail = json.loads(e.body or "{}").get("message") or detail
    return ApiError(e.status or 0, f"{what}: HTTP {e.status}: {detail}")


class Kube:
    """The API calls of one reconcile."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None):
        client = api_client or kubernetes.client.ApiClient()
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.apps = kubernetes.client.AppsV1Api(client)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)

    # the OLMoJob -----------------------------------------------------------------------------

    def get_olmojob(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(
                _call(
                    f"get {c.KIND} {namespace}/{name}",
                    self.custom.get_namespaced_custom_object,
                    c.GROUP,
                    c.VERSION,
                    namespace,
                    c.PLURAL,
                    name,
                )
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise _refused(f"get {c.KIND} {namespace}/{name}", e) from None

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        what = f"patch {c.KIND} {namespace}/{name} status"
        try:
            _call(
                what,
                self.custom.patch_namespaced_custom_object_status,
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL,
                name,
                {"status": dict(status)},
            )
        except ApiException as e:
            if e.status == 404:
                return
            raise _refused(what, e) from None

    def delete_olmojob(self, namespace: str, name: str) -> None:
        what = f"delete {c.KIND} {namespace}/{name}"
        try:
            _call(
                what,
                self.custom.delete_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL,
                name,
                propagation_policy="Background",
            )
        except ApiException as e:
            if e.status != 404:
                raise _refused(what, e) from None

    # children --------------------------------------------------------------------------------

    def list_children(self, namespace: str, job: str) -> dict[str, list[dict[str, Any]]]:
        """Jobs, pods, Services, Deployments and ConfigMaps labelled for ``job``.

        The label selector is also applied here: not every API server (test emulators) honours
        it, and a wrong child would be fatal (it could be deleted).
        """
        selector = f"{c.LABEL_JOB}={job}"
        calls = {
            "jobs": (self.batch.list_namespaced_job, "batch/v1", "Job"),
            "pods": (self.core.list_namespaced_pod, "v1", "Pod"),
            "services": (self.core.list_namespaced_service, "v1", "Service"),
            "deployments": (self.apps.list_namespaced_deployment, "apps/v1", "Deployment"),
            "config_maps": (self.core.list_namespaced_config_map, "v1", "ConfigMap"),
        }
        out: dict[str, list[dict[str, Any]]] = {}
        for key, (fn, api_version, kind) in calls.items():
            what = f"list {key} in {namespace}"
            try:
                items = _json(_call(what, fn, namespace, label_selector=selector)).get("items")
            except ApiException as e:
                raise _refused(what, e) from None
            out[key] = [
                {**item, "apiVersion": api_version, "kind": kind}
                for item in items or []
                if ((item.get("metadata") or {}).get("labels") or {}).get(c.LABEL_JOB) == job
                and (item.get("metadata") or {}).get("namespace", namespace) == namespace
            ]
        return out

    def read_node(self, name: str) -> dict[str, Any] | Unknown | None:
        """The Node, None when it does not exist, UNKNOWN when it cannot be read."""
        try:
            return _json(_call(f"get node {name}", self.core.read_node, name))
        except ApiException as e:
            if e.status == 404:
                return None
            log.info("cannot read node %s (HTTP %s): treating it as unknown", name, e.status)
            return UNKNOWN

    def create(self, namespace: str, obj: Mapping[str, Any]) -> bool:
        """Create ``obj``; False when it already exists."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        creators = {
            "ServiceAccount": self.core.create_namespaced_service_account,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Service": self.core.create_namespaced_service,
            "Job": self.batch.create_namespaced_job,
            "Deployment": self.apps.create_namespaced_deployment,
            "Role": self.rbac.create_namespaced_role,
            "RoleBinding": self.rbac.create_namespaced_role_binding,
        }
        what = f"create {kind} {namespace}/{name}"
        try:
            _call(what, creators[kind], namespace, dict(obj))
        except ApiException as e:
            if e.status == 409:
                return False
            raise _refused(what, e) from None
        except ValueError as e:  # the client's own model validation (pydantic)
            raise ApiError(422, f"{what}: {e}") from None
        return True

    def delete(self, namespace: str, ref: ObjectRef) -> bool:
        """Delete the object; False when it was already gone. Jobs take their pods with them."""
        deleters: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
            "Job": (self.batch.delete_namespaced_job, {"propagation_policy": "Background"}),
            "Pod": (self.core.delete_namespaced_pod, {}),
            "Service": (self.core.delete_namespaced_service, {}),
            "ConfigMap": (self.core.delete_namespaced_config_map, {}),
            "Deployment": (
                self.apps.delete_namespaced_deployment,
                {"propagation_policy": "Background"},
            ),
            "ServiceAccount": (self.core.delete_namespaced_service_account, {}),
            "Role": (self.rbac.delete_namespaced_role, {}),
            "RoleBinding": (self.rbac.delete_namespaced_role_binding, {}),
        }
        fn, kwargs = deleters[ref.kind]
        what = f"delete {ref.kind} {namespace}/{ref.name}"
        try:
            _call(what, fn, ref.name, namespace, **kwargs)
        except ApiException as e:
            if e.status == 404:
                return False
            raise _refused(what, e) from None
        return True
