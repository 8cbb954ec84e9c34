"""The plan of one reconcile: every status change, condition, Event, create and delete the
policies decide, collected, and turned into one :class:`~olmo_operator.lifecycle.action.Action`
at the end (:meth:`Plan.finish`) — so the handlers write the status once per reconcile, with
only the fields that changed.

Each policy module (startup, data preparation, running, failure policy, suspend, after finish)
reads the plan's inputs (``job``, ``spec``, ``old`` status, ``kids``, ``now``, ``timing``) and
adds to it; none of them talks to the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.failures import Failure
from olmo_operator.lifecycle.action import Action, ActionKind, ObjectRef
from olmo_operator.lifecycle.observed import Children, Observed, deleting, ref
from olmo_operator.lifecycle.timing import Timing
from olmo_operator.progress import Event
from olmo_operator.spec import OLMoJob
from olmo_operator.timefmt import now_iso as now_iso  # re-exported for the policies
from olmo_operator.timefmt import parse_time as parse_time


class Plan:
    def __init__(self, job: OLMoJob, status: Mapping[str, Any], observed: Observed, timing: Timing):
        self.job, self.spec, self.old, self.observed, self.timing = (
            job,
            job.spec,
            status,
            observed,
            timing,
        )
        self.now = observed.now
        self.kids = Children.of(job.name, observed)
        self.patch: dict[str, Any] = {}
        self.create: list[dict[str, Any]] = []
        self.delete: list[ObjectRef] = []
        self.events: list[Event] = []
        self.kind = ActionKind.WAIT
        self.message = ""
        self.failure: Failure | None = None
        self.new_attempt: int | None = None
        self.delete_job = False
        self._conditions = [dict(x) for x in status.get("conditions") or []]

    # status -----------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The status value after this plan (patched or old)."""
        if key in self.patch:
            return self.patch[key]
        value = self.old.get(key)
        return default if value is None else value

    def set(self, **fields: Any) -> None:
        self.patch.update(fields)

    @property
    def phase(self) -> str:
        return self.get("phase", "")

    def to_phase(self, phase: str, message: str) -> None:
        self.set(phase=phase, message=message)
        self.message = message

    def condition(self, kind: str, value: bool, reason: str, message: str = "") -> None:
        status = "True" if value else "False"
        for cond in self._conditions:
            if cond.get("type") == kind:
                if cond.get("status") != status:
                    cond["lastTransitionTime"] = now_iso(self.now)
                cond.update(status=status, reason=reason, message=message)
                return
        self._conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now_iso(self.now),
            }
        )

    def has_condition(self, kind: str) -> bool:
        return any(x.get("type") == kind and x.get("status") == "True" for x in self._conditions)

    # effects ----------------------------------------------------------------------------

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def remove(self, objs: Iterable[Mapping[str, Any]]) -> None:
        for obj in objs:
            target = ref(obj)
            if not deleting(obj) and target not in self.delete:
                self.delete.append(target)

    def finish(self) -> Action:
        old_conditions = list(self.old.get("conditions") or [])
        if self._conditions != old_conditions:
            self.patch["conditions"] = self._conditions
        old_phase, new_phase = self.old.get("phase") or "", self.patch.get("phase")
        if new_phase and new_phase != old_phase:
            detail = f": {self.patch.get('message')}" if self.patch.get("message") else ""
            self.events.insert(
                0,
                Event(
                    "Warning" if new_phase == c.FAILED else "Normal",
                    new_phase,
                    f"phase {old_phase or '(new)'} → {new_phase}{detail}",
                ),
            )
        # Only what changed goes into the patch.
        patch = {k: v for k, v in self.patch.items() if self.old.get(k) != v or k == "conditions"}
        return Action(
            kind=self.kind,
            message=self.message,
            status=patch,
            create=tuple(self.create),
            delete=tuple(self.delete),
            events=tuple(self.events),
            failure=self.failure,
            new_attempt=self.new_attempt,
            delete_job=self.delete_job,
        )
