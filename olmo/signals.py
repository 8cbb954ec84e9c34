"""SIGTERM for command-line programs that may be a container's PID 1 (standard library only).

The kernel applies no default action to a signal that PID 1 does not handle: a Python program
without a SIGTERM handler ignores ``docker stop`` and pod deletion, and is SIGKILLed when the
grace period ends. ``olmo-ckpt``, ``olmo-dataprep`` and ``olmo-eval`` run inside
:func:`sigterm_raises`, so that SIGTERM unwinds them like an exception and they exit with
:data:`EXIT_TERMINATED` (143, what a shell reports for a SIGTERM death).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["EXIT_TERMINATED", "Terminated", "sigterm_raises"]

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived. Not an ``Exception``, so that nothing on the way swallows it; ``finally``
    blocks and context managers still run."""


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_IGN)  # once: a second one must not interrupt the cleanup
    raise Terminated(signal.Signals(signum).name)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread while the block runs (elsewhere,
    where Python cannot install handlers, it does nothing); the previous handler comes back
    after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
