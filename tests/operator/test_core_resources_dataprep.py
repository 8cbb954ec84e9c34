"""The data-prep Indexed Job."""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.resources import dataprep_job
from olmo_operator.spec import parse_job
from tests.operator.olmojobs import container_of, olmojob


def test_dataprep_indexed_job() -> None:
    job = dataprep_job(
        parse_job(
            olmojob(
                dataset={
                    "claimName": "data",
                    "path": "dolma",
                    "prepare": {"pipelineConfigMap": {"name": "pipe"}, "workers": 4},
                }
            )
        )
    )
    assert job["metadata"]["name"] == "run-dataprep"
    assert job["metadata"]["labels"][c.LABEL_COMPONENT] == "dataprep"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 4
    container = container_of(job)
    assert container["image"] == "olmo-trainer:dev"  # defaults to spec.image
    assert container["command"] == ["olmo-dataprep"]
    assert container["args"] == [
        "run",
        "/config/pipeline.yaml",
        "--num-workers",
        "4",
        "--output",
        "/data/dolma",
    ]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["pipeline"]["configMap"] == {
        "name": "pipe",
        "items": [{"key": "pipeline.yaml", "path": "pipeline.yaml"}],
    }
    assert "readOnly" not in volumes["data"]["persistentVolumeClaim"]
