"""Names, labels and ownership of every child."""

from __future__ import annotations

import pytest

from olmo_operator import contract as c
from olmo_operator.resources import (
    AttemptState,
    attempt_name,
    config_map_name,
    dataprep_name,
    desired_objects,
    eval_name,
    master_address,
    progress_account_name,
    rotation_name,
)
from olmo_operator.spec import SpecError, parse_job
from tests.operator.olmojobs import UID, olmojob


def test_labels_and_owner_references() -> None:
    for obj in desired_objects(olmojob(eval={"enabled": True}), AttemptState(1)):
        meta = obj["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["labels"][c.LABEL_JOB] == "run"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "olmo-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "run"
        assert meta["labels"][c.LABEL_COMPONENT] in c.COMPONENTS
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "olmo-k8s.io/v1alpha1",
                "kind": "OLMoJob",
                "name": "run",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_long_names_are_refused() -> None:
    with pytest.raises(SpecError, match="at most 42"):
        parse_job(olmojob(name="a" * 43))


def test_an_olmojob_without_a_uid_owns_nothing_yet() -> None:
    obj = olmojob()
    del obj["metadata"]["uid"]
    for child in desired_objects(obj, AttemptState(1)):
        assert "ownerReferences" not in child["metadata"]


def test_names_are_per_job_and_per_attempt() -> None:
    assert attempt_name("run", 3) == "run-a3"
    assert config_map_name("run", 3) == "run-a3-config"
    assert master_address("run", 3) == "run-a3-0.run-a3"  # pod 0 under the Service's subdomain
    assert progress_account_name("run") == "run-progress"
    assert (dataprep_name("run"), eval_name("run"), rotation_name("run")) == (
        "run-dataprep",
        "run-eval",
        "run-rotate",
    )
