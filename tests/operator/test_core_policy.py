"""The operator policy (olmo_operator.policy): its configuration, every rule of ``check`` and
what a violation does to the OLMoJob."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from olmo_operator import contract as c
from olmo_operator.cli import main as operator_cli
from olmo_operator.lifecycle import ActionKind, Observed
from olmo_operator.policy import Policy, PolicyError, TolerationRule, check, enforce
from olmo_operator.resources import AttemptState, desired_objects
from olmo_operator.spec import parse_job
from tests.operator.olmojobs import olmojob

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
SPOT = {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true"}


def job(**spec: Any):
    return parse_job(olmojob(**spec))


def policy(**raw: Any) -> Policy:
    return Policy.from_json(json.dumps(raw))


# --------------------------------------------------------------------------------------------
# Configuration


def test_no_variable_means_no_restriction():
    assert Policy.from_env({}) == Policy()
    assert Policy.from_env({c.ENV_POLICY: " "}) == Policy()
    wild = job(
        image="anything:1",
        env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}],
        imagePullSecrets=[{"name": "reg"}],
        nodePools=[{"name": "p", "tolerations": [{"operator": "Exists"}]}],
    )
    assert check(wild, Policy()) == []


def test_policy_is_read_from_the_environment():
    env = {c.ENV_POLICY: json.dumps({"allowedClaims": ["data"], "allowedImages": ["t:1"]})}
    assert Policy.from_env(env) == Policy(allowed_images=("t:1",), allowed_claims=("data",))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "OLMO_OPERATOR_POLICY is not valid JSON"),
        ("[]", "must be a JSON object, got list"),
        ('{"allowedImage": []}', "unknown key(s) allowedImage (known: allowedImages,"),
        ('{"allowedClaims": "data"}', "OLMO_OPERATOR_POLICY.allowedClaims must be a list, got str"),
        ('{"allowedEnvSecrets": [1]}', "allowedEnvSecrets[0] must be a string, got int"),
        ('{"allowedImagePrefixes": ["reg.io/team"]}', "'reg.io/team' must end in '/', ':' or '@'"),
        ('{"allowedTolerations": ["gpu"]}', "allowedTolerations[0] must be an object"),
        ('{"allowedTolerations": [{"effect": "NoSchedule"}]}', "allowedTolerations[0].key is"),
        ('{"allowedTolerations": [{"key": "a", "value": "b"}]}', "unknown key(s) value"),
        ('{"allowedTolerations": [{"key": "a", "effect": "No"}]}', "effect must be one of"),
    ],
)
def test_malformed_policy_is_refused_naming_the_key(text, message):
    with pytest.raises(PolicyError) as error:
        Policy.from_json(text)
    assert message in str(error.value)


def test_the_operator_refuses_to_start_with_a_malformed_policy(monkeypatch, capsys):
    monkeypatch.setenv(c.ENV_POLICY, '{"allowedClaims": "data"}')
    assert operator_cli(["run", "--standalone"]) == 2
    assert "allowedClaims must be a list" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Rules


def test_images_exact_or_under_a_prefix():
    rules = policy(allowedImages=["olmo-k8s/trainer:0.1.0"], allowedImagePrefixes=["reg.io/ml/"])
    assert check(job(image="olmo-k8s/trainer:0.1.0"), rules) == []
    assert check(job(image="reg.io/ml/trainer:7"), rules) == []
    (message,) = check(job(image="olmo-k8s/trainer:evil"), rules)
    assert message.startswith("spec.image 'olmo-k8s/trainer:evil' is neither in allowedImages")
    assert "['reg.io/ml/']" in message
    assert check(job(image="reg.io/ml-evil/x:1"), policy(allowedImagePrefixes=["reg.io/ml/"]))


def test_empty_prefix_allows_every_image_and_an_empty_list_none():
    assert check(job(image="x:1"), policy(allowedImagePrefixes=[""])) == []
    assert check(job(image="x:1"), policy(allowedImages=[]))


def test_eval_and_dataprep_images_are_checked_too():
    rules = policy(allowedImages=["olmo-trainer:dev"])
    spec = job(
        eval={"enabled": True, "image": "evil/eval:1"},
        dataset={
            "claimName": "data",
            "prepare": {"pipelineConfigMap": {"name": "p"}, "image": "evil/prep:1"},
        },
    )
    fields = [m.split(" ")[0] for m in check(spec, rules)]
    assert fields == ["spec.dataset.prepare.image", "spec.eval.image"]
    # Their default is spec.image, checked once.
    assert check(job(eval={"enabled": True}), rules) == []


def test_env_may_read_only_allowed_secrets():
    rules = policy(allowedEnvSecrets=["hf-token"])
    env = [
        {"name": "A", "value": "plain"},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "t"}}},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "D", "valueFrom": {"secretKeyRef": {"name": "db-admin", "key": "pw"}}},
    ]
    assert check(job(env=env), rules) == [
        "spec.env[3].valueFrom.secretKeyRef.name 'db-admin' is not in allowedEnvSecrets "
        "['hf-token']"
    ]


def test_the_wandb_secret_is_an_env_secret():
    wandb = {"mode": "online", "secretRef": {"name": "wandb"}}
    assert check(job(wandb=wandb), policy(allowedEnvSecrets=["wandb"])) == []
    (message,) = check(job(wandb=wandb), policy(allowedEnvSecrets=[]))
    assert message == "spec.wandb.secretRef.name 'wandb' is not in allowedEnvSecrets []"


def test_image_pull_secrets():
    spec = job(imagePullSecrets=[{"name": "registry"}, {"name": "other-team"}])
    assert check(spec, policy(allowedImagePullSecrets=["registry"])) == [
        "spec.imagePullSecrets[1].name 'other-team' is not in allowedImagePullSecrets ['registry']"
    ]


def test_claims():
    rules = policy(allowedClaims=["data"])
    assert check(job(), rules) == [
        "spec.checkpoint.claimName 'ckpt' is not in allowedClaims ['data']"
    ]
    assert check(job(), policy(allowedClaims=["data", "ckpt"])) == []


def test_tolerations_match_by_key_and_effect():
    rules = policy(
        allowedTolerations=[
            {"key": "cloud.google.com/gke-spot"},
            {"key": "nvidia.com/gpu", "effect": "NoSchedule"},
        ]
    )
    ok = job(
        nodePools=[
            {"name": "spot", "tolerations": [{**SPOT, "effect": "NoSchedule"}, SPOT]},
            {"name": "gpu", "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
        ]
    )
    assert check(ok, rules) == []
    bad = job(
        nodePools=[
            {"name": "gpu", "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoExecute"}]},
            # No effect: tolerates every effect of the key, more than the rule allows.
            {"name": "gpu2", "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
        ],
        eval={"tolerations": [{"key": "node-role.kubernetes.io/control-plane"}]},
    )
    messages = check(bad, rules)
    assert [m.split(" ")[0] for m in messages] == [
        "spec.nodePools[0].tolerations[0]",
        "spec.nodePools[1].tolerations[0]",
        "spec.eval.tolerations[0]",
    ]
    assert "matches no allowedTolerations rule" in messages[0]
    assert "{key: 'nvidia.com/gpu', effect: NoSchedule}" in messages[0]


def test_a_toleration_of_every_taint_needs_an_explicit_empty_key_rule():
    everything = job(nodePools=[{"name": "any", "tolerations": [{"operator": "Exists"}]}])
    assert check(everything, policy(allowedTolerations=[{"key": "nvidia.com/gpu"}]))
    assert check(everything, policy(allowedTolerations=[{"key": ""}])) == []
    assert TolerationRule("").allows({"operator": "Exists"})


def test_namespaces_by_name_or_glob():
    assert check(job(), policy(allowedNamespaces=["ml"])) == []
    assert check(job(), policy(allowedNamespaces=["team-*", "m?"])) == []
    assert check(job(), policy(allowedNamespaces=["team-*"])) == [
        "metadata.namespace 'ml' is not in allowedNamespaces ['team-*']"
    ]


def test_every_violation_is_listed():
    rules = policy(allowedImages=[], allowedClaims=[], allowedNamespaces=[])
    assert len(check(job(), rules)) == 4  # namespace, image, two claims


# --------------------------------------------------------------------------------------------
# What a violation does


def running_children() -> Observed:
    objects = desired_objects(job(), AttemptState(1))
    jobs = tuple(o for o in objects if o["kind"] == "Job")
    services = tuple(o for o in objects if o["kind"] == "Service")
    return Observed(now=NOW, jobs=jobs, services=services)


def test_a_violation_fails_the_job_with_a_warning_event_and_its_children_go():
    rules = policy(allowedImages=["olmo-k8s/trainer:0.1.0"])
    action = enforce(job(), {"phase": c.RUNNING, "attempt": 1}, rules, running_children())
    assert action is not None and action.kind is ActionKind.FAIL
    assert action.status["phase"] == c.FAILED
    message = action.status["message"]
    assert message.startswith("refused by the operator policy: spec.image 'olmo-trainer:dev'")
    (event,) = action.events
    assert (event.type, event.reason, event.message) == ("Warning", "PolicyViolation", message)
    assert {(r.kind, r.name) for r in action.delete} == {("Job", "run-a1"), ("Service", "run-a1")}
    assert action.create == ()


def test_a_new_violating_job_creates_nothing():
    rules = policy(allowedClaims=[])
    action = enforce(job(), {}, rules, Observed(now=NOW))
    assert action is not None and action.create == () and action.status["phase"] == c.FAILED
    assert "completionTime" in action.status


def test_once_failed_nothing_more_happens_and_a_finished_job_is_left_alone():
    rules = policy(allowedClaims=[])
    first = enforce(job(), {}, rules, Observed(now=NOW))
    assert first is not None
    assert enforce(job(), {**first.status}, rules, Observed(now=NOW)) is None
    succeeded = {"phase": c.SUCCEEDED, "completionTime": "2024-05-01T00:00:00Z"}
    assert enforce(job(), succeeded, rules, Observed(now=NOW)) is None


def test_a_complying_job_is_left_to_the_lifecycle():
    assert enforce(job(), {}, policy(allowedClaims=["data", "ckpt"]), Observed(now=NOW)) is None
