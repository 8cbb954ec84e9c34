"""The training metrics of every ``logging.log_interval``-th step (and the last one): what the
step measured plus throughput, MFU, memory and ETA, written to ``metrics.jsonl`` and W&B
(``olmo.train.metrics.MetricsLogger``) and logged as one line. The time the previous save
blocked training goes into the next line (``checkpoint/save_blocked_seconds``); each finished
upload to an object store is a line of its own (``checkpoint/upload_seconds``, ``_bytes``,
``_files``, ``_step``).

After every step it also tells the other callbacks (``publish`` → ``on_throughput``) the speed
over the last ``RECENT_STEPS`` steps: mean step seconds, tokens per second and, when the peak
FLOPs are known, MFU. Step times are those of the optimizer steps alone (the loop times ``step()``),
so saves and evaluations never count."""

from __future__ import annotations

import logging
from collections import deque

import torch

from olmo.model.size import flops_per_token
from olmo.train.callbacks.base import Callback, Saved, StepEnd, Throughput
from olmo.train.config import TrainConfig
from olmo.train.distributed import DistInfo
from olmo.train.metrics import MetricsLogger
from olmo.train.upload import Uploaded

log = logging.getLogger("olmo.train")

H100_BF16_PEAK_FLOPS = 989e12
RECENT_STEPS = 20
"""Steps the published throughput is averaged over."""


class TrainMetrics(Callback):
    def __init__(self, logger: MetricsLogger, config: TrainConfig, dist: DistInfo):
        self.logger = logger
        """Also written to by the evaluation callbacks; this callback closes it at the end."""
        self.config, self.dist = config, dist
        self.seq_len = config.model.max_sequence_length
        self.flops_per_token = flops_per_token(config.model, self.seq_len)
        peak = config.logging.peak_flops_per_device
        self.peak_flops = peak or (H100_BF16_PEAK_FLOPS if dist.device.type == "cuda" else None)
        self.steps_timed, self.time_in_steps = 0, 0.0
        self.last_step = 0
        self.pending: dict = {}
        """Checkpoint figures for the next logged line (a save follows its step's line)."""
        self.recent: deque[tuple[float, int]] = deque(maxlen=RECENT_STEPS)
        """(seconds, tokens) of the recent steps."""

    def on_step_end(self, end: StepEnd) -> None:
        cfg, step = self.config, end.step
        self.steps_timed += 1
        self.time_in_steps += end.seconds
        self.last_step = step
        self.recent.append((end.seconds, end.metrics["batch_instances"] * self.seq_len))
        self.publish(self.recent_throughput())
        if step % cfg.logging.log_interval and step != cfg.max_steps:
            return
        metrics = end.metrics | self.throughput(end.metrics["batch_instances"], end.seconds)
        metrics |= self.pending
        self.pending = {}
        remaining = cfg.max_steps - step
        metrics["eta_seconds"] = round(remaining * self.time_in_steps / self.steps_timed, 1)
        self.logger.log(metrics)
        if self.dist.is_main:
            log.info(
                "step %d/%d loss %.4f lr %.3g grad_norm %.3f %.0f tok/s eta %.0fs",
                step, cfg.max_steps, metrics["loss"], metrics["lr"],
                metrics["grad_norm"], metrics["tokens_per_s"], metrics["eta_seconds"],
            )  # fmt: skip

    def recent_throughput(self) -> Throughput:
        """The speed over the recent steps (at least one step was taken)."""
        seconds = sum(s for s, _ in self.recent)
        tokens_per_s = sum(t for _, t in self.recent) / seconds if seconds > 0 else 0.0
        return Throughput(
            step_seconds=seconds / len(self.recent),
            tokens_per_second=tokens_per_s,
            mfu=self.mfu(tokens_per_s) if self.peak_flops else None,
        )

    def mfu(self, tokens_per_s: float) -> float:
        """Model FLOPs utilisation of each device at ``tokens_per_s`` (all ranks together)."""
        per_device = tokens_per_s / self.dist.world_size
        return per_device * self.flops_per_token / self.peak_flops

    def throughput(self, batch: int, seconds: float) -> dict:
        tokens_per_s = batch * self.seq_len / seconds
        per_device = tokens_per_s / self.dist.world_size
        out = {
            "tokens_per_s": round(tokens_per_s, 1),
            "tokens_per_s_per_device": round(per_device, 1),
            "step_seconds": round(seconds, 4),
        }
        if self.peak_flops:
            out["mfu"] = round(self.mfu(tokens_per_s), 4)
        if self.dist.device.type == "cuda":
            out["memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        else:
            import psutil

            out["memory_gib"] = round(psutil.Process().memory_info().rss / 2**30, 2)
        return out

    def on_save(self, saved: Saved) -> None:
        self.pending["checkpoint/save_blocked_seconds"] = round(saved.blocked_seconds, 4)

    def on_upload(self, uploaded: Uploaded) -> None:
        """One line of its own (the step's line is written already): the training step it was
        seen at, and the upload's checkpoint step, seconds and bytes."""
        self.logger.log(
            {
                "step": self.last_step,
                "checkpoint/upload_step": uploaded.step,
                "checkpoint/upload_seconds": round(uploaded.seconds, 4),
                "checkpoint/upload_bytes": uploaded.bytes,
                "checkpoint/upload_files": uploaded.files,
            }
        )

    def on_finish(self) -> None:
        self.logger.close()
