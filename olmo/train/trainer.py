"""The trainer: config → build → train. DeepSpeed ZeRO-3 (``engine``), OLMo's schedules
(``schedule``), a deterministic data order (``step``), and callbacks for everything else:
checkpoints, metrics, progress reports, evaluation (``callbacks``); the loop is ``loop``. A run
directory on an object store is worked on through a local mirror and uploaded in the background
(``upload``).

Every rank builds the same trainer and runs the same loop.
"""

from __future__ import annotations

import logging
from pathlib import Path

from olmo.checkpoints.paths import CONFIG_FILE
from olmo.config import dump_yaml
from olmo.data.dataset import InstanceDataset
from olmo.data.order import GlobalOrder, resolve_order
from olmo.data.shards import open_shards
from olmo.storage import StrPath, is_remote, location
from olmo.train import loop
from olmo.train.callbacks import Callbacks
from olmo.train.callbacks.checkpointer import Checkpointer
from olmo.train.callbacks.downstream import DownstreamEval, eval_tokenizer
from olmo.train.callbacks.progress import JobProgress
from olmo.train.callbacks.train_metrics import TrainMetrics
from olmo.train.callbacks.validation import Validation, open_validation
from olmo.train.checkpointing import TrainerState, git_commit, package_versions
from olmo.train.config import TrainConfig
from olmo.train.distributed import DistInfo, barrier
from olmo.train.engine import start_engine
from olmo.train.fencing import RunDirFence
from olmo.train.metrics import MetricsLogger
from olmo.train.preemption import Preemption
from olmo.train.resume import Resumed
from olmo.train.schedule import batch_sizes
from olmo.train.step import TrainStep
from olmo.train.upload import (
    NodeInfo,
    Uploader,
    fetch_side_files,
    mirror_dir,
    staging_root,
    upload_config,
)

log = logging.getLogger("olmo.train")


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        run_dir: StrPath,
        dist: DistInfo,
        resume: str | None = None,
        staging_dir: str | None = None,
    ):
        """``run_dir``: a local folder or a URI (``s3://…``, ``gs://…``: the trainer then works
        in a local mirror under ``staging_dir`` and uploads to it, ``olmo.train.upload``)."""
        self.config, self.dist = config, dist
        self.remote = location(run_dir) if is_remote(run_dir) else None
        """The run directory on an object store (None: a local run directory)."""
        self.run_dir = (
            mirror_dir(staging_root(staging_dir), self.remote) if self.remote else Path(run_dir)
        )
        self.node = NodeInfo.from_env(dist.rank, dist.local_rank, dist.world_size)
        # Everything that can be wrong with the config or the data fails here, before any
        # file is written or a process group is waited on.
        self.dataset, manifest_sha256 = open_training_data(config)
        validation = open_validation(config)
        check_batch_split(config, dist.world_size)
        tokenizer = eval_tokenizer(config) if config.eval.tasks else None

        if dist.is_main or (self.remote and self.node.uploads):  # a mirror is node-local
            self.run_dir.mkdir(parents=True, exist_ok=True)
        barrier()
        # Started by the operator: take the run directory for this attempt before writing
        # anything in it, or stop (FencedError) when a newer attempt has it.
        self.fence = RunDirFence.from_env(self.remote or self.run_dir, dist)
        self.fence.claim()
        if self.remote and dist.is_main:
            fetch_side_files(self.remote, self.run_dir)  # a resumed run continues metrics.jsonl

        self.engine, self.state, resumed = start_engine(
            config, self.run_dir, dist, resume, self.remote, downloads=self.node.uploads
        )
        resumed_from = resumed.checkpoint
        # A new run takes the configured (or default) data order; a resumed one keeps its own.
        order = resolve_order(config.data.order, self.state.data_order, resumed_from is not None)
        if order != config.data.order:
            log.info("data order: %s", order)
            config.data.order = order
        self.order = GlobalOrder(len(self.dataset), config.seed, kind=order)
        if dist.is_main:
            (self.run_dir / CONFIG_FILE).write_text(dump_yaml(config))
            if self.remote:
                upload_config(self.remote, self.run_dir)
        barrier()
        if resumed_from is not None and self.state.data_manifest_sha256 != manifest_sha256:
            log.warning(
                "the training data differs from the checkpoint's (manifest sha256 %s → %s): "
                "the data order will not continue the interrupted run exactly",
                self.state.data_manifest_sha256, manifest_sha256,
            )  # fmt: skip
        record_provenance(self.state, config, manifest_sha256)
        self.train_step = TrainStep(config, self.engine, self.dataset, self.order, self.state, dist)
        self.preemption = Preemption(dist.device)

        # The order of the callbacks is the order of their work after each step: log the step,
        # report it, save, then evaluate.
        metrics = MetricsLogger(self.run_dir, config, self.state.step, dist.is_main)
        self.callbacks = Callbacks([TrainMetrics(metrics, config, dist)])
        progress = JobProgress.from_env(dist.is_main)
        if progress is not None:
            self.callbacks.append(progress)
            if resumed_from is not None:
                # The operator posts a CheckpointSkipped Event when ``skipped`` is not empty.
                progress.reporter.report({"resume": resume_report(resumed)}, urgent=True)
        uploader = None
        if self.remote and self.node.uploads:
            uploader = Uploader(
                self.remote, self.run_dir, self.node, check_fence=self.fence.check_here
            )
        self.callbacks.append(
            Checkpointer(
                config,
                self.run_dir,
                self.engine,
                self.state,
                dist,
                self.preemption,
                self.callbacks,
                self.fence,
                uploader,
                remote=self.remote is not None,
            )
        )
        if validation is not None and len(validation):
            self.callbacks.append(Validation(validation, self.engine, metrics, config, dist))
        if tokenizer is not None:
            self.callbacks.append(DownstreamEval(tokenizer, self.engine, metrics, config, dist))

    def fit(self) -> int:
        """Train until ``max_steps``, ``stop_at`` or SIGTERM; returns the exit code."""
        return loop.run(
            self.train_step,
            self.state,
            self.callbacks,
            self.preemption,
            max_steps=self.config.max_steps,
            stop_at=self.config.stop_at,
        )


def open_training_data(config: TrainConfig) -> tuple[InstanceDataset, list]:
    """(instances, the manifests' sha256) of ``data.paths``; every shard file is checked to be
    there with its manifest's size (no data is read)."""
    seq_len = config.model.max_sequence_length
    if not config.data.paths:
        raise ValueError("data.paths is empty: give token-shard folders or .npy files")
    shards = open_shards(config.data.paths, **config.data.shard_options())
    shards.check_files()
    dataset = InstanceDataset(shards, seq_len)
    if len(dataset) == 0:
        raise ValueError(f"the training data holds fewer than {seq_len} tokens")
    return dataset, list(shards.manifest_sha256)


def check_batch_split(config: TrainConfig, world_size: int) -> None:
    """Every global batch the schedule uses must split evenly over the processes."""
    for size in batch_sizes(config.batch):
        if size % world_size:
            raise ValueError(
                f"global batch of {size} instances does not split evenly over {world_size} "
                "processes"
            )


def resume_report(resumed: Resumed) -> dict:
    """The ``resume`` progress field: the checkpoint loaded and the newer ones skipped."""
    return {
        "step": resumed.loaded.step,
        "path": str(resumed.checkpoint),
        "skipped": [s.as_dict() for s in resumed.skipped],
    }


def record_provenance(state: TrainerState, config: TrainConfig, manifest_sha256: list) -> None:
    """What the next checkpoint records about this run: config, versions, commit, data."""
    state.config = config.model_dump(mode="json")
    state.versions = package_versions()
    state.git_commit = git_commit()
    state.data_manifest_sha256 = manifest_sha256
    state.data_order = config.data.order
