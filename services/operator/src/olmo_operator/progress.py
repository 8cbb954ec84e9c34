"""Mirror the pods' progress reports (``status.progress``) into the operator's status fields.

The trainer and the eval worker write only ``status.progress`` (field names in
:mod:`olmo_operator.contract`); the operator copies step, tokens, the latest checkpoint and the
last evaluation to the top-level status (where ``kubectl get olmojobs`` shows them) and turns each
new checkpoint, evaluation and rotation into an Event. Comparing against the stored status makes
this restart-safe: a restarted operator does not repeat Events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from olmo_operator import contract as c


@dataclass(frozen=True)
class Event:
    type: str
    """``Normal`` or ``Warning``."""
    reason: str
    message: str


def mirror_progress(status: Mapping[str, Any]) -> tuple[dict[str, Any], list[Event]]:
    """The status fields to update from ``status.progress``, and the Events to post."""
    progress = status.get(c.STATUS_PROGRESS) or {}
    if not isinstance(progress, Mapping):
        return {}, []
    patch: dict[str, Any] = {}
    events: list[Event] = []

    for key in (c.PROGRESS_STEP, c.PROGRESS_TOKENS):
        value = progress.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value != status.get(key):
            patch[key] = value

    ckpt = _object(progress.get(c.PROGRESS_LATEST_CHECKPOINT))
    if ckpt and _subset(ckpt, (c.CHECKPOINT_STEP, c.CHECKPOINT_PATH, c.CHECKPOINT_TIME)) != _subset(
        status.get("latestCheckpoint") or {},
        (c.CHECKPOINT_STEP, c.CHECKPOINT_PATH, c.CHECKPOINT_TIME),
    ):
        value = _subset(ckpt, (c.CHECKPOINT_STEP, c.CHECKPOINT_PATH, c.CHECKPOINT_TIME))
        patch["latestCheckpoint"] = value
        events.append(
            Event(
                "Normal",
                "CheckpointSaved",
                f"checkpoint at step {value.get(c.CHECKPOINT_STEP)}: {value.get(c.CHECKPOINT_PATH)}",
            )
        )

    evaluation = _object(progress.get(c.PROGRESS_LAST_EVAL))
    fields = (c.EVAL_STEP, c.EVAL_HEADLINE, c.EVAL_TIME)
    if evaluation and _subset(evaluation, fields) != _subset(status.get("lastEval") or {}, fields):
        value = _subset(evaluation, fields)
        headline = value.get(c.EVAL_HEADLINE)
        if isinstance(headline, Mapping):
            # The CRD types headline values as numbers; drop anything else rather than fail.
            value[c.EVAL_HEADLINE] = {
                str(k): v
                for k, v in headline.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        patch["lastEval"] = value
        scores = ", ".join(
            f"{k} {v:.3f}" for k, v in sorted(value.get(c.EVAL_HEADLINE, {}).items())
        )
        events.append(
            Event(
                "Normal",
                "Evaluated",
                f"step {value.get(c.EVAL_STEP)} evaluated" + (f": {scores}" if scores else ""),
            )
        )

    rotation = _object(progress.get(c.PROGRESS_ROTATION))
    if rotation and rotation.get(c.ROTATION_TIME) != (status.get("lastRotation") or {}).get(
        c.ROTATION_TIME
    ):
        deleted = [str(p) for p in rotation.get(c.ROTATION_DELETED) or []]
        patch["lastRotation"] = {c.ROTATION_DELETED: deleted, c.ROTATION_TIME: rotation.get("time")}
        if deleted:
            names = ", ".join(p.rstrip("/").rsplit("/", 1)[-1] for p in deleted)
            events.append(
                Event(
                    "Normal",
                    "CheckpointsRotated",
                    f"trainer deleted {len(deleted)} checkpoint"
                    f"{'s' if len(deleted) != 1 else ''}: {names}",
                )
            )
    return patch, events


def _object(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _subset(value: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: value[k] for k in keys if value.get(k) is not None}
