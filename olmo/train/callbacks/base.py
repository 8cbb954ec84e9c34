"""The hooks the training loop calls, and what it tells them.

A callback overrides the hooks it needs; every hook is called on every rank, in the order the
callbacks were given (``Callbacks``), so a callback may run collectives in it as long as it
decides the same on every rank.

Two hooks carry news from one callback to the others rather than from the loop: a callback in a
``Callbacks`` aggregate tells its peers what the trainer is doing now (``announce`` →
``on_activity``: ``saving`` and ``evaluating`` while they block training, then ``training``
again, the states of the progress report), and the throughput it measured (``publish`` →
``on_throughput``). Outside an aggregate both go nowhere.
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


TRAINING, SAVING, EVALUATING = "training", "saving", "evaluating"
"""What the trainer is doing, as ``on_activity`` hears it (and the progress report's ``state``)."""


@dataclass(frozen=True)
class Throughput:
    """The training speed over the recent steps (saves and evaluations excluded)."""

    step_seconds: float
    """Mean wall seconds of one optimizer step."""
    tokens_per_second: float
    """Tokens trained per second over those steps, all ranks together."""
    mfu: float | None = None
    """Model FLOPs utilisation, when the peak FLOPs of the device are known (None on CPU)."""


class Callback:
    """Does nothing at every hook."""

    peers: Callback | None = None
    """The aggregate this callback was added to (set by ``Callbacks``): who hears its news."""

    def announce(self, activity: str) -> None:
        """Tell the other callbacks what the trainer is doing now (``on_activity``)."""
        if self.peers is not None:
            self.peers.on_activity(activity)

    def publish(self, throughput: Throughput) -> None:
        """Tell the other callbacks the throughput just measured (``on_throughput``)."""
        if self.peers is not None:
            self.peers.on_throughput(throughput)

    def on_activity(self, activity: str) -> None:
        """The trainer started ``saving`` or ``evaluating``, or went back to ``training``."""

    def on_throughput(self, throughput: Throughput) -> None:
        """A callback measured the training speed (after a step)."""

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
        self.callbacks: list[Callback] = []
        for callback in callbacks:
            self.append(callback)

    def append(self, callback: Callback) -> None:
        callback.peers = self
        self.callbacks.append(callback)

    def on_activity(self, activity: str) -> None:
        for callback in self.callbacks:
            callback.on_activity(activity)

    def on_throughput(self, throughput: Throughput) -> None:
        for callback in self.callbacks:
            callback.on_throughput(throughput)

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
