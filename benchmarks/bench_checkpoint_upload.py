"""How long a training step is blocked by a checkpoint save: a local run directory against a run
directory on S3 with asynchronous uploads (issue 16, item 7).

The trainer is built through its real config path in one process (gloo, world size 1), once with
a local run directory and once with ``s3://`` on moto's S3 server (started here, on 127.0.0.1).
Each round trains ``--steps-between`` steps and then saves through the trainer's own
checkpointer; the blocked time is the save's wall time as the step sees it: for S3 the wait for
the previous round's upload plus the local save (the upload itself runs while training goes
on). Per preset it prints the median blocked seconds of each and the ratio async-S3 ÷ local;
the goal is ≤ 1.2.

    python benchmarks/bench_checkpoint_upload.py [--presets tiny 100m] [--rounds 4]
        [--steps-between 4] [--seq-len 256] [--batch 4] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

GOAL = 1.2


def checkpointer_of(trainer):
    from olmo.train.callbacks.checkpointer import Checkpointer

    return next(c for c in trainer.callbacks.callbacks if isinstance(c, Checkpointer))


def blocked_seconds(trainer, rounds: int, steps_between: int) -> list[float]:
    """Per round: train ``steps_between`` steps, then save; the save's wall time."""
    ckpt = checkpointer_of(trainer)
    seconds = []
    for _ in range(rounds):
        for _ in range(steps_between):
            trainer.train_step()
        start = time.perf_counter()
        ckpt.save()
        seconds.append(time.perf_counter() - start)
    if ckpt.uploader is not None:
        ckpt.uploader.wait()  # not counted: the end of training, the last upload awaited
    return seconds


def bench_preset(preset: str, args, dist, workdir: Path, bucket: str) -> dict:
    from bench_train import train_config, write_tokens

    from olmo.model.config import model_preset
    from olmo.train.trainer import Trainer

    model = model_preset(preset)
    data = write_tokens(
        workdir / f"data-{preset}",
        model.vocab_size,
        model.eos_token_id,
        num_tokens=args.batch * args.seq_len * (args.rounds * args.steps_between + 2) * 2,
    )
    out: dict = {"preset": preset}
    for kind, run_dir in (
        ("local", str(workdir / f"run-{preset}")),
        ("s3", f"{bucket}/runs/{preset}"),
    ):
        config = train_config(preset, data, args.seq_len, args.batch)
        config.checkpoint.keep_last = 2
        trainer = Trainer(config, run_dir, dist, staging_dir=str(workdir / f"stage-{preset}"))
        try:
            trainer.train_step()  # warm-up: allocator, kernels, optimizer state
            seconds = blocked_seconds(trainer, args.rounds, args.steps_between)
            upload = checkpointer_of(trainer).uploader
            if upload is not None:
                out["upload_seconds"] = round(upload.last_seconds or 0.0, 3)
        finally:
            trainer.callbacks.on_finish()
        out[f"{kind}_blocked_s"] = round(statistics.median(seconds), 4)
        out[f"{kind}_round_blocked_s"] = [round(s, 4) for s in seconds]
        del trainer
        gc.collect()
    out["ratio"] = round(out["s3_blocked_s"] / out["local_blocked_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "100m"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps-between", type=int, default=4, help="steps between saves")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.\w+` is deprecated")
    from olmo.train.distributed import init_distributed
    from tests.s3server import new_bucket, running_s3_server

    with contextlib.redirect_stdout(sys.stderr), running_s3_server() as server:
        os.environ.update(server.env())
        dist = init_distributed()
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        bucket = f"s3://{new_bucket(server)}"
        with tempfile.TemporaryDirectory(prefix="bench-ckpt-upload-") as tmp:
            results = [bench_preset(p, args, dist, Path(tmp), bucket) for p in args.presets]
    report = {"goal": GOAL, "results": results, "ratio": max(r["ratio"] for r in results)}
    if args.json:
        print(json.dumps(report))
        return
    for r in results:
        print(
            f"{r['preset']:>6}: blocked by a save: local {r['local_blocked_s']:.3f}s, "
            f"async s3 {r['s3_blocked_s']:.3f}s (upload {r.get('upload_seconds', 0):.1f}s in "
            f"the background); ratio {r['ratio']:.2f} (goal ≤ {GOAL})"
        )


if __name__ == "__main__":
    main()
