"""Rebuild any global batch offline from a run's config: the data order is a pure function of
(seed, epoch) and the batch-size schedule a pure function of the step."""

from __future__ import annotations

from pathlib import Path

from olmo.checkpoints.paths import CONFIG_FILE
from olmo.config import load_yaml, validate
from olmo.data.dataset import InstanceDataset
from olmo.data.order import LEGACY_ORDER, GlobalOrder
from olmo.data.shards import open_shards
from olmo.train.config import TrainConfig
from olmo.train.schedule import batch_size_at, instances_before


def batch_documents(run_dir: Path, step: int) -> list[dict]:
    """For optimizer step ``step`` (1-based), each instance of its global batch with the
    documents (id, source, shard, token spans) it contains."""
    config_path = Path(run_dir) / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found: is {run_dir} a training run folder?")
    config = validate(TrainConfig, load_yaml(config_path), source=str(config_path))
    if step < 1:
        raise ValueError(f"--step is 1-based (the step numbers in metrics.jsonl), got {step}")
    seq_len = config.model.max_sequence_length
    dataset = InstanceDataset(
        open_shards(config.data.paths, **config.data.shard_options()), seq_len
    )
    # The trainer writes the order it used; a config.yaml without one predates the choice.
    order = GlobalOrder(len(dataset), config.seed, kind=config.data.order or LEGACY_ORDER)
    start = instances_before(step - 1, config.batch, seq_len)
    size = batch_size_at(start * seq_len, config.batch)
    rows = []
    for offset, instance in enumerate(order.indices(start, size)):
        rows.append(
            {
                "step": step,
                "position": start + offset,
                "epoch": order.epoch_of(start + offset),
                "instance": int(instance),
                "documents": [
                    {
                        "id": d.id,
                        "src": d.src,
                        "shard": d.shard,
                        "start": int(d.start),
                        "end": int(d.end),
                        "instance_start": int(d.instance_start),
                        "instance_end": int(d.instance_end),
                    }
                    for d in dataset.documents(int(instance))
                ],
            }
        )
    return rows
