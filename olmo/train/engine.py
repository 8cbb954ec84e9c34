"""The DeepSpeed engine: ZeRO-3 (bf16 compute, fp32 master weights and AdamW state) around the
plain ``OLMo`` module, created under ``zero.Init`` so that no rank ever holds the whole model,
and, when resuming, loaded from a checkpoint (through DeepSpeed's universal format when the
number of processes changed). DeepSpeed specifics live here, never in the model."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import torch

from olmo.checkpoints import layout, objectstore
from olmo.model.transformer import OLMo
from olmo.storage import Location
from olmo.train.checkpointing import (
    TrainerState,
    convert_to_universal,
    load_checkpoint,
    needs_reshard,
)
from olmo.train.config import OptimizerConfig, TrainConfig
from olmo.train.distributed import DistInfo, any_rank, barrier
from olmo.train.resume import (
    ResumeAborted,
    Resumed,
    candidates,
    load_first_usable,
    remote_candidates,
)
from olmo.train.schedule import batch_size_at, micro_batches

log = logging.getLogger("olmo.train")


def deepspeed_config(config: TrainConfig, world_size: int) -> dict:
    micro, n_micro = micro_batches(
        batch_size_at(0, config.batch), world_size, config.batch.micro_batch_size
    )
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": max(n_micro, 1),
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


def param_groups(model: torch.nn.Module, o: OptimizerConfig) -> list[dict]:
    """OLMo's weight decay: on every parameter but the embedding (unless ``decay_embeddings``);
    norms have no parameters at all."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_embedding = name.startswith("embed.")
        (no_decay if is_embedding and not o.decay_embeddings else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": o.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: torch.nn.Module, o: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        param_groups(model, o),
        lr=o.lr,
        betas=o.betas,
        eps=o.eps,
        # One kernel per step over DeepSpeed's flat fp32 partitions, on GPU and on CPU
        # (unfused, AdamW on CPU costs ~8× more: benchmarks/bench_train.py).
        fused=True,
    )


def build_engine(config: TrainConfig, ds_config: dict):
    """A fresh engine: the model initialised from ``config.seed`` and partitioned as created."""
    import deepspeed

    torch.manual_seed(config.seed)
    with deepspeed.zero.Init(config_dict_or_path=ds_config):
        model = OLMo(config.model)
    if config.model.weight_tying:
        # The tied head reads the embedding's weight outside the embedding's forward.
        deepspeed.zero.register_external_parameter(model, model.embed.weight)
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=build_optimizer(model, config.optimizer), config=ds_config
    )
    return engine


def start_engine(
    config: TrainConfig,
    run_dir: Path,
    dist: DistInfo,
    resume: str | None,
    remote: Location | None = None,
    downloads: bool = False,
) -> tuple[object, TrainerState, Resumed]:
    """(engine, trainer state, what was resumed from and skipped): a new run, or ``resume``
    ('latest' or a checkpoint path) loaded, verified first and falling back to an older
    checkpoint when 'latest' is unusable (``olmo.train.resume``). Collective: every rank calls
    it; only the run directory's owner (the fence claimed) may call it, since rank 0 first
    finishes saves a crash interrupted.

    ``remote``: the run directory is on this object store and ``run_dir`` is its local mirror;
    the checkpoints tried are the store's, each downloaded into the mirror by the processes that
    ``downloads`` (local rank 0 of each node) while the others wait."""
    if resume and dist.is_main:
        for placed in layout.recover_interrupted_saves(run_dir):
            log.warning("finished an interrupted save: %s", placed)
    barrier()
    fetch = None
    if remote is not None:
        tried, fallback = remote_candidates(remote, resume)

        def fetch(checkpoint: Location) -> Path:
            error = None
            if downloads:
                try:
                    objectstore.download_checkpoint(checkpoint, layout.checkpoints_dir(run_dir))
                except Exception as e:  # every rank must reach the barrier
                    error = e
            barrier()
            if error is not None:
                raise error
            return layout.checkpoints_dir(run_dir) / checkpoint.name
    else:
        tried, fallback = candidates(run_dir, resume)
    built: dict = {}  # the engine and its DeepSpeed config, rebuilt only when that changes

    def load(checkpoint: Path) -> TrainerState:
        ds_config, universal = deepspeed_config(config, dist.world_size), None
        if needs_reshard(checkpoint, dist):
            # A different number of processes: go through DeepSpeed's universal format. Rank 0
            # converts while the others wait in a barrier, so a failure here cannot be agreed
            # on: it ends the run instead of trying an older checkpoint.
            try:
                universal = convert_to_universal(checkpoint, run_dir, dist)
            except Exception as e:
                raise ResumeAborted(e) from e
            ds_config["checkpoint"] = {"load_universal": True}
        if built.get("config") != ds_config:
            built.pop("engine", None)
            try:
                built.update(engine=build_engine(config, ds_config), config=ds_config)
            except Exception as e:
                raise ResumeAborted(e) from e  # not the checkpoint's fault: stop searching
        state = load_checkpoint(built["engine"], checkpoint, dist, universal)
        if universal is not None:
            barrier()
            if dist.is_main:
                shutil.rmtree(universal, ignore_errors=True)
                with contextlib.suppress(OSError):  # only if no other copy is there
                    universal.parent.rmdir()
        return state

    resumed = load_first_usable(
        tried,
        load,
        fallback=fallback,
        agree=lambda failed: any_rank(failed, dist.device),
        fetch=fetch,
    )
    if resumed.checkpoint is None:
        engine = build_engine(config, deepspeed_config(config, dist.world_size))
        return engine, TrainerState(world_size=dist.world_size), resumed
    log.info("resumed from %s at step %d", resumed.checkpoint, resumed.loaded.step)
    return built["engine"], resumed.loaded, resumed
