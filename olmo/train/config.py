"""The experiment config: what ``configs/*.yaml`` hold (model + training settings).

Defaults are OLMo's recipe (AdamW 0.9/0.95, eps 1e-5, wd 0.1 off norms and embeddings,
warmup from 0.1× peak, decay to 0.1× peak, clip 1.0). Torch-free, so services can read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from olmo.config import (
    Fraction,
    NonNegativeInt,
    PositiveInt,
    StrictConfig,
    apply_overrides,
    load_yaml,
    validate,
)
from olmo.data.order import OrderKind
from olmo.model.config import ModelConfig

__all__ = [
    "BatchConfig",
    "CheckpointConfig",
    "DataConfig",
    "DeepSpeedConfig",
    "EvalConfig",
    "GradClipConfig",
    "LoggingConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainConfig",
    "WandbConfig",
    "load_train_config",
]


class OptimizerConfig(StrictConfig):
    lr: Annotated[float, Field(gt=0)] = 4e-4
    """Peak learning rate."""
    betas: Annotated[tuple[Fraction, Fraction], Field(strict=False)] = (0.9, 0.95)
    eps: Annotated[float, Field(gt=0)] = 1e-5
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    decay_embeddings: bool = False
    """OLMo applies no weight decay to embeddings (norms have no parameters at all)."""


class SchedulerConfig(StrictConfig):
    name: Literal["cosine", "linear", "inverse_sqrt", "constant"] = "cosine"
    warmup_steps: NonNegativeInt = 2000
    warmup_start_factor: Fraction = 0.1
    """Warmup starts at this fraction of the peak lr (OLMo: 0.1, not 0)."""
    min_lr_factor: Fraction = 0.1
    """Decay ends at this fraction of the peak lr."""
    anneal_steps: NonNegativeInt = 0
    """Final anneal: lr goes linearly to 0 over the last K steps (0 disables it)."""


class GradClipConfig(StrictConfig):
    max_norm: Annotated[float, Field(gt=0)] = 1.0
    warmup_factor: Annotated[float, Field(ge=1)] = 1.0
    """Multiply ``max_norm`` by this for the first ``warmup_steps`` steps (7B: 10)."""
    warmup_steps: NonNegativeInt = 1000


class BatchConfig(StrictConfig):
    global_batch_size: PositiveInt = 2048
    """Instances (sequences of max_sequence_length tokens) per optimizer step."""
    micro_batch_size: PositiveInt = 4
    """Instances per device per forward/backward; accumulation is derived from world size."""
    warmup_start_size: PositiveInt | None = None
    """Batch-size warmup: start at this many instances (None disables the warmup)."""
    warmup_double_every_tokens: PositiveInt | None = None
    """…and double it every this many tokens, up to ``global_batch_size``."""

    @model_validator(mode="after")
    def _check(self) -> BatchConfig:
        if (self.warmup_start_size is None) != (self.warmup_double_every_tokens is None):
            raise ValueError(
                "warmup_start_size and warmup_double_every_tokens must be set together"
            )
        if self.warmup_start_size is not None and self.warmup_start_size > self.global_batch_size:
            raise ValueError(
                f"warmup_start_size ({self.warmup_start_size}) must not exceed "
                f"global_batch_size ({self.global_batch_size})"
            )
        return self


class DataConfig(StrictConfig):
    paths: list[str] = Field(default_factory=list)
    """Token-shard folders (with manifest.json) or individual .npy shards."""
    dtype: Literal["auto", "uint16", "uint32"] = "auto"
    """Token dtype; 'auto' reads it from the manifest (shards without one need it set)."""
    order: OrderKind | None = None
    """The global data order (``olmo.data.order``): ``feistel`` (computed per position, no
    per-instance memory) or ``pcg64-shuffle`` (a whole permutation per epoch, the order of runs
    made before ``feistel``). Unset: ``feistel`` for a new run, and a resumed run keeps the order
    its checkpoint records. The trainer writes the order it used into the run's config.yaml."""
    cache_dir: str | None = None
    """Local folder of the token shards downloaded from an object store (``paths`` given as
    ``s3://``/``gs://`` URIs), shared by the processes of a node; default
    ``$OLMO_DATA_CACHE_DIR``, else ``~/.cache/olmo/shards``."""
    cache_max_bytes: PositiveInt = 64 << 30
    """Bound of that cache: least-recently-used shards not in use are evicted to stay under it."""
    prefetch_shards: NonNegativeInt = 4
    """Shards downloaded ahead of the data order, in the background (0: none)."""
    remote_read: Literal["auto", "cache", "range"] = "auto"
    """How token shards on an object store are read: ``cache`` downloads each shard whole into
    the cache above (sha256-checked against the manifest); ``range`` fetches each instance's
    tokens with a ranged GET, prefetched into a bounded memory buffer (nothing on disk; sizes
    checked, the transport trusted: no sha256), for data much larger than the cache; ``auto``
    takes ``cache`` when the remote shards fit ``cache_max_bytes``, else ``range``."""
    prefetch_requests: NonNegativeInt = 8
    """``range`` mode: ranged GETs in flight at a time, ahead of the data order (0: none)."""
    range_buffer_bytes: PositiveInt = 256 << 20
    """``range`` mode: bound of the in-memory buffer of prefetched ranges, per process."""

    def shard_options(self) -> dict[str, Any]:
        """``open_shards`` keyword arguments for any token folders of this run (training,
        validation, ``inspect-batch``): the dtype and the remote cache, set in one place."""
        return {
            "dtype": self.dtype,
            "cache_dir": self.cache_dir,
            "cache_max_bytes": self.cache_max_bytes,
            "prefetch_shards": self.prefetch_shards,
            "remote_read": self.remote_read,
            "prefetch_requests": self.prefetch_requests,
            "range_buffer_bytes": self.range_buffer_bytes,
        }


class CheckpointConfig(StrictConfig):
    save_interval: PositiveInt = 1000
    keep_last: PositiveInt | None = 3
    """Keep the newest N complete checkpoints (None keeps all)."""
    keep_every: PositiveInt | None = None
    """Also keep every checkpoint whose step is a multiple of this."""
    require_evaluated: bool = False
    """Never delete a checkpoint the eval worker has not marked EVALUATED."""
    rotate: bool = True
    """Apply the retention policy after every save (``olmo-ckpt rotate`` does it by hand)."""
    save_on_sigterm: bool = True
    sigterm_grace_seconds: Annotated[float, Field(gt=0)] = 30.0
    """Time between SIGTERM and SIGKILL (the pod's terminationGracePeriodSeconds; the
    OLMO_TERMINATION_GRACE_SECONDS environment variable overrides it). The trainer saves on
    SIGTERM only if its last save took less than what is left of this."""


class EvalConfig(StrictConfig):
    interval: PositiveInt | None = 1000
    """Run in-loop evaluation every N steps (None disables it)."""
    tasks: list[str] = Field(default_factory=list)
    """Downstream tasks run in-loop (``olmo.eval``: names, or ``core`` for all nine)."""
    limit: PositiveInt | None = None
    """Evaluate at most this many items per task."""
    batch_size: PositiveInt = 16
    """Sequences per forward pass of the in-loop downstream evaluation."""
    tokenizer: str | None = None
    """``tokenizer.json`` for the downstream tasks (default: the one data-prep wrote next to the
    first ``data.paths`` folder's manifest)."""
    validation_paths: list[str] = Field(default_factory=list)
    """Token shards for held-out perplexity (same formats as ``data.paths``)."""
    validation_instances: PositiveInt = 64
    """Score at most this many validation instances per evaluation."""


class LoggingConfig(StrictConfig):
    log_interval: PositiveInt = 1
    """Write metrics every N steps."""
    peak_flops_per_device: Annotated[float, Field(gt=0)] | None = None
    """Peak FLOP/s of one device for MFU; default: H100 bf16 989e12 on CUDA, none on CPU."""


class WandbConfig(StrictConfig):
    mode: Literal["online", "offline", "disabled"] = "disabled"
    project: str = "olmo"
    entity: str | None = None
    group: str | None = None


class DeepSpeedConfig(StrictConfig):
    """How DeepSpeed shards and communicates; none of it changes the maths of a step.

    ``zero_stage``: 1 partitions the fp32 master weights and AdamW moments over the processes
    (16 bytes per parameter / N), 2 the gradients too, 3 the bf16 parameters as well (the model is
    created partitioned, under ``zero.Init``, and gathered layer by layer in forward/backward).
    The presets keep the smallest stage that fits an 80 GB GPU with room for activations
    (``configs/*.yaml``); a run may change stage when resuming (the checkpoint is converted
    through DeepSpeed's universal format, as for a change of world size).

    Bucket sizes are in elements. ``None``: derived from the model width ``d`` by the rule of
    the Hugging Face DeepSpeed integration's ``auto`` values (ZeRO-3 reduce bucket d², prefetch
    0.9·d², parameters under 10·d elements kept whole on every rank), and 2e8 for the ZeRO-1/2
    buckets: DeepSpeed's default 5e8 with ``overlap_comm`` holds 4.5 × (reduce + all-gather)
    bucket bytes, ~9 GB in bf16, where 2e8 holds ~3.6 GB for the same few large collectives.

    Offload (for one GPU too small for the model's training state; slower, never on by default):
    ``offload_optimizer: cpu`` keeps the fp32 master weights, gradients' fp32 copies and AdamW
    moments in host memory (~16 bytes per parameter / N, 7B: ~103 GiB on one process) and steps
    them with DeepSpeed's CPU Adam (same betas, eps and decoupled weight decay, same groups);
    ``offload_param: cpu`` (ZeRO-3 only) also keeps the bf16 parameters there between uses."""

    zero_stage: Literal[1, 2, 3] = 3
    overlap_comm: bool = True
    """Overlap the gradient reduction with the backward pass (costs the bucket memory above)."""
    contiguous_gradients: bool = True
    """Copy gradients into one contiguous buffer as they are produced (less fragmentation)."""
    reduce_scatter: bool = True
    """ZeRO-1/2: reduce gradients with reduce-scatter rather than all-reduce."""
    reduce_bucket_size: PositiveInt | None = None
    """Elements reduced at a time (None: d² at ZeRO-3, 2e8 at ZeRO-1/2)."""
    allgather_bucket_size: PositiveInt | None = None
    """ZeRO-1/2: elements all-gathered at a time after the step (None: 2e8)."""
    stage3_prefetch_bucket_size: PositiveInt | None = None
    """ZeRO-3: parameters fetched ahead of use, in elements (None: 0.9·d²)."""
    stage3_param_persistence_threshold: NonNegativeInt | None = None
    """ZeRO-3: parameters smaller than this stay whole on every rank (None: 10·d)."""
    stage3_max_live_parameters: PositiveInt = 1_000_000_000
    """ZeRO-3: gathered parameters held at once before released (DeepSpeed's default)."""
    stage3_max_reuse_distance: NonNegativeInt = 1_000_000_000
    """ZeRO-3: a parameter used again within this many elements is not released."""
    offload_optimizer: Literal["none", "cpu"] = "none"
    """``cpu``: optimizer state and step in host memory (DeepSpeed's CPU Adam), any stage."""
    offload_param: Literal["none", "cpu"] = "none"
    """``cpu``: ZeRO-3's parameter partitions in host memory between uses (stage 3 only)."""
    pin_memory: bool = True
    """Offloaded tensors in page-locked host memory (faster copies; counts against the pod's
    memory limit like any other)."""

    @model_validator(mode="after")
    def _check_offload(self) -> DeepSpeedConfig:
        if self.offload_param != "none" and self.zero_stage != 3:
            raise ValueError(
                f"deepspeed.offload_param: {self.offload_param} needs deepspeed.zero_stage: 3 "
                f"(ZeRO-{self.zero_stage} keeps the whole bf16 model on every GPU); use "
                "offload_optimizer alone at stages 1/2"
            )
        return self


class TrainConfig(StrictConfig):
    run_name: str
    seed: NonNegativeInt = 6198
    model: ModelConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    grad_clip: GradClipConfig = GradClipConfig()
    batch: BatchConfig = BatchConfig()
    max_steps: PositiveInt
    """Length of the run; the schedules are laid out over it."""
    stop_at: PositiveInt | None = None
    """Stop (saving a checkpoint) at this step without changing any schedule; resume later."""
    precision: Literal["bf16", "fp32"] = "bf16"
    """Compute precision; master weights and optimizer state are always fp32."""
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    compile: bool = False
    """``torch.compile`` the model through the DeepSpeed engine (``engine.compile()``: ZeRO's
    hooks stay outside the compiled graphs; a ZeRO-3 step ran compiled). Off by default: slower on CPU
    (``olmo.train.engine``); ``benchmarks/gpu_all.py`` measures it on a GPU."""
    data: DataConfig = DataConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    eval: EvalConfig = EvalConfig()
    logging: LoggingConfig = LoggingConfig()
    wandb: WandbConfig = WandbConfig()

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.batch.micro_batch_size > self.batch.global_batch_size:
            raise ValueError(
                f"batch.micro_batch_size ({self.batch.micro_batch_size}) must not exceed "
                f"batch.global_batch_size ({self.batch.global_batch_size})"
            )
        schedule = self.scheduler.warmup_steps + self.scheduler.anneal_steps
        if schedule > self.max_steps:
            raise ValueError(
                f"scheduler.warmup_steps + scheduler.anneal_steps ({schedule}) must not exceed "
                f"max_steps ({self.max_steps})"
            )
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.batch.global_batch_size * self.model.max_sequence_length


def load_train_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Load ``configs/NAME.yaml`` and apply ``section.key=value`` overrides."""
    data = apply_overrides(load_yaml(path), overrides, schema=TrainConfig)
    return validate(TrainConfig, data, source=f"config {path}")
