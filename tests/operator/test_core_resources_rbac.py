"""The progress identity: the pods may only get and patch their own OLMoJob's status."""

from __future__ import annotations

from olmo_operator.resources import AttemptState, desired_objects
from tests.operator.olmojobs import by_kind, olmojob


def test_progress_rbac_is_least_privilege() -> None:
    objects = by_kind(desired_objects(olmojob(), AttemptState(1)))
    (role,) = objects["Role"]
    assert role["rules"] == [
        {
            "apiGroups": ["olmo-k8s.io"],
            "resources": ["olmojobs/status"],
            "resourceNames": ["run"],
            "verbs": ["get", "patch"],
        }
    ]
    (binding,) = objects["RoleBinding"]
    assert binding["roleRef"]["name"] == "run-progress"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "run-progress", "namespace": "ml"}
    ]
