"""Feature switches and the node-pool cross-field rules (``features.py``, ``pool_spec.py``)."""

from __future__ import annotations

import pytest

from olmo_operator import contract as c
from olmo_operator.features import Features, feature_problems
from olmo_operator.spec import SpecError, parse_spec
from tests.operator.capacity import karpenter_pool, provisioned_pool

BASE = {
    "model": {"preset": "tiny"},
    "image": "img",
    "dataset": {"claimName": "d"},
    "checkpoint": {"claimName": "c"},
}


def test_switches_default_off_and_read_true_false() -> None:
    assert Features.from_env({}) == Features()
    on = Features.from_env({c.ENV_FEATURE_PROVISIONING: "true", c.ENV_FEATURE_KARPENTER: "1"})
    assert on.provisioning and on.karpenter and not on.termination_notices
    with pytest.raises(ValueError, match=c.ENV_FEATURE_KARPENTER):
        Features.from_env({c.ENV_FEATURE_KARPENTER: "maybe"})


def test_a_spec_using_a_switched_off_feature_names_the_chart_value() -> None:
    spec = parse_spec(
        {**BASE, "nodePools": [provisioned_pool("a"), karpenter_pool("b")]}, job_name="j"
    )
    problems = feature_problems(spec, Features())
    assert len(problems) == 2
    assert c.CHART_PROVISIONING in problems[0] and c.CHART_KARPENTER in problems[1]
    assert feature_problems(spec, Features(provisioning=True, karpenter=True)) == []


@pytest.mark.parametrize(
    ("pool", "extra", "message"),
    [
        ({"name": "a", "managed": "karpenter"}, {}, "needs karpenter.nodeClassRef"),
        ({**karpenter_pool("a"), "managed": None}, {}, "only read with managed: karpenter"),
        ({**karpenter_pool("a"), "provisioning": {"className": "x"}}, {}, "not both"),
        (provisioned_pool("a"), {"queueName": "q"}, "Kueue"),
    ],
)
def test_pool_cross_field_rules(pool: dict, extra: dict, message: str) -> None:
    pool = {k: v for k, v in pool.items() if v is not None}
    with pytest.raises(SpecError, match=message):
        parse_spec({**BASE, **extra, "nodePools": [pool]}, job_name="j")
