"""The trainer's and the rotation's shell entrypoints, run for real (and as PID 1)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from olmo_operator.resources import PREEMPTION_AWARE_ENTRYPOINT, ROTATION_ENTRYPOINT
from tests.pid1 import as_pid1

# --------------------------------------------------------------------------------------------
# The trainer container's entrypoint


def _run_entrypoint(child: str, tmp_path: Path, signal_after: float | None) -> int:
    script = tmp_path / "child.py"
    script.write_text(child)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", PREEMPTION_AWARE_ENTRYPOINT, "olmo-trainer", sys.executable, str(script)]
    )
    if signal_after is not None:
        time.sleep(signal_after)
        proc.terminate()
    return proc.wait(timeout=20)


CHILD_SAVES_ON_SIGTERM = """
import signal, sys, time
def stop(*_):
    time.sleep(0.2)   # "saving a checkpoint"
    sys.exit(1)       # torchrun exits 1 whatever its workers' codes
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(30)
"""


def test_entrypoint_turns_a_sigterm_stop_into_exit_75(tmp_path: Path) -> None:
    assert _run_entrypoint(CHILD_SAVES_ON_SIGTERM, tmp_path, signal_after=0.5) == 75


def test_entrypoint_passes_exit_codes_through_without_sigterm(tmp_path: Path) -> None:
    assert _run_entrypoint("import sys; sys.exit(3)", tmp_path, signal_after=None) == 3
    assert _run_entrypoint("print('done')", tmp_path, signal_after=None) == 0


def test_entrypoint_keeps_success_when_training_finished_on_sigterm(tmp_path: Path) -> None:
    child = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\ntime.sleep(30)\n"
    assert _run_entrypoint(child, tmp_path, signal_after=0.5) == 0


def test_entrypoint_as_pid1_forwards_sigterm_and_exits_75(tmp_path: Path) -> None:
    """sh is the container's PID 1: without its trap a SIGTERM would do nothing at all."""
    script = tmp_path / "child.py"
    script.write_text(CHILD_SAVES_ON_SIGTERM)
    argv = [
        "/bin/sh",
        "-c",
        PREEMPTION_AWARE_ENTRYPOINT,
        "olmo-trainer",
        sys.executable,
        str(script),
    ]
    with as_pid1(argv, stdout=subprocess.PIPE, text=True) as pid1:
        assert pid1.process.stdout is not None
        assert pid1.process.stdout.readline() == "ready\n"
        sent = pid1.terminate()
        assert pid1.wait(timeout=20) == 75
        assert time.monotonic() - sent < 10


# --------------------------------------------------------------------------------------------
# The rotation container's entrypoint


def _rotation(tmp_path: Path, child: str) -> tuple[list[str], Path]:
    """The rotation container's command around ``python child``, its termination message file
    where the test can read it (the kubelet provides ``/dev/termination-log``)."""
    script = tmp_path / "child.py"
    script.write_text(child)
    log = tmp_path / "termination-log"
    entrypoint = ROTATION_ENTRYPOINT.replace("/dev/termination-log", str(log))
    assert entrypoint != ROTATION_ENTRYPOINT
    return ["/bin/sh", "-c", entrypoint, "olmo-rotate", sys.executable, str(script)], log


def test_rotation_entrypoint_keeps_the_summary_as_termination_message(tmp_path: Path) -> None:
    argv, log = _rotation(
        tmp_path, "import sys\nfor i in range(30): print('line', i)\nsys.exit(3)\n"
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout.splitlines() == [f"line {i}" for i in range(30)]
    assert log.read_text().splitlines() == [f"line {i}" for i in range(10, 30)]
    assert not list(tmp_path.glob("tmp*")), "its temporary file is removed"


CHILD_STOPS_ON_SIGTERM = """
import signal, sys, time
def stop(*_):
    print("stopped by SIGTERM", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("rotating", flush=True)
time.sleep(60)
"""


def test_rotation_entrypoint_forwards_sigterm(tmp_path: Path) -> None:
    argv, log = _rotation(tmp_path, CHILD_STOPS_ON_SIGTERM)
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        _wait_until(lambda: "rotating" in _read_all(tmp_path))
        proc.terminate()
        assert proc.wait(timeout=20) == 143
    finally:
        proc.kill()
        out, _ = proc.communicate()
    assert out.splitlines() == ["rotating", "stopped by SIGTERM"]
    assert log.read_text() == "rotating\nstopped by SIGTERM\n"


def test_rotation_entrypoint_as_pid1_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    # A child without a handler of its own: as a child (not PID 1) SIGTERM ends it.
    argv, log = _rotation(tmp_path, "import time\nprint('rotating', flush=True)\ntime.sleep(60)\n")
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    with as_pid1(argv, env=env, stdout=subprocess.PIPE, text=True) as pid1:
        _wait_until(lambda: "rotating" in _read_all(tmp_path))
        sent = pid1.terminate()
        assert pid1.wait(timeout=20) == 143
        assert time.monotonic() - sent < 10
    assert log.read_text() == "rotating\n"


def _read_all(folder: Path) -> str:
    """What the rotation's child wrote so far (into the entrypoint's file in ``$TMPDIR``)."""
    return "".join(p.read_text() for p in folder.glob("tmp*") if p.is_file())


def _wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
