"""``olmo-train``: the trainer entrypoint (the same command locally, under torchrun, in pods).

    olmo-train --config configs/tiny.yaml --run-dir runs/tiny [--resume latest] [--set k=v ...]
    olmo-train --config ... --run-dir s3://bucket/runs/tiny [--staging-dir /scratch]
    torchrun --nproc-per-node 2 -m olmo.train.cli --config ... --run-dir ...
    olmo-train inspect-batch --run-dir runs/tiny --step 12 [--json]
    olmo-train plot runs/tiny

Exit codes (``olmo.train.exit_codes``): 0 done, 1 failed, 2 bad config, 3 fenced (a newer attempt
owns the run directory), 75 preempted (resumable).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from olmo.config import ConfigError
from olmo.train import exit_codes

SUBCOMMANDS = ("inspect-batch", "plot")


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmo-train", description="Train an OLMo model.")
    p.add_argument("--config", required=True, help="training config YAML (configs/*.yaml)")
    p.add_argument(
        "--run-dir", required=True,
        help="where checkpoints and metrics go: a folder, or s3://bucket/prefix, gs://bucket/prefix",
    )  # fmt: skip
    p.add_argument(
        "--staging-dir",
        help="with a run dir on an object store: the local folder checkpoints are written to "
        "before their upload (default: $OLMO_STAGING_DIR, else a folder in the temp dir)",
    )
    p.add_argument(
        "--resume",
        help="'latest' (the newest COMPLETE checkpoint in RUN_DIR, if any) or a checkpoint path",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set optimizer.lr=1e-3 (repeatable)",
    )  # fmt: skip
    return p


def train_main(argv: list[str]) -> int:
    args = _train_parser().parse_args(argv)
    from olmo.train.config import load_train_config

    try:
        config = load_train_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"olmo-train: {e}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    # DeepSpeed still calls torch.distributed functions that torch has renamed.
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.\w+` is deprecated")
    from olmo.train.distributed import init_distributed

    dist = init_distributed()
    logging.basicConfig(
        level=logging.INFO if dist.is_main else logging.WARNING,
        format=f"%(asctime)s [rank{dist.rank}] %(levelname)s %(name)s: %(message)s",
    )
    from olmo.checkpoints.fence import FencedError
    from olmo.train.trainer import Trainer

    try:
        trainer = Trainer(
            config, args.run_dir, dist, resume=args.resume, staging_dir=args.staging_dir
        )
    except FencedError as e:
        print(f"olmo-train: {e}", file=sys.stderr)
        return exit_codes.FENCED
    except (ValueError, FileNotFoundError) as e:
        print(f"olmo-train: {e}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    from olmo.train.upload import UploadError

    try:
        return trainer.fit()
    except FencedError as e:  # a newer attempt took the run directory while this one trained
        print(f"olmo-train: {e}", file=sys.stderr)
        return exit_codes.FENCED
    except UploadError as e:
        print(f"olmo-train: {e}", file=sys.stderr)
        return exit_codes.FAILED


def inspect_batch_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="olmo-train inspect-batch",
        description="Print, offline, the documents in the global batch of optimizer step N.",
    )
    p.add_argument("--run-dir", required=True)
    p.add_argument("--step", type=int, required=True, help="1-based, as in metrics.jsonl")
    p.add_argument("--json", action="store_true", help="one JSON object per instance")
    args = p.parse_args(argv)
    from olmo.train.inspect import batch_documents

    try:
        batch = batch_documents(Path(args.run_dir), args.step)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"olmo-train inspect-batch: {e}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    for row in batch:
        if args.json:
            print(json.dumps(row))
            continue
        print(f"position {row['position']}  instance {row['instance']}  epoch {row['epoch']}")
        for d in row["documents"]:
            print(
                f"    {d['id']:<24} src={d['src']:<16} shard={d['shard']} "
                f"doc_tokens=[{d['start']},{d['end']}) in_instance=[{d['instance_start']},"
                f"{d['instance_end']})"
            )
    return exit_codes.SUCCESS


def plot_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="olmo-train plot", description="Write loss, lr and throughput PNGs for a run."
    )
    p.add_argument("run_dir")
    p.add_argument("--out", help="output folder (default: RUN_DIR/plots)")
    args = p.parse_args(argv)
    from olmo.train.plots import plot_run

    try:
        written = plot_run(Path(args.run_dir), Path(args.out) if args.out else None)
    except FileNotFoundError as e:
        print(f"olmo-train plot: {e}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    for path in written:
        print(path)
    return exit_codes.SUCCESS


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "inspect-batch":
        return inspect_batch_main(argv[1:])
    if argv and argv[0] == "plot":
        return plot_main(argv[1:])
    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
