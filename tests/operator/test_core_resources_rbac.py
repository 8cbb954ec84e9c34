"""The progress identity: the pods may only get and patch their job's progress ConfigMap —
nothing on the OLMoJob, whose status only the operator writes."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.resources import AttemptState, desired_objects
from tests.operator.olmojobs import by_kind, olmojob


def test_progress_rbac_is_least_privilege() -> None:
    objects = by_kind(desired_objects(olmojob(), AttemptState(1)))
    (role,) = objects["Role"]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["run-progress"],
            "verbs": ["get", "patch"],
        }
    ]
    (binding,) = objects["RoleBinding"]
    assert binding["roleRef"]["name"] == "run-progress"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "run-progress", "namespace": "ml"}
    ]


def test_the_pods_may_not_touch_the_olmojob() -> None:
    """Before: the Role granted get/patch of ``olmojobs/status``, which RBAC cannot narrow to
    one field — a pod could reset ``status.restarts`` or set ``status.phase``."""
    objects = by_kind(desired_objects(olmojob(), AttemptState(1)))
    for role in objects["Role"]:
        for rule in role["rules"]:
            assert c.GROUP not in rule["apiGroups"]
            assert not any(r.startswith(c.PLURAL) for r in rule["resources"])
            assert set(rule["verbs"]) <= {"get", "patch"} and rule["resourceNames"]


def test_the_progress_config_map_survives_restarts() -> None:
    """Labelled for the job, owned by it, but with no attempt: objects of other attempts are
    deleted on a restart, this one is kept (and with it the reports)."""
    (cm,) = [
        o
        for o in desired_objects(olmojob(), AttemptState(2))
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "run-progress"
    ]
    labels = cm["metadata"]["labels"]
    assert labels[c.LABEL_JOB] == "run" and c.LABEL_ATTEMPT not in labels
    assert cm["metadata"]["ownerReferences"][0]["kind"] == c.KIND
    assert cm["data"] == {}
