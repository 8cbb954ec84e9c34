"""``olmo-dataprep``: run a pipeline, inspect its output, build the embedded corpus.

    olmo-dataprep run PIPELINE.yaml [--worker-index I --num-workers N] [--output DIR]
                                    [--set key=value ...] [--quiet] [--overwrite]
    olmo-dataprep stats OUT_DIR [--json]
    olmo-dataprep corpus OUT_DIR [--cache-dir DIR] [--sources books,docs,code]
    olmo-dataprep fetch-tokenizer [--cache-dir DIR]
    olmo-dataprep decontam-set build [--out PATH] [--min-words 13] [--cache-dir DIR] [--force]
    olmo-dataprep decontam-set show [PATH] [--min-words 13] [--cache-dir DIR]

``decontam-set build`` makes the default decontamination set (the nine core downstream tasks'
installed eval data; ``olmo_dataprep.decontam``) in the cache, where a default pipeline finds
it, or at ``--out``; ``show`` prints a set file's header (default: the cached default set).

In a Kubernetes Indexed Job the worker index comes from ``JOB_COMPLETION_INDEX`` when
``--worker-index`` is not given. Exit status: 0 done, 1 failed, 2 bad command line or pipeline,
143 stopped by SIGTERM (``docker stop``, pod deletion; also as a container's PID 1, which gets no
default action for it): the worker stops at once — the map pool is killed, not waited for — and
keeps what it finished (every per-file output is atomic), so a re-run resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from olmo.config import ConfigError
from olmo.signals import EXIT_TERMINATED, Terminated, sigterm_raises

__all__ = ["EXIT_TERMINATED", "Terminated", "decontamination_line", "format_summary", "main"]

log = logging.getLogger("olmo_dataprep")


def _worker_index(value: int | None) -> int:
    if value is not None:
        return value
    env = os.environ.get("JOB_COMPLETION_INDEX")
    if env is None:
        return 0
    try:
        return int(env)
    except ValueError:
        raise ConfigError(f"JOB_COMPLETION_INDEX must be an integer, got {env!r}") from None


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table of a run's accounting (what ``stats`` and ``run`` print)."""
    lines = []
    docs_in = summary["documents_in"]

    def pct(n: int) -> str:
        return f"{100.0 * n / docs_in:5.1f}%" if docs_in else "    -"

    lines.append(f"documents in      {docs_in:>12,}")
    lines.append(
        f"kept              {summary['documents_kept']:>12,}  {pct(summary['documents_kept'])}"
    )
    lines.append(
        f"dropped           {summary['documents_dropped']:>12,}  {pct(summary['documents_dropped'])}"
    )
    for stage, reasons in summary["dropped"].items():
        for reason, count in reasons.items():
            lines.append(f"  {stage:<16}{reason:<40}{count:>10,}  {pct(count)}")
    lines.append("")
    lines.append(f"{'source':<16}{'in':>10}{'kept':>10}{'rate':>8}{'copies':>10}{'tokens':>14}")
    for name, src in summary["sources"].items():
        lines.append(
            f"{name:<16}{src['documents_in']:>10,}{src['documents_kept']:>10,}"
            f"{src['rate']:>8.3g}{src['copies_written']:>10,}{src['tokens']:>14,}"
        )
    lines.append(
        f"{'total':<16}{docs_in:>10,}{summary['documents_kept']:>10,}{'':>8}"
        f"{summary['copies_written']:>10,}{summary['tokens']:>14,}"
    )
    decon = summary.get("decontamination")
    if decon is not None:
        lines.append("")
        lines.append(f"decontamination   {decontamination_line(decon)}")
    return "\n".join(lines)


def decontamination_line(decon: dict[str, Any]) -> str:
    """One line about a summary's ``decontamination`` record: off, or the set and its count."""
    if not decon.get("enabled"):
        return "off (decontamination.enabled: false)"
    removed = decon.get("documents_removed")
    removed_text = "?" if removed is None else f"{removed:,}"
    return (
        f"{removed_text} documents removed against {decon.get('name')} "
        f"({decon.get('paragraphs', 0):,} eval paragraphs of >= {decon.get('min_words')} words)"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import load_pipeline_config
    from .pipeline import run_pipeline

    config = load_pipeline_config(args.pipeline, args.set, output=args.output)
    if args.processes is not None:
        if args.processes < 1:
            raise ConfigError(f"--processes must be at least 1, got {args.processes}")
        config.processes = args.processes
    index = _worker_index(args.worker_index)
    if args.num_workers < 1 or not 0 <= index < args.num_workers:
        raise ConfigError(f"worker index {index} is not in [0, {args.num_workers})")
    if args.overwrite and args.num_workers > 1:
        raise ConfigError("--overwrite is for single-worker runs (workers would race)")
    with logging_redirect_tqdm():
        result = run_pipeline(
            config,
            worker_index=index,
            num_workers=args.num_workers,
            quiet=args.quiet,
            overwrite=args.overwrite,
        )
    if result.summary is not None:
        print(format_summary(result.summary))
        print(f"\ndataset: {result.uri or result.out}")
    else:
        print(f"worker {index}/{args.num_workers}: done ({result.files} files)")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from olmo.data.shards import parse_manifest
    from olmo.storage import location

    out = location(args.out_dir)  # a folder or a URI (s3://, gs://)
    try:
        raw_manifest = (out / "manifest.json").read_bytes()
        summary = json.loads((out / "summary.json").read_bytes())
    except FileNotFoundError:
        print(f"error: {out} is not a finished dataprep output (no manifest.json)", file=sys.stderr)
        return 1
    manifest = parse_manifest(raw_manifest, where=str(out / "manifest.json"))
    if args.json:
        print(json.dumps({"summary": summary, "manifest": manifest.to_dict()}, indent=2))
        return 0
    print(format_summary(summary))
    tok = manifest.tokenizer
    print(
        f"\n{len(manifest.shards)} shards, {manifest.total_tokens:,} tokens ({manifest.dtype}), "
        f"{manifest.total_documents:,} documents; tokenizer {tok.get('name')} "
        f"(sha256 {str(tok.get('sha256'))[:12]}, eos {manifest.eos_token_id}); "
        f"pipeline {str(manifest.pipeline_config_hash)[:12]}"
    )
    return 0


def _cmd_corpus(args: argparse.Namespace) -> int:
    from .corpus import build_corpus

    sources = args.sources.split(",") if args.sources else None
    info = build_corpus(
        args.out_dir, cache_dir=args.cache_dir, sources=sources, progress=not args.quiet
    )
    for name, source in info["sources"].items():
        print(
            f"{name:<8}{source['documents']:>8,} documents {source['characters']:>12,} characters"
            f" in {len(source['files'])} files"
        )
    print(f"corpus: {args.out_dir} (packages and licenses in corpus.json)")
    return 0


def _cmd_fetch_tokenizer(args: argparse.Namespace) -> int:
    from .tokenizer import fetch_olmo_tokenizer

    path = fetch_olmo_tokenizer(Path(args.cache_dir) if args.cache_dir else None)
    print(path)
    return 0


def _print_set(header: dict[str, Any], path: Path) -> None:
    print(f"{header['name']}: {header['count']:,} paragraphs of >= {header['min_words']} words")
    for task, info in header.get("tasks", {}).items():
        print(f"  {task:<14}{info['rows']:>8,} rows {info['paragraphs']:>8,} paragraphs")
    print(f"id {header['id']}")
    print(path)


def _cmd_decontam_build(args: argparse.Namespace) -> int:
    from .decontam import build_default_set, default_set

    if args.min_words < 1:
        raise ConfigError(f"--min-words must be at least 1, got {args.min_words}")
    if args.out is not None:
        built = build_default_set(args.min_words)
        path = built.save(args.out)
    else:
        built, path, made = default_set(args.min_words, root=args.cache_dir, rebuild=args.force)
        if not made:
            print("cached already (--force builds it again)", file=sys.stderr)
    _print_set(built.header, path)
    return 0


def _cmd_decontam_show(args: argparse.Namespace) -> int:
    from .decontam import DecontaminationSet, default_set

    if args.path is not None:
        path = Path(args.path)
        loaded = DecontaminationSet.load(path)
    else:
        loaded, path, _ = default_set(args.min_words, root=args.cache_dir)
    if args.json:
        print(json.dumps(loaded.header, indent=2, sort_keys=True))
    else:
        _print_set(loaded.header, path)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="olmo-dataprep", description="Dolma-style data preparation for OLMo pretraining."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline (or one worker's share of it)")
    run.add_argument("pipeline", help="the pipeline YAML file")
    run.add_argument(
        "--worker-index",
        type=int,
        default=None,
        help="this worker's index (default: $JOB_COMPLETION_INDEX, else 0)",
    )
    run.add_argument("--num-workers", type=int, default=1, help="how many workers share the run")
    run.add_argument("--output", default=None, help="output folder (overrides `output:`)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a pipeline value, e.g. --set quality.min_words=20",
    )
    run.add_argument(
        "--processes",
        type=int,
        default=None,
        help="map-phase processes per worker (default: usable CPUs)",
    )
    run.add_argument("--quiet", action="store_true", help="plain log lines, no progress bars")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the output folder first (single worker only)",
    )
    run.set_defaults(func=_cmd_run)

    stats = sub.add_parser("stats", help="print the accounting of a finished output folder")
    stats.add_argument("out_dir")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(func=_cmd_stats)

    corpus = sub.add_parser("corpus", help="build the embedded multi-source corpus")
    corpus.add_argument("out_dir")
    corpus.add_argument("--cache-dir", default=None)
    corpus.add_argument("--sources", default=None, help="comma-separated subset of sources")
    corpus.add_argument("--quiet", action="store_true")
    corpus.set_defaults(func=_cmd_corpus)

    fetch = sub.add_parser("fetch-tokenizer", help="cache OLMo's tokenizer (from PyPI)")
    fetch.add_argument("--cache-dir", default=None)
    fetch.set_defaults(func=_cmd_fetch_tokenizer)

    decon = sub.add_parser(
        "decontam-set",
        help="build or show the decontamination set (the core downstream tasks' eval data)",
    )
    decon_sub = decon.add_subparsers(dest="decontam_command", required=True)
    build = decon_sub.add_parser(
        "build", help="build the default set into the cache (or --out), once per eval data"
    )
    build.add_argument("--out", default=None, help="write the set file here instead of the cache")
    build.add_argument("--min-words", type=int, default=13, help="shortest paragraph kept (13)")
    build.add_argument("--cache-dir", default=None, help="default: $OLMO_CACHE_DIR or ~/.cache")
    build.add_argument("--force", action="store_true", help="build again even if cached")
    build.set_defaults(func=_cmd_decontam_build)
    show = decon_sub.add_parser(
        "show", help="print a set file's header (default: the cached default set)"
    )
    show.add_argument("path", nargs="?", default=None, help="a set file (default: the cache's)")
    show.add_argument("--min-words", type=int, default=13, help="of the default set (13)")
    show.add_argument("--cache-dir", default=None, help="default: $OLMO_CACHE_DIR or ~/.cache")
    show.add_argument("--json", action="store_true", help="the whole header as JSON")
    show.set_defaults(func=_cmd_decontam_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "quiet", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "quiet", False):
        logging.getLogger("olmo_dataprep").setLevel(logging.INFO)
    try:
        with sigterm_raises():
            return args.func(args)
    except Terminated:
        print(
            "olmo-dataprep: stopped by SIGTERM; finished work is kept and a re-run resumes",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
