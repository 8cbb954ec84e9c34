"""Kubernetes API calls the operator makes, tolerant the way a reconciler must be.

Creating something that exists (409) is success when the existing object is this OLMoJob's
(names are deterministic); a stale one (an earlier OLMoJob of the same name) is deleted and
created anew, and one owned by something else is a :class:`NameConflict` (see
:mod:`olmo_operator.ownership`). Deleting or reading something gone (404) is success / None.
Server hiccups (429, 5xx, dropped connections) are retried a few times with a short backoff and
then handed to kopf as ``kopf.TemporaryError``, which retries the whole reconcile later. A
status patch carries the ``resourceVersion`` the decision was made from: a 409 there is a
:class:`Conflict` (the object changed since it was read; decide again). Everything is read and
written as plain JSON dicts (``_preload_content=False``), the same shape the pure core is tested
with.
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
from olmo_operator.ownership import Claim, claim, describe_owners, own_children, owner_uid

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
RETRY_DELAYS = (0.1, 0.3, 0.9)


class ApiError(Exception):
    """A request the server refused for good (400, 403, 422, ...). ``detail`` is the server's
    own message (``message`` also names the request)."""

    def __init__(self, status: int, message: str, detail: str = ""):
        super().__init__(message)
        self.status = status
        self.detail = detail or message


class Conflict(ApiError):
    """A write whose ``resourceVersion`` precondition failed: the object changed since it was
    read (kopf, the pods or a second operator wrote it). Re-read and decide again."""


class NameConflict(ApiError):
    """A child's name is taken by an object this OLMoJob does not own and may not delete."""


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
    return ApiError(e.status or 0, f"{what}: HTTP {e.status}: {detail}", detail)


class Kube:
    """The API calls of one reconcile."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None):
        client = api_client or kubernetes.client.ApiClient()
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.apps = kubernetes.client.AppsV1Api(client)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.networking = kubernetes.client.NetworkingV1Api(client)

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

    def patch_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Merge-patch ``status``; the object afterwards (None when it is gone).

        With ``resource_version`` the patch applies only to that version of the object (the API
        server checks ``metadata.resourceVersion`` in a merge patch): otherwise :class:`Conflict`.
        An empty ``status`` with a version writes nothing and only checks that version."""
        what = f"patch {c.KIND} {namespace}/{name} status"
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return _json(
                _call(
                    what,
                    self.custom.patch_namespaced_custom_object_status,
                    c.GROUP,
                    c.VERSION,
                    namespace,
                    c.PLURAL,
                    name,
                    body,
                )
            )
        except ApiException as e:
            if e.status == 404:
                return None
            if e.status == 409:
                raise Conflict(409, f"{what}: the object changed since it was read") from None
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

    def list_children(
        self,
        namespace: str,
        job: str,
        owner_uid: str | None = None,
        *,
        provisioning: bool = False,
    ) -> dict[str, list[dict[str, Any]]]:
        """Jobs, pods, Services, Deployments and ConfigMaps labelled for ``job`` (and, given
        the OLMoJob's ``owner_uid``, owned by it: :func:`olmo_operator.ownership.own_children`).

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
        if provisioning:  # with OLMO_FEATURE_PROVISIONING (the chart grants these)
            calls["provisioning_requests"] = (
                self._list_provisioning_requests,
                c.PROVISIONING_API_VERSION,
                "ProvisioningRequest",
            )
            calls["pod_templates"] = (self.core.list_namespaced_pod_template, "v1", "PodTemplate")
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
        return own_children(out, owner_uid)  # type: ignore[return-value]

    def _list_provisioning_requests(self, namespace: str, **kwargs: Any) -> Any:
        return self.custom.list_namespaced_custom_object(
            c.PROVISIONING_GROUP, c.PROVISIONING_VERSION, namespace, c.PROVISIONING_PLURAL, **kwargs
        )

    def list_node_pools(
        self, namespace: str | None = None, job: str | None = None, uid: str | None = None
    ) -> list[dict[str, Any]]:
        """The Karpenter NodePools this operator made (for the OLMoJob ``namespace``/``job``,
        and with ``uid`` only that incarnation's; all of them without)."""
        selector = f"{c.LABEL_COMPONENT}={c.NODEPOOL}"
        if job is not None:
            selector += f",{c.LABEL_JOB}={job}"
        what = "list NodePools"
        try:
            items = _json(
                _call(
                    what,
                    self.custom.list_cluster_custom_object,
                    c.KARPENTER_GROUP,
                    c.KARPENTER_VERSION,
                    c.KARPENTER_PLURAL,
                    label_selector=selector,
                )
            ).get("items")
        except ApiException as e:
            raise _refused(what, e) from None
        out = []
        for item in items or []:
            item_labels = (item.get("metadata") or {}).get("labels") or {}
            if item_labels.get(c.LABEL_COMPONENT) != c.NODEPOOL:
                continue
            if job is not None and item_labels.get(c.LABEL_JOB) != job:
                continue
            if namespace is not None and item_labels.get(c.LABEL_JOB_NAMESPACE) != namespace:
                continue
            if uid is not None and item_labels.get(c.LABEL_JOB_UID) not in (uid, None):
                continue
            out.append({**item, "apiVersion": c.KARPENTER_API_VERSION, "kind": "NodePool"})
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
        """Create ``obj``; False when it already exists (as this OLMoJob's) or a stale object
        of its name is being replaced (created again by this or the next reconcile).

        Raises :class:`NameConflict` when the name is taken by an object this OLMoJob does not
        own, and :class:`ApiError` when the server refuses the object."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        creators = {
            "ServiceAccount": self.core.create_namespaced_service_account,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Service": self.core.create_namespaced_service,
            "Job": self.batch.create_namespaced_job,
            "Deployment": self.apps.create_namespaced_deployment,
            "Role": self.rbac.create_namespaced_role,
            "RoleBinding": self.rbac.create_namespaced_role_binding,
            "NetworkPolicy": self.networking.create_namespaced_network_policy,
            "PodTemplate": self.core.create_namespaced_pod_template,
            "ProvisioningRequest": self._create_provisioning_request,
            "NodePool": self._create_node_pool,
        }
        what = f"create {kind} {namespace}/{name}"
        for replaced in (False, True):
            try:
                _call(what, creators[kind], namespace, dict(obj))
            except ApiException as e:
                if e.status != 409:
                    raise _refused(what, e) from None
            except ValueError as e:  # the client's own model validation (pydantic)
                raise ApiError(422, f"{what}: {e}", str(e)) from None
            else:
                return True
            if replaced or not self._reclaim(namespace, obj):
                return False
        return False

    def _create_provisioning_request(self, namespace: str, body: Any, **kwargs: Any) -> Any:
        return self.custom.create_namespaced_custom_object(
            c.PROVISIONING_GROUP,
            c.PROVISIONING_VERSION,
            namespace,
            c.PROVISIONING_PLURAL,
            body,
            **kwargs,
        )

    def _create_node_pool(self, namespace: str, body: Any, **kwargs: Any) -> Any:
        """A cluster-scoped NodePool (``namespace`` is not used)."""
        return self.custom.create_cluster_custom_object(
            c.KARPENTER_GROUP, c.KARPENTER_VERSION, c.KARPENTER_PLURAL, body, **kwargs
        )

    def _reclaim(self, namespace: str, obj: Mapping[str, Any]) -> bool:
        """``obj``'s name is taken: True when the name was freed (a stale object deleted, or
        nothing there any more), so that the create may be tried again."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        if owner_uid(obj) is None:
            return False  # no owner to compare with: the name is all there is
        existing = self.read(namespace, kind, name)
        if existing is None:
            return True
        verdict = claim(existing, obj)
        if verdict is Claim.OURS:
            return False
        if verdict is Claim.FOREIGN:
            owners = describe_owners(existing)
            detail = (
                f"name conflict: {kind} {namespace}/{name} already exists and does not belong "
                f"to this OLMoJob ({owners}); delete or rename it"
            )
            raise NameConflict(409, f"create {kind} {namespace}/{name}: {detail}", detail)
        if (existing.get("metadata") or {}).get("deletionTimestamp"):
            return False  # the stale object is already going; the next reconcile creates ours
        uid = existing["metadata"].get("uid")
        log.info(
            "%s %s/%s belongs to an earlier OLMoJob of this name (%s): replacing it",
            kind,
            namespace,
            name,
            describe_owners(existing),
        )
        self.delete(namespace, ObjectRef(obj["apiVersion"], kind, name), uid=uid)
        return True

    def read(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        """One child by kind and name; None when it does not exist."""
        readers = {
            "ServiceAccount": self.core.read_namespaced_service_account,
            "ConfigMap": self.core.read_namespaced_config_map,
            "Service": self.core.read_namespaced_service,
            "Job": self.batch.read_namespaced_job,
            "Deployment": self.apps.read_namespaced_deployment,
            "Role": self.rbac.read_namespaced_role,
            "RoleBinding": self.rbac.read_namespaced_role_binding,
            "NetworkPolicy": self.networking.read_namespaced_network_policy,
            "Pod": self.core.read_namespaced_pod,
            "PodTemplate": self.core.read_namespaced_pod_template,
            "ProvisioningRequest": lambda name, ns, **kw: self.custom.get_namespaced_custom_object(
                c.PROVISIONING_GROUP,
                c.PROVISIONING_VERSION,
                ns,
                c.PROVISIONING_PLURAL,
                name,
                **kw,
            ),
        }
        what = f"get {kind} {namespace}/{name}"
        try:
            return _json(_call(what, readers[kind], name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise _refused(what, e) from None

    def delete(self, namespace: str, ref: ObjectRef, uid: str | None = None) -> bool:
        """Delete the object; False when it was already gone. Jobs take their pods with them.
        With ``uid`` only that object goes (a precondition: a newer one of the same name stays)."""
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
            "NetworkPolicy": (self.networking.delete_namespaced_network_policy, {}),
            "PodTemplate": (self.core.delete_namespaced_pod_template, {}),
            "ProvisioningRequest": (
                lambda name, ns, **kw: self.custom.delete_namespaced_custom_object(
                    c.PROVISIONING_GROUP,
                    c.PROVISIONING_VERSION,
                    ns,
                    c.PROVISIONING_PLURAL,
                    name,
                    **kw,
                ),
                {},
            ),
            "NodePool": (  # cluster-scoped: the namespace is not used
                lambda name, _ns, **kw: self.custom.delete_cluster_custom_object(
                    c.KARPENTER_GROUP, c.KARPENTER_VERSION, c.KARPENTER_PLURAL, name, **kw
                ),
                {},
            ),
        }
        fn, kwargs = deleters[ref.kind]
        what = f"delete {ref.kind} {namespace}/{ref.name}"
        if uid is not None:
            kwargs = {**kwargs, "body": {"preconditions": {"uid": uid}}}
        try:
            _call(what, fn, ref.name, namespace, **kwargs)
        except ApiException as e:
            if e.status == 404 or (e.status == 409 and uid is not None):
                return False  # gone, or replaced meanwhile by another object of that name
            raise _refused(what, e) from None
        return True
