"""The DeepSpeed engine: ZeRO stage 1, 2 or 3 (``deepspeed.zero_stage``; bf16 compute, fp32
master weights and AdamW state) around the plain ``OLMo`` module, created under ``zero.Init`` at
stage 3 so that no rank ever holds the whole model, optionally compiled (``compile``), and, when
resuming, loaded from a checkpoint (through DeepSpeed's universal format when the number of
processes or the ZeRO stage changed). DeepSpeed specifics live here, never in the model.

``deepspeed.offload_optimizer: cpu`` moves the fp32 state and the optimizer step to host memory
with DeepSpeed's CPU Adam (the same groups and hyperparameters as the AdamW it replaces); a
checkpoint saved with offload on resumes with it off and the other way round.

``compile`` uses the engine's own ``compile()`` (DeepSpeed keeps its ZeRO hooks outside the
compiled graphs; a compiled ZeRO-3 step trained on CPU). It is off by default: on CPU
(2 cores, shared; test-sized model, ZeRO-3, one process) a compiled step took 1.10 s against
1.03 s eager after a 136 s first step; ``benchmarks/gpu_all.py`` measures it on a GPU."""

from __future__ import annotations

import contextlib
import importlib
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

ZERO12_BUCKET = 200_000_000
"""ZeRO-1/2 reduce and all-gather bucket, in elements (``DeepSpeedConfig``)."""


def zero_optimization(config: TrainConfig) -> dict:
    """DeepSpeed's ``zero_optimization`` section from ``config.deepspeed`` (bucket sizes left
    unset are derived from the model width: ``olmo.train.config.DeepSpeedConfig``)."""
    ds, d = config.deepspeed, config.model.d_model
    section: dict = {
        "stage": ds.zero_stage,
        "overlap_comm": ds.overlap_comm,
        "contiguous_gradients": ds.contiguous_gradients,
    }
    if ds.zero_stage == 3:
        section.update(
            reduce_bucket_size=ds.reduce_bucket_size or d * d,
            stage3_prefetch_bucket_size=ds.stage3_prefetch_bucket_size or int(0.9 * d * d),
            stage3_param_persistence_threshold=(
                10 * d
                if ds.stage3_param_persistence_threshold is None
                else ds.stage3_param_persistence_threshold
            ),
            stage3_max_live_parameters=ds.stage3_max_live_parameters,
            stage3_max_reuse_distance=ds.stage3_max_reuse_distance,
            stage3_gather_16bit_weights_on_model_save=False,
        )
        if ds.offload_param != "none":
            section["offload_param"] = {"device": ds.offload_param, "pin_memory": ds.pin_memory}
    else:
        section.update(
            reduce_scatter=ds.reduce_scatter,
            reduce_bucket_size=ds.reduce_bucket_size or ZERO12_BUCKET,
            allgather_bucket_size=ds.allgather_bucket_size or ZERO12_BUCKET,
        )
    if ds.offload_optimizer != "none":
        section["offload_optimizer"] = {
            "device": ds.offload_optimizer,
            "pin_memory": ds.pin_memory,
        }
    return section


def deepspeed_config(config: TrainConfig, world_size: int) -> dict:
    micro, n_micro = micro_batches(
        batch_size_at(0, config.batch), world_size, config.batch.micro_batch_size
    )
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": max(n_micro, 1),
        "gradient_clipping": config.grad_clip.max_norm,
        "bf16": {"enabled": config.precision == "bf16"},
        "zero_optimization": zero_optimization(config),
        # The optimizer is torch's AdamW (DeepSpeed's CPU Adam when offloaded) over DeepSpeed's
        # fp32 partitions.
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


HYPERPARAMETERS = frozenset({"lr", "betas", "eps", "weight_decay"})
"""What a checkpoint's param groups carry across optimizers; the rest of a group's keys are the
implementation's own (torch's ``fused``, CPU Adam's ``bias_correction``, ...)."""


def portable_state(optimizer: torch.optim.Optimizer, state_dict: dict) -> dict:
    """A load-state-dict pre-hook: a checkpoint saved by the other optimizer (offload switched
    on or off on resume) loads into this one. Its groups keep their hyperparameters and take
    this optimizer's implementation settings; ``step`` becomes what this optimizer counts with
    (a float32 tensor for torch's AdamW, an int for CPU Adam). Moments are the same tensors in
    both, so nothing else changes."""
    own = {k: v for k, v in optimizer.defaults.items() if k not in HYPERPARAMETERS}
    groups = [{**group, **own} for group in state_dict["param_groups"]]
    tensor_step = isinstance(optimizer, torch.optim.AdamW)
    state = {}
    for key, value in state_dict["state"].items():
        value = dict(value)
        if "step" in value:
            step = value["step"]
            if tensor_step and not torch.is_tensor(step):
                value["step"] = torch.tensor(float(step), dtype=torch.float32)
            elif not tensor_step and torch.is_tensor(step):
                value["step"] = int(step.item())
        state[key] = value
    return {**state_dict, "param_groups": groups, "state": state}


CPU_ADAM_OP = "deepspeed.ops.adam.cpu_adam_op"
"""The module DeepSpeed installs CPU Adam as when it is prebuilt (``DS_BUILD_CPU_ADAM=1``)."""


def use_prebuilt_cpu_adam() -> bool:
    """Load the installed CPU Adam op, whatever accelerator it was built under. The trainer image
    prebuilds it with the CPU accelerator's op set (``docker/trainer.Dockerfile``); DeepSpeed's
    CUDA accelerator uses that same builder (``op_builder.cpu.CPUAdamBuilder``: plain C++), but
    would only load the prebuilt module if the accelerator names matched, else compile it, which a
    pod cannot (no compiler, read-only root). False where it is not prebuilt: DeepSpeed then
    builds it on first use (~100 s once, cached in ``~/.cache/torch_extensions``)."""
    from deepspeed.git_version_info import installed_ops
    from deepspeed.ops.op_builder.builder import OpBuilder

    if not installed_ops.get("cpu_adam", False):
        return False
    if "cpu_adam" not in OpBuilder._loaded_ops:  # DeepSpeed's cache of loaded op modules
        OpBuilder._loaded_ops["cpu_adam"] = importlib.import_module(CPU_ADAM_OP)
    return True


def build_optimizer(
    model: torch.nn.Module, o: OptimizerConfig, offload: bool = False
) -> torch.optim.Optimizer:
    """AdamW over OLMo's weight-decay groups. ``offload``: DeepSpeed's CPU Adam (the optimizer
    ZeRO-Offload requires; ``adamw_mode``: decoupled weight decay, as torch's AdamW) with the
    same hyperparameters and groups, stepping the fp32 partitions in host memory. Either loads
    the other's checkpoints (``portable_state``)."""
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        use_prebuilt_cpu_adam()
        optimizer = DeepSpeedCPUAdam(
            param_groups(model, o), lr=o.lr, betas=o.betas, eps=o.eps, adamw_mode=True
        )
    else:
        optimizer = torch.optim.AdamW(
            param_groups(model, o),
            lr=o.lr,
            betas=o.betas,
            eps=o.eps,
            # One kernel per step over DeepSpeed's flat fp32 partitions, on GPU and on CPU
            # (unfused, AdamW on CPU costs ~8× more: benchmarks/bench_train.py).
            fused=True,
        )
    optimizer.register_load_state_dict_pre_hook(portable_state)
    return optimizer


def build_engine(config: TrainConfig, ds_config: dict):
    """A fresh engine: the model initialised from ``config.seed``. At ZeRO-3 it is partitioned
    as it is created (``zero.Init``: no rank ever holds the whole model); at ZeRO-1/2 every rank
    holds the whole bf16 model and DeepSpeed partitions the optimizer state (and gradients)."""
    import deepspeed

    torch.manual_seed(config.seed)
    stage3 = ds_config["zero_optimization"]["stage"] == 3
    with deepspeed.zero.Init(config_dict_or_path=ds_config) if stage3 else contextlib.nullcontext():
        model = OLMo(config.model)
    if stage3 and config.model.weight_tying:
        # The tied head reads the embedding's weight outside the embedding's forward.
        deepspeed.zero.register_external_parameter(model, model.embed.weight)
    engine, *_ = deepspeed.initialize(
        model=model,
        optimizer=build_optimizer(
            model, config.optimizer, offload=config.deepspeed.offload_optimizer != "none"
        ),
        config=ds_config,
    )
    if config.compile:
        engine.compile()
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
        stage = config.deepspeed.zero_stage
        if needs_reshard(checkpoint, dist, stage):
            # A different number of processes or ZeRO stage: go through DeepSpeed's universal
            # format (the change is recorded in the next checkpoint's trainer state). Rank 0
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
        state = load_checkpoint(built["engine"], checkpoint, dist, universal, stage)
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
        state = TrainerState(world_size=dist.world_size, zero_stage=config.deepspeed.zero_stage)
        return engine, state, resumed
    log.info("resumed from %s at step %d", resumed.checkpoint, resumed.loaded.step)
    return built["engine"], resumed.loaded, resumed
