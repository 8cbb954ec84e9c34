"""Mirror the pods' progress reports into the operator's status fields.

The trainer and the eval worker write only their data key of the ``<job>-progress`` ConfigMap
(``contract.py``, "The progress contract"; their Role allows nothing on the OLMoJob). Each
reconcile reads that ConfigMap, validates each document (:mod:`.progress_validation`) and
copies what passed to the top-level status — step, tokens, latestCheckpoint, lastRotation,
lastResume, lastUpload, lastSaveBlockedSeconds, throughput, lastSaveSeconds, lastPreflight
(trainer); lastEval, lastEvalFailure (eval worker) — turning each new checkpoint, rotation, skipped checkpoint, evaluation and given-up
evaluation into an Event.

Rules (``services/operator/README.md``, "Progress reports"):

- a trainer report of an older attempt than ``status.attempt`` is stale and ignored quietly
  (the pods of an ended attempt may still be writing); one of a newer attempt is rejected (the
  operator records an attempt before its pods exist, so no honest pod can claim one);
- within one attempt ``step`` never decreases;
- a malformed report is ignored whole, with ONE ``ProgressRejected`` Warning Event naming the
  field: ``status.progress.rejected.<source>`` records the rejection, and the same (field,
  reason) is not announced again until a valid report from that source clears it;
- nothing here raises: a report can never block the reconcile.

``status.progress`` is the operator's own record (the accepted trainer report's attempt, step
and time, and the rejections); comparing against the stored status makes all of this
restart-safe: a restarted operator repeats no Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from olmo_operator import contract as c
from olmo_operator.progress_validation import (
    Rejected,
    eval_report,
    parse_document,
    trainer_report,
)

ACTIVITY_AT = "activityAt"
"""``status.progress.activityAt``: when (operator's clock) the trainer's step or state last
changed in the current attempt — what the hang check (``lifecycle/hang.py``) measures from."""


@dataclass(frozen=True)
class Event:
    type: str
    """``Normal`` or ``Warning``."""
    reason: str
    message: str


def reports_of(config_map: Mapping[str, Any] | None, job_uid: str | None) -> dict[str, Any]:
    """The raw documents of the progress ConfigMap by source (absent keys: no report). A
    ConfigMap controlled by another object (a deleted job of the same name) reports nothing."""
    if not config_map:
        return {}
    owners = (config_map.get("metadata") or {}).get("ownerReferences") or []
    controller = next((o for o in owners if isinstance(o, Mapping) and o.get("controller")), None)
    if job_uid and controller is not None and controller.get("uid") != job_uid:
        return {}
    data = config_map.get("data") or {}
    if not isinstance(data, Mapping):
        return {}
    return {source: data[source] for source in c.PROGRESS_SOURCES if source in data}


def mirror_progress(
    status: Mapping[str, Any],
    config_map: Mapping[str, Any] | None,
    now: str,
    job_uid: str | None = None,
) -> tuple[dict[str, Any], list[Event]]:
    """The status merge patch from the progress ConfigMap, and the Events to post. ``now`` (RFC
    3339) stamps a new rejection."""
    mirror = _Mirror(status, now)
    reports = reports_of(config_map, job_uid)
    for source, parse in ((c.PROGRESS_TRAINER, trainer_report), (c.PROGRESS_EVAL, eval_report)):
        if source not in reports:
            continue
        try:
            report = parse(parse_document(source, reports[source]))
            if source == c.PROGRESS_TRAINER:
                mirror.trainer(report)
            else:
                mirror.eval(report)
        except Rejected as rejected:
            mirror.reject(source, rejected)
        else:
            mirror.accepted(source)
    return mirror.finish()


class _Mirror:
    """The changes of one mirror pass: top-level fields, the ``progress`` record, Events."""

    def __init__(self, status: Mapping[str, Any], now: str):
        self.status, self.now = status, now
        old = status.get(c.STATUS_PROGRESS)
        self.old_record: dict[str, Any] = dict(old) if isinstance(old, Mapping) else {}
        self.record = dict(self.old_record)
        rejected = self.old_record.get(c.PROGRESS_REJECTED)
        self.rejected: dict[str, Any] = dict(rejected) if isinstance(rejected, Mapping) else {}
        self.patch: dict[str, Any] = {}
        self.events: list[Event] = []

    # trainer ----------------------------------------------------------------------------------

    def trainer(self, report: dict[str, Any]) -> None:
        attempt = report[c.PROGRESS_ATTEMPT]
        current = _int_or_none(self.status.get("attempt")) or 0
        if attempt < current:
            raise _Stale
        if attempt > current:
            raise Rejected(c.PROGRESS_ATTEMPT, "must not be newer than status.attempt", attempt)
        step = report.get(c.PROGRESS_STEP)
        last_step = _int_or_none(self.old_record.get(c.PROGRESS_STEP))
        same_attempt = _int_or_none(self.old_record.get(c.PROGRESS_ATTEMPT)) == attempt
        if same_attempt and last_step is not None and step is not None and step < last_step:
            raise Rejected(
                c.PROGRESS_STEP,
                "must not decrease within an attempt",
                f"{step} after {last_step} in attempt {attempt}",
            )
        if not same_attempt:  # a new attempt starts its own step sequence
            for key in (c.PROGRESS_STEP, c.PROGRESS_STATE, c.PROGRESS_STATE_SINCE, ACTIVITY_AT):
                self.record.pop(key, None)
        before = (self.record.get(c.PROGRESS_STEP), self.record.get(c.PROGRESS_STATE))
        self.record[c.PROGRESS_ATTEMPT] = attempt
        for key in (c.PROGRESS_STEP, c.PROGRESS_UPDATED, c.PROGRESS_STATE, c.PROGRESS_STATE_SINCE):
            if key in report:
                self.record[key] = report[key]
        after = (self.record.get(c.PROGRESS_STEP), self.record.get(c.PROGRESS_STATE))
        if after != before or ACTIVITY_AT not in self.record:
            # the operator's own clock: the hang check compares it with its own "now"
            self.record[ACTIVITY_AT] = self.now
        self._throughput(report)
        self._preflight(attempt, report)

        for key in (c.PROGRESS_STEP, c.PROGRESS_TOKENS):
            if key in report and report[key] != self.status.get(key):
                self.patch[key] = report[key]
        ckpt = report.get(c.PROGRESS_LATEST_CHECKPOINT)
        if ckpt and ckpt != self.status.get("latestCheckpoint"):
            self.patch["latestCheckpoint"] = ckpt
            self._event(
                "Normal",
                "CheckpointSaved",
                f"checkpoint at step {ckpt[c.CHECKPOINT_STEP]}: {ckpt[c.CHECKPOINT_PATH]}",
            )
        rotation = report.get(c.PROGRESS_ROTATION)
        if rotation and rotation[c.ROTATION_TIME] != _get(self.status, "lastRotation", "time"):
            self.patch["lastRotation"] = rotation
            deleted = rotation[c.ROTATION_DELETED]
            if deleted:
                names = ", ".join(p.rstrip("/").rsplit("/", 1)[-1] for p in deleted)
                self._event(
                    "Normal",
                    "CheckpointsRotated",
                    f"trainer deleted {len(deleted)} checkpoint"
                    f"{'s' if len(deleted) != 1 else ''}: {names}",
                )
        upload = report.get(c.PROGRESS_UPLOAD)
        if upload and upload != self.status.get("lastUpload"):
            self.patch["lastUpload"] = upload
        blocked = report.get(c.PROGRESS_BLOCKED)
        if blocked is not None and blocked != self.status.get("lastSaveBlockedSeconds"):
            self.patch["lastSaveBlockedSeconds"] = blocked
        resume = report.get(c.PROGRESS_RESUME)
        if resume:
            value = {c.PROGRESS_ATTEMPT: attempt, **resume}
            if value != self.status.get("lastResume"):
                self.patch["lastResume"] = value
                if resume[c.RESUME_SKIPPED]:
                    skipped = "; ".join(
                        f"{s[c.SKIPPED_PATH]}: {s[c.SKIPPED_REASON]}"
                        for s in resume[c.RESUME_SKIPPED]
                    )
                    self._event(
                        "Warning",
                        "CheckpointSkipped",
                        f"attempt {attempt} resumed from step {resume[c.RESUME_STEP]} "
                        f"({resume[c.RESUME_PATH]}), skipping unreadable newer checkpoints: "
                        f"{skipped}",
                    )

    def _throughput(self, report: dict[str, Any]) -> None:
        fields = {
            key: report[key]
            for key in (c.PROGRESS_STEP_SECONDS, c.PROGRESS_TOKENS_PER_SECOND, c.PROGRESS_MFU)
            if key in report
        }
        if fields and fields != self.status.get("throughput"):
            self.patch["throughput"] = fields
        save = report.get(c.PROGRESS_SAVE_SECONDS)
        if save is not None and save != self.status.get("lastSaveSeconds"):
            self.patch["lastSaveSeconds"] = save

    def _preflight(self, attempt: int, report: dict[str, Any]) -> None:
        preflight = report.get(c.PROGRESS_PREFLIGHT)
        if not preflight:
            return
        value = {c.PROGRESS_ATTEMPT: attempt, **preflight}
        if value == self.status.get("lastPreflight"):
            return
        self.patch["lastPreflight"] = value
        if preflight[c.PREFLIGHT_PASSED]:
            self._event(
                "Normal",
                "PreflightPassed",
                f"attempt {attempt}: every trainer pod passed the preflight checks in "
                f"{preflight[c.PREFLIGHT_SECONDS]:.1f}s",
            )

    # eval worker ------------------------------------------------------------------------------

    def eval(self, report: dict[str, Any]) -> None:
        evaluation = report.get(c.PROGRESS_LAST_EVAL)
        if evaluation and evaluation != self.status.get("lastEval"):
            self.patch["lastEval"] = evaluation
            scores = ", ".join(
                f"{k} {v:.3f}" for k, v in sorted(evaluation[c.EVAL_HEADLINE].items())
            )
            self._event(
                "Normal",
                "Evaluated",
                f"step {evaluation[c.EVAL_STEP]} evaluated" + (f": {scores}" if scores else ""),
            )
        failure = report.get(c.PROGRESS_LAST_EVAL_FAILURE)
        if failure and failure != self.status.get("lastEvalFailure"):
            self.patch["lastEvalFailure"] = failure
            self._event(
                "Warning",
                "EvaluationFailed",
                f"gave up evaluating step {failure[c.EVAL_FAILURE_STEP]}: "
                f"{failure[c.EVAL_FAILURE_MESSAGE]}",
            )

    # outcomes ---------------------------------------------------------------------------------

    def accepted(self, source: str) -> None:
        self.rejected.pop(source, None)

    def reject(self, source: str, rejected: Rejected) -> None:
        if isinstance(rejected, _Stale):
            return
        old = self.rejected.get(source)
        if isinstance(old, Mapping) and (old.get("field"), old.get("reason")) == (
            rejected.field,
            rejected.reason,
        ):
            return  # announced already
        message = f"{source} progress report ignored: {rejected}"
        self.rejected[source] = {
            "field": rejected.field,
            "reason": rejected.reason,
            "message": message[:1024],
            "time": self.now,
        }
        self.events.append(Event("Warning", "ProgressRejected", message[:1024]))

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def finish(self) -> tuple[dict[str, Any], list[Event]]:
        if self.rejected:
            self.record[c.PROGRESS_REJECTED] = self.rejected
        else:
            self.record.pop(c.PROGRESS_REJECTED, None)
        record_patch = merge_patch(self.old_record, self.record)
        if record_patch:
            self.patch[c.STATUS_PROGRESS] = record_patch
        return self.patch, self.events


class _Stale(Rejected):
    """A report of an older attempt: ignored without an Event."""

    def __init__(self) -> None:
        super().__init__(c.PROGRESS_ATTEMPT, "older than status.attempt")


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``old`` into ``new`` (None removes a key)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before:
            patch[key] = value
    return patch


def apply_merge_patch(old: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``old`` with the JSON merge ``patch`` applied (RFC 7386: None removes a key, an object is
    merged into what is there, or into an empty one), as the API server does."""
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            before = out.get(key)
            out[key] = apply_merge_patch(before if isinstance(before, Mapping) else {}, value)
        else:
            out[key] = value
    return out


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _get(status: Mapping[str, Any], key: str, field: str) -> Any:
    value = status.get(key)
    return value.get(field) if isinstance(value, Mapping) else None
