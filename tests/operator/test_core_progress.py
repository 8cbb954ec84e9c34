"""The pods' progress reports (the ``<job>-progress`` ConfigMap): validated, mirrored into the
status fields with Events, never trusted with anything else, and never able to block a
reconcile."""

from __future__ import annotations

import json
from typing import Any

import pytest

from olmo_operator import contract as c
from olmo_operator.lifecycle import ActionKind
from olmo_operator.progress import mirror_progress
from tests.operator.world import World, reasons

NOW = "2026-01-01T00:10:00Z"
CHECKPOINT = {
    c.CHECKPOINT_STEP: 100,
    c.CHECKPOINT_PATH: "/checkpoints/run/checkpoints/step000100",
    c.CHECKPOINT_TIME: "2026-01-01T00:01:00Z",
}


def config_map(uid: str = "u-1", **documents: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "run-progress",
            "ownerReferences": [{"kind": c.KIND, "name": "run", "uid": uid, "controller": True}],
        },
        "data": {k: v if isinstance(v, str) else json.dumps(v) for k, v in documents.items()},
    }


def mirror(status: dict[str, Any], **documents: Any):
    return mirror_progress(status, config_map(**documents), NOW, "u-1")


def trainer(**fields: Any) -> dict[str, Any]:
    return {c.PROGRESS_ATTEMPT: 2, c.PROGRESS_UPDATED: "2026-01-01T00:01:01Z", **fields}


def running_world() -> World:
    """Attempt 1 started: its pods exist and so does the progress ConfigMap."""
    w = World()
    w.step()
    w.start_pods("run-a1")
    w.step(1)
    assert w.status["attempt"] == 1 and ("ConfigMap", "run-progress") in w.objects
    return w


# --------------------------------------------------------------------------------------------
# Mirrored: step, tokens, checkpoints, rotations, resumes, evaluations


def test_progress_is_mirrored_and_new_checkpoints_become_events() -> None:
    status = {"attempt": 2, "step": 90}
    report = trainer(step=100, tokens=409600, latestCheckpoint=CHECKPOINT)
    patch, events = mirror(status, trainer=report)
    assert patch["step"] == 100 and patch["tokens"] == 409600
    assert patch["latestCheckpoint"] == CHECKPOINT
    assert patch[c.STATUS_PROGRESS] == {
        "attempt": 2,
        "step": 100,
        "updated": "2026-01-01T00:01:01Z",
        "activityAt": NOW,  # the step changed, by the operator's clock
    }
    assert [e.reason for e in events] == ["CheckpointSaved"]
    assert "step000100" in events[0].message
    # Applied once, nothing repeats (a restarted operator posts no duplicate Events).
    assert mirror({**status, **patch}, trainer=report) == ({}, [])


def test_rotation_reports_become_events_once() -> None:
    rotation = {
        c.ROTATION_DELETED: ["/c/run/checkpoints/step000050", "/c/run/checkpoints/step000150"],
        c.ROTATION_TIME: "2026-01-01T00:02:00Z",
    }
    status = {"attempt": 2}
    patch, events = mirror(status, trainer=trainer(rotation=rotation))
    assert patch["lastRotation"] == rotation
    assert [e.reason for e in events] == ["CheckpointsRotated"]
    assert "step000050, step000150" in events[0].message
    assert mirror({**status, **patch}, trainer=trainer(rotation=rotation)) == ({}, [])
    quiet = {c.ROTATION_DELETED: [], c.ROTATION_TIME: "2026-01-01T00:03:00Z"}
    patch, events = mirror(status, trainer=trainer(rotation=quiet))
    assert patch["lastRotation"]["deleted"] == [] and events == []


def test_a_resume_that_skipped_checkpoints_is_one_warning() -> None:
    resume = {
        c.RESUME_STEP: 40,
        c.RESUME_PATH: "/c/run/checkpoints/step000040",
        c.RESUME_SKIPPED: [{"path": "/c/run/checkpoints/step000050", "reason": "bad shard"}],
    }
    status = {"attempt": 2}
    patch, events = mirror(status, trainer=trainer(step=40, resume=resume))
    assert patch["lastResume"] == {"attempt": 2, **resume}
    assert [(e.type, e.reason) for e in events] == [("Warning", "CheckpointSkipped")]
    assert "step000050: bad shard" in events[0].message
    # Restart-safe: the stored status already says so.
    assert mirror({**status, **patch}, trainer=trainer(step=40, resume=resume))[1] == []
    # A clean resume is recorded quietly.
    clean = {**resume, c.RESUME_SKIPPED: []}
    patch, events = mirror(status, trainer=trainer(step=40, resume=clean))
    assert patch["lastResume"]["skipped"] == [] and events == []


UPLOAD = {
    c.UPLOAD_STEP: 100,
    c.UPLOAD_SECONDS: 12.5,
    c.UPLOAD_BYTES: 7_000_000_000,
    c.UPLOAD_FILES: 9,
    c.UPLOAD_TIME: "2026-01-01T00:02:00Z",
}


def test_uploads_to_object_storage_are_mirrored() -> None:
    """A run directory on a store: the trainer reports how long each save stopped training and,
    once the checkpoint is on the store, the upload (time, bytes) with the checkpoint's URI."""
    status = {"attempt": 2}
    saved = trainer(step=100, checkpointBlockedSeconds=1.25)
    patch, events = mirror(status, trainer=saved)
    assert patch["lastSaveBlockedSeconds"] == 1.25 and "latestCheckpoint" not in patch
    assert events == []
    on_store = {**CHECKPOINT, c.CHECKPOINT_PATH: "s3://b/runs/run/checkpoints/step000100"}
    report = trainer(
        step=101, checkpointBlockedSeconds=1.25, latestCheckpoint=on_store, upload=UPLOAD
    )
    patch, events = mirror({**status, "lastSaveBlockedSeconds": 1.25}, trainer=report)
    assert patch["lastUpload"] == UPLOAD and patch["latestCheckpoint"] == on_store
    assert "lastSaveBlockedSeconds" not in patch  # unchanged
    assert [e.reason for e in events] == ["CheckpointSaved"] and "s3://b/runs" in events[0].message


PREFLIGHT = {"passed": False, "seconds": 3.5, "time": "2026-01-01T00:00:30Z"}
FAILED = {"node": "gpu-7", "nodeRank": 1, "check": "storage", "message": "read-only file system"}


def test_activity_throughput_and_preflight_are_mirrored() -> None:
    status = {"attempt": 2, "step": 90, c.STATUS_PROGRESS: {"attempt": 2, "step": 90,
              "activityAt": "2026-01-01T00:00:00Z"}}  # fmt: skip
    report = trainer(
        step=100, state="saving", stateSince="2026-01-01T00:01:00Z", stepSeconds=0.5,
        tokensPerSecond=8192.0, mfu=0.41, saveSeconds=12.0,
        latestCheckpoint={**CHECKPOINT, "tokens": 409600},
        preflight={**PREFLIGHT, "passed": True, "failures": []},
    )  # fmt: skip
    patch, events = mirror(status, trainer=report)
    assert patch["throughput"] == {"stepSeconds": 0.5, "tokensPerSecond": 8192.0, "mfu": 0.41}
    assert patch["lastSaveSeconds"] == 12.0
    assert patch["latestCheckpoint"]["tokens"] == 409600
    assert patch["lastPreflight"] == {"attempt": 2, **PREFLIGHT, "passed": True, "failures": []}
    assert patch[c.STATUS_PROGRESS]["state"] == "saving"
    assert patch[c.STATUS_PROGRESS]["activityAt"] == NOW  # the step changed
    assert sorted(e.reason for e in events) == ["CheckpointSaved", "PreflightPassed"]
    # The same report again: no activity, nothing new.
    again = {**status, **patch, c.STATUS_PROGRESS: {**status[c.STATUS_PROGRESS],
             **patch[c.STATUS_PROGRESS]}}  # fmt: skip
    patch, events = mirror(again, trainer=report)
    assert patch == {} and events == []
    # A failed preflight is mirrored with its failures; the lifecycle acts on it.
    failed = trainer(preflight={**PREFLIGHT, "failures": [FAILED]})
    patch, _ = mirror(status, trainer=failed)
    assert patch["lastPreflight"]["failures"] == [FAILED]


def test_eval_results_and_given_up_checkpoints_are_mirrored() -> None:
    evaluation = {
        c.EVAL_STEP: 200,
        c.EVAL_HEADLINE: {"piqa": 0.61, "hellaswag": 0.3},
        c.EVAL_TIME: "2026-01-01T00:03:00Z",
    }
    failure = {"step": 300, "message": "RuntimeError: boom", "time": "2026-01-01T00:04:00Z"}
    document = {c.PROGRESS_LAST_EVAL: evaluation, c.PROGRESS_LAST_EVAL_FAILURE: failure}
    patch, events = mirror({}, eval=document)
    assert patch["lastEval"] == evaluation and patch["lastEvalFailure"] == failure
    assert [(e.type, e.reason) for e in events] == [
        ("Normal", "Evaluated"),
        ("Warning", "EvaluationFailed"),
    ]
    assert "piqa 0.610" in events[0].message and "boom" in events[1].message
    assert mirror(patch, eval=document) == ({}, [])


def test_progress_is_mirrored_during_any_phase() -> None:
    w = running_world()
    w.report("trainer", {"attempt": 1, "step": 42, "tokens": 1000})
    action = w.step(1)
    assert action.status["step"] == 42 and action.status["tokens"] == 1000
    assert w.status["step"] == 42 and w.status[c.STATUS_PROGRESS]["step"] == 42


# --------------------------------------------------------------------------------------------
# Not trusted


def test_a_report_cannot_change_restarts_or_phase() -> None:
    """Before: the pods merge-patched the OLMoJob's status, so any field was theirs to write.
    Now their document is parsed into the progress fields only; the rest is ignored."""
    w = running_world()
    before = {k: w.status[k] for k in ("phase", "restarts", "attempt") if k in w.status}
    w.report(
        "trainer",
        {
            "attempt": 1,
            "step": 7,
            "phase": "Succeeded",
            "restarts": {"failures": 0, "preemptions": 0},
            "status": {"phase": "Succeeded"},
            "attemptStartTime": "1970-01-01T00:00:00Z",
        },
    )
    action = w.step(1)
    assert set(action.status) <= {"step", c.STATUS_PROGRESS, "observedGeneration", "goodput"}
    assert {k: w.status[k] for k in before} == before and w.status["step"] == 7
    assert action.kind is ActionKind.WAIT


def test_a_config_map_of_another_owner_reports_nothing() -> None:
    """A leftover ``<job>-progress`` of a deleted job of the same name is not this job's."""
    stale = config_map(uid="old", trainer=trainer(step=5))
    assert mirror_progress({"attempt": 2}, stale, NOW, "u-1") == ({}, [])


MALFORMED = [
    ("not json", "data.trainer", "must be a JSON document"),
    ("[1, 2]", "data.trainer", "must be a JSON object"),
    ('{"attempt": 2, "step": NaN}', "data.trainer", "must be a JSON document"),
    ("x" * 70_000, "data.trainer", "must be at most 65536 characters"),
    ({"step": 5}, "attempt", "is required"),
    (trainer(step=True), "step", "must be an integer"),
    (trainer(step="12"), "step", "must be an integer"),
    (trainer(tokens=-1), "tokens", "must be an integer of at least 0"),
    (trainer(updated="yesterday"), "updated", "must be an RFC 3339 time"),
    (trainer(latestCheckpoint="step100"), "latestCheckpoint", "must be an object"),
    (
        trainer(latestCheckpoint={**CHECKPOINT, "time": "2026-13-40T00:00:00Z"}),
        "latestCheckpoint.time",
        "must be an RFC 3339 time",
    ),
    (
        trainer(latestCheckpoint={**CHECKPOINT, "path": "/" * 5000}),
        "latestCheckpoint.path",
        "must be 1 to 4096 characters",
    ),
    (
        trainer(rotation={"deleted": ["a"] * 1000, "time": "2026-01-01T00:00:00Z"}),
        "rotation.deleted",
        "must have at most 256 items",
    ),
    (
        trainer(resume={"step": 1, "path": "/c/step1", "skipped": [{"path": "/c/step2"}]}),
        "resume.skipped[0].reason",
        "is required",
    ),
    (
        trainer(upload={**UPLOAD, "seconds": -1}),
        "upload.seconds",
        "must be a number of seconds >= 0",
    ),
    (trainer(upload={**UPLOAD, "bytes": "9"}), "upload.bytes", "must be an integer"),
    (
        trainer(checkpointBlockedSeconds="1s"),
        "checkpointBlockedSeconds",
        "must be a number of seconds >= 0",
    ),
    (
        trainer(state="sleeping"),
        "state",
        "must be one of starting, preflight, training, saving, evaluating",
    ),
    (trainer(mfu=1.5), "mfu", "must be a number from 0 to 1"),
    (trainer(tokensPerSecond=-1), "tokensPerSecond", "must be a number >= 0"),
    (trainer(stepSeconds=float("nan")), "data.trainer", "must be a JSON document"),
    (
        trainer(preflight={**PREFLIGHT, "failures": []}),
        "preflight.failures",
        "must name what failed when not passed",
    ),
    (
        trainer(preflight={**PREFLIGHT, "failures": [{**FAILED, "check": "gpu"}]}),
        "preflight.failures[0].check",
        "must be one of device, collective, storage",
    ),
    (
        trainer(preflight={**PREFLIGHT, "passed": "no"}),
        "preflight.passed",
        "must be true or false",
    ),
]


@pytest.mark.parametrize(("document", "field", "reason"), MALFORMED)
def test_a_malformed_report_is_ignored_with_one_event(document, field, reason) -> None:
    """Before: a bool or string step was dropped silently, a bad time or an oversized list went
    into the status as written."""
    status = {"attempt": 2, "step": 90}
    patch, events = mirror(status, trainer=document)
    assert set(patch) == {c.STATUS_PROGRESS}  # nothing mirrored, only the rejection recorded
    rejected = patch[c.STATUS_PROGRESS]["rejected"]["trainer"]
    assert (rejected["field"], rejected["reason"]) == (field, reason)
    assert [(e.type, e.reason) for e in events] == [("Warning", "ProgressRejected")]
    assert field in events[0].message and reason in events[0].message
    # Not repeated on the next reconcile (nor by a restarted operator: it is in the status).
    assert mirror({**status, **patch}, trainer=document) == ({}, [])


def test_long_messages_are_cut_not_rejected() -> None:
    """Prose is bounded by cutting it (a long exception is no malformed report)."""
    failure = {"step": 3, "message": "E" * 5000, "time": NOW}
    patch, events = mirror({}, eval={c.PROGRESS_LAST_EVAL_FAILURE: failure})
    assert len(patch["lastEvalFailure"]["message"]) == 1024
    assert [e.reason for e in events] == ["EvaluationFailed"]


def test_malformed_eval_results_are_rejected() -> None:
    bad = {c.EVAL_STEP: 1, c.EVAL_HEADLINE: {"piqa": "n/a"}, c.EVAL_TIME: NOW}
    patch, events = mirror({}, eval={c.PROGRESS_LAST_EVAL: bad})
    assert "lastEval" not in patch
    assert patch[c.STATUS_PROGRESS]["rejected"]["eval"]["field"] == "lastEval.headline.piqa"
    assert [e.reason for e in events] == ["ProgressRejected"]


def test_a_rejection_is_cleared_by_the_next_valid_report_and_reconciles_go_on() -> None:
    w = running_world()
    w.report("trainer", {"attempt": 1, "step": "many"})
    w.report("eval", {"lastEval": {"step": 1, "headline": {}, "time": NOW}})
    first = w.step(1)
    assert reasons(first).count("ProgressRejected") == 1
    assert w.status["lastEval"]["step"] == 1  # the other writer's report is unaffected
    assert w.status[c.STATUS_PROGRESS]["rejected"]["trainer"]["field"] == "step"
    for _ in range(3):
        assert "ProgressRejected" not in reasons(w.step(1))
    w.report("trainer", {"attempt": 1, "step": 3})
    w.step(1)
    assert w.status["step"] == 3 and "rejected" not in w.status[c.STATUS_PROGRESS]
    # The failure policy still runs: a failed pod ends the attempt as ever.
    w.report("trainer", {"attempt": 1, "step": None})
    w.end_pod(w.pods_of("run-a1")[0], 1)
    assert w.step(1).kind is ActionKind.RESTART


@pytest.mark.parametrize("data", [None, "garbage", {"trainer": 5}, {"trainer": None}])
def test_garbage_in_the_config_map_never_raises(data) -> None:
    cm = config_map()
    cm["data"] = data
    patch, events = mirror_progress({"attempt": 1}, cm, NOW, "u-1")
    assert all(e.reason == "ProgressRejected" for e in events)
    assert set(patch) <= {c.STATUS_PROGRESS}


# --------------------------------------------------------------------------------------------
# Attempts and steps


def test_a_report_of_an_older_attempt_is_ignored_quietly() -> None:
    """The pods of an ended attempt may still be writing: their report must not move the
    status back (before: any attempt's report was mirrored)."""
    status = {"attempt": 3, "step": 10}
    assert mirror(status, trainer=trainer(step=500, latestCheckpoint=CHECKPOINT)) == ({}, [])


def test_a_report_of_a_future_attempt_is_rejected() -> None:
    patch, events = mirror({"attempt": 1}, trainer=trainer(step=5))
    assert patch[c.STATUS_PROGRESS]["rejected"]["trainer"]["field"] == "attempt"
    assert [e.reason for e in events] == ["ProgressRejected"]


def test_the_step_never_decreases_within_an_attempt() -> None:
    status = {"attempt": 2, "step": 100, c.STATUS_PROGRESS: {"attempt": 2, "step": 100}}
    patch, events = mirror(status, trainer=trainer(step=5, tokens=1))
    assert "step" not in patch and "tokens" not in patch
    rejected = patch[c.STATUS_PROGRESS]["rejected"]["trainer"]
    assert rejected["field"] == "step" and "decrease" in rejected["reason"]
    assert "5 after 100 in attempt 2" in events[0].message
    # The next attempt resumes from an older checkpoint: a lower step is fine there.
    status = {**status, "attempt": 3}
    patch, events = mirror(status, trainer={**trainer(step=50), "attempt": 3})
    assert patch["step"] == 50 and events == []
    assert patch[c.STATUS_PROGRESS]["attempt"] == 3 and patch[c.STATUS_PROGRESS]["step"] == 50
