"""One optimizer step: the global batch for the step is a slice of the global data order (a
permutation per epoch from the seed), cut into one contiguous block per rank and then into
micro-batches; gradient accumulation is driven explicitly, so a batch-size warmup can change
the number of micro-batches from one step to the next. With token shards on an object store, each
step also asks for this rank's instances of the next ``PREFETCH_STEPS`` steps to be fetched in
the background (``InstanceDataset.prefetch``: whole shards in ``cache`` mode, their byte ranges in
``range`` mode), so a read never waits for a download."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch

from olmo.data.dataset import InstanceDataset
from olmo.data.order import GlobalOrder, rank_slice
from olmo.train.checkpointing import TrainerState
from olmo.train.config import TrainConfig
from olmo.train.distributed import DistInfo, all_reduce_mean
from olmo.train.schedule import batch_size_at, grad_clip_at, lr_at, micro_batches

IGNORE_INDEX = -100
PREFETCH_STEPS = 2
"""Steps ahead whose shards are prefetched (at this step's batch size) when data is remote."""


def make_inputs(tokens: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Instances (n, L) → model inputs and next-token labels (last position ignored)."""
    ids = torch.from_numpy(tokens).to(device)
    labels = torch.roll(ids, -1, dims=1)
    labels[:, -1] = IGNORE_INDEX
    return ids, labels


class TrainStep:
    """Calling it takes the next optimizer step, advances ``state`` and returns the step's
    metrics (the same on every rank)."""

    def __init__(
        self,
        config: TrainConfig,
        engine,
        dataset: InstanceDataset,
        order: GlobalOrder,
        state: TrainerState,
        dist: DistInfo,
    ):
        self.config, self.engine, self.dist, self.state = config, engine, dist, state
        self.dataset, self.order = dataset, order
        self.seq_len = config.model.max_sequence_length
        self.remote_data = getattr(dataset.shards.shards, "prefetch", None) is not None

    def __call__(self) -> dict[str, Any]:
        cfg, dist, state, engine = self.config, self.dist, self.state, self.engine
        batch = batch_size_at(state.tokens, cfg.batch)
        micro, n_micro = micro_batches(batch, dist.world_size, cfg.batch.micro_batch_size)
        global_indices = self.order.indices(state.instances_consumed, batch).astype(np.int64)
        indices = rank_slice(global_indices, dist.rank, dist.world_size)
        if self.remote_data:
            self._prefetch(state.instances_consumed + batch, batch)
        lr = lr_at(state.step, cfg.optimizer.lr, cfg.scheduler, cfg.max_steps)
        for group in engine.optimizer.param_groups:
            group["lr"] = lr
        engine.optimizer.clip_grad = grad_clip_at(state.step, cfg.grad_clip)

        loss_sum = torch.zeros((), device=dist.device)
        for i in range(n_micro):
            ids, labels = make_inputs(
                self.dataset.get_batch(indices[i * micro : (i + 1) * micro]), dist.device
            )
            engine.set_gradient_accumulation_boundary(i == n_micro - 1)
            loss = engine(ids, labels=labels)
            engine.backward(loss / n_micro, scale_wrt_gas=False)
            loss_sum += loss.detach().float()
        engine.step()

        state.step += 1
        state.instances_consumed += batch
        state.tokens += batch * self.seq_len
        grad_norm = engine.get_global_grad_norm()
        return {
            "step": state.step,
            "batch_sha1": hashlib.sha1(global_indices.tobytes()).hexdigest()[:16],
            "loss": all_reduce_mean(loss_sum.item() / n_micro, dist.device),
            "lr": lr,
            "grad_norm": float(grad_norm) if grad_norm is not None else math.nan,
            "tokens": state.tokens,
            "instances_consumed": state.instances_consumed,
            "epoch": self.order.epoch_of(state.instances_consumed - 1),
            "batch_instances": batch,
            "micro_batches": n_micro,
        }

    def _prefetch(self, start: int, batch: int) -> None:
        """Ask for this rank's instances of the next ``PREFETCH_STEPS`` steps, in read order."""
        ahead = self.order.indices(start, batch * PREFETCH_STEPS).astype(np.int64)
        dist = self.dist
        self.dataset.prefetch(
            np.concatenate(
                [
                    rank_slice(ahead[s * batch : (s + 1) * batch], dist.rank, dist.world_size)
                    for s in range(PREFETCH_STEPS)
                ]
            )
        )
