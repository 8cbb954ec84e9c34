"""``olmo-ckpt``: inspect and rotate the checkpoints of a run directory.

olmo-ckpt list runs/tiny                          # table: step, tokens, complete, evaluated, size
olmo-ckpt list runs/tiny --json
olmo-ckpt rotate runs/tiny --keep-last 3 --keep-every 1000 --dry-run
olmo-ckpt export-hf runs/tiny/checkpoints/step000300 hf-out/   # needs torch + deepspeed

Each command is one subparser with its own ``_add_<command>`` function that registers it and sets
``func``; ``main`` only dispatches. Exit codes: 0 ok, 1 filesystem error, 2 bad usage or input,
143 stopped by SIGTERM (also as a container's PID 1, which gets no default action for it).
Stopping ``rotate`` half-way is safe: a checkpoint is renamed to a ``.tmp-*`` folder before it is
deleted, and the next rotation removes such leftovers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from olmo.checkpoints.layout import (
    TEMP_PREFIX,
    checkpoints_dir,
    list_checkpoints,
    list_temp_dirs,
    parse_step,
    tree_stats,
)
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.signals import EXIT_TERMINATED, Terminated, sigterm_raises

PROG = "olmo-ckpt"


class UsageError(Exception):
    """Bad arguments or input; reported on stderr with exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_list(sub)
    _add_rotate(sub)
    _add_export_hf(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with sigterm_raises():
            return args.func(args)
    except Terminated:
        print(f"{PROG}: stopped by SIGTERM", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------------------------
# list


def _add_list(sub: Any) -> None:
    p = sub.add_parser("list", help="list the checkpoints (and temporary folders) of a run")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    run_dir = _existing_run_dir(args.run_dir)
    rows = [
        {**info.as_dict(), "name": info.name, "temp": False} for info in list_checkpoints(run_dir)
    ]
    for temp in list_temp_dirs(run_dir):
        try:
            size, mtime = tree_stats(temp)
        except FileNotFoundError:
            continue
        rows.append(
            {
                "step": parse_step(temp.name.removeprefix(TEMP_PREFIX)),
                "path": str(temp),
                "complete": False,
                "evaluated": False,
                "tokens": None,
                "size_bytes": size,
                "mtime": mtime,
                "name": temp.name,
                "temp": True,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no checkpoints in {checkpoints_dir(run_dir)}")
        return 0
    header = ("step", "tokens", "complete", "evaluated", "size", "path")
    table = [header]
    for row in rows:
        table.append(
            (
                _dash(row["step"]),
                _dash(row["tokens"]),
                "temp" if row["temp"] else _yes_no(row["complete"]),
                "-" if row["temp"] else _yes_no(row["evaluated"]),
                human_size(row["size_bytes"]),
                row["path"],
            )
        )
    print(_format_table(table, right_aligned={0, 1, 4}))
    return 0


# --------------------------------------------------------------------------------------------
# rotate


def _add_rotate(sub: Any) -> None:
    p = sub.add_parser(
        "rotate",
        help="delete old checkpoints and abandoned temporary folders by the retention policy",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    p.add_argument(
        "--keep-last", type=int, required=True, metavar="N", help="keep the newest N complete"
    )
    p.add_argument(
        "--keep-every", type=int, metavar="K", help="also keep every step that is a multiple of K"
    )
    p.add_argument(
        "--require-evaluated",
        action="store_true",
        help="never delete a complete checkpoint without an EVALUATED marker",
    )
    p.add_argument(
        "--temp-grace-seconds",
        type=float,
        default=3600.0,
        metavar="S",
        help="remove temporary/incomplete folders untouched for longer than S (default 3600)",
    )
    p.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    p.set_defaults(func=_cmd_rotate)


def _cmd_rotate(args: argparse.Namespace) -> int:
    run_dir = _existing_run_dir(args.run_dir)
    try:
        policy = RetentionPolicy(
            keep_last=args.keep_last,
            keep_every=args.keep_every,
            require_evaluated=args.require_evaluated,
            temp_grace_seconds=args.temp_grace_seconds,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    result = rotate(run_dir, policy, dry_run=args.dry_run)
    delete = "would delete" if args.dry_run else "delete"
    remove = "would remove" if args.dry_run else "remove"
    lines = [(delete, p) for p in result.deleted] + [("keep", p) for p in result.kept]
    lines.sort(key=lambda line: parse_step(line[1].name) or 0)
    lines += [(remove, p) for p in result.removed_temp] + [("keep", p) for p in result.kept_temp]
    width = max((len(verb) for verb, _ in lines), default=0)
    for verb, path in lines:
        print(f"{verb:<{width}}  {path}  ({result.reasons.get(path, '')})")
    n_del, n_tmp = len(result.deleted), len(result.removed_temp)
    print(
        f"{'dry run: would delete' if args.dry_run else 'deleted'} {n_del} "
        f"checkpoint folder{'s' * (n_del != 1)} and {n_tmp} temporary folder{'s' * (n_tmp != 1)}"
        f", kept {len(result.kept)}"
    )
    return 0


# --------------------------------------------------------------------------------------------
# helpers


def human_size(n: int) -> str:
    """``12_900_000`` → ``"12.3 MiB"`` (binary units)."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit}"


def _existing_run_dir(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise UsageError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise UsageError(f"run directory {path} is not a directory")
    return path


def _format_table(rows: list[tuple[str, ...]], right_aligned: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right_aligned else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


# --------------------------------------------------------------------------------------------
# export-hf


def _add_export_hf(sub: Any) -> None:
    p = sub.add_parser(
        "export-hf",
        help="merge a ZeRO-3 checkpoint and write an HF transformers directory (OlmoForCausalLM)",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a COMPLETE checkpoint folder")
    p.add_argument("out", metavar="OUT", help="output folder (config.json + model.safetensors)")
    p.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32", help="stored weight type"
    )
    p.set_defaults(func=_cmd_export_hf)


def _cmd_export_hf(args: argparse.Namespace) -> int:
    try:  # torch and deepspeed are only needed here; the rest of olmo-ckpt is stdlib-only
        import torch

        from olmo.train.export import export_hf
    except ImportError as e:
        raise UsageError(f"export-hf needs the 'train' and 'hf' extras installed ({e})") from None
    try:
        out = export_hf(Path(args.checkpoint), Path(args.out), dtype=getattr(torch, args.dtype))
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # last: every command is defined by now
    sys.exit(main())
