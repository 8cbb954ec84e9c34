"""The operator's optional features, switched on by the chart (environment of the operator).

Each one needs APIs and permissions a plain cluster lacks, so each is off unless the chart
enables it: ``OLMO_FEATURE_PROVISIONING`` (ProvisioningRequests, chart value
``operator.provisioning.enabled``), ``OLMO_FEATURE_KARPENTER`` (operator-owned Karpenter
NodePools, ``operator.karpenter.enabled``) and ``OLMO_FEATURE_TERMINATION_NOTICES`` (watching
Nodes for impending-termination signals, ``operator.terminationNotices.enabled``).
:func:`feature_problems` refuses a spec that asks for a feature the operator was installed
without, naming the chart value to set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from olmo_operator import contract as c
from olmo_operator.spec import JobSpec

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {env.get(name)!r}")


@dataclass(frozen=True)
class Features:
    provisioning: bool = False
    karpenter: bool = False
    termination_notices: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Features:
        env = os.environ if environ is None else environ
        return cls(
            provisioning=_flag(env, c.ENV_FEATURE_PROVISIONING),
            karpenter=_flag(env, c.ENV_FEATURE_KARPENTER),
            termination_notices=_flag(env, c.ENV_FEATURE_TERMINATION_NOTICES),
        )

    def __str__(self) -> str:
        on = [n for n in ("provisioning", "karpenter", "termination_notices") if getattr(self, n)]
        return ", ".join(on) or "none"


def feature_problems(spec: JobSpec, features: Features) -> list[str]:
    """What ``spec`` asks for that the operator was installed without (empty: nothing)."""
    out = []
    for i, pool in enumerate(spec.node_pools):
        where = f"spec.nodePools[{i}] ({pool.name})"
        if pool.provisioning is not None and not features.provisioning:
            out.append(
                f"{where} sets provisioning, but the operator runs without ProvisioningRequest "
                f"support: install the chart with {c.CHART_PROVISIONING}=true "
                f"({c.ENV_FEATURE_PROVISIONING})"
            )
        if pool.karpenter_managed and not features.karpenter:
            out.append(
                f"{where} is managed: karpenter, but the operator runs without Karpenter "
                f"support: install the chart with {c.CHART_KARPENTER}=true "
                f"({c.ENV_FEATURE_KARPENTER})"
            )
    return out
