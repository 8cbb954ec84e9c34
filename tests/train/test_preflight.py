"""The preflight (olmo/train/preflight.py): each check on its own, the verdict of one process, and
the collective timeout of OLMO_COLLECTIVE_TIMEOUT_SECONDS reaching the process group (with the
real error text of a monitored barrier that a rank missed). Two ranks, one per pod, where one
node's storage is broken (rank 0 reports it with that node, both exit 77, the operator excludes
the node) run in the cluster-path test (tests/e2e/test_cluster_path_resilience.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from olmo.train import exit_codes
from olmo.train.preflight import (
    MAX_FAILURES,
    MAX_MESSAGE,
    PREFLIGHT_DIR,
    Failure,
    Identity,
    PreflightResult,
    bounded,
    check_device,
    check_storage,
    compare,
    merge_failures,
    missing_ranks,
    preflight_timeout,
    remove_empty_folder,
    run_preflight,
)

from .conftest import _free_port, small_config, trainer_env

REPO = Path(__file__).resolve().parents[2]


def test_device_check_passes_on_the_cpu():
    assert check_device(torch.device("cpu")) is None


def test_a_device_that_cannot_compute_is_a_failure():
    message = check_device(torch.device("meta"))
    assert message.startswith("matmul on meta failed: ")


def test_wrong_or_non_finite_values_are_named():
    expected = torch.arange(6.0)
    assert compare(expected.clone(), expected, "x") is None
    wrong = expected.clone()
    wrong[2] += 0.5
    assert compare(wrong, expected, "matmul") == (
        "matmul: 1 of 6 values differ from the reference (largest error 0.5)"
    )
    wrong[3] = float("nan")
    assert compare(wrong, expected, "matmul") == "matmul: 1 of 6 values are not finite"


def test_storage_check_on_a_local_folder_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    assert check_storage(run, "node-a-rank0") is None
    assert check_storage(run, "node-a-rank1") is None
    assert list((run / PREFLIGHT_DIR).iterdir()) == []  # the folder stays for the other ranks
    remove_empty_folder(run)
    assert run.is_dir() and not (run / PREFLIGHT_DIR).exists()
    remove_empty_folder(run)  # gone already: nothing to do


def test_storage_check_on_an_object_store():
    import fsspec

    assert check_storage("memory://bucket/runs/pf", "node-a-rank0") is None
    assert not fsspec.filesystem("memory").find("/bucket/runs/pf")


def test_storage_check_names_a_location_that_cannot_be_written(tmp_path):
    """A folder under a regular file: ENOTDIR, even for root."""
    (tmp_path / "file").write_text("not a folder")
    message = check_storage(tmp_path / "file" / "run", "node-b-rank1")
    assert message.startswith(f"write {tmp_path / 'file' / 'run' / PREFLIGHT_DIR}/node-b-rank1")
    assert "NotADirectoryError" in message


def test_a_check_that_hangs_or_raises_is_a_failure():
    started = time.monotonic()
    assert bounded(lambda: time.sleep(5), 0.2, "storage") == "storage check did not finish in 0.2s"
    assert time.monotonic() - started < 2
    assert bounded(lambda: 1 / 0, 1, "device") == (
        "device check raised ZeroDivisionError: division by zero"
    )
    assert bounded(lambda: None, 1, "device") is None


def test_missing_ranks_from_the_barrier_error():
    assert missing_ranks(RuntimeError("[Rank 0]: Ranks 2, 5 failed to pass monitoredBarrier")) == [
        2,
        5,
    ]
    assert missing_ranks(RuntimeError("Rank 1 failed to pass monitoredBarrier in 2000 ms")) == [1]
    assert missing_ranks(RuntimeError("Connection closed by peer")) == []


def test_ranks_of_a_node_failing_alike_are_one_failure():
    a0, a1, b2 = Identity(0, "node-a", 0), Identity(1, "node-a", 0), Identity(2, "node-b", 1)
    failures = merge_failures(
        [(a0, "storage", "denied"), (a1, "storage", "denied"), (b2, "device", "nan")]
    )
    assert failures == [
        Failure("node-a", 0, "storage", "ranks 0, 1: denied"),
        Failure("node-b", 1, "device", "rank 2: nan"),
    ]
    unknown = merge_failures([(Identity(-1, "", 0), "collective", "gather broke")])
    assert unknown == [Failure("", 0, "collective", "gather broke")]


def test_the_report_is_bounded():
    failures = [Failure(f"n{i}", i, "device", "x" * 5000) for i in range(100)]
    report = PreflightResult(False, 1.23456, "2026-01-01T00:00:00Z", failures).as_report()
    assert report["passed"] is False and report["seconds"] == 1.235
    assert len(report["failures"]) == MAX_FAILURES
    assert {len(f["message"]) for f in report["failures"]} == {MAX_MESSAGE}
    assert report["failures"][0] == {
        "node": "n0",
        "nodeRank": 0,
        "check": "device",
        "message": "x" * (MAX_MESSAGE - 1) + "…",
    }


def test_the_time_limit_from_the_flag_or_the_environment(monkeypatch):
    monkeypatch.delenv("OLMO_PREFLIGHT_TIMEOUT_SECONDS", raising=False)
    assert preflight_timeout() == 0
    monkeypatch.setenv("OLMO_PREFLIGHT_TIMEOUT_SECONDS", "120")
    assert preflight_timeout() == 120
    assert preflight_timeout("30") == 30  # the flag wins
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(ValueError, match="expected a number of seconds"):
            preflight_timeout(bad)


def test_one_process_passes_and_fails_with_its_node_named(tmp_path, dist, monkeypatch):
    monkeypatch.setenv("OLMO_NODE_NAME", "node-a")
    result = run_preflight(dist, tmp_path / "run", timeout=10)
    assert result.passed and result.failures == [] and result.seconds > 0
    assert list((tmp_path / "run").iterdir()) == []  # .preflight/ is gone
    (tmp_path / "file").write_text("")
    result = run_preflight(dist, tmp_path / "file" / "run", timeout=10)
    assert not result.passed
    (failure,) = result.failures
    assert (failure.node, failure.node_rank, failure.check) == ("node-a", 0, "storage")
    assert failure.message.startswith("rank 0: write ") and "NotADirectoryError" in failure.message


def _rank_env(rank: int, port: int, **extra: str) -> dict[str, str]:
    return trainer_env() | {
        "RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1",
        "GROUP_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
        "OLMO_NODE_NAME": f"node-{'ab'[rank]}", **extra,
    }  # fmt: skip


def _launch(commands: list[list[str]], envs: list[dict], tmp_path: Path, timeout: float):
    """Run the processes together; (exit codes, outputs). All are killed after ``timeout``."""
    logs = [tmp_path / f"rank{rank}.log" for rank in range(len(commands))]
    procs = [
        subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)
        for cmd, env, log in zip(commands, envs, logs, strict=True)
    ]
    deadline = time.monotonic() + timeout
    try:
        codes = [p.wait(timeout=max(deadline - time.monotonic(), 0.1)) for p in procs]
    except subprocess.TimeoutExpired:
        codes = [None] * len(procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return codes, [log.read_text() for log in logs]


COLLECTIVE = """
import json, os, sys, time
import torch
from olmo.train.distributed import cpu_group, init_distributed
from olmo.train.preflight import missing_ranks

dist = init_distributed()
group = cpu_group(30)
done = os.environ["DONE_FILE"]
if dist.rank == 1:
    # never joins, and stays (its exit would break rank 0's connections) until rank 0 is done
    deadline = time.monotonic() + 45
    while not os.path.exists(done) and time.monotonic() < deadline:
        time.sleep(0.1)
    os._exit(0)
out = {}
try:
    torch.distributed.monitored_barrier(group, timeout=__import__("datetime").timedelta(seconds=1),
                                        wait_all_ranks=True)
except RuntimeError as e:
    out["late"] = missing_ranks(e)
started = time.monotonic()
try:
    torch.distributed.all_reduce(torch.ones(4))
except RuntimeError as e:
    out["error"] = str(e)[:200]
out["seconds"] = time.monotonic() - started
print("RESULT " + json.dumps(out), flush=True)
open(done, "w").close()
os._exit(0)  # no teardown of a process group in error (gloo may abort in its destructors)
"""


def test_the_collective_timeout_reaches_the_process_group(tmp_path):
    port = _free_port()
    env = {"OLMO_COLLECTIVE_TIMEOUT_SECONDS": "3", "DONE_FILE": str(tmp_path / "done")}
    codes, outputs = _launch(
        [[sys.executable, "-c", COLLECTIVE]] * 2,
        [_rank_env(rank, port, **env) for rank in (0, 1)],
        tmp_path,
        timeout=60,
    )
    lines = [line for line in outputs[0].splitlines() if line.startswith("RESULT ")]
    assert codes == [0, 0] and lines, outputs
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert result["late"] == [1]  # the monitored barrier named the rank that never came
    assert "error" in result and 2.5 < result["seconds"] < 9  # about the 3 s, not 30 minutes


def test_a_bad_collective_timeout_is_refused():
    from olmo.train.distributed import collective_timeout

    assert collective_timeout({}) is None
    assert collective_timeout({"OLMO_COLLECTIVE_TIMEOUT_SECONDS": "90"}).total_seconds() == 90
    for bad in ("0", "-3", "later"):
        with pytest.raises(ValueError, match="OLMO_COLLECTIVE_TIMEOUT_SECONDS"):
            collective_timeout({"OLMO_COLLECTIVE_TIMEOUT_SECONDS": bad})


def test_bad_timeouts_are_config_errors(tmp_path, dataset, monkeypatch, capsys):
    from olmo.train.cli import main

    config = small_config(tmp_path, dataset)
    args = ["--config", str(config), "--run-dir", str(tmp_path / "run")]
    assert main([*args, "--preflight-timeout", "soon"]) == exit_codes.CONFIG_ERROR
    assert "preflight timeout 'soon'" in capsys.readouterr().err
    monkeypatch.setenv("OLMO_COLLECTIVE_TIMEOUT_SECONDS", "-5")
    assert main(args) == exit_codes.CONFIG_ERROR
    assert "OLMO_COLLECTIVE_TIMEOUT_SECONDS='-5'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
