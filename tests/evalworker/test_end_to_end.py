"""The real thing: the trainer writes DeepSpeed ZeRO-3 checkpoints, ``olmo-eval watch`` (a real
process, the real evaluator) evaluates each once, and require_evaluated rotation then frees them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from olmo.checkpoints import layout
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo_evalworker import records

from ..conftest import REPO_ROOT


@pytest.mark.slow
def test_trainer_checkpoints_are_evaluated_once_by_the_worker(tmp_path):
    from tests.eval.conftest import train_bpe
    from tests.train.conftest import run_trainer, small_config, trainer_env, write_dataset

    data = write_dataset(tmp_path / "data", num_docs=40)
    train_bpe().save(str(data / "tokenizer.json"))  # where data-prep puts it
    run = tmp_path / "run"
    config = small_config(
        tmp_path, data, max_steps=4, **{"checkpoint.save_interval": 2, "checkpoint.keep_last": 5}
    )
    run_trainer(config, run)
    assert [c.step for c in layout.list_checkpoints(run) if c.complete] == [2, 4]

    base = [
        sys.executable, "-m", "olmo_evalworker", "watch", str(run), "--tasks", "copa,boolq",
        "--limit", "2", "--batch-size", "4", "--quiet",
    ]  # fmt: skip
    watch = [*base, "--until-step", "4", "--poll-seconds", "0.2", "--port", "0"]
    watch += ["--host", "127.0.0.1"]
    result = subprocess.run(
        watch, cwd=REPO_ROOT, env=trainer_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr

    for step in (2, 4):
        results = json.loads(layout.eval_result_path(run, step).read_text())
        assert (results["kind"], results["step"], results["tokens"]) == ("zero3", step, step * 512)
        assert {t: r["items"] for t, r in results["tasks"].items()} == {"copa": 2, "boolq": 2}
        assert 0.0 <= results["tasks"]["copa"]["headline"] <= 1.0
        marker = layout.read_evaluated(layout.final_dir(run, step))
        assert marker["results"] == f"eval/step{step:06d}.json"
    assert [m["step"] for m in records.read_metrics(run)] == [2, 4]

    again = subprocess.run(
        [*base, "--once", "--no-http"],
        cwd=REPO_ROOT,
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert [m["step"] for m in records.read_metrics(run)] == [2, 4]  # nothing evaluated twice

    deleted = rotate(run, RetentionPolicy(keep_last=1, require_evaluated=True)).deleted
    assert [layout.parse_step(p.name) for p in deleted] == [2]

    compared = subprocess.run(
        [sys.executable, "-m", "olmo_evalworker", "compare",
         str(layout.eval_result_path(run, 2)), str(layout.eval_result_path(run, 4))],
        cwd=REPO_ROOT, env=trainer_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert compared.returncode == 0 and "boolq" in compared.stdout
