"""``olmo-eval run | watch | compare``: output, files written, exit codes, SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from olmo.checkpoints import layout
from olmo_evalworker import records
from olmo_evalworker.cli import main

from ..conftest import REPO_ROOT
from ..pid1 import as_pid1, wait_for_file
from .conftest import make_checkpoint
from .fakes import fake_results

FAKE = "tests.evalworker.fakes:evaluate"


@pytest.fixture
def calls(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_EVAL_CALLS", str(path))
    return path


def called(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# --------------------------------------------------------------------------------------------
# run


def test_run_prints_the_table_and_writes_json(run_dir, tmp_path, capsys, calls):
    checkpoint = make_checkpoint(run_dir, 10)
    out = tmp_path / "results.json"
    code = main(
        ["run", "--checkpoint", str(checkpoint), "--tasks", "copa,piqa", "--evaluator", FAKE,
         "--output", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    stdout = capsys.readouterr().out
    assert "copa" in stdout and "piqa" in stdout and "average" in stdout
    assert "10.00" in stdout  # copa's accuracy 0.10 at step 10, in percent
    results = json.loads(out.read_text())
    assert results["tasks"]["copa"]["headline"] == 0.10 and results["step"] == 10
    assert called(calls) == ["step000010"]


def test_run_output_dash_prints_json(run_dir, capsys):
    checkpoint = make_checkpoint(run_dir, 20)
    assert main(["run", "--checkpoint", str(checkpoint), "--evaluator", FAKE, "--output", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["tasks"]["piqa"]["headline"] == 0.21
    assert "average" in captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "{tmp}/absent"], "does not exist"),
        (["--tasks", "copa,bogus"], "unknown task(s) bogus"),
        (["--limit", "0"], "--limit must be >= 1"),
        (["--batch-size", "-1"], "--batch-size must be >= 1"),
        (["--perplexity", "wiki"], "expects SOURCE=PATH"),
        (["--perplexity", "wiki={tmp}/absent.jsonl"], "does not exist"),
        (["--tasks", "none"], "nothing to evaluate"),
        (["--tokenizer", "{tmp}/absent.json"], "--tokenizer"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--device", "tpu"], "--device"),
        (["--evaluator", "nowhere"], "expects MODULE:FUNCTION"),
        (["--evaluator", "json:nothing_here"], "--evaluator json:nothing_here"),
    ],
)
def test_run_rejects_bad_input_with_exit_code_2(run_dir, tmp_path, capsys, args, message):
    checkpoint = make_checkpoint(run_dir, 10)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["run", "--evaluator", FAKE]
    if "--checkpoint" not in args:
        base += ["--checkpoint", str(checkpoint)]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("olmo-eval: error:") and message in err


def test_usage_errors_from_argparse_are_exit_code_2(capsys):
    assert main([]) == 2
    assert main(["run"]) == 2  # --checkpoint is required
    assert main(["watch", "a", "--once", "--until-step", "3"]) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_run_with_the_real_evaluator_on_an_incomplete_checkpoint_is_exit_code_2(run_dir, capsys):
    folder = layout.final_dir(run_dir, 10)
    folder.mkdir(parents=True)
    (folder / "model_states.pt").write_bytes(b"half")
    assert main(["run", "--checkpoint", str(folder), "--tasks", "copa", "--limit", "1"]) == 2
    assert "has no COMPLETE marker" in capsys.readouterr().err


def test_run_with_the_real_evaluator_on_an_hf_directory(tmp_path, capsys):
    from olmo.model.hf import save_hf_directory
    from tests.eval.conftest import tiny_olmo, train_bpe

    model = tiny_olmo()
    hf = save_hf_directory(model.state_dict(), model.config, tmp_path / "hf")
    train_bpe().save(str(hf / "tokenizer.json"))
    out = tmp_path / "out.json"
    args = ["run", "--checkpoint", str(hf), "--tasks", "copa,boolq", "--limit", "2"]
    assert main([*args, "--batch-size", "4", "--output", str(out), "--quiet"]) == 0
    results = json.loads(out.read_text())
    assert results["kind"] == "hf" and set(results["tasks"]) == {"copa", "boolq"}
    assert results["tasks"]["copa"]["items"] == 2 and results["continuations_scored"] == 8
    assert "copa" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# compare


def test_compare_prints_deltas(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"checkpoint": "A", "step": 10, **fake_results(10)}))
    b.write_text(json.dumps({"checkpoint": "B", "step": 20, **fake_results(20)}))
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "A (step 10)" in out and "B (step 20)" in out
    assert "+10.00" in out  # copa 10% → 20%


def test_compare_rejects_bad_files(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(fake_results(1)))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"loss": 1}')
    for other, message in [
        ("absent.json", "does not exist"),
        ("bad.json", "is not valid JSON"),
        ("other.json", "is not an evaluation result"),
    ]:
        assert main(["compare", str(good), str(tmp_path / other)]) == 2
        assert message in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# watch


def test_watch_once_evaluates_new_checkpoints_and_serves_on_a_free_port(run_dir, capsys, calls):
    for step in (10, 20):
        make_checkpoint(run_dir, step)
    args = ["watch", str(run_dir), "--evaluator", FAKE, "--once", "--port", "0", "--quiet"]
    assert main(args) == 0
    assert called(calls) == ["step000010", "step000020"]
    out = capsys.readouterr().out
    assert "serving /healthz and /metrics on http://0.0.0.0:" in out
    assert int(out.rsplit(":", 1)[1]) > 0
    assert all(layout.is_evaluated(layout.final_dir(run_dir, s)) for s in (10, 20))

    assert main(args) == 0  # run again: nothing is evaluated twice
    assert called(calls) == ["step000010", "step000020"]


def test_watch_once_exits_1_when_a_checkpoint_failed(run_dir, monkeypatch, calls):
    for step in (10, 20):
        make_checkpoint(run_dir, step)
    monkeypatch.setenv("FAKE_EVAL_FAIL", "10")
    assert main(["watch", str(run_dir), "--evaluator", FAKE, "--once", "--no-http"]) == 1
    record = json.loads(records.failure_path(run_dir, 10).read_text())
    assert record["errors"][0]["type"] == "CheckpointError"
    assert layout.is_evaluated(layout.final_dir(run_dir, 20))


def test_watch_stops_with_exit_1_on_an_environment_error(run_dir, monkeypatch, capsys, calls):
    make_checkpoint(run_dir, 10)
    monkeypatch.setenv("FAKE_EVAL_NO_DATA", "1")
    assert main(["watch", str(run_dir), "--evaluator", FAKE, "--no-http"]) == 1
    assert "the watch loop stopped: EvalDataMissing" in capsys.readouterr().err
    assert not records.failure_path(run_dir, 10).exists()  # not held against the checkpoint
    assert called(calls) == ["step000010"]


def test_watch_until_step(run_dir, calls):
    for step in (10, 20, 30):
        make_checkpoint(run_dir, step)
    args = ["watch", str(run_dir), "--evaluator", FAKE, "--until-step", "20", "--no-http"]
    assert main([*args, "--poll-seconds", "0.05"]) == 0
    # Oldest first, and the pass that reached step 20 finishes before the check.
    assert called(calls) == ["step000010", "step000020", "step000030"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/absent/run"], "does not exist"),
        (["{tmp}/file.txt"], "is not a directory"),
        (["{run}", "--poll-seconds", "0"], "--poll-seconds must be > 0"),
        (["{run}", "--max-attempts", "0"], "--max-attempts must be >= 1"),
        (["{run}", "--until-step", "-1"], "--until-step must be >= 0"),
        (["{run}", "--port", "70000"], "--port must be in 0..65535"),
        (["{run}", "--tasks", "nope"], "unknown task"),
    ],
)
def test_watch_rejects_bad_input_with_exit_code_2(run_dir, tmp_path, capsys, args, message):
    (tmp_path / "file.txt").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(run_dir)) for a in args]
    once = [] if "--until-step" in args else ["--once"]
    assert main(["watch", *args, "--evaluator", FAKE, *once]) == 2
    assert message in capsys.readouterr().err


def _start_watcher(run_dir: Path, *extra: str, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "olmo_evalworker", "watch", str(run_dir), "--evaluator", FAKE]
    proc = subprocess.Popen(
        [*command, "--port", "0", "--host", "127.0.0.1", "--poll-seconds", "0.1", *extra],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert "serving /healthz" in line, line + proc.stderr.read()
    return proc, int(line.rsplit(":", 1)[1])


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigterm_mid_evaluation_exits_0_and_writes_nothing(run_dir, tmp_path):
    checkpoint = make_checkpoint(run_dir, 10)
    calls = tmp_path / "calls.txt"
    env = {"FAKE_EVAL_CALLS": str(calls), "FAKE_EVAL_SLEEP": "60"}
    proc, port = _start_watcher(run_dir, "--grace-seconds", "0.2", env=env)
    try:
        _wait_for(calls.exists)  # the evaluation has begun
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert (r.status, r.read()) == (200, b"ok\n")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert "olmo_eval_current_step 10.0" in r.read().decode()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 15  # did not sit out the 60 s evaluation
    finally:
        proc.kill()
        proc.communicate()
    assert not layout.is_evaluated(checkpoint)
    assert not layout.eval_result_path(run_dir, 10).exists()
    assert not records.failure_path(run_dir, 10).exists()


def test_sigterm_while_idle_exits_0(run_dir, tmp_path):
    make_checkpoint(run_dir, 10)
    proc, _ = _start_watcher(run_dir, env={})
    try:
        _wait_for(lambda: layout.is_evaluated(layout.final_dir(run_dir, 10)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_watch_creates_a_missing_run_dir_in_an_existing_folder(tmp_path, capsys):
    """Started beside the trainer, the worker may come first: it creates the run dir."""
    run = tmp_path / "run"
    assert main(["watch", str(run), "--once", "--no-http", "--evaluator", FAKE]) == 0
    assert run.is_dir()


# --------------------------------------------------------------------------------------------
# SIGTERM from the first moment, and as a container's PID 1


@contextlib.contextmanager
def sigterm_fails_the_test() -> Iterator[Any]:
    """Without the CLI's own handler, a SIGTERM the test sends itself fails the test (rather
    than ending pytest)."""

    def handler(signum: int, frame: Any) -> None:
        raise AssertionError("SIGTERM reached the test's handler, not the CLI's")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize(("command", "code"), [("watch", 0), ("run", 143)])
def test_sigterm_while_starting_up_stops_at_once(run_dir, monkeypatch, command, code):
    """Before ``watch`` has its loop (imports, task data, W&B) SIGTERM must work too."""
    from olmo_evalworker import cli

    def check_device_then_sigterm(device: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the pod is deleted while the worker starts
        time.sleep(30)
        raise AssertionError("not stopped")

    monkeypatch.setattr(cli, "_check_device", check_device_then_sigterm)
    make_checkpoint(run_dir, 10)
    args = (
        ["watch", str(run_dir), "--no-http"]
        if command == "watch"
        else ["run", "--checkpoint", str(layout.final_dir(run_dir, 10))]
    )
    with sigterm_fails_the_test() as handler:
        started = time.monotonic()
        assert main([*args, "--evaluator", FAKE]) == code
        assert time.monotonic() - started < 10
        assert signal.getsignal(signal.SIGTERM) is handler  # put back
    assert not layout.is_evaluated(layout.final_dir(run_dir, 10))


def test_watch_as_pid1_stops_mid_evaluation_on_sigterm_and_writes_nothing(run_dir, tmp_path):
    checkpoint = make_checkpoint(run_dir, 10)
    calls = tmp_path / "calls.txt"
    argv = [
        sys.executable, "-m", "olmo_evalworker", "watch", str(run_dir), "--evaluator", FAKE,
        "--no-http", "--poll-seconds", "0.1", "--grace-seconds", "0.2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "FAKE_EVAL_CALLS": str(calls)}
    env["FAKE_EVAL_SLEEP"] = "60"
    with as_pid1(argv, cwd=REPO_ROOT, env=env) as pid1:
        wait_for_file(calls, pid1)  # the evaluation has begun
        sent = pid1.terminate()
        assert pid1.wait(timeout=20) == 0
        assert time.monotonic() - sent < 10  # did not sit out the 60 s evaluation
    assert not layout.is_evaluated(checkpoint)
    assert not layout.eval_result_path(run_dir, 10).exists()
    assert not records.failure_path(run_dir, 10).exists()
