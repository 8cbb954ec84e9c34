"""The run-directory fence (``olmo.checkpoints.fence``) as collectives: every rank of the gang
reaches the same decision.

Under ZeRO-3 every rank writes its own shards into the checkpoint, so it is not enough that
rank 0 stops: rank 0 reads the marker and the decision is all-reduced (``any_rank``), so that
all ranks raise ``FencedError`` at the same point, before any of them writes. Each method is a
collective: every rank calls it. Without ``OLMOJOB_ATTEMPT`` (a run not started by the
operator) there is nothing to fence and every method is free (no collective, no file read).

A run directory on an object store is fenced by the object ``RUN/ATTEMPT`` (see
``olmo.checkpoints.fence`` for what a claim on a store does and does not guarantee); the
background upload checks it with ``check_here`` (rank 0 only, no collective) before every upload
and rotation.
"""

from __future__ import annotations

import logging
from pathlib import Path

from olmo.checkpoints import fence
from olmo.checkpoints.fence import Claim, FencedError
from olmo.storage import Location
from olmo.train.distributed import DistInfo, any_rank

log = logging.getLogger("olmo.train")


class RunDirFence:
    def __init__(self, run_dir: Path | Location, dist: DistInfo, mine: Claim | None):
        self.run_dir = run_dir if isinstance(run_dir, Location) else Path(run_dir)
        self.dist, self.mine = dist, mine

    @classmethod
    def from_env(cls, run_dir: Path | Location, dist: DistInfo) -> RunDirFence:
        return cls(run_dir, dist, fence.claim_from_env())

    def claim(self) -> None:
        """At start: take the run directory (which rank 0 has created) for this attempt, or
        raise FencedError on every rank when a newer attempt owns it."""
        self._agree(fence.claim, "start")
        if self.mine is not None and self.dist.is_main:
            log.info("run directory %s claimed by %s", self.run_dir, self.mine.describe())

    def check(self, before: str) -> None:
        """Before a write (``before`` says which, for the error): raise FencedError on every
        rank when this attempt no longer owns the run directory."""
        self._agree(fence.check, before)

    def check_here(self, before: str) -> None:
        """Not a collective: raise FencedError in this process (the uploading one) when this
        attempt no longer owns the run directory."""
        if self.mine is None:
            return
        try:
            fence.check(self.run_dir, self.mine)
        except FencedError as e:
            raise FencedError(f"refusing to {before}: {e}") from e

    def _agree(self, action, what: str) -> None:
        if self.mine is None:
            return
        reason = None
        if self.dist.is_main:
            try:
                action(self.run_dir, self.mine)
            except FencedError as e:
                reason = str(e)
        if any_rank(reason is not None, self.dist.device):
            raise FencedError(
                f"refusing to {what}: "
                + (reason or "rank 0 found a newer owner of the run directory (see its log)")
            )
