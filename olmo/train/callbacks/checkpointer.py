"""When to save a checkpoint and which old ones to remove.

A save happens every ``checkpoint.save_interval`` steps, at ``max_steps``, at ``stop_at``, and
after SIGTERM when the last save took less time than is left before SIGKILL. After each save
rank 0 applies the retention policy (``olmo.checkpoints.retention``), then every callback hears
of it (``on_save``). Saves and rotations happen only while this attempt owns the run directory
(``olmo.train.fencing``): a newer attempt's claim stops the trainer with FencedError. The
listeners hear ``saving`` when a save starts and ``training`` when it no longer blocks training
(``on_activity``).

With a run directory on an object store (``olmo.train.upload``) the save is written to the local
mirror and uploaded in the background: the next save first waits for the previous upload (that
wait counts as time the step was blocked by saving), rotation runs on the store after each upload,
and ``on_upload`` tells rank 0's callbacks of each finished upload. Every step all ranks agree on
whether an upload failed (it then ends the run on every rank). At ``max_steps`` and ``stop_at``
the last upload is awaited; after SIGTERM it is awaited for as long as the grace period allows,
else left unfinished (the previous complete checkpoint on the store stands).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from olmo.checkpoints import layout
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.train.callbacks.base import SAVING, TRAINING, Callback, Saved, StepEnd
from olmo.train.checkpointing import TrainerState, save_checkpoint
from olmo.train.config import TrainConfig
from olmo.train.distributed import DistInfo, any_rank, barrier
from olmo.train.fencing import RunDirFence
from olmo.train.preemption import Preemption
from olmo.train.upload import Uploader, UploadError

log = logging.getLogger("olmo.train")

SIGKILL_MARGIN_SECONDS = 2.0
"""Left unused of the grace period after SIGTERM, for the process to exit before SIGKILL."""


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
        uploader: Uploader | None = None,
        *,
        remote: bool = False,
    ):
        self.config, self.run_dir, self.engine, self.state = config, run_dir, engine, state
        self.dist, self.preemption = dist, preemption
        self.fence = fence
        """This attempt's claim on the run directory, checked before every save and rotation."""
        self.listeners = listeners
        """Told of every save (``on_save``): the trainer's callbacks."""
        self.remote = remote or uploader is not None
        """The run directory is on an object store: ``run_dir`` is its local mirror."""
        self.uploader = uploader
        """The background upload (in the processes that upload: local rank 0 of each node)."""
        c = config.checkpoint
        self.policy = None
        if c.rotate:
            self.policy = RetentionPolicy(
                keep_last=c.keep_last,
                keep_every=c.keep_every,
                require_evaluated=c.require_evaluated,
            )
        if uploader is not None:
            uploader.policy = self.policy  # rotation runs on the store, after each upload
        self.last_save_seconds: float | None = None
        """The last local save's duration (without waiting for an upload)."""

    def on_step_end(self, end: StepEnd) -> None:
        cfg, step = self.config, end.step
        if self.remote:
            self._check_uploads()
        if (
            step % cfg.checkpoint.save_interval == 0
            or step == cfg.max_steps
            or step == cfg.stop_at
            or (end.preempted and self._save_fits_before_kill())
        ):
            self.save()
        if self.remote and (end.preempted or step in (cfg.max_steps, cfg.stop_at)):
            self._finish_uploads(end.preempted)

    def save(self) -> Path:
        """Collective: write the checkpoint, rotate (or start its upload), tell the listeners
        (``on_activity``: ``saving`` before, ``training`` once the save stopped blocking)."""
        self.listeners.on_activity(SAVING)
        t0 = time.monotonic()
        if self.remote:
            self._agree_on_upload(wait=True)  # the next save waits for the previous upload
        t1 = time.monotonic()
        publishes = self.uploader is not None and self.uploader.node.publishes
        path = save_checkpoint(
            self.engine, self.run_dir, self.state, self.config, self.dist, self.fence,
            node_local=self.uploader is not None and self.uploader.node.count > 1,
            before_write=self.uploader.prepare if publishes else None,
        )  # fmt: skip
        now = time.monotonic()
        self.last_save_seconds, blocked = now - t1, now - t0
        rotated_out = []
        if self.uploader is not None:
            first_node = self.uploader.node.index == 0
            local = path if first_node else layout.temp_dir(self.run_dir, self.state.step)
            self.uploader.start(self.state.step, self.state.tokens, local)
        if self.policy is not None and self.fence is not None and not self.remote:
            self.fence.check("rotate checkpoints")  # collective: all ranks stop together
        if self.dist.is_main:
            log.info("saved %s in %.1fs (blocked %.1fs)", path, self.last_save_seconds, blocked)
            if self.policy is not None and not self.remote:
                rotated_out = rotate(self.run_dir, self.policy).deleted
                for deleted in rotated_out:
                    log.info("rotated out %s", deleted)
        self.listeners.on_save(
            Saved(
                self.state.step, self.state.tokens, path, rotated_out,
                blocked_seconds=blocked, uploading=self.remote,
            )
        )  # fmt: skip
        barrier()
        self.listeners.on_activity(TRAINING)
        return path

    def _check_uploads(self) -> None:
        """Collective, every step: stop every rank when an upload failed; report finished ones."""
        self._agree_on_upload(wait=False)

    def _agree_on_upload(self, *, wait: bool) -> None:
        error = None
        if self.uploader is not None:
            try:
                if wait:
                    self.uploader.wait()
                error = self.uploader.failed
            except BaseException as e:
                error = e
        if any_rank(error is not None, self.dist.device):
            if error is not None:
                raise error
            raise UploadError("a checkpoint upload failed on another node (see its log)")
        self._report_uploads()

    def _report_uploads(self) -> None:
        if self.uploader is not None:
            for uploaded in self.uploader.take_finished():
                self.listeners.on_upload(uploaded)

    def _finish_uploads(self, preempted: bool) -> None:
        """The end of this process's training: wait for the last upload (after SIGTERM, only as
        long as the grace period allows). Not a collective."""
        if self.uploader is None or not self.uploader.pending:
            self._report_uploads()
            if self.uploader is not None:
                self.uploader.upload_side_files()
            return
        timeout = None
        if preempted:
            grace = self.config.checkpoint.sigterm_grace_seconds
            timeout = max(self.preemption.seconds_left(grace) - SIGKILL_MARGIN_SECONDS, 0.0)
        if self.uploader.wait(timeout):
            self._report_uploads()
            self.uploader.upload_side_files()  # metrics.jsonl with the last upload's line
        else:
            log.warning(
                "leaving the upload of step %d unfinished: SIGKILL is %.0fs away; the last "
                "complete checkpoint on the store stands", self.state.step, timeout,
            )  # fmt: skip

    def on_finish(self) -> None:
        """Training ended early (an error): give a pending upload the grace period, no more."""
        if self.uploader is not None and self.uploader.pending:
            try:
                self.uploader.wait(self.config.checkpoint.sigterm_grace_seconds)
            except BaseException as e:  # already failing: do not hide the first error
                log.error("the last checkpoint upload failed too: %s", e)

    def _save_fits_before_kill(self) -> bool:
        """Rank 0 decides (from the grace left and the last save's duration, plus on a store
        the last upload's); all follow."""
        decision = False
        c = self.config.checkpoint
        if self.dist.is_main and c.save_on_sigterm:
            left = self.preemption.seconds_left(c.sigterm_grace_seconds)
            needed = self.last_save_seconds or 0.0
            if self.uploader is not None:
                needed += self.uploader.last_seconds or 0.0
            decision = needed < left
            if not decision:
                log.warning("not saving on SIGTERM: %.1fs left, last save took %.1fs", left, needed)
        return any_rank(decision, self.dist.device)
