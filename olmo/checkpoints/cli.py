"""``olmo-ckpt``: inspect, verify, copy and rotate the checkpoints of a run directory, on a local
disk or on an object store (``s3://bucket/prefix/run``, ``gs://bucket/prefix/run``).

olmo-ckpt list runs/tiny                          # table: step, tokens, complete, evaluated, size
olmo-ckpt list s3://bucket/runs/tiny --json
olmo-ckpt show s3://bucket/runs/tiny/checkpoints/step000300   # the COMPLETE marker, in words
olmo-ckpt verify s3://bucket/runs/tiny            # sha256 of every object of every checkpoint
olmo-ckpt rotate runs/tiny --keep-last 3 --keep-every 1000 --dry-run
olmo-ckpt download s3://bucket/runs/tiny ckpts/   # newest complete -> ckpts/stepNNNNNN
olmo-ckpt upload runs/tiny/checkpoints/step000300 s3://bucket/runs/tiny
olmo-ckpt export-hf runs/tiny/checkpoints/step000300 hf-out/   # needs torch + deepspeed

Each command is one subparser with its own ``_add_<command>`` function that registers it and sets
``func``; ``main`` only dispatches. Exit codes: 0 ok, 1 filesystem or store error (and a
checkpoint that fails ``verify``), 2 bad usage or input (also a bucket that does not exist, or a
store without credentials), 143 stopped by SIGTERM (also as a container's PID 1, which gets no
default action for it). Stopping ``rotate`` half-way is safe: locally a checkpoint is renamed to
a ``.tmp-*`` folder before it is deleted, on a store its ``COMPLETE`` goes first, and the next
rotation removes such leftovers (an incomplete step folder on a store is collected once it is
older than ``--temp-grace-seconds``, like an abandoned upload).
Stores are reached with their standard credentials and endpoint settings (``olmo.storage``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from olmo.checkpoints.layout import (
    LATEST,
    TEMP_PREFIX,
    checkpoints_dir,
    completeness_problem,
    list_checkpoints,
    list_temp_dirs,
    parse_step,
    read_complete,
    read_evaluated,
    resolve_checkpoint,
    tree_stats,
)
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.signals import EXIT_TERMINATED, Terminated, sigterm_raises
from olmo.storage import (
    Location,
    StorageError,
    check_reachable,
    describe_error,
    is_remote,
    location,
)

PROG = "olmo-ckpt"


class UsageError(Exception):
    """Bad arguments or input; reported on stderr with exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="Run directories and checkpoints may be local paths or s3:// / gs:// URIs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_list(sub)
    _add_show(sub)
    _add_verify(sub)
    _add_rotate(sub)
    _add_download(sub)
    _add_upload(sub)
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
    except (UsageError, StorageError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if (why := describe_error(e)) is None:
            raise
        print(f"{PROG}: {why}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------------------------
# Object stores: one-line errors rather than tracebacks


def check_store(uri: str) -> None:
    """UsageError (exit 2, one line) unless the bucket of ``uri`` answers
    (``olmo.storage.check_reachable``); local paths pass."""
    try:
        check_reachable(uri)
    except StorageError as e:
        raise UsageError(str(e)) from None


# --------------------------------------------------------------------------------------------
# list


def _add_list(sub: Any) -> None:
    p = sub.add_parser(
        "list",
        help="list the checkpoints of a run (and temporary folders; on a store, incomplete step "
        "folders are uploads in progress or abandoned)",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (a path or a URI)")
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
        step = parse_step(temp.name.removeprefix(TEMP_PREFIX))
        rows.append(
            dict(step=step, path=str(temp), complete=False, evaluated=False, tokens=None)
            | dict(size_bytes=size, mtime=mtime, name=temp.name, temp=True)
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no checkpoints in {_checkpoints_folder(run_dir)}")
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
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (a path or a URI)")
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
    help = "remove temporary/incomplete folders (abandoned uploads) untouched for S s (3600)"
    p.add_argument("--temp-grace-seconds", type=float, default=3600.0, metavar="S", help=help)
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
# show and verify


def _add_show(sub: Any) -> None:
    help = "one checkpoint as JSON: its scan, why it is incomplete, its COMPLETE and EVALUATED"
    p = sub.add_parser("show", help=help)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="RUN_DIR/checkpoints/stepNNNNNN")
    p.set_defaults(func=_cmd_show)


def _cmd_show(args: argparse.Namespace) -> int:
    from olmo.checkpoints.layout import checkpoint_info, quick_check_problem

    ckpt = _checkpoint_arg(args.checkpoint)
    try:
        info = checkpoint_info(ckpt)
    except FileNotFoundError:
        raise UsageError(f"checkpoint {ckpt} does not exist") from None
    out = {
        **info.as_dict(),
        "size": human_size(info.size_bytes),
        "problem": quick_check_problem(ckpt),
        "COMPLETE": read_complete(ckpt),
        "EVALUATED": read_evaluated(ckpt),
    }
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def _add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="check the sha256 of every file (every object on a store) against COMPLETE; "
        "exit 1 if a checkpoint fails",
    )
    p.add_argument(
        "path",
        metavar="CHECKPOINT_OR_RUN_DIR",
        help="one checkpoint folder, or a run directory (every complete checkpoint in it)",
    )
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    if parse_step(location(args.path).name) is not None:
        targets: list[Any] = [_checkpoint_arg(args.path)]
    else:
        run_dir = _existing_run_dir(args.path)
        infos = list_checkpoints(run_dir)
        for info in infos:
            if not info.complete:
                print(f"skip    {info.path}  (incomplete: not a checkpoint yet, or abandoned)")
        targets = [info.path for info in infos if info.complete]
        if not targets:
            print(f"no complete checkpoints in {_checkpoints_folder(run_dir)}")
            return 0
    failed = 0
    for target in targets:
        problem = completeness_problem(target, verify=True)
        if problem is None:
            print(f"ok      {target}")
        else:
            failed += 1
            print(f"FAILED  {target}: {problem}")
    print(f"{len(targets) - failed} of {len(targets)} checkpoint(s) verified")
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# download and upload (object stores)


def _add_download(sub: Any) -> None:
    p = sub.add_parser(
        "download",
        help="copy a checkpoint from a store into DEST/stepNNNNNN, every file sha256-checked",
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="a checkpoint URI (RUN/checkpoints/stepNNNNNN), or a run directory URI: its newest "
        "complete checkpoint",
    )
    p.add_argument("dest", metavar="DEST", help="a local folder; the copy is DEST/stepNNNNNN")
    p.set_defaults(func=_cmd_download)


def _cmd_download(args: argparse.Namespace) -> int:
    from olmo.checkpoints import objectstore

    if not is_remote(args.source):
        raise UsageError(f"{args.source} is a local path: copy it with cp -r")
    check_store(args.source)
    if parse_step(location(args.source).name) is not None:
        ckpt = location(args.source)
        if (problem := completeness_problem(ckpt)) is not None:
            raise UsageError(f"{problem}; only complete checkpoints can be downloaded")
    else:
        found = resolve_checkpoint(args.source, LATEST)
        if found is None:
            raise UsageError(f"no complete checkpoint in {_checkpoints_folder(args.source)}")
        ckpt = location(found)
    try:
        copy = objectstore.download_checkpoint(ckpt, Path(args.dest))
    except ValueError as e:  # a sha256 mismatch: nothing is left under DEST
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    size, _ = tree_stats(copy)
    print(f"downloaded {ckpt} to {copy} ({human_size(size)}, sha256 checked)")
    return 0


def _add_upload(sub: Any) -> None:
    help = "upload a local checkpoint to a run on a store (files, then COMPLETE, then latest)"
    p = sub.add_parser("upload", help=help)
    p.add_argument("checkpoint", metavar="LOCAL_CHECKPOINT", help="RUN_DIR/checkpoints/stepN")
    p.add_argument("run_dir", metavar="RUN_URI", help="the run directory on the store")
    p.set_defaults(func=_cmd_upload)


def _cmd_upload(args: argparse.Namespace) -> int:
    from olmo.checkpoints import objectstore

    if is_remote(args.checkpoint):
        raise UsageError(f"{args.checkpoint}: the checkpoint to upload must be a local folder")
    if not is_remote(args.run_dir):
        raise UsageError(f"{args.run_dir} is not an s3:// or gs:// URI: copy with cp -r")
    check_store(args.run_dir)
    try:
        stats = objectstore.upload_checkpoint(args.checkpoint, args.run_dir)
    except ValueError as e:
        raise UsageError(str(e)) from None
    what = f"{stats.files} files ({human_size(stats.bytes)})"
    print(f"{stats.location}: " + ("already complete, same files" if stats.skipped else what))
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


def _existing_run_dir(text: str) -> Path | str:
    """The run directory: a local folder that exists, or the URI of one on a reachable store (a
    run directory on a store exists as soon as its bucket does)."""
    if is_remote(text):
        check_store(text)
        return location(text).uri
    path = Path(text)
    if not path.exists():
        raise UsageError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise UsageError(f"run directory {path} is not a directory")
    return path


def _checkpoint_arg(text: str) -> Path | Location:
    """A checkpoint folder argument: a local ``stepNNNNNN`` folder that exists, or its URI."""
    if is_remote(text):
        check_store(text)
        ckpt: Path | Location = location(text)
    else:
        ckpt = Path(text)
        if not ckpt.is_dir():
            raise UsageError(f"checkpoint {ckpt} does not exist or is not a folder")
    if parse_step(ckpt.name) is None:
        raise UsageError(f"{ckpt} is not a checkpoint folder (expected a name like step000123)")
    return ckpt


def _checkpoints_folder(run_dir: Path | str) -> str:
    if is_remote(str(run_dir)):
        return f"{location(run_dir).uri}/checkpoints"
    return str(checkpoints_dir(run_dir))


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
    help = "a COMPLETE checkpoint folder or URI (a URI is downloaded to $OLMO_STAGING_DIR first)"
    p.add_argument("checkpoint", metavar="CHECKPOINT", help=help)
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
    dtype = getattr(torch, args.dtype)
    try:
        if not is_remote(args.checkpoint):
            out = export_hf(Path(args.checkpoint), Path(args.out), dtype=dtype)
        else:  # a local copy first, in $OLMO_STAGING_DIR (else /tmp), removed afterwards
            from olmo.checkpoints import objectstore

            staging = os.environ.get("OLMO_STAGING_DIR") or None
            with tempfile.TemporaryDirectory(prefix="olmo-ckpt-", dir=staging) as tmp:
                copy = objectstore.download_checkpoint(_checkpoint_arg(args.checkpoint), tmp)
                out = export_hf(copy, Path(args.out), dtype=dtype)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # last: every command is defined by now
    sys.exit(main())
