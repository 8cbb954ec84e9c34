"""The retention choice and the progress mirror: the spec as trainer/rotation arguments, and the
pods' progress reports as status fields and Events."""

from __future__ import annotations

from typing import Any

import pytest

from olmo_operator import contract as c
from olmo_operator.progress import mirror_progress
from olmo_operator.retention import rotate_args, trainer_overrides
from olmo_operator.spec import parse_spec


def spec(checkpoint: dict[str, Any], **extra: Any) -> Any:
    raw = {
        "model": {"preset": "tiny"},
        "image": "img",
        "dataset": {"claimName": "d"},
        "checkpoint": {"claimName": "k", **checkpoint},
        **extra,
    }
    return parse_spec(raw, job_name="run")


@pytest.mark.parametrize(
    ("checkpoint", "extra", "overrides", "args"),
    [
        (
            {},
            {},
            ["save_interval=1000", "keep_last=3", "keep_every=null", "require_evaluated=false"],
            ["--keep-last", "3"],
        ),
        (
            {"interval": 50, "keepLast": 2, "keepEvery": 100},
            {},
            ["save_interval=50", "keep_last=2", "keep_every=100", "require_evaluated=false"],
            ["--keep-last", "2", "--keep-every", "100"],
        ),
        # requireEvaluated only means something when an eval worker exists
        (
            {"keepLast": 1, "requireEvaluated": True},
            {},
            ["save_interval=1000", "keep_last=1", "keep_every=null", "require_evaluated=false"],
            ["--keep-last", "1"],
        ),
        (
            {"keepLast": 1, "requireEvaluated": True},
            {"eval": {"enabled": True}},
            ["save_interval=1000", "keep_last=1", "keep_every=null", "require_evaluated=true"],
            ["--keep-last", "1", "--require-evaluated"],
        ),
    ],
)
def test_retention_choice(
    checkpoint: dict[str, Any], extra: dict[str, Any], overrides: list[str], args: list[str]
) -> None:
    s = spec(checkpoint, **extra)
    assert trainer_overrides(s) == [f"checkpoint.{o}" for o in overrides]
    assert rotate_args(s) == ["olmo-ckpt", "rotate", "/checkpoints/run", *args]


def test_overrides_parse_as_the_trainer_reads_them() -> None:
    """The trainer reads every --set value as YAML."""
    import yaml

    values = dict(o.split("=", 1) for o in trainer_overrides(spec({"keepEvery": 7})))
    assert yaml.safe_load(values["checkpoint.keep_every"]) == 7
    assert yaml.safe_load(values["checkpoint.require_evaluated"]) is False
    assert yaml.safe_load(trainer_overrides(spec({}))[2].split("=", 1)[1]) is None


# --------------------------------------------------------------------------------------------
# progress


def test_progress_is_mirrored_and_new_checkpoints_become_events() -> None:
    status = {
        "step": 90,
        c.STATUS_PROGRESS: {
            c.PROGRESS_ATTEMPT: 2,
            c.PROGRESS_STEP: 100,
            c.PROGRESS_TOKENS: 409600,
            c.PROGRESS_LATEST_CHECKPOINT: {
                c.CHECKPOINT_STEP: 100,
                c.CHECKPOINT_PATH: "/checkpoints/run/checkpoints/step000100",
                c.CHECKPOINT_TIME: "2026-01-01T00:01:00Z",
            },
            c.PROGRESS_UPDATED: "2026-01-01T00:01:01Z",
        },
    }
    patch, events = mirror_progress(status)
    assert patch["step"] == 100 and patch["tokens"] == 409600
    assert patch["latestCheckpoint"]["step"] == 100
    assert [e.reason for e in events] == ["CheckpointSaved"]
    assert "step000100" in events[0].message
    # Applied once, nothing repeats (a restarted operator posts no duplicate Events).
    again, events = mirror_progress({**status, **patch})
    assert again == {} and events == []


def test_rotation_reports_become_events_once() -> None:
    rotation = {
        c.ROTATION_DELETED: ["/c/run/checkpoints/step000050", "/c/run/checkpoints/step000150"],
        c.ROTATION_TIME: "2026-01-01T00:02:00Z",
    }
    status = {c.STATUS_PROGRESS: {c.PROGRESS_ROTATION: rotation}}
    patch, events = mirror_progress(status)
    assert patch["lastRotation"] == rotation
    assert [e.reason for e in events] == ["CheckpointsRotated"]
    assert "step000050, step000150" in events[0].message
    assert mirror_progress({**status, **patch}) == ({}, [])
    # A rotation that deleted nothing is recorded quietly.
    quiet = {c.STATUS_PROGRESS: {c.PROGRESS_ROTATION: {c.ROTATION_DELETED: [], "time": "t2"}}}
    patch, events = mirror_progress(quiet)
    assert patch["lastRotation"]["deleted"] == [] and events == []


def test_eval_results_are_mirrored() -> None:
    status = {
        c.STATUS_PROGRESS: {
            c.PROGRESS_LAST_EVAL: {
                c.EVAL_STEP: 200,
                c.EVAL_HEADLINE: {"piqa": 0.61, "hellaswag": 0.3, "bad": "n/a"},
                c.EVAL_TIME: "2026-01-01T00:03:00Z",
            }
        }
    }
    patch, events = mirror_progress(status)
    assert patch["lastEval"]["headline"] == {"piqa": 0.61, "hellaswag": 0.3}
    assert events[0].reason == "Evaluated" and "piqa 0.610" in events[0].message


def test_garbage_progress_is_ignored() -> None:
    assert mirror_progress({c.STATUS_PROGRESS: "nonsense"}) == ({}, [])
    assert mirror_progress({c.STATUS_PROGRESS: {"step": "12", "tokens": True}}) == ({}, [])
