"""The trainer's overhead: a full ``Trainer.train_step()`` (DeepSpeed ZeRO-3, bf16) against a
bare training step on the same model architecture and the same micro-batches.

The bare step is what the trainer must do at least: plain ``OLMo`` (fp32 weights) under CPU
bf16 autocast, fused loss, backward, gradient clipping at 1.0, ``torch.optim.AdamW`` step. The
trainer is built through its real config path (``TrainConfig`` with a model preset, a synthetic
token dataset written with ``ShardWriter``) in one process (gloo, world size 1). The two
alternate round by round so that machine noise hits both alike. Per preset it prints tokens/s
for each and the overhead ratio (trainer step time / bare step time); the goal is ≤ 1.15.

    python benchmarks/bench_train.py [--presets tiny 100m] [--seq-len 256] [--batch 4]
        [--rounds 6] [--steps 1] [--warmup 1] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

GOAL = 1.15
SEED = 1234


def write_tokens(folder: Path, vocab_size: int, eos_token_id: int, num_tokens: int) -> Path:
    """Random documents of uint16 token ids below ``vocab_size``, with a manifest."""
    from olmo.data.shards import ShardWriter, write_manifest

    rng = np.random.default_rng(0)
    with ShardWriter(folder, dtype="uint16", eos_token_id=eos_token_id) as writer:
        written, i = 0, 0
        while written < num_tokens:
            length = int(rng.integers(64, 2048))
            writer.add_document(
                rng.integers(0, vocab_size, size=length, dtype=np.uint16),
                doc_id=f"doc-{i:06d}",
                source="synthetic",
            )
            written, i = written + length + 1, i + 1
    write_manifest(
        folder,
        shards=writer.shards,
        dtype="uint16",
        eos_token_id=eos_token_id,
        tokenizer={"name": "synthetic", "vocab_size": vocab_size},
        sources={"synthetic": {}},
    )
    return folder


def train_config(preset: str, data: Path, seq_len: int, batch: int):
    from olmo.train.config import TrainConfig

    return TrainConfig.model_validate(
        {
            "run_name": f"bench-train-{preset}",
            "seed": SEED,
            "model": {"preset": preset, "max_sequence_length": seq_len},
            "batch": {"global_batch_size": batch, "micro_batch_size": batch},
            "max_steps": 1_000_000,
            "precision": "bf16",
            "data": {"paths": [str(data)]},
            "checkpoint": {"save_interval": 1_000_000},
            "eval": {"interval": None},
            "wandb": {"mode": "disabled"},
        }
    )


class BareStep:
    """The reference: what one training step costs without DeepSpeed or the trainer."""

    def __init__(self, config, batches: list[tuple[torch.Tensor, torch.Tensor]]):
        from olmo.model.transformer import OLMo

        o = config.optimizer
        torch.manual_seed(config.seed)
        self.model = OLMo(config.model).train()
        decay, no_decay = [], []  # the trainer's parameter groups
        for name, param in self.model.named_parameters():
            is_embedding = name.startswith("embed.")
            (no_decay if is_embedding and not o.decay_embeddings else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": o.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=o.lr, betas=o.betas, eps=o.eps
        )
        self.batches = batches
        self.step_index = 0

    def __call__(self) -> None:
        ids, labels = self.batches[self.step_index % len(self.batches)]
        self.step_index += 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = self.model(ids, labels=labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def trainer_batches(trainer, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The micro-batches the trainer consumes in its first ``count`` steps (one per step)."""
    from olmo.train.step import make_inputs

    batch = trainer.config.batch.global_batch_size
    return [
        make_inputs(
            trainer.dataset.get_batch(trainer.order.indices(step * batch, batch)),
            trainer.dist.device,
        )
        for step in range(count)
    ]


def bench_preset(preset: str, args, dist, workdir: Path) -> dict:
    from olmo.model.config import model_preset
    from olmo.train.trainer import Trainer

    model = model_preset(preset)
    tokens_per_step = args.batch * args.seq_len
    total_steps = args.warmup + args.rounds * args.steps
    data = write_tokens(
        workdir / f"data-{preset}",
        model.vocab_size,
        model.eos_token_id,
        num_tokens=max(tokens_per_step * total_steps, 64 * args.seq_len) + args.seq_len,
    )
    config = train_config(preset, data, args.seq_len, args.batch)
    trainer = Trainer(config, workdir / f"run-{preset}", dist)
    bare = BareStep(config, trainer_batches(trainer, total_steps))
    steps = {"trainer": trainer.train_step, "bare": bare}
    try:
        for _ in range(args.warmup):  # allocator, kernels, optimizer state
            for step in steps.values():
                step()
        seconds: dict[str, list[float]] = {"trainer": [], "bare": []}
        for round_index in range(args.rounds):
            order = ["trainer", "bare"] if round_index % 2 == 0 else ["bare", "trainer"]
            for name in order:
                step = steps[name]
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                seconds[name].append((time.perf_counter() - start) / args.steps)
    finally:
        trainer.callbacks.on_finish()
    trainer_s, bare_s = statistics.median(seconds["trainer"]), statistics.median(seconds["bare"])
    del trainer, bare, steps
    gc.collect()
    return {
        "preset": preset,
        "trainer_tokens_per_s": round(tokens_per_step / trainer_s, 1),
        "bare_tokens_per_s": round(tokens_per_step / bare_s, 1),
        "overhead_ratio": round(trainer_s / bare_s, 3),
        "trainer_step_s": round(trainer_s, 6),
        "bare_step_s": round(bare_s, 6),
        "trainer_round_step_s": [round(s, 6) for s in seconds["trainer"]],
        "bare_round_step_s": [round(s, 6) for s in seconds["bare"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "100m"])
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4, help="instances per step (one micro)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each first")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()

    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before anything imports deepspeed
    # DeepSpeed still calls torch.distributed functions that torch has renamed.
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.\w+` is deprecated")
    from olmo.train.distributed import init_distributed

    # DeepSpeed prints (its op builds) to stdout: keep stdout for the results.
    with contextlib.redirect_stdout(sys.stderr):
        dist = init_distributed()
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)  # set up by the import
        try:
            with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
                results = [bench_preset(p, args, dist, Path(tmp)) for p in args.presets]
        finally:
            torch.distributed.destroy_process_group()

    if args.json:
        summary = {
            "benchmark": "train_step_overhead",
            "results": results,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "threads": torch.get_num_threads(),
            "goal": GOAL,
        }
        print(json.dumps(summary))
        return
    print(
        f"trainer step (DeepSpeed ZeRO-3, bf16) vs bare step (OLMo + autocast bf16 + AdamW), "
        f"CPU, batch={args.batch} seq_len={args.seq_len}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"  {'preset':<8} {'trainer tok/s':>14} {'bare tok/s':>12} {'trainer s':>10} "
        f"{'bare s':>8} {'overhead':>9}   per-round overhead"
    )
    for r in results:
        per_round = [
            t / b for t, b in zip(r["trainer_round_step_s"], r["bare_round_step_s"], strict=True)
        ]
        print(
            f"  {r['preset']:<8} {r['trainer_tokens_per_s']:14.1f} "
            f"{r['bare_tokens_per_s']:12.1f} {r['trainer_step_s']:10.3f} "
            f"{r['bare_step_s']:8.3f} {r['overhead_ratio']:8.3f}x   "
            f"{min(per_round):.2f}-{max(per_round):.2f}x"
        )
    print(f"  goal: overhead (trainer step time / bare step time) <= {GOAL}x")


if __name__ == "__main__":
    main()
