"""The retention choice: what the OLMoJob's checkpoint policy means for the trainer and for the
final rotation Job.

Checkpoints are rotated by the code that owns the layout (``olmo/checkpoints/retention.py``):
the trainer applies the policy after every save, and ``olmo-ckpt rotate`` applies it once more
after the run succeeded. The operator only translates the spec into their arguments, so the
rules (keep the newest ``keepLast``, every multiple of ``keepEvery``, never the newest complete
checkpoint, optionally never an un-evaluated one) are defined in exactly one place.
"""

from __future__ import annotations

from olmo_operator.spec import JobSpec


def requires_evaluated(spec: JobSpec) -> bool:
    """Keep un-evaluated checkpoints only when an eval worker exists to evaluate them."""
    return spec.eval.enabled and spec.checkpoint.require_evaluated


def trainer_overrides(spec: JobSpec) -> list[str]:
    """``--set`` overrides that make the trainer save and rotate by the spec's policy."""
    ckpt = spec.checkpoint
    out = [
        f"checkpoint.save_interval={ckpt.interval}",
        f"checkpoint.keep_last={ckpt.keep_last}",
        f"checkpoint.keep_every={ckpt.keep_every if ckpt.keep_every is not None else 'null'}",
        f"checkpoint.require_evaluated={'true' if requires_evaluated(spec) else 'false'}",
    ]
    return out


def rotate_args(spec: JobSpec) -> list[str]:
    """Arguments of ``olmo-ckpt rotate`` for the final rotation Job."""
    ckpt = spec.checkpoint
    out = ["olmo-ckpt", "rotate", spec.run_dir, "--keep-last", str(ckpt.keep_last)]
    if ckpt.keep_every is not None:
        out += ["--keep-every", str(ckpt.keep_every)]
    if requires_evaluated(spec):
        out.append("--require-evaluated")
    return out
