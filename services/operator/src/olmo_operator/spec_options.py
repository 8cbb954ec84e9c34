"""Parts of the OLMoJob spec that are options of a run rather than its resources: the eval
worker, Weights & Biases, the preflight checks and the adaptive checkpoint interval (declared like
the rest of the spec; :mod:`olmo_operator.spec` puts them together)."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator import openapi
from olmo_operator.typed_schema import prop, spec_type


def _resources(description: str) -> Any:
    return prop("resources", description, schema=openapi.RESOURCES)


def _tolerations(description: str) -> Any:
    return prop("tolerations", description, schema=openapi.TOLERATION)


@spec_type
class SecretRef:
    """A key of a Secret in the OLMoJob's namespace."""

    name: str = prop("name", "Secret name (same namespace).", required=True, min_length=1)
    key: str = prop("key", "Key within the Secret.", default="api-key", min_length=1)


@spec_type
class AdaptiveInterval:
    """Set each attempt's save interval from the preemption rate (Young/Daly), within bounds."""

    min_interval: int = prop(
        "minInterval",
        "The shortest save interval the operator may choose (steps).",
        minimum=1,
        required=True,
    )
    max_interval: int = prop(
        "maxInterval",
        "The longest save interval the operator may choose (steps).",
        minimum=1,
        required=True,
    )


@spec_type
class Eval:
    """The eval worker."""

    enabled: bool = prop("enabled", "Run the eval worker.", default=False)
    tasks: tuple[str, ...] = prop(
        "tasks", "Downstream tasks to evaluate (default: the worker's own list).", min_length=1
    )
    limit: int | None = prop("limit", "Evaluate at most N examples per task.", minimum=1)
    image: str | None = prop("image", "Eval worker image (default: spec.image).")
    resources: dict[str, Any] = _resources("Resources of the eval worker pod.")
    node_selector: dict[str, str] = prop(
        "nodeSelector", "Node labels the eval worker pod requires (e.g. a large-memory CPU pool)."
    )
    tolerations: tuple[dict[str, Any], ...] = _tolerations("Tolerations of the eval worker pod.")
    final_timeout_seconds: int = prop(
        "finalTimeoutSeconds",
        "After the trainer succeeded, remove the eval worker at the latest this long after "
        "completionTime, evaluated or not (status.finalEval says which).",
        minimum=0,
        default=7200,
    )


@spec_type
class WandB:
    """Weights & Biases logging."""

    project: str | None = prop("project", "W&B project.")
    entity: str | None = prop("entity", "W&B entity (team or user).")
    mode: str | None = prop(
        "mode",
        "online needs secretRef; offline writes runs into the run directory.",
        enum=("online", "offline", "disabled"),
    )
    secret: SecretRef | None = prop(
        "secretRef", f"Secret holding the W&B API key (env {c.ENV_WANDB_KEY})."
    )


@spec_type
class Preflight:
    """Checks every trainer pod runs before an attempt trains."""

    enabled: bool = prop(
        "enabled",
        "Before training, every trainer process checks its device (a small matmul on its GPU, "
        "or the CPU), writes to the checkpoint location and joins a collective across the whole "
        "gang. A node that fails is named in a PreflightFailed Event and excluded from the next "
        "attempts (status.excludedNodes); no budget is spent.",
        default=True,
    )
    timeout_seconds: int = prop(
        "timeoutSeconds",
        "Time limit of the collective across the gang (a node that does not join in time fails).",
        minimum=5,
        maximum=3600,
        default=300,
    )
