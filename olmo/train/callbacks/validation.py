"""Held-out perplexity every ``eval.interval`` steps: the first ``eval.validation_instances``
instances of ``eval.validation_paths``, split evenly over the ranks (a collective). The other
callbacks hear ``evaluating`` while it runs, then ``training`` (``on_activity``)."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from olmo.data.dataset import InstanceDataset
from olmo.data.shards import open_shards
from olmo.train.callbacks.base import EVALUATING, TRAINING, Callback, StepEnd
from olmo.train.config import TrainConfig
from olmo.train.distributed import DistInfo, all_reduce_mean
from olmo.train.metrics import MetricsLogger
from olmo.train.step import IGNORE_INDEX, make_inputs

log = logging.getLogger("olmo.train")


def open_validation(config: TrainConfig) -> InstanceDataset | None:
    """The validation instances, or None when ``eval.validation_paths`` is empty."""
    if not config.eval.validation_paths:
        return None
    shards = open_shards(config.eval.validation_paths, **config.data.shard_options())
    shards.check_files()
    return InstanceDataset(shards, config.model.max_sequence_length)


class Validation(Callback):
    def __init__(
        self,
        dataset: InstanceDataset,
        engine,
        logger: MetricsLogger,
        config: TrainConfig,
        dist: DistInfo,
    ):
        self.dataset, self.engine, self.logger, self.dist = dataset, engine, logger, dist
        self.interval = config.eval.interval
        self.instances = config.eval.validation_instances
        self.micro_batch_size = config.batch.micro_batch_size

    def on_step_end(self, end: StepEnd) -> None:
        if self.interval and end.step % self.interval == 0 and len(self.dataset):
            self.validate(end.step)

    @torch.no_grad()
    def validate(self, step: int) -> None:
        world, micro = self.dist.world_size, self.micro_batch_size
        per_rank = min(len(self.dataset), self.instances) // world
        if per_rank == 0:
            return
        self.announce(EVALUATING)
        mine = np.arange(self.dist.rank * per_rank, (self.dist.rank + 1) * per_rank)
        self.engine.eval()
        total, tokens = 0.0, 0
        for start in range(0, per_rank, micro):
            ids, labels = make_inputs(
                self.dataset.get_batch(mine[start : start + micro]), self.dist.device
            )
            n = int((labels != IGNORE_INDEX).sum())
            total += self.engine(ids, labels=labels).float().item() * n
            tokens += n
        self.engine.train()
        loss = all_reduce_mean(total / tokens, self.dist.device)
        self.announce(TRAINING)
        self.logger.log(
            {"step": step, "eval/val_loss": loss, "eval/val_perplexity": math.exp(loss)}
        )
        if self.dist.is_main:
            log.info("step %d validation loss %.4f", step, loss)
