"""What the watcher reports: the outcome of one checkpoint, of one pass, and the ``Sink``
interface that hears about each as it happens (Prometheus, W&B, the OLMoJob status).

``Watcher.process`` returns one of ``Evaluated``, ``Failed``, ``Vanished`` or ``Skipped``
(``Outcome``); ``PassReport`` sorts a pass's outcomes by kind. A checkpoint on an object store is
named by its ``olmo.storage.Location``. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from olmo.storage import Location

__all__ = [
    "Evaluated",
    "Failed",
    "Outcome",
    "PassReport",
    "Sink",
    "Skipped",
    "Vanished",
]


@dataclass(frozen=True)
class Evaluated:
    """A checkpoint whose evaluation was committed (``recovered``: finished from results that a
    crashed earlier worker had already written)."""

    step: int
    tokens: int | None
    checkpoint: Path | Location
    results: Mapping[str, Any]
    results_path: Path | Location
    seconds: float
    recovered: bool = False


@dataclass(frozen=True)
class Failed:
    """A failed attempt; ``record`` is what ``stepNNNNNN.failed.json`` now holds."""

    step: int
    checkpoint: Path | Location
    record: Mapping[str, Any]

    @property
    def final(self) -> bool:
        """No attempts left."""
        return bool(self.record.get("final"))


@dataclass(frozen=True)
class Skipped:
    """Nothing to do: the folder is not a checkpoint, not complete, or already evaluated."""

    step: int | None
    checkpoint: Path | Location
    reason: str


@dataclass(frozen=True)
class Vanished:
    """The checkpoint was deleted (checkpoint rotation) before its evaluation finished."""

    step: int
    checkpoint: Path | Location


Outcome = Evaluated | Failed | Vanished | Skipped


@dataclass
class PassReport:
    """What one pass did, by step."""

    evaluated: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    vanished: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    stopped: bool = False

    def add(self, step: int, outcome: Outcome) -> None:
        """File ``step`` under its outcome's kind."""
        match outcome:
            case Evaluated(recovered=True):
                self.recovered.append(step)
            case Evaluated():
                self.evaluated.append(step)
            case Failed():
                self.failed.append(step)
            case Vanished():
                self.vanished.append(step)
            case Skipped():
                self.skipped.append(step)

    @property
    def did_work(self) -> bool:
        return bool(self.evaluated or self.recovered or self.failed or self.vanished)


class Sink:
    """Told about what the watcher does (metrics, W&B). Every method is a no-op by default;
    an exception in a sink is logged and does not affect the checkpoint."""

    def pending(self, count: int) -> None:
        """A pass found ``count`` checkpoints to evaluate."""

    def started(self, step: int) -> None:
        """Evaluation of ``step`` begins."""

    def evaluated(self, event: Evaluated) -> None:
        """Results are written; the ``EVALUATED`` marker comes next."""

    def failed(self, event: Failed) -> None:
        """An attempt failed and its record is written."""

    def vanished(self, step: int) -> None:
        """The checkpoint was deleted before its evaluation finished."""

    def idle(self) -> None:
        """Nothing is being evaluated any more."""

    def close(self) -> None:
        """The worker is stopping."""
