"""The retention choice: the spec as trainer/rotation arguments. (The pods' progress reports as
status fields and Events: test_core_progress.py.)"""

from __future__ import annotations

from typing import Any

import pytest

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
