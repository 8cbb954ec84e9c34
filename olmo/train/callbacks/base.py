"""The hooks the training loop calls, and what it tells them.

A callback overrides the hooks it needs; every hook is called on every rank, in the order the
callbacks were given (``Callbacks``), so a callback may run collectives in it as long as it
decides the same on every rank.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from olmo.train.upload import Uploaded


@dataclass(frozen=True)
class StepEnd:
    """One optimizer step, just taken."""

    step: int
    """Optimizer steps taken so far (1-based, as in metrics.jsonl)."""
    metrics: dict[str, Any]
    """What the step measured: loss, lr, grad_norm, tokens, batch (``olmo.train.step``)."""
    seconds: float
    """Wall time of the step."""
    preempted: bool
    """Some rank got SIGTERM: this is the last step of this process."""


@dataclass(frozen=True)
class Saved:
    """A checkpoint, just written and complete."""

    step: int
    tokens: int
    path: Path
    rotated_out: list[Path] = field(default_factory=list)
    """Checkpoints the retention policy deleted after this save (rank 0 rotates; [] elsewhere)."""
    blocked_seconds: float = 0.0
    """How long training was blocked by this save (with a waiting for the previous upload)."""
    uploading: bool = False
    """The run directory is on an object store: ``path`` is the local mirror's copy, whose
    upload has started; ``on_upload`` follows once it is on the store."""


class Callback:
    """Does nothing at every hook."""

    def on_step_end(self, end: StepEnd) -> None:
        """After every optimizer step."""

    def on_save(self, saved: Saved) -> None:
        """After a checkpoint was saved (and old ones rotated out)."""

    def on_upload(self, uploaded: Uploaded) -> None:
        """After a checkpoint's background upload to the object store finished (and rotation
        on the store ran). Called on global rank 0 only, never with collectives."""

    def on_finish(self) -> None:
        """When training ends for any reason, an error included: release what you hold."""


class Callbacks(Callback):
    """Several callbacks as one: each hook calls theirs in order."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)

    def append(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def on_step_end(self, end: StepEnd) -> None:
        for callback in self.callbacks:
            callback.on_step_end(end)

    def on_save(self, saved: Saved) -> None:
        for callback in self.callbacks:
            callback.on_save(saved)

    def on_upload(self, uploaded: Uploaded) -> None:
        for callback in self.callbacks:
            callback.on_upload(uploaded)

    def on_finish(self) -> None:
        for callback in self.callbacks:
            callback.on_finish()
