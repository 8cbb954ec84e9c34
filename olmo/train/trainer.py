"""The training loop: DeepSpeed ZeRO-3 (bf16 compute, fp32 master weights and AdamW state),
OLMo's schedules, deterministic data order, checkpoints, SIGTERM handling, metrics.

Every rank runs the same loop. The global batch for a step is a slice of the global data order
(a permutation per epoch from the seed), cut into one contiguous block per rank and then into
micro-batches; gradient accumulation is driven explicitly, so a batch-size warmup can change
the number of micro-batches from one step to the next.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import shutil
import signal
import time
import types
from pathlib import Path

import numpy as np
import torch

from olmo.checkpoints import layout
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.config import dump_yaml
from olmo.data.dataset import InstanceDataset
from olmo.data.order import GlobalOrder, rank_slice
from olmo.data.shards import open_shards
from olmo.model.size import flops_per_token
from olmo.model.transformer import OLMo
from olmo.progress import ProgressReporter, now_iso
from olmo.train import exit_codes
from olmo.train.checkpointing import (
    CONFIG_FILE,
    TrainerState,
    convert_to_universal,
    git_commit,
    load_checkpoint,
    needs_reshard,
    package_versions,
    save_checkpoint,
)
from olmo.train.config import TrainConfig
from olmo.train.distributed import DistInfo, all_reduce_mean, any_rank, barrier
from olmo.train.metrics import MetricsLogger
from olmo.train.schedule import batch_size_at, grad_clip_at, lr_at

log = logging.getLogger("olmo.train")

H100_BF16_PEAK_FLOPS = 989e12
IGNORE_INDEX = -100


def micro_batch_for(per_rank: int, requested: int) -> int:
    """The largest micro-batch ≤ ``requested`` that divides the per-rank batch evenly."""
    for size in range(min(per_rank, requested), 0, -1):
        if per_rank % size == 0:
            return size
    return 1


def deepspeed_config(config: TrainConfig, world_size: int) -> dict:
    per_rank = batch_size_at(0, config.batch) // world_size
    micro = micro_batch_for(max(per_rank, 1), config.batch.micro_batch_size)
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": max(per_rank // micro, 1),
        "gradient_clipping": config.grad_clip.max_norm,
        "bf16": {"enabled": config.precision == "bf16"},
        "zero_optimization": {
            "stage": 3,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "stage3_gather_16bit_weights_on_model_save": False,
        },
        # The optimizer is torch's AdamW over DeepSpeed's fp32 partitions.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**62,
        "wall_clock_breakdown": False,
    }


def make_inputs(tokens: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Instances (n, L) → model inputs and next-token labels (last position ignored)."""
    ids = torch.from_numpy(tokens).to(device)
    labels = torch.roll(ids, -1, dims=1)
    labels[:, -1] = IGNORE_INDEX
    return ids, labels


class Trainer:
    def __init__(
        self, config: TrainConfig, run_dir: Path, dist: DistInfo, resume: str | None = None
    ):
        import deepspeed

        self.config = config
        self.run_dir = Path(run_dir)
        self.dist = dist
        self.seq_len = config.model.max_sequence_length
        if not config.data.paths:
            raise ValueError("data.paths is empty: give token-shard folders or .npy files")
        shards = open_shards(config.data.paths, dtype=config.data.dtype)
        self.dataset = InstanceDataset(shards, self.seq_len)
        if len(self.dataset) == 0:
            raise ValueError(f"the training data holds fewer than {self.seq_len} tokens")
        self.order = GlobalOrder(len(self.dataset), config.seed)
        self.manifest_sha256 = list(shards.manifest_sha256)
        self.validation = None
        if config.eval.validation_paths:
            val_shards = open_shards(config.eval.validation_paths, dtype=config.data.dtype)
            self.validation = InstanceDataset(val_shards, self.seq_len)
        self._check_batch_sizes()
        self.eval_tokenizer = self._eval_tokenizer() if config.eval.tasks else None

        if dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG_FILE).write_text(dump_yaml(config))
        barrier()

        checkpoint = layout.resolve_checkpoint(self.run_dir, resume) if resume else None
        if checkpoint is None and resume not in (None, "latest"):
            raise ValueError(f"no checkpoint to resume from at {resume}")
        universal = None
        ds_config = deepspeed_config(config, dist.world_size)
        if checkpoint is not None and needs_reshard(checkpoint, dist):
            # A different number of processes: go through DeepSpeed's universal format.
            universal = convert_to_universal(checkpoint, self.run_dir, dist)
            ds_config["checkpoint"] = {"load_universal": True}

        torch.manual_seed(config.seed)
        with deepspeed.zero.Init(config_dict_or_path=ds_config):
            model = OLMo(config.model)
        if config.model.weight_tying:
            # The tied head reads the embedding's weight outside the embedding's forward.
            deepspeed.zero.register_external_parameter(model, model.embed.weight)
        self.engine, *_ = deepspeed.initialize(
            model=model, optimizer=self._optimizer(model), config=ds_config
        )

        self.state = TrainerState(world_size=dist.world_size)
        if checkpoint is not None:
            self.state = load_checkpoint(self.engine, checkpoint, dist, universal)
            log.info("resumed from %s at step %d", checkpoint, self.state.step)
            if universal is not None:
                barrier()
                if dist.is_main:
                    shutil.rmtree(universal, ignore_errors=True)
                    with contextlib.suppress(OSError):  # only if no other copy is there
                        universal.parent.rmdir()
        if checkpoint is not None and self.state.data_manifest_sha256 != self.manifest_sha256:
            log.warning(
                "the training data differs from the checkpoint's (manifest sha256 %s → %s): "
                "the data order will not continue the interrupted run exactly",
                self.state.data_manifest_sha256, self.manifest_sha256,
            )  # fmt: skip
        self.state.config = config.model_dump(mode="json")
        self.state.versions = package_versions()
        self.state.git_commit = git_commit()
        self.state.data_manifest_sha256 = self.manifest_sha256

        self.metrics = MetricsLogger(self.run_dir, config, self.state.step, dist.is_main)
        self.flops_per_token = flops_per_token(config.model, self.seq_len)
        peak = config.logging.peak_flops_per_device
        self.peak_flops = peak or (H100_BF16_PEAK_FLOPS if dist.device.type == "cuda" else None)
        self._sigterm_at: float | None = None
        self._last_save_seconds: float | None = None
        # Status reports to the OLMoJob when the operator started this run (olmo/progress.py).
        self.progress = ProgressReporter.from_env() if dist.is_main else None

    def _optimizer(self, model: OLMo) -> torch.optim.Optimizer:
        o = self.config.optimizer
        decay, no_decay = [], []
        for name, param in model.named_parameters():
            is_embedding = name.startswith("embed.")
            (no_decay if is_embedding and not o.decay_embeddings else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": o.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(
            [g for g in groups if g["params"]],
            lr=o.lr,
            betas=o.betas,
            eps=o.eps,
            # One kernel per step over DeepSpeed's flat fp32 partitions, on GPU and on CPU
            # (unfused, AdamW on CPU costs ~8× more: benchmarks/bench_train.py).
            fused=True,
        )

    def _check_batch_sizes(self) -> None:
        b, w = self.config.batch, self.dist.world_size
        sizes = {b.global_batch_size}
        if b.warmup_start_size is not None:
            size = b.warmup_start_size
            while size < b.global_batch_size:
                sizes.add(size)
                size *= 2
        for size in sorted(sizes):
            if size % w:
                raise ValueError(
                    f"global batch of {size} instances does not split evenly over {w} processes"
                )

    # -- the loop ----------------------------------------------------------------------------

    def fit(self) -> int:
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            return self._fit()
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.metrics.close()
            if self.progress is not None:
                self.progress.close()

    def _on_sigterm(self, signum, frame) -> None:
        if self._sigterm_at is None:
            self._sigterm_at = time.monotonic()
            log.warning("SIGTERM received: finishing the current step")

    def _fit(self) -> int:
        cfg = self.config
        started = time.monotonic()
        steps_timed, time_in_steps = 0, 0.0
        while self.state.step < cfg.max_steps:
            t0 = time.monotonic()
            metrics = self._train_step()
            step_seconds = time.monotonic() - t0
            steps_timed, time_in_steps = steps_timed + 1, time_in_steps + step_seconds
            step = self.state.step
            if step % cfg.logging.log_interval == 0 or step == cfg.max_steps:
                metrics |= self._throughput(metrics["batch_instances"], step_seconds)
                remaining = cfg.max_steps - step
                metrics["eta_seconds"] = round(remaining * time_in_steps / steps_timed, 1)
                self.metrics.log(metrics)
                if self.dist.is_main:
                    log.info(
                        "step %d/%d loss %.4f lr %.3g grad_norm %.3f %.0f tok/s eta %.0fs",
                        step, cfg.max_steps, metrics["loss"], metrics["lr"],
                        metrics["grad_norm"], metrics["tokens_per_s"], metrics["eta_seconds"],
                    )  # fmt: skip
            if self.progress is not None:
                self.progress.report({"step": step, "tokens": self.state.tokens})
            stop = any_rank(self._sigterm_at is not None, self.dist.device)
            planned_stop = step == cfg.stop_at
            if (
                step % cfg.checkpoint.save_interval == 0
                or step == cfg.max_steps
                or planned_stop
                or (stop and self._should_save_on_sigterm())
            ):
                self._save()
            if cfg.eval.interval and step % cfg.eval.interval == 0:
                if self.validation:
                    self._validate()
                if self.eval_tokenizer is not None:
                    self._downstream()
            if stop:
                log.warning("stopping after step %d: preempted", step)
                return exit_codes.PREEMPTED
            if planned_stop:
                log.info("stopping at step %d (stop_at); resume with --resume latest", step)
                return exit_codes.SUCCESS
        log.info("done: %d steps in %.0fs", self.state.step, time.monotonic() - started)
        return exit_codes.SUCCESS

    def _train_step(self) -> dict:
        cfg, dist, state = self.config, self.dist, self.state
        batch = batch_size_at(state.tokens, cfg.batch)
        per_rank = batch // dist.world_size
        micro = micro_batch_for(per_rank, cfg.batch.micro_batch_size)
        n_micro = per_rank // micro
        global_indices = self.order.indices(state.instances_consumed, batch).astype(np.int64)
        indices = rank_slice(global_indices, dist.rank, dist.world_size)
        lr = lr_at(state.step, cfg.optimizer.lr, cfg.scheduler, cfg.max_steps)
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        self.engine.optimizer.clip_grad = grad_clip_at(state.step, cfg.grad_clip)

        loss_sum = torch.zeros((), device=dist.device)
        for i in range(n_micro):
            ids, labels = make_inputs(
                self.dataset.get_batch(indices[i * micro : (i + 1) * micro]), dist.device
            )
            self.engine.set_gradient_accumulation_boundary(i == n_micro - 1)
            loss = self.engine(ids, labels=labels)
            self.engine.backward(loss / n_micro, scale_wrt_gas=False)
            loss_sum += loss.detach().float()
        self.engine.step()

        state.step += 1
        state.instances_consumed += batch
        state.tokens += batch * self.seq_len
        grad_norm = self.engine.get_global_grad_norm()
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

    def _throughput(self, batch: int, seconds: float) -> dict:
        tokens_per_s = batch * self.seq_len / seconds
        per_device = tokens_per_s / self.dist.world_size
        out = {
            "tokens_per_s": round(tokens_per_s, 1),
            "tokens_per_s_per_device": round(per_device, 1),
            "step_seconds": round(seconds, 4),
        }
        if self.peak_flops:
            out["mfu"] = round(per_device * self.flops_per_token / self.peak_flops, 4)
        if self.dist.device.type == "cuda":
            out["memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        else:
            import psutil

            out["memory_gib"] = round(psutil.Process().memory_info().rss / 2**30, 2)
        return out

    # -- checkpoints, preemption, validation ------------------------------------------------

    def _save(self) -> None:
        t0 = time.monotonic()
        path = save_checkpoint(self.engine, self.run_dir, self.state, self.config, self.dist)
        self._last_save_seconds = time.monotonic() - t0
        if self.dist.is_main:
            log.info("saved %s in %.1fs", path, self._last_save_seconds)
            c = self.config.checkpoint
            if c.rotate:
                policy = RetentionPolicy(
                    keep_last=c.keep_last,
                    keep_every=c.keep_every,
                    require_evaluated=c.require_evaluated,
                )
                result = rotate(self.run_dir, policy)
                for deleted in result.deleted:
                    log.info("rotated out %s", deleted)
                if self.progress is not None and result.deleted:
                    self.progress.report(
                        {"rotation": {"deleted": [str(p) for p in result.deleted],
                                      "time": now_iso()}},
                        urgent=True,
                    )  # fmt: skip
            if self.progress is not None:
                self.progress.report(
                    {
                        "step": self.state.step,
                        "tokens": self.state.tokens,
                        "latestCheckpoint": {
                            "step": self.state.step, "path": str(path), "time": now_iso()
                        },
                    },
                    urgent=True,
                )  # fmt: skip
        barrier()

    def _should_save_on_sigterm(self) -> bool:
        """Rank 0 decides (from the grace left and the last save's duration); all follow."""
        decision = False
        if self.dist.is_main and self.config.checkpoint.save_on_sigterm:
            grace = _grace_seconds(self.config.checkpoint.sigterm_grace_seconds)
            left = grace - (time.monotonic() - (self._sigterm_at or time.monotonic()))
            needed = self._last_save_seconds or 0.0
            decision = needed < left
            if not decision:
                log.warning("not saving on SIGTERM: %.1fs left, last save took %.1fs", left, needed)
        return any_rank(decision, self.dist.device)

    @torch.no_grad()
    def _validate(self) -> None:
        assert self.validation is not None
        world, micro = self.dist.world_size, self.config.batch.micro_batch_size
        count = min(len(self.validation), self.config.eval.validation_instances)
        per_rank = count // world
        if per_rank == 0:
            return
        mine = np.arange(self.dist.rank * per_rank, (self.dist.rank + 1) * per_rank)
        self.engine.eval()
        total, tokens = 0.0, 0
        for start in range(0, per_rank, micro):
            ids, labels = make_inputs(
                self.validation.get_batch(mine[start : start + micro]), self.dist.device
            )
            n = int((labels != IGNORE_INDEX).sum())
            total += self.engine(ids, labels=labels).float().item() * n
            tokens += n
        self.engine.train()
        loss = all_reduce_mean(total / tokens, self.dist.device)
        self.metrics.log(
            {"step": self.state.step, "eval/val_loss": loss, "eval/val_perplexity": math.exp(loss)}
        )
        if self.dist.is_main:
            log.info("step %d validation loss %.4f", self.state.step, loss)

    def _eval_tokenizer(self):
        """The tokenizer of the in-loop downstream tasks (checked before training starts)."""
        from olmo.eval import load_tokenizer, prompt_tokenizer

        path = self.config.eval.tokenizer
        if path is None:
            candidates = [Path(p) for p in self.config.data.paths]
            found = [c / "tokenizer.json" for c in candidates if (c / "tokenizer.json").is_file()]
            if not found:
                raise ValueError(
                    "eval.tasks is set but no tokenizer is known: set eval.tokenizer, or train on "
                    "a data-prep output folder (it holds tokenizer.json)"
                )
            path = found[0]
        holder = types.SimpleNamespace(config=self.config.model)  # the EOS id comes from here
        return prompt_tokenizer(load_tokenizer(path), holder)

    def _downstream(self) -> None:
        """Downstream tasks in-loop: every rank takes part (items spread over ranks; under
        ZeRO-3 each forward gathers the sharded parameters, so all ranks must run it)."""
        from olmo.eval import in_loop

        e, started = self.config.eval, time.monotonic()
        metrics = in_loop(
            self.engine.module,
            self.eval_tokenizer,
            tasks=e.tasks[0] if e.tasks == ["core"] else e.tasks,
            limit=e.limit,
            batch_size=e.batch_size,
            device=self.dist.device,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.engine.train()
        self.metrics.log({"step": self.state.step, **metrics})
        if self.dist.is_main:
            heads = {k.split("/")[1]: v for k, v in metrics.items() if k.endswith("/headline")}
            log.info(
                "step %d downstream (%.0fs): %s", self.state.step, time.monotonic() - started,
                ", ".join(f"{t} {100 * v:.1f}" for t, v in heads.items()),
            )  # fmt: skip


def _grace_seconds(configured: float) -> float:
    import os

    value = os.environ.get("OLMO_TERMINATION_GRACE_SECONDS")
    return float(value) if value else configured
