"""The final rotation Job."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.resources import rotation_job
from olmo_operator.spec import parse_job
from tests.operator.olmojobs import container_of, olmojob


def test_rotation_job_runs_olmo_ckpt_rotate_with_the_trainer_image() -> None:
    job = rotation_job(
        parse_job(
            olmojob(
                checkpoint={
                    "claimName": "ckpt",
                    "keepLast": 2,
                    "keepEvery": 1000,
                    "requireEvaluated": True,
                },
                eval={"enabled": True},
            )
        )
    )
    assert job["metadata"]["name"] == "run-rotate"
    assert job["metadata"]["labels"][c.LABEL_COMPONENT] == "rotation"
    container = container_of(job)
    assert container["image"] == "olmo-trainer:dev"
    assert container["args"] == [
        "olmo-ckpt",
        "rotate",
        "/checkpoints/run",
        "--keep-last",
        "2",
        "--keep-every",
        "1000",
        "--require-evaluated",
    ]
