"""``olmo-eval``: evaluate one checkpoint, watch a run dir and evaluate every new checkpoint, or
compare two results.

olmo-eval run --checkpoint runs/tiny/checkpoints/step000300 --tasks copa,piqa --limit 50
olmo-eval run --checkpoint s3://bucket/runs/tiny/checkpoints/step000300 --tasks copa
olmo-eval watch runs/tiny --port 8080 --wandb-project olmo-tiny
olmo-eval watch s3://bucket/runs/tiny --cache-dir /scratch  # downloads each checkpoint there
olmo-eval watch runs/tiny --once                   # one pass, then exit (cron-style)
olmo-eval watch runs/tiny --until-step 300         # exit once step >= 300 is evaluated
olmo-eval compare runs/a/eval/step000300.json runs/b/eval/step000300.json

Exit codes: 0 ok; 1 runtime failure (a ``--once``/``--until-step`` watch also exits 1 when a
checkpoint it attempted is still failed); 2 bad usage or input. SIGTERM/SIGINT end ``watch``
with 0, from the moment the process starts (a handler is installed first thing: as a container's
PID 1 a Python program without one would ignore SIGTERM and be SIGKILLed after the grace
period): the checkpoint being evaluated is finished if it takes less than ``--grace-seconds``,
otherwise abandoned (nothing written for it; it is evaluated again by the next worker). SIGTERM
ends ``run`` and ``compare`` with 143.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from olmo.checkpoints import layout
from olmo.signals import EXIT_TERMINATED, Terminated, sigterm_raises
from olmo.storage import StorageError, check_reachable, is_remote, location
from olmo_evalworker import records, worker
from olmo_evalworker.worker import PROG, HttpSettings, UsageError, WandbSettings, WatchSettings

DEFAULT_EVALUATOR = "olmo.eval:evaluate_checkpoint"
DEFAULT_WANDB_PROJECT = "olmo"

log = logging.getLogger("olmo_evalworker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_watch(sub)
    _add_compare(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse: 2 for bad usage, 0 for --help
        return int(e.code or 0)
    _configure_logging(quiet=getattr(args, "quiet", False))
    try:
        with sigterm_raises():
            return args.func(args)
    except Terminated:
        log.info("stopped by SIGTERM")
        return 0 if args.command == "watch" else EXIT_TERMINATED
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("%s %s failed", PROG, args.command)
        return 1


# --------------------------------------------------------------------------------------------
# Options shared by run and watch


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--tasks",
        default="core",
        help="'core' (the nine OLMo tasks), a comma-separated list, or 'none' (default: core)",
    )
    g.add_argument("--limit", type=int, help="evaluate only the first N items of each task")
    g.add_argument("--batch-size", type=int, default=32, help="sequences per forward (32)")
    g.add_argument(
        "--tokenizer",
        help="tokenizer.json (default: the one data-prep wrote next to the run's training data, "
        "or the one inside an HF directory)",
    )
    g.add_argument(
        "--perplexity",
        action="append",
        default=[],
        metavar="SOURCE=PATH",
        help="also measure perplexity on PATH (token shards or JSONL) as SOURCE; repeatable",
    )
    g.add_argument("--perplexity-limit", type=int, help="documents per perplexity source")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    g.add_argument(
        "--no-verify",
        action="store_true",
        help="do not check the checkpoint's files against the sha256s in COMPLETE first",
    )
    g.add_argument(
        "--evaluator",
        default=DEFAULT_EVALUATOR,
        metavar="MODULE:FUNCTION",
        help="a callable with olmo.eval.evaluate_checkpoint's signature (default: that one)",
    )
    g.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="for a checkpoint or run dir on s3:// or gs://: the local folder checkpoints are "
        f"downloaded to, one at a time (default: ${records.STAGING_ENV}, else TMPDIR/olmo-eval)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress messages")


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be >= 1, got {value}")


def _eval_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``evaluate_checkpoint``, validated (UsageError otherwise)."""
    from olmo.eval.tasks import resolve_tasks

    _positive(args.limit, "--limit")
    _positive(args.batch_size, "--batch-size")
    _positive(args.perplexity_limit, "--perplexity-limit")
    text = args.tasks.strip()
    if text in ("none", ""):
        tasks: str | list[str] = []
    elif text == "core":
        tasks = "core"
    else:
        tasks = [t.strip() for t in text.split(",") if t.strip()]
    try:
        if tasks:
            resolve_tasks(tasks)
    except ValueError as e:
        raise UsageError(f"--tasks: {e}") from None
    perplexity: dict[str, list[str]] = {}
    for spec in args.perplexity:
        source, sep, path = spec.partition("=")
        if not sep or not source or not path:
            raise UsageError(f"--perplexity expects SOURCE=PATH, got {spec!r}")
        if not Path(path).exists():
            raise UsageError(f"--perplexity {spec}: {path} does not exist")
        perplexity.setdefault(source, []).append(path)
    if not tasks and not perplexity:
        raise UsageError("nothing to evaluate: --tasks none needs at least one --perplexity")
    if args.tokenizer is not None and not Path(args.tokenizer).exists():
        raise UsageError(f"--tokenizer {args.tokenizer} does not exist")
    _check_device(args.device)
    return {
        "tasks": tasks,
        "limit": args.limit,
        "batch_size": args.batch_size,
        "tokenizer": args.tokenizer,
        "perplexity": perplexity or None,
        "perplexity_limit": args.perplexity_limit,
        "device": args.device,
    }


def _check_device(device: str) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError as e:
        raise UsageError(f"--device {device}: {e}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    if parsed.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda[:N], got {device}")


def _load_evaluator(spec: str) -> Callable[..., Mapping[str, Any]]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--evaluator expects MODULE:FUNCTION, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"--evaluator {spec}: {e}") from None
    if not callable(fn):
        raise UsageError(f"--evaluator {spec} is not callable")
    return fn


def _check_task_data(options: Mapping[str, Any]) -> None:
    """Fail fast (exit 2) when the task data are not installed, rather than failing every
    checkpoint."""
    from olmo.eval.tasks import EvalDataMissing, load_items, resolve_tasks

    if not options["tasks"]:
        return
    try:
        for task in resolve_tasks(options["tasks"]):
            load_items(task, 1)
    except EvalDataMissing as e:
        raise UsageError(str(e)) from None


# --------------------------------------------------------------------------------------------
# run


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="evaluate one checkpoint (or HF directory), print a table")
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="a COMPLETE checkpoint folder RUN_DIR/checkpoints/stepNNNNNN (a path, or a URI on "
        "s3:// or gs://: downloaded to --cache-dir first, sha256-checked) or an HF directory",
    )
    p.add_argument("--output", metavar="FILE", help="write the results JSON here ('-': stdout)")
    _add_eval_options(p)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from olmo.eval import CheckpointError, TokenizerNotFound, format_table

    options = _eval_options(args)
    evaluate = _load_evaluator(args.evaluator)
    remote = is_remote(args.checkpoint)
    if remote:
        _check_store(args.checkpoint)
        if (problem := layout.completeness_problem(args.checkpoint)) is not None:
            raise UsageError(problem)
    elif not Path(args.checkpoint).exists():
        raise UsageError(f"checkpoint {args.checkpoint} does not exist")
    if args.evaluator == DEFAULT_EVALUATOR:
        _check_task_data(options)
    with contextlib.ExitStack() as stack:
        path = Path(args.checkpoint)
        if remote:  # a local copy (sha256-checked), removed at the end
            cache = records.cache_dir(args.checkpoint, args.cache_dir)
            cache.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="run-", dir=cache))
            try:
                path = records.download_checkpoint(location(args.checkpoint), Path(tmp))
            except ValueError as e:
                raise UsageError(str(e)) from None
        verify = not args.no_verify and not remote
        try:
            results = evaluate(path, **options, verify=verify, progress=not args.quiet)
        except (CheckpointError, TokenizerNotFound) as e:
            raise UsageError(str(e)) from None
        if remote:
            results = {**results, "checkpoint": args.checkpoint}
        decontamination = records.training_decontamination(path)
    if decontamination is not None:  # a trainer checkpoint: its training data's set(s)
        results = {**results, "decontamination": decontamination}
    table = format_table(results)
    if decontamination is not None:
        names = ", ".join(records.decontamination_names(decontamination)) or "unknown"
        table += f"\ntraining data decontaminated against: {names}"
    if args.output == "-":
        print(table, file=sys.stderr)
        print(json.dumps(results, indent=1, sort_keys=True))
        return 0
    print(table)
    if args.output:
        out = Path(args.output)
        if out.parent != Path() and not out.parent.is_dir():
            raise UsageError(f"--output {out}: folder {out.parent} does not exist")
        records.write_json(out, results)
        print(f"wrote {out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# watch


def _add_watch(sub: Any) -> None:
    p = sub.add_parser(
        "watch",
        help="evaluate every new COMPLETE checkpoint of a run dir exactly once, oldest first",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds checkpoints/)")
    _add_eval_options(p)
    loop = p.add_argument_group("loop")
    loop.add_argument("--poll-seconds", type=float, default=30.0, help="scan interval (30)")
    until = loop.add_mutually_exclusive_group()
    until.add_argument("--once", action="store_true", help="one pass, then exit")
    until.add_argument(
        "--until-step",
        type=int,
        metavar="N",
        help="exit once a checkpoint at step >= N is evaluated (or has failed for good)",
    )
    loop.add_argument(
        "--max-attempts",
        type=int,
        default=2,
        help="attempts per checkpoint before it is left failed (2: one retry)",
    )
    loop.add_argument(
        "--retry-delay",
        type=float,
        default=60.0,
        help="seconds after a failure before the checkpoint is tried again (60)",
    )
    loop.add_argument(
        "--grace-seconds",
        type=float,
        default=10.0,
        help="on SIGTERM, how long to let the current evaluation finish before abandoning it",
    )
    http = p.add_argument_group("HTTP (/healthz, /metrics)")
    http.add_argument("--port", type=int, default=8080, help="0 picks a free port (8080)")
    http.add_argument("--host", default="0.0.0.0", help="bind address (0.0.0.0)")
    http.add_argument("--no-http", action="store_true", help="serve nothing")
    http.add_argument(
        "--stuck-after",
        type=float,
        default=6 * 3600.0,
        help="/healthz fails when one scan or one evaluation runs longer (seconds; 0: never)",
    )
    wb = p.add_argument_group(
        "Weights & Biases (on when a project or a mode other than disabled is given)"
    )
    wb.add_argument(
        "--wandb-project",
        default=os.environ.get("WANDB_PROJECT"),
        help=f"default: $WANDB_PROJECT, else {DEFAULT_WANDB_PROJECT!r} (the trainer's default)",
    )
    wb.add_argument("--wandb-entity", default=os.environ.get("WANDB_ENTITY"))
    wb.add_argument(
        "--wandb-mode",
        choices=("online", "offline", "disabled"),
        help="default: $WANDB_MODE, else online; online without an API key runs offline",
    )
    wb.add_argument("--wandb-name", help="W&B run name (default: RUN_DIR's name + '-eval')")
    p.set_defaults(func=_cmd_watch)


def _cmd_watch(args: argparse.Namespace) -> int:
    run_dir = _watch_run_dir(args.run_dir)
    options = _eval_options(args)
    if args.poll_seconds <= 0:
        raise UsageError(f"--poll-seconds must be > 0, got {args.poll_seconds}")
    _positive(args.max_attempts, "--max-attempts")
    if args.retry_delay < 0 or args.grace_seconds < 0 or args.stuck_after < 0:
        raise UsageError("--retry-delay, --grace-seconds and --stuck-after must be >= 0")
    if args.until_step is not None and args.until_step < 0:
        raise UsageError(f"--until-step must be >= 0, got {args.until_step}")
    if not args.no_http and not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    fn = _load_evaluator(args.evaluator)
    if args.evaluator == DEFAULT_EVALUATOR:
        _check_task_data(options)

    def evaluate(path: Path) -> Mapping[str, Any]:
        # The watcher verifies the sha256s itself, before calling this.
        return fn(path, **options, verify=False, progress=not args.quiet)

    settings = WatchSettings(
        run_dir,
        poll_seconds=args.poll_seconds,
        once=args.once,
        until_step=args.until_step,
        max_attempts=args.max_attempts,
        retry_delay=args.retry_delay,
        grace_seconds=args.grace_seconds,
        verify=not args.no_verify,
        http=None if args.no_http else HttpSettings(args.host, args.port, args.stuck_after or None),
        wandb=_wandb_settings(args, options),
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )
    return worker.watch(settings, evaluate)


def _check_store(uri: str) -> None:
    """UsageError (exit 2, one line) for a bucket that does not exist or missing credentials."""
    try:
        check_reachable(uri)
    except StorageError as e:
        raise UsageError(str(e)) from None


def _watch_run_dir(text: str) -> Path | str:
    if is_remote(text):  # a prefix on a store "exists" once its bucket does
        _check_store(text)
        return str(location(text))
    run_dir = Path(text)
    if not run_dir.exists() and run_dir.parent.is_dir():
        # Started beside the trainer (the operator's Deployment, olmo-local): the run dir may
        # not exist yet. Its parent (the mounted volume) must.
        run_dir.mkdir(exist_ok=True)
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "does not exist"
        raise UsageError(f"run dir {run_dir} {what}")
    return run_dir


def _wandb_settings(args: argparse.Namespace, options: Mapping[str, Any]) -> WandbSettings | None:
    """W&B is on when a project or a mode other than disabled is given."""
    mode = args.wandb_mode or os.environ.get("WANDB_MODE") or "online"
    if not (args.wandb_project or args.wandb_mode) or mode == "disabled":
        return None
    config = {k: v for k, v in options.items() if k != "perplexity"}
    return WandbSettings(
        project=args.wandb_project or DEFAULT_WANDB_PROJECT,
        mode=mode,
        entity=args.wandb_entity,
        name=args.wandb_name,
        config={**config, "perplexity": sorted(options["perplexity"] or {})},
    )


# --------------------------------------------------------------------------------------------
# compare


def _add_compare(sub: Any) -> None:
    p = sub.add_parser("compare", help="two results JSON files side by side, with deltas")
    p.add_argument("a", metavar="A.json")
    p.add_argument("b", metavar="B.json")
    p.set_defaults(func=_cmd_compare)


def _read_results(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{file} does not exist" if not file.exists() else f"{file} is not a file")
    try:
        data = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not ("tasks" in data or "perplexity" in data):
        raise UsageError(f"{file} is not an evaluation result (no 'tasks' or 'perplexity')")
    return data


def _cmd_compare(args: argparse.Namespace) -> int:
    from olmo.eval.report import compare

    a, b = _read_results(args.a), _read_results(args.b)
    try:
        print(compare(a, b))
    except (KeyError, TypeError) as e:
        raise UsageError(f"malformed evaluation result: {type(e).__name__}: {e}") from None
    return 0


# --------------------------------------------------------------------------------------------
# logging


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (so captured output works in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _configure_logging(quiet: bool) -> None:
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
