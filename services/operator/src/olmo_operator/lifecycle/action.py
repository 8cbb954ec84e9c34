"""What one reconcile decides: an :class:`Action` for the kopf handlers to apply.

A merge patch for the status (operator-owned fields only), objects to create, objects to
delete, Events to post, and whether to delete the OLMoJob itself (TTL). The handlers apply it in
that order — status first, in one patch, so that a decision (a new attempt number, a restart
counted) is recorded before it has any effect.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from olmo_operator.failures import Failure
from olmo_operator.progress import Event


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        return cls(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


class ActionKind(enum.StrEnum):
    WAIT = "Wait"
    PREPARE_DATA = "PrepareData"
    START_ATTEMPT = "StartAttempt"
    RESTART = "Restart"
    SUCCEED = "Succeed"
    FAIL = "Fail"
    SUSPEND = "Suspend"
    ROTATE = "Rotate"
    DELETE = "Delete"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    message: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    """JSON merge patch for ``.status`` (None values remove a field)."""
    create: tuple[dict[str, Any], ...] = ()
    delete: tuple[ObjectRef, ...] = ()
    events: tuple[Event, ...] = ()
    failure: Failure | None = None
    """Why the attempt ended (kinds RESTART and FAIL after a trainer failure)."""
    new_attempt: int | None = None
    """The attempt number started by this action (not set when an attempt is re-created)."""
    delete_job: bool = False
    """Delete the OLMoJob itself (ttlSecondsAfterFinished has passed)."""
