"""Validation of the pods' progress reports (the data keys of the ``<job>-progress`` ConfigMap).

A pod is not trusted with the OLMoJob's status: what it writes is parsed here into exactly the
fields the operator mirrors (``contract.py``, "The progress contract"), each checked for type
(integers that are not booleans, strings, RFC 3339 times, finite numbers) and size, so that a
buggy or hostile pod can neither put garbage into the status (which would make the operator's
own status patch fail) nor grow it without bound. Anything else in a document is ignored. A
problem raises :class:`Rejected`, naming the field, and the whole document is ignored: half a
report could pair a checkpoint with the wrong step.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c

MAX_DOCUMENT = 64 * 1024
"""Characters of one document (the ConfigMap as a whole may hold 1 MiB)."""
MAX_PATH = 4096
MAX_TEXT = 1024
"""Characters of a message or a reason."""
MAX_DELETED = 256
"""Paths in one rotation report."""
MAX_SKIPPED = 32
"""Checkpoints skipped by one resume."""
MAX_TASKS = 64
MAX_TASK_NAME = 253
MAX_PREFLIGHT_FAILURES = 64
MAX_NODE_NAME = 253
MAX_INT = 2**63 - 1
"""Kubernetes integers are int64."""

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


class Rejected(ValueError):
    """A report the operator will not mirror: ``field`` (a dotted path) and a ``reason`` that
    does not depend on the value (so that the same problem is recognised on the next
    reconcile), plus the offending value for the message."""

    def __init__(self, field: str, reason: str, got: Any = None):
        self.field, self.reason, self.got = field, reason, got
        detail = "" if got is None else f" (got {_short(got)})"
        super().__init__(f"{field}: {reason}{detail}")


def parse_document(source: str, text: Any) -> dict[str, Any]:
    """A data key's text as a JSON object, or :class:`Rejected` naming ``data.<source>``."""
    where = f"data.{source}"
    if not isinstance(text, str):
        raise Rejected(where, "must be a string", type(text).__name__)
    if len(text) > MAX_DOCUMENT:
        raise Rejected(where, f"must be at most {MAX_DOCUMENT} characters", len(text))
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except ValueError as e:
        raise Rejected(where, "must be a JSON document", str(e)) from None
    if not isinstance(doc, Mapping):
        raise Rejected(where, "must be a JSON object", type(doc).__name__)
    return dict(doc)


def trainer_report(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's validated fields (``attempt`` required; the others when present)."""
    out: dict[str, Any] = {c.PROGRESS_ATTEMPT: _int(doc, c.PROGRESS_ATTEMPT, "", minimum=1)}
    for key in (c.PROGRESS_STEP, c.PROGRESS_TOKENS):
        if key in doc:
            out[key] = _int(doc, key, "")
    _optional_time(doc, c.PROGRESS_UPDATED, "", out)
    if c.PROGRESS_LATEST_CHECKPOINT in doc:
        ckpt = _object(doc, c.PROGRESS_LATEST_CHECKPOINT, "")
        where = f"{c.PROGRESS_LATEST_CHECKPOINT}."
        out[c.PROGRESS_LATEST_CHECKPOINT] = {
            c.CHECKPOINT_STEP: _int(ckpt, c.CHECKPOINT_STEP, where),
            c.CHECKPOINT_PATH: _str(ckpt, c.CHECKPOINT_PATH, where, MAX_PATH),
            c.CHECKPOINT_TIME: _time(ckpt, c.CHECKPOINT_TIME, where),
        }
        if c.CHECKPOINT_TOKENS in ckpt:
            out[c.PROGRESS_LATEST_CHECKPOINT][c.CHECKPOINT_TOKENS] = _int(
                ckpt, c.CHECKPOINT_TOKENS, where
            )
    if c.PROGRESS_ROTATION in doc:
        rotation = _object(doc, c.PROGRESS_ROTATION, "")
        where = f"{c.PROGRESS_ROTATION}."
        deleted = _list(rotation, c.ROTATION_DELETED, where, MAX_DELETED)
        out[c.PROGRESS_ROTATION] = {
            c.ROTATION_DELETED: [
                _text(p, f"{where}{c.ROTATION_DELETED}[{i}]", MAX_PATH)
                for i, p in enumerate(deleted)
            ],
            c.ROTATION_TIME: _time(rotation, c.ROTATION_TIME, where),
        }
    if c.PROGRESS_RESUME in doc:
        out[c.PROGRESS_RESUME] = _resume(_object(doc, c.PROGRESS_RESUME, ""))
    if c.PROGRESS_UPLOAD in doc:
        upload = _object(doc, c.PROGRESS_UPLOAD, "")
        where = f"{c.PROGRESS_UPLOAD}."
        out[c.PROGRESS_UPLOAD] = {
            c.UPLOAD_STEP: _int(upload, c.UPLOAD_STEP, where),
            c.UPLOAD_SECONDS: _seconds(upload, c.UPLOAD_SECONDS, where),
            c.UPLOAD_BYTES: _int(upload, c.UPLOAD_BYTES, where),
            c.UPLOAD_FILES: _int(upload, c.UPLOAD_FILES, where),
            c.UPLOAD_TIME: _time(upload, c.UPLOAD_TIME, where),
        }
    for key in (c.PROGRESS_BLOCKED, c.PROGRESS_STEP_SECONDS, c.PROGRESS_SAVE_SECONDS):
        if key in doc:
            out[key] = _seconds(doc, key, "")
    if c.PROGRESS_TOKENS_PER_SECOND in doc:
        rate = doc[c.PROGRESS_TOKENS_PER_SECOND]
        if not _number(rate) or rate < 0:
            raise Rejected(c.PROGRESS_TOKENS_PER_SECOND, "must be a number >= 0", rate)
        out[c.PROGRESS_TOKENS_PER_SECOND] = float(rate)
    if c.PROGRESS_MFU in doc:
        mfu = doc[c.PROGRESS_MFU]
        if not _number(mfu) or not 0 <= mfu <= 1:
            raise Rejected(c.PROGRESS_MFU, "must be a number from 0 to 1", mfu)
        out[c.PROGRESS_MFU] = float(mfu)
    if c.PROGRESS_STATE in doc:
        state = doc[c.PROGRESS_STATE]
        if state not in c.TRAINER_STATES:
            raise Rejected(c.PROGRESS_STATE, f"must be one of {', '.join(c.TRAINER_STATES)}", state)
        out[c.PROGRESS_STATE] = state
        _optional_time(doc, c.PROGRESS_STATE_SINCE, "", out)
    if c.PROGRESS_PREFLIGHT in doc:
        out[c.PROGRESS_PREFLIGHT] = _preflight(_object(doc, c.PROGRESS_PREFLIGHT, ""))
    return out


def eval_report(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The eval worker's validated fields (each optional)."""
    out: dict[str, Any] = {}
    _optional_time(doc, c.PROGRESS_UPDATED, "", out)
    if c.PROGRESS_LAST_EVAL in doc:
        evaluation = _object(doc, c.PROGRESS_LAST_EVAL, "")
        where = f"{c.PROGRESS_LAST_EVAL}."
        out[c.PROGRESS_LAST_EVAL] = {
            c.EVAL_STEP: _int(evaluation, c.EVAL_STEP, where),
            c.EVAL_HEADLINE: _headline(evaluation, where),
            c.EVAL_TIME: _time(evaluation, c.EVAL_TIME, where),
        }
    if c.PROGRESS_LAST_EVAL_FAILURE in doc:
        failure = _object(doc, c.PROGRESS_LAST_EVAL_FAILURE, "")
        where = f"{c.PROGRESS_LAST_EVAL_FAILURE}."
        out[c.PROGRESS_LAST_EVAL_FAILURE] = {
            c.EVAL_FAILURE_STEP: _int(failure, c.EVAL_FAILURE_STEP, where),
            c.EVAL_FAILURE_MESSAGE: _str(
                failure, c.EVAL_FAILURE_MESSAGE, where, MAX_TEXT, truncate=True
            ),
            c.EVAL_FAILURE_TIME: _time(failure, c.EVAL_FAILURE_TIME, where),
        }
    return out


# --------------------------------------------------------------------------------------------
# The checks


def _resume(resume: Mapping[str, Any]) -> dict[str, Any]:
    where = f"{c.PROGRESS_RESUME}."
    skipped = []
    for i, item in enumerate(_list(resume, c.RESUME_SKIPPED, where, MAX_SKIPPED, required=False)):
        at = f"{where}{c.RESUME_SKIPPED}[{i}]."
        if not isinstance(item, Mapping):
            raise Rejected(at[:-1], "must be an object", type(item).__name__)
        skipped.append(
            {
                c.SKIPPED_PATH: _str(item, c.SKIPPED_PATH, at, MAX_PATH),
                c.SKIPPED_REASON: _str(item, c.SKIPPED_REASON, at, MAX_TEXT, truncate=True),
            }
        )
    return {
        c.RESUME_STEP: _int(resume, c.RESUME_STEP, where),
        c.RESUME_PATH: _str(resume, c.RESUME_PATH, where, MAX_PATH),
        c.RESUME_SKIPPED: skipped,
    }


def _preflight(preflight: Mapping[str, Any]) -> dict[str, Any]:
    where = f"{c.PROGRESS_PREFLIGHT}."
    passed = preflight.get(c.PREFLIGHT_PASSED)
    if not isinstance(passed, bool):
        raise Rejected(f"{where}{c.PREFLIGHT_PASSED}", "must be true or false", passed)
    failures = []
    listed = _list(preflight, c.PREFLIGHT_FAILURES, where, MAX_PREFLIGHT_FAILURES, required=False)
    for i, item in enumerate(listed):
        at = f"{where}{c.PREFLIGHT_FAILURES}[{i}]."
        if not isinstance(item, Mapping):
            raise Rejected(at[:-1], "must be an object", type(item).__name__)
        node = item.get(c.PREFLIGHT_NODE, "")
        if not isinstance(node, str) or len(node) > MAX_NODE_NAME:
            raise Rejected(
                f"{at}{c.PREFLIGHT_NODE}", f"must be a node name (≤ {MAX_NODE_NAME})", node
            )
        check = item.get(c.PREFLIGHT_CHECK)
        if check not in c.PREFLIGHT_CHECKS:
            raise Rejected(
                f"{at}{c.PREFLIGHT_CHECK}", f"must be one of {', '.join(c.PREFLIGHT_CHECKS)}", check
            )
        failures.append(
            {
                c.PREFLIGHT_NODE: node,
                c.PREFLIGHT_NODE_RANK: _int(item, c.PREFLIGHT_NODE_RANK, at),
                c.PREFLIGHT_CHECK: check,
                c.PREFLIGHT_MESSAGE: _str(item, c.PREFLIGHT_MESSAGE, at, MAX_TEXT, truncate=True),
            }
        )
    if not passed and not failures:
        raise Rejected(f"{where}{c.PREFLIGHT_FAILURES}", "must name what failed when not passed")
    return {
        c.PREFLIGHT_PASSED: passed,
        c.PREFLIGHT_SECONDS: _seconds(preflight, c.PREFLIGHT_SECONDS, where),
        c.PREFLIGHT_TIME: _time(preflight, c.PREFLIGHT_TIME, where),
        c.PREFLIGHT_FAILURES: failures,
    }


def _headline(evaluation: Mapping[str, Any], where: str) -> dict[str, float | int]:
    field = f"{where}{c.EVAL_HEADLINE}"
    headline = evaluation.get(c.EVAL_HEADLINE, {})
    if not isinstance(headline, Mapping):
        raise Rejected(field, "must be an object", type(headline).__name__)
    if len(headline) > MAX_TASKS:
        raise Rejected(field, f"must have at most {MAX_TASKS} tasks", len(headline))
    out = {}
    for task, value in headline.items():
        if not task or len(task) > MAX_TASK_NAME:
            raise Rejected(field, f"task names must be 1 to {MAX_TASK_NAME} characters", task)
        if not _number(value):
            raise Rejected(f"{field}.{task}", "must be a finite number", value)
        out[task] = value
    return out


def _object(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise Rejected(f"{where}{key}", "must be an object", type(value).__name__)
    return value


def _int(doc: Mapping[str, Any], key: str, where: str, *, minimum: int = 0) -> int:
    value = doc.get(key)
    if value is None:
        raise Rejected(f"{where}{key}", "is required")
    if not isinstance(value, int) or isinstance(value, bool):
        raise Rejected(f"{where}{key}", "must be an integer", value)
    if not minimum <= value <= MAX_INT:
        raise Rejected(f"{where}{key}", f"must be an integer of at least {minimum}", value)
    return value


def _str(
    doc: Mapping[str, Any], key: str, where: str, limit: int, *, truncate: bool = False
) -> str:
    if doc.get(key) is None:
        raise Rejected(f"{where}{key}", "is required")
    return _text(doc[key], f"{where}{key}", limit, truncate=truncate)


def _text(value: Any, field: str, limit: int, *, truncate: bool = False) -> str:
    """A non-empty string of at most ``limit`` characters. Prose (``truncate``: an error
    message, a reason) is cut to the limit — a long exception is no malformed report; a path
    is refused, since a cut path names another folder."""
    if not isinstance(value, str):
        raise Rejected(field, "must be a string", value)
    if truncate and len(value) > limit:
        return value[: limit - 3] + "..."
    if not value or len(value) > limit:
        raise Rejected(field, f"must be 1 to {limit} characters", len(value))
    return value


def _list(
    doc: Mapping[str, Any], key: str, where: str, limit: int, *, required: bool = True
) -> list[Any]:
    value = doc.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise Rejected(f"{where}{key}", "must be a list", value)
    if len(value) > limit:
        raise Rejected(f"{where}{key}", f"must have at most {limit} items", len(value))
    return value


def _time(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    field = f"{where}{key}"
    if value is None:
        raise Rejected(field, "is required")
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise Rejected(field, "must be an RFC 3339 time", value)
    try:
        dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(field, "must be an RFC 3339 time", value) from None
    return value


def _optional_time(doc: Mapping[str, Any], key: str, where: str, out: dict[str, Any]) -> None:
    if key in doc:
        out[key] = _time(doc, key, where)


def _seconds(doc: Mapping[str, Any], key: str, where: str) -> float:
    """A finite duration of at least 0 s."""
    value = doc.get(key)
    if value is None:
        raise Rejected(f"{where}{key}", "is required")
    if not _number(value) or value < 0:
        raise Rejected(f"{where}{key}", "must be a number of seconds >= 0", value)
    return float(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
