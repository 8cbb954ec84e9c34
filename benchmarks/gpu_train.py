"""The trainer on a GPU: the 1B preset, DeepSpeed ZeRO-3 bf16, seq 2048, one process.

Writes a synthetic token dataset, runs ``olmo-train`` exactly as a pod would (``python -m
olmo.train.cli --config configs/1b.yaml --run-dir ... --set ...``), then reads its
metrics.jsonl: median tokens/s and MFU over the steps after warm-up, peak memory, the time of
the final checkpoint save. Run on a lent GPU machine; CI never runs it.

    PYTHONUNBUFFERED=1 python benchmarks/gpu_train.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from olmo.data.shards import ShardWriter, write_manifest


def synthetic_dataset(folder: Path, tokens: int, vocab: int, eos: int) -> Path:
    rng = np.random.default_rng(0)
    with ShardWriter(folder, dtype="uint16", eos_token_id=eos) as writer:
        written = 0
        while written < tokens:
            doc = rng.integers(0, vocab - 1, size=int(rng.integers(200, 4000)), dtype=np.int64)
            writer.add_document(doc, doc_id=f"d{written}", source="synthetic")
            written += len(doc) + 1
    write_manifest(
        folder, shards=writer.shards, dtype="uint16", eos_token_id=eos,
        tokenizer={"name": "synthetic", "vocab_size": vocab}, sources={"synthetic": {}},
    )  # fmt: skip
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/1b.yaml")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--warmup-steps", type=int, default=5, help="steps left out of timing")
    parser.add_argument("--out", default="gpu_train.json")
    parser.add_argument("--extra", nargs="*", default=[], help="more --set overrides")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="olmo-gpu-train-"))
    seq = 2048
    tokens = (args.steps + 2) * args.global_batch * seq
    t0 = time.time()
    data = synthetic_dataset(work / "data", tokens, vocab=50280, eos=50279)
    print(f"dataset: {tokens} tokens in {time.time() - t0:.1f}s", flush=True)
    overrides = [
        f"data.paths=[{data}]", f"max_steps={args.steps}", "scheduler.warmup_steps=2",
        f"batch.global_batch_size={args.global_batch}", f"batch.micro_batch_size={args.micro_batch}",
        f"checkpoint.save_interval={args.steps}", "checkpoint.keep_last=1", "eval.interval=null",
        "wandb.mode=disabled", *args.extra,
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "olmo.train.cli", "--config", args.config,
           "--run-dir", str(work / "run")]  # fmt: skip
    for item in overrides:
        cmd += ["--set", item]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    log = proc.stderr
    print(log[-3000:], flush=True)
    metrics = [
        json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    timed = [m for m in metrics if "tokens_per_s" in m and m["step"] > args.warmup_steps]
    saved = re.findall(r"saved \S+ in ([0-9.]+)s", log)
    result = {
        "returncode": proc.returncode,
        "config": args.config,
        "steps": args.steps,
        "global_batch_instances": args.global_batch,
        "micro_batch": args.micro_batch,
        "seq_len": seq,
        "tokens_per_s_median": statistics.median(m["tokens_per_s"] for m in timed),
        "mfu_median": statistics.median(m["mfu"] for m in timed) if "mfu" in timed[0] else None,
        "peak_memory_gib": max(m["memory_gib"] for m in timed),
        "first_loss": metrics[0]["loss"],
        "last_loss": metrics[-1]["loss"],
        "checkpoint_save_seconds": float(saved[-1]) if saved else None,
        "wall_seconds": round(wall, 1),
    }
    print(json.dumps(result), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
