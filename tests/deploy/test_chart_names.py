"""Every name the chart (and the operator, for the chart's OLMoJob) generates fits its limit,
with Helm's longest release name (53 characters: Helm stores a release in Secrets named
``sh.helm.release.v1.<release>.v<revision>``, and the result must be a DNS-1123 subdomain)."""

from __future__ import annotations

import copy
import re
from typing import Any

import helm_python
import pytest

from olmo_operator import contract, resources
from olmo_operator.spec import parse_job
from tests.deploy.test_chart import CASES, WATCH_MARKER, Rendered

# Helm's maximum; one without "olmo" (objects are <release>-olmo-...), one with (<release>-...).
LONG_RELEASES = (
    "long-release-name-long-release-name-long-release-name",
    "olmo-" + "r" * 47 + "x",
)
# The OLMoJob defaults to the release name, which may be 42 characters at most: with a longer
# release the chart fails (see below), so these renders name the job; the longest allowed.
LONG_JOB = "long-job-" + "n" * (contract.MAX_NAME_LENGTH - len("long-job-"))

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# metadata.name limits: a DNS-1035/1123 label for Services and Namespaces; a Job's name becomes
# the value of its pods' batch.kubernetes.io/job-name label (63); a CronJob appends 11 characters
# to name its Jobs (52); the OLMoJob leaves room for its children (the operator's contract); the
# rest are DNS-1123 subdomains (253).
NAME_LIMITS = {
    "Service": 63,
    "Namespace": 63,
    "Job": 63,
    "CronJob": 52,
    "OLMoJob": contract.MAX_NAME_LENGTH,
}
SUBDOMAIN_LIMIT = 253


def long_values(values: dict[str, Any]) -> dict[str, Any]:
    values = copy.deepcopy(values)
    values.setdefault("job", {})["name"] = LONG_JOB
    return values


def label_sets(doc: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    found = [("metadata.labels", doc["metadata"].get("labels") or {})]
    spec = doc.get("spec") or {}
    template = spec.get("template") or {}
    found.append(
        ("spec.template.metadata.labels", (template.get("metadata") or {}).get("labels") or {})
    )
    found.append(("spec.selector", spec.get("selector") or {}))
    found.append(
        ("spec.selector.matchLabels", (spec.get("selector") or {}).get("matchLabels") or {})
    )
    return found


def name_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        limit = NAME_LIMITS.get(kind, SUBDOMAIN_LIMIT)
        pattern = DNS_1123_SUBDOMAIN if limit == SUBDOMAIN_LIMIT else DNS_1123_LABEL
        if len(name) > limit or not pattern.match(name):
            problems.append(f"{kind} {name!r}: {len(name)} characters, limit {limit}")
        for where, labels in label_sets(doc):
            for key, value in labels.items():
                if not isinstance(value, str):
                    continue  # a selector's matchExpressions etc.
                if len(value) > 63 or not LABEL_VALUE.match(value):
                    problems.append(f"{kind} {name!r} {where} {key}={value!r}: {len(value)} > 63")
    return problems


@pytest.mark.parametrize("release", LONG_RELEASES)
@pytest.mark.parametrize("key", sorted(CASES))
def test_every_name_and_label_fits_with_the_longest_release_name(key, release):
    assert len(release) == 53
    r = Rendered(long_values(CASES[key]), release)
    assert name_problems(r.docs) == []
    if r.of_kind("OLMoJob"):
        assert r.olmojob["metadata"]["name"] == LONG_JOB
        # What the operator makes of it: Jobs, Services, ConfigMaps, accounts, pods' labels.
        assert name_problems(operator_children(r)) == []


def operator_children(r: Rendered) -> list[dict[str, Any]]:
    """What the operator creates for the OLMoJob (its own pure functions), attempt 1 and 99."""
    job = parse_job(r.olmojob)
    objects = [resources.rotation_job(job)]
    for attempt in (1, 99):
        objects += resources.desired_objects(job, resources.AttemptState(attempt=attempt))
    if r.olmojob["spec"].get("dataset", {}).get("prepare"):
        objects.append(resources.dataprep_job(job))
    return objects


def test_the_longest_release_name_and_the_default_cleanup_job_name():
    """51 characters + "-olmo-cleanup" was a 64-character Job: the Job name is now shortened
    to 63 characters, keeping its "-cleanup" suffix and a hash of the full name."""
    release = "a" * 51
    job = Rendered({"job": {"name": "olmo-7b"}}, release).one("Job")
    name = job["metadata"]["name"]
    assert len(name) <= 63 and name.endswith("-cleanup") and name.startswith("a" * 40)
    # Short names stay as they were.
    assert Rendered({}, "olmo-7b").one("Job")["metadata"]["name"] == "olmo-7b-cleanup"
    assert Rendered({}, "run").one("Job")["metadata"]["name"] == "run-olmo-cleanup"


def test_long_release_names_that_differ_only_at_the_end_get_different_names():
    names = [
        {
            (d["kind"], d["metadata"]["name"])
            for d in Rendered({"job": {"name": "olmo-7b"}}, release).docs
            # The watch marker's fixed name makes two operators on one namespace collide, on
            # purpose (test_chart_security.py).
            if d["kind"] != "OLMoJob" and d["metadata"]["name"] != WATCH_MARKER
        }
        for release in ("x" * 52 + "a", "x" * 52 + "b")
    ]
    assert not names[0] & names[1]


def test_a_release_name_too_long_for_the_olmojob_fails_with_a_clear_message():
    """The OLMoJob is not silently shortened (`make train` and the docs find it by the release
    name): the chart fails and says to set job.name."""
    with pytest.raises(helm_python.HelmRenderError) as error:
        Rendered({}, LONG_RELEASES[0])
    assert "is 53 characters long; at most 42" in str(error.value)
    assert "set job.name" in str(error.value)
    assert Rendered({"job": {"enabled": False}}, LONG_RELEASES[0]).of_kind("OLMoJob") == []
