"""``olmo-train``: the trainer entrypoint (the same command locally, under torchrun, in pods).

    olmo-train --config configs/tiny.yaml --run-dir runs/tiny [--resume latest] [--set k=v ...]
    olmo-train --config ... --run-dir s3://bucket/runs/tiny [--staging-dir /scratch]
    olmo-train --config ... --run-dir ... --preflight-timeout 300
    torchrun --nproc-per-node 2 -m olmo.train.cli --config ... --run-dir ...
    olmo-train inspect-batch --run-dir runs/tiny --step 12 [--json]
    olmo-train plot runs/tiny

Exit codes (``olmo.train.exit_codes``): 0 done, 1 failed, 2 bad config, 3 fenced (a newer attempt
owns the run directory), 75 preempted (resumable), 77 preflight failed.

With a preflight time limit (``--preflight-timeout`` or ``OLMO_PREFLIGHT_TIMEOUT_SECONDS``, > 0)
every rank checks its device, the run directory's storage and the collectives
(``olmo.train.preflight``) once the process group is up and before the trainer is built; any
failure ends every rank with 77. Started by the operator, rank 0 reports ``state`` as it goes:
``starting`` from the process start, ``preflight`` while it runs (then its result), ``starting``
again while the trainer is built and the checkpoint loaded, ``training`` once it is built.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    p.add_argument(
        "--preflight-timeout", metavar="SECONDS",
        help="check devices, storage and collectives before training, within this time limit "
        "(default: $OLMO_PREFLIGHT_TIMEOUT_SECONDS; 0 or absent: no preflight)",
    )  # fmt: skip
    return p


def train_main(argv: list[str]) -> int:
    from olmo.json_records import now_iso

    started = now_iso()
    args = _train_parser().parse_args(argv)
    from olmo.train.config import load_train_config
    from olmo.train.preflight import preflight_timeout

    try:
        config = load_train_config(args.config, args.overrides)
        preflight = preflight_timeout(args.preflight_timeout)
    except (ConfigError, ValueError) as e:
        print(f"olmo-train: {e}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    # DeepSpeed still calls torch.distributed functions that torch has renamed.
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.\w+` is deprecated")
    from olmo.train.callbacks.progress import JobProgress

    # Rank 0 of an operator run reports from the start (before the process group is up).
    progress = JobProgress.from_env(int(os.environ.get("RANK", "0")) == 0)
    if progress is not None:
        progress.set_state("starting", since=started)
    try:
        return _train(args, config, preflight, progress)
    finally:
        if progress is not None:  # sends what is pending (the trainer may have closed it)
            progress.close()


def _train(args, config, preflight: float, progress) -> int:
    from olmo.train.distributed import init_distributed

    try:
        dist = init_distributed()
    except ValueError as e:  # a bad OLMO_COLLECTIVE_TIMEOUT_SECONDS
        print(f"olmo-train: {e}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    logging.basicConfig(
        level=logging.INFO if dist.is_main else logging.WARNING,
        format=f"%(asctime)s [rank{dist.rank}] %(levelname)s %(name)s: %(message)s",
    )
    if preflight > 0:
        from olmo.train.preflight import log_result, run_preflight

        if progress is not None:
            progress.set_state("preflight")
        result = run_preflight(dist, args.run_dir, preflight)
        if dist.is_main:
            log_result(result)
        if progress is not None:
            progress.report_preflight(result.as_report())
        if not result.passed:
            return exit_codes.PREFLIGHT_FAILED
        if progress is not None:  # building the trainer, loading the checkpoint
            progress.set_state("starting")
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

    if progress is not None:
        progress.set_state("training")
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
