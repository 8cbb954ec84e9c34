"""Run a command as PID 1 of a new PID namespace, the way a container runtime starts a pod's
``command``, and stop it the way the runtime does (SIGTERM from outside the namespace).

The kernel gives PID 1 no default action for a signal it has no handler for: a program that does
not handle SIGTERM keeps running after ``docker stop`` or a pod deletion until it is SIGKILLed at
the end of the grace period. Outside a namespace the same program would just die, so only this
shows whether an entrypoint really stops on SIGTERM. Needs root (``unshare --pid``), as the tests
have here and in CI.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil


class Pid1:
    """A command running as PID 1 (``process``: the ``unshare`` around it, in this namespace)."""

    def __init__(self, process: subprocess.Popen[str], pid: int):
        self.process = process
        self.pid = pid
        """The command's pid as seen from outside its namespace."""

    def terminate(self) -> float:
        """SIGTERM to the command, as the runtime sends it; returns when it was sent."""
        psutil.Process(self.pid).send_signal(signal.SIGTERM)
        return time.monotonic()

    def wait(self, timeout: float) -> int:
        """The command's exit status (128 + N when signal N ended it)."""
        code = self.process.wait(timeout=timeout)
        return 128 - code if code < 0 else code

    def alive(self) -> bool:
        return self.process.poll() is None


@contextlib.contextmanager
def as_pid1(argv: Sequence[str], **popen: Any) -> Iterator[Pid1]:
    """Start ``argv`` as PID 1 of a new PID (and mount, for ``/proc``) namespace. On the way out
    whatever still runs is SIGKILLed (the namespace goes with its PID 1)."""
    process = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv], **popen
    )
    try:
        deadline = time.monotonic() + 20
        children: list[psutil.Process] = []
        while not children:
            assert process.poll() is None, f"unshare exited with {process.returncode}"
            assert time.monotonic() < deadline, "the command did not start"
            children = psutil.Process(process.pid).children()
            time.sleep(0.01)
        yield Pid1(process, children[0].pid)
    finally:
        if process.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(process.pid).children():
                    child.kill()
            process.kill()
        process.wait(timeout=20)


def wait_for_file(path: Path, pid1: Pid1, timeout: float = 60.0) -> None:
    """Wait until ``path`` exists (the command got to the point a test wants to stop it at)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert pid1.alive(), f"the command exited with {pid1.process.returncode} first"
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.02)
