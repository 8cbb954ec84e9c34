"""When to save a checkpoint and which old ones to remove.

A save happens every ``checkpoint.save_interval`` steps, at ``max_steps``, at ``stop_at``, and
after SIGTERM when the last save took less time than is left before SIGKILL. After each save
rank 0 applies the retention policy (``olmo.checkpoints.retention``), then every callback hears
of it (``on_save``). Saves and rotations happen only while this attempt owns the run directory
(``olmo.train.fencing``): a newer attempt's claim stops the trainer with FencedError.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.train.callbacks.base import Callback, Saved, StepEnd
from olmo.train.checkpointing import TrainerState, save_checkpoint
from olmo.train.config import TrainConfig
from olmo.train.distributed import DistInfo, any_rank, barrier
from olmo.train.fencing import RunDirFence
from olmo.train.preemption import Preemption

log = logging.getLogger("olmo.train")


class Checkpointer(Callback):
    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        engine,
        state: TrainerState,
        dist: DistInfo,
        preemption: Preemption,
        listeners: Callback,
        fence: RunDirFence | None = None,
    ):
        self.config, self.run_dir, self.engine, self.state = config, run_dir, engine, state
        self.dist, self.preemption = dist, preemption
        self.fence = fence
        """This attempt's claim on the run directory, checked before every save and rotation."""
        self.listeners = listeners
        """Told of every save (``on_save``): the trainer's callbacks."""
        c = config.checkpoint
        self.policy = None
        if c.rotate:
            self.policy = RetentionPolicy(
                keep_last=c.keep_last,
                keep_every=c.keep_every,
                require_evaluated=c.require_evaluated,
            )
        self.last_save_seconds: float | None = None

    def on_step_end(self, end: StepEnd) -> None:
        cfg, step = self.config, end.step
        if (
            step % cfg.checkpoint.save_interval == 0
            or step == cfg.max_steps
            or step == cfg.stop_at
            or (end.preempted and self._save_fits_before_kill())
        ):
            self.save()

    def save(self) -> Path:
        """Collective: write the checkpoint, rotate, tell the listeners."""
        t0 = time.monotonic()
        path = save_checkpoint(
            self.engine, self.run_dir, self.state, self.config, self.dist, self.fence
        )
        self.last_save_seconds = time.monotonic() - t0
        rotated_out = []
        if self.policy is not None and self.fence is not None:
            self.fence.check("rotate checkpoints")  # collective: all ranks stop together
        if self.dist.is_main:
            log.info("saved %s in %.1fs", path, self.last_save_seconds)
            if self.policy is not None:
                rotated_out = rotate(self.run_dir, self.policy).deleted
                for deleted in rotated_out:
                    log.info("rotated out %s", deleted)
        self.listeners.on_save(Saved(self.state.step, self.state.tokens, path, rotated_out))
        barrier()
        return path

    def _save_fits_before_kill(self) -> bool:
        """Rank 0 decides (from the grace left and the last save's duration); all follow."""
        decision = False
        c = self.config.checkpoint
        if self.dist.is_main and c.save_on_sigterm:
            left = self.preemption.seconds_left(c.sigterm_grace_seconds)
            needed = self.last_save_seconds or 0.0
            decision = needed < left
            if not decision:
                log.warning("not saving on SIGTERM: %.1fs left, last save took %.1fs", left, needed)
        return any_rank(decision, self.dist.device)
