"""``olmo-ckpt list`` and ``olmo-ckpt rotate``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olmo.checkpoints import cli
from olmo.checkpoints.cli import human_size, main
from olmo.checkpoints.layout import (
    final_dir,
    finalize,
    list_checkpoints,
    list_temp_dirs,
    mark_evaluated,
    prepare_temp_dir,
    temp_dir,
)
from tests.pid1 import as_pid1


def save(run_dir: Path, step: int, nbytes: int = 1000) -> Path:
    temp = prepare_temp_dir(run_dir, step)
    (temp / "state.bin").write_bytes(b"s" * nbytes)
    return finalize(run_dir, temp, step=step, tokens=step * 2048)


@pytest.fixture
def run(tmp_path) -> Path:
    save(tmp_path, 100, nbytes=3 * 1024 * 1024)
    save(tmp_path, 200)
    save(tmp_path, 300)
    mark_evaluated(final_dir(tmp_path, 300), {"ok": True})
    old = prepare_temp_dir(tmp_path, 400)
    t = time.time() - 7200
    os.utime(old, (t, t))
    return tmp_path


def test_human_size():
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(12_900_000) == "12.3 MiB"
    assert human_size(5 * 1024**5 * 2048) == "10240.0 PiB"


def test_list_table(run, capsys):
    assert main(["list", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["step", "tokens", "complete", "evaluated", "size", "path"]
    assert lines[1].split()[:4] == ["100", "204800", "yes", "no"]
    assert "3.0 MiB" in lines[1] and lines[1].endswith(str(final_dir(run, 100)))
    assert lines[3].split()[:4] == ["300", "614400", "yes", "yes"]
    assert lines[4].split()[:4] == ["400", "-", "temp", "-"]
    assert lines[4].endswith(str(temp_dir(run, 400)))
    assert len(lines) == 5


def test_list_json(run, capsys):
    assert main(["list", str(run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["step"], r["complete"], r["evaluated"], r["temp"]) for r in rows] == [
        (100, True, False, False),
        (200, True, False, False),
        (300, True, True, False),
        (400, False, False, True),
    ]
    assert rows[0]["tokens"] == 204800 and rows[0]["size_bytes"] > 3 * 1024 * 1024
    assert rows[0]["path"] == str(final_dir(run, 100)) and rows[0]["name"] == "step000100"


def test_list_empty_run(tmp_path, capsys):
    assert main(["list", str(tmp_path)]) == 0
    assert "no checkpoints" in capsys.readouterr().out
    assert main(["list", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_rotate_dry_run_then_for_real(run, capsys):
    assert main(["rotate", str(run), "--keep-last", "1", "--keep-every", "200", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would delete  {final_dir(run, 100)}" in out
    assert f"would remove  {temp_dir(run, 400)}" in out
    assert f"keep          {final_dir(run, 200)}  (step is a multiple of 200)" in out
    assert f"keep          {final_dir(run, 300)}  (newest complete)" in out
    assert "dry run: would delete 1 checkpoint folder and 1 temporary folder, kept 2" in out
    assert final_dir(run, 100).exists() and temp_dir(run, 400).exists()

    assert main(["rotate", str(run), "--keep-last", "1", "--keep-every", "200"]) == 0
    out = capsys.readouterr().out
    assert f"delete  {final_dir(run, 100)}" in out and "would" not in out
    assert "deleted 1 checkpoint folder and 1 temporary folder, kept 2" in out
    assert not final_dir(run, 100).exists() and not temp_dir(run, 400).exists()
    assert final_dir(run, 200).exists() and final_dir(run, 300).exists()


def test_rotate_require_evaluated(run, capsys):
    assert main(["rotate", str(run), "--keep-last", "1", "--require-evaluated"]) == 0
    assert "not evaluated yet" in capsys.readouterr().out
    assert final_dir(run, 100).exists() and final_dir(run, 200).exists()


@pytest.mark.parametrize("command", ["list", "rotate"])
def test_missing_run_dir_exits_2(tmp_path, capsys, command):
    extra = ["--keep-last", "2"] if command == "rotate" else []
    assert main([command, str(tmp_path / "nope"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("olmo-ckpt: run directory") and "does not exist" in err


def test_rotate_bad_policy_exits_2(run, capsys):
    assert main(["rotate", str(run), "--keep-last", "0"]) == 2
    assert "keep_last must be an integer >= 1" in capsys.readouterr().err
    assert final_dir(run, 100).exists()


def test_bad_usage_exits_2(run, capsys):
    with pytest.raises(SystemExit) as e:
        main(["rotate", str(run)])  # --keep-last is required
    assert e.value.code == 2
    assert "--keep-last" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# SIGTERM: a container's PID 1 gets no default action for it, so olmo-ckpt handles it


def test_sigterm_stops_a_command_with_exit_143(run, capsys, monkeypatch):
    def rotate_slowly(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # "docker stop" mid-rotation
        time.sleep(30)
        raise AssertionError("not stopped")

    def not_the_cli(signum, frame):
        raise AssertionError("SIGTERM reached the test's handler, not the CLI's")

    monkeypatch.setattr(cli, "rotate", rotate_slowly)
    previous = signal.signal(signal.SIGTERM, not_the_cli)  # a regression fails, not kills, pytest
    try:
        started = time.monotonic()
        assert main(["rotate", str(run), "--keep-last", "1"]) == 143
        assert time.monotonic() - started < 10
        assert signal.getsignal(signal.SIGTERM) is not_the_cli  # put back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "olmo-ckpt: stopped by SIGTERM" in capsys.readouterr().err


SLOW_ROTATION = """
import sys, time
from olmo.checkpoints import cli, retention

def remove_slowly(path):
    print("removing", path, flush=True)
    time.sleep(60)

retention.remove_tree = remove_slowly
sys.exit(cli.main(sys.argv[1:]))
"""


def test_rotate_as_pid1_stops_at_once_on_sigterm_and_a_later_rotation_finishes(run, tmp_path):
    script = tmp_path / "slow_rotation.py"
    script.write_text(SLOW_ROTATION)
    argv = [sys.executable, str(script), "rotate", str(run), "--keep-last", "1"]
    with as_pid1(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as pid1:
        assert pid1.process.stdout is not None and pid1.process.stderr is not None
        assert pid1.process.stdout.readline().startswith("removing ")
        sent = pid1.terminate()
        assert pid1.wait(timeout=20) == 143
        assert time.monotonic() - sent < 10
        assert "olmo-ckpt: stopped by SIGTERM" in pid1.process.stderr.read()
    # Stopped half-way: the checkpoint being deleted left the listing (renamed first); the
    # newest ones are intact, and the next rotation removes the leftover.
    steps = [info.step for info in list_checkpoints(run) if info.complete]
    assert steps[-1] == 300 and 100 not in steps
    assert main(["rotate", str(run), "--keep-last", "1", "--temp-grace-seconds", "0"]) == 0
    assert [info.step for info in list_checkpoints(run)] == [300]
    assert list_temp_dirs(run) == []
