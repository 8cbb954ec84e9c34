"""The operator's policy: what an OLMoJob may make the operator create.

Whoever may create an OLMoJob makes the operator create pods with the operator's own rights:
without a policy, an OLMoJob could run any image, read any Secret of its namespace into an env
var, tolerate any taint (control-plane or reserved nodes), mount any PersistentVolumeClaim and
pull with any registry Secret. The policy, set by whoever installs the operator (chart values
``operator.policy``, passed as JSON in ``OLMO_OPERATOR_POLICY``), limits each of these:

============================  =====================================================================
``allowedImages``             exact image references allowed for ``spec.image``,
                              ``spec.dataset.prepare.image`` and ``spec.eval.image``
``allowedImagePrefixes``      ... or prefixes of them; each ends in ``/``, ``:`` or ``@`` (so that
                              ``reg.io/team/`` cannot match ``reg.io/team-evil/x``); ``""`` allows
                              every image
``allowedEnvSecrets``         Secrets ``spec.env[].valueFrom.secretKeyRef``,
                              ``spec.wandb.secretRef`` and ``spec.storage.secretRef`` may read
``allowedImagePullSecrets``   Secrets ``spec.imagePullSecrets`` may name
``allowedTolerations``        rules ``{key, effect?}``: each toleration of ``spec.nodePools[]`` and
                              ``spec.eval`` must match one (same key, and the same effect unless
                              the rule names none); a toleration of every taint (no key) needs a
                              rule with key ``""``
``allowedClaims``             PersistentVolumeClaims ``spec.dataset`` and ``spec.checkpoint`` may
                              name
``allowedServiceAccounts``    ServiceAccounts ``spec.storage.serviceAccountName`` may name (the
                              pods run under it: its cloud identity, its API rights)
``allowedNamespaces``         namespaces (names or shell globs such as ``team-*``) whose OLMoJobs
                              the operator runs
============================  =====================================================================

A key left out of the JSON does not restrict (an operator started without the variable behaves
as before); a key given as ``[]`` allows nothing. :func:`check` is pure and lists every
violation, naming the field and the rule; :func:`enforce` turns them into phase Failed (like an
invalid spec: the running children go) with a Warning Event ``PolicyViolation``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle import Action, Observed
from olmo_operator.lifecycle.decide import fail_for_good_action
from olmo_operator.spec import OLMoJob

VIOLATION_REASON = "PolicyViolation"
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
PREFIX_ENDINGS = ("/", ":", "@")


class PolicyError(ValueError):
    """The policy configuration is malformed (the operator refuses to start)."""


@dataclasses.dataclass(frozen=True)
class TolerationRule:
    """An allowed toleration: its taint key, and its effect (None: any effect)."""

    key: str
    effect: str | None = None

    def allows(self, toleration: Mapping[str, Any]) -> bool:
        # A toleration without an effect tolerates every effect: only a rule without one allows it.
        return (toleration.get("key") or "") == self.key and (
            self.effect is None or toleration.get("effect") == self.effect
        )

    def __str__(self) -> str:
        return f"{{key: {self.key!r}{'' if self.effect is None else f', effect: {self.effect}'}}}"


@dataclasses.dataclass(frozen=True)
class Policy:
    """What OLMoJobs may ask for; None: that field is not restricted."""

    allowed_images: tuple[str, ...] | None = None
    allowed_image_prefixes: tuple[str, ...] | None = None
    allowed_env_secrets: tuple[str, ...] | None = None
    allowed_image_pull_secrets: tuple[str, ...] | None = None
    allowed_tolerations: tuple[TolerationRule, ...] | None = None
    allowed_claims: tuple[str, ...] | None = None
    allowed_service_accounts: tuple[str, ...] | None = None
    allowed_namespaces: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, text: str, source: str = c.ENV_POLICY) -> Policy:
        """Read the policy from its JSON text. Raises :class:`PolicyError` naming the key."""
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise PolicyError(f"{source} is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise PolicyError(f"{source} must be a JSON object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(_KEYS))
        if unknown:
            raise PolicyError(
                f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(_KEYS)})"
            )
        fields: dict[str, Any] = {}
        for key, field in _KEYS.items():
            if key not in raw or raw[key] is None:
                continue
            where = f"{source}.{key}"
            if key == "allowedTolerations":
                fields[field] = tuple(
                    _toleration_rule(r, f"{where}[{i}]")
                    for i, r in enumerate(_list(raw[key], where))
                )
            else:
                fields[field] = tuple(_strings(raw[key], where))
        for i, prefix in enumerate(fields.get("allowed_image_prefixes") or ()):
            if prefix and not prefix.endswith(PREFIX_ENDINGS):
                raise PolicyError(
                    f"{source}.allowedImagePrefixes[{i}] {prefix!r} must end in '/', ':' or '@' "
                    f"(else it also matches other repositories, e.g. {prefix + '-other/x'!r}); "
                    "use allowedImages for exact references, or '' to allow every image"
                )
        return cls(**fields)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Policy:
        """``$OLMO_OPERATOR_POLICY`` (unset or empty: no restriction)."""
        text = (os.environ if environ is None else environ).get(c.ENV_POLICY, "").strip()
        return cls.from_json(text) if text else cls()

    @property
    def restricts_images(self) -> bool:
        return self.allowed_images is not None or self.allowed_image_prefixes is not None

    def image_allowed(self, image: str) -> bool:
        if not self.restricts_images:
            return True
        return image in (self.allowed_images or ()) or any(
            image.startswith(prefix) for prefix in self.allowed_image_prefixes or ()
        )

    def namespace_allowed(self, namespace: str) -> bool:
        if self.allowed_namespaces is None:
            return True
        return any(fnmatch.fnmatchcase(namespace, p) for p in self.allowed_namespaces)


_KEYS = {
    "allowedImages": "allowed_images",
    "allowedImagePrefixes": "allowed_image_prefixes",
    "allowedEnvSecrets": "allowed_env_secrets",
    "allowedImagePullSecrets": "allowed_image_pull_secrets",
    "allowedTolerations": "allowed_tolerations",
    "allowedClaims": "allowed_claims",
    "allowedServiceAccounts": "allowed_service_accounts",
    "allowedNamespaces": "allowed_namespaces",
}


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PolicyError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _strings(value: Any, where: str) -> Iterator[str]:
    for i, item in enumerate(_list(value, where)):
        if not isinstance(item, str):
            raise PolicyError(f"{where}[{i}] must be a string, got {type(item).__name__}")
        yield item


def _toleration_rule(raw: Any, where: str) -> TolerationRule:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be an object {{key, effect}}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"key", "effect"})
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)} (known: key, effect)")
    key, effect = raw.get("key"), raw.get("effect")
    if not isinstance(key, str):
        raise PolicyError(f'{where}.key is required: the taint key ("" for every taint)')
    if effect is not None and effect not in TAINT_EFFECTS:
        raise PolicyError(
            f"{where}.effect must be one of {', '.join(TAINT_EFFECTS)}, got {effect!r}"
        )
    return TolerationRule(key, effect)


# --------------------------------------------------------------------------------------------
# The check


def check(job: OLMoJob, policy: Policy) -> list[str]:
    """Every way ``job`` breaks ``policy``: one message per field, naming it and the rule."""
    spec = job.spec
    out: list[str] = []
    if not policy.namespace_allowed(job.namespace):
        out.append(
            f"metadata.namespace {job.namespace!r} is not in allowedNamespaces "
            f"{list(policy.allowed_namespaces or ())}"
        )
    images = [("spec.image", spec.image)]
    if spec.dataset.prepare is not None and spec.dataset.prepare.image:
        images.append(("spec.dataset.prepare.image", spec.dataset.prepare.image))
    if spec.eval.image:
        images.append(("spec.eval.image", spec.eval.image))
    for field, image in images:
        if not policy.image_allowed(image):
            out.append(
                f"{field} {image!r} is neither in allowedImages "
                f"{list(policy.allowed_images or ())} nor under allowedImagePrefixes "
                f"{list(policy.allowed_image_prefixes or ())}"
            )
    out += _names(
        "allowedEnvSecrets",
        policy.allowed_env_secrets,
        _env_secrets(spec.env, spec.wandb, spec.storage.secret),
    )
    out += _names(
        "allowedImagePullSecrets",
        policy.allowed_image_pull_secrets,
        [(f"spec.imagePullSecrets[{i}].name", n) for i, n in enumerate(spec.image_pull_secrets)],
    )
    out += _names(
        "allowedClaims",
        policy.allowed_claims,
        [
            (field, claim)
            for field, claim in (
                ("spec.dataset.claimName", spec.dataset.claim_name),
                ("spec.checkpoint.claimName", spec.checkpoint.claim_name),
            )
            if claim is not None
        ],
    )
    if spec.storage.service_account_name is not None:
        out += _names(
            "allowedServiceAccounts",
            policy.allowed_service_accounts,
            [("spec.storage.serviceAccountName", spec.storage.service_account_name)],
        )
    if policy.allowed_tolerations is not None:
        rules = policy.allowed_tolerations
        tolerations = [
            (f"spec.nodePools[{i}].tolerations[{j}]", t)
            for i, pool in enumerate(spec.node_pools)
            for j, t in enumerate(pool.tolerations)
        ] + [(f"spec.eval.tolerations[{j}]", t) for j, t in enumerate(spec.eval.tolerations)]
        for field, toleration in tolerations:
            if not any(rule.allows(toleration) for rule in rules):
                shown = {k: toleration[k] for k in ("key", "effect") if k in toleration}
                out.append(
                    f"{field} {json.dumps(shown, sort_keys=True)} matches no allowedTolerations "
                    f"rule (same key, and effect unless the rule names none): "
                    f"[{', '.join(str(r) for r in rules)}]"
                )
    return out


def _names(rule: str, allowed: tuple[str, ...] | None, used: list[tuple[str, str]]) -> list[str]:
    if allowed is None:
        return []
    return [
        f"{field} {name!r} is not in {rule} {list(allowed)}"
        for field, name in used
        if name not in allowed
    ]


def _env_secrets(
    env: tuple[Mapping[str, Any], ...], wandb: Any, storage_secret: Any
) -> list[tuple[str, str]]:
    """(field, Secret name) of every Secret the pods' environment (or files) read."""
    out = []
    for i, var in enumerate(env):
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            out.append((f"spec.env[{i}].valueFrom.secretKeyRef.name", ref.get("name") or ""))
    if wandb is not None and wandb.secret is not None:
        out.append(("spec.wandb.secretRef.name", wandb.secret.name))
    if storage_secret is not None:
        out.append(("spec.storage.secretRef.name", storage_secret.name))
    return out


def enforce(
    job: OLMoJob, status: Mapping[str, Any], policy: Policy, observed: Observed
) -> Action | None:
    """Phase Failed when ``job`` breaks ``policy`` (its running children go, a Warning Event
    ``PolicyViolation``); None when it complies, or has finished already (a policy tightened
    later does not turn a Succeeded job into a Failed one)."""
    if status.get("phase") in c.TERMINAL_PHASES:
        return None
    violations = check(job, policy)
    if not violations:
        return None
    message = "refused by the operator policy: " + "; ".join(violations)
    return fail_for_good_action(status, message, VIOLATION_REASON, observed)
