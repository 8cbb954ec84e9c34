"""Data-prep throughput: the whole pipeline against raw ``tokenizers`` ``encode_batch``.

Runs ``olmo-dataprep``'s pipeline (one worker, every stage on, recipe defaults) over an input
corpus (default: the embedded corpus, ``make corpus``) into a temporary folder and measures its
end-to-end rate in output tokens per second of wall time. The reference, measured in the same
run right after each round, is the tokenizer alone: the ``tokenizers`` library's own batch call
(``Tokenizer.encode_batch_fast``, the same ids as ``encode_batch`` without offsets, or
``encode_batch`` where the installed version lacks it) over exactly the text the pipeline kept
(decoded back from its output), in batches of the same size, on the same cores (its thread
pool uses every usable CPU, as the pipeline does), counting one EOS per document as the pipeline
does. Prints both rates, their ratio (pipeline / reference; the goal is ≥ 0.7), documents/s for
each stage from the run's timings (``StageTimer``: per-stage seconds summed over the map pool's
processes), and the CPU seconds each side used (a check on how busy a shared machine was).

``--profile`` adds one round with the map phase in-process (``processes: 1``) under cProfile and
prints the functions with the most own time and the most cumulative time.

    python benchmarks/bench_dataprep.py [--corpus data/corpus] [--tokenizer olmo|train|PATH]
                                        [--rounds 3] [--json] [--profile [N]]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import yaml

from olmo.data.shards import open_shards
from olmo_dataprep.config import load_pipeline_config
from olmo_dataprep.pipeline import run_pipeline
from olmo_dataprep.tokenizer import TextTokenizer

REPO = Path(__file__).resolve().parent.parent


def pipeline_file(folder: Path, corpus: Path, tokenizer: str) -> Path:
    sources = sorted(p for p in corpus.iterdir() if p.is_dir())
    if not sources:
        raise SystemExit(f"{corpus}: no source folders (build the corpus with `make corpus`)")
    data = {
        "sources": [
            {
                "name": p.name,
                "paths": [str(p)],
                **(
                    {"skip": ["langid", "quality", "bad_words", "paragraph_dedup"]}
                    if p.name == "code"
                    else {}
                ),
            }
            for p in sources
        ],
        "tokenizer": {"name": tokenizer, "train_vocab_size": 4096},
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def kept_texts(out: Path, tokenizer: TextTokenizer) -> list[str]:
    texts = []
    for shard in open_shards([out]).shards:
        tokens = shard.tokens
        for start, end in zip(shard.starts, shard.ends, strict=True):
            texts.append(tokenizer.decode(tokens[start : end - 1].tolist()))
    return texts


def reference_rate(tokenizer: TextTokenizer, texts: list[str], batch: int) -> tuple[float, float]:
    """Tokens/s (and CPU seconds) of the raw ``tokenizers`` batch call over ``texts``."""
    raw = tokenizer.tokenizer
    encode = getattr(raw, "encode_batch_fast", raw.encode_batch)
    cpu, start = cpu_seconds(), time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), batch):
        encodings = encode(texts[i : i + batch], add_special_tokens=False)
        tokens += sum(len(e.ids) + 1 for e in encodings)
    return tokens / (time.perf_counter() - start), cpu_seconds() - cpu


def cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children (the map pool's processes)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def profile_round(
    path: Path, out: Path, tokenizer_file: Path | None, top: int, stream: TextIO
) -> None:
    """One in-process round under cProfile: print the top functions by own and cumulative time."""
    config = load_pipeline_config(path, output=str(out))
    config.processes = 1  # cProfile sees only this process
    if tokenizer_file is not None:
        config.tokenizer.name = str(tokenizer_file)
    profiler = cProfile.Profile()
    profiler.enable()
    run_pipeline(config, quiet=True)
    profiler.disable()
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(top)
        print(f"--- profile (in-process map, one round), top {top} by {order} ---", file=stream)
        table = text.getvalue().split("\n", 2)[-1].strip("\n").replace(str(REPO) + "/", "")
        print(table, file=stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus")
    parser.add_argument("--tokenizer", default="auto", help="olmo, train, auto or a tokenizer.json")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=25,
        default=0,
        metavar="N",
        help="add a profiled in-process round and print its top N functions (default 25)",
    )
    args = parser.parse_args()

    pipeline_rates, reference_rates, stage_rates = [], [], []
    pipeline_cpu, reference_cpu = [], []
    with tempfile.TemporaryDirectory(prefix="bench_dataprep_") as tmp:
        path = pipeline_file(Path(tmp), args.corpus.resolve(), args.tokenizer)
        tokenizer_file = None
        for round_index in range(args.rounds):
            out = Path(tmp) / f"out{round_index}"
            config = load_pipeline_config(path, output=str(out))
            if tokenizer_file is not None:  # train once; later rounds reuse it
                config.tokenizer.name = str(tokenizer_file)
            cpu, start = cpu_seconds(), time.perf_counter()
            result = run_pipeline(config, quiet=True)
            wall = time.perf_counter() - start
            pipeline_cpu.append(cpu_seconds() - cpu)
            assert result.summary is not None
            tokens = result.summary["tokens"]
            pipeline_rates.append(tokens / wall)
            tokenizer_file = out / "tokenizer.json"
            tokenizer = TextTokenizer.from_file(tokenizer_file)
            texts = kept_texts(out, tokenizer)
            rate, cpu = reference_rate(tokenizer, texts, config.tokenizer.batch_size)
            reference_rates.append(rate)
            reference_cpu.append(cpu)
            t = result.timings
            stage_rates.append(
                {
                    name: t[f"{name}_docs"] / t[f"{name}_s"]
                    for name in ("read", "langid", "quality", "bad_words", "pii", "hashes",
                                 "dedup", "decontamination", "tokenize", "mixing")
                    if t.get(f"{name}_s")
                }
            )  # fmt: skip
            docs_in, kept = result.summary["documents_in"], result.summary["documents_kept"]
        if args.profile:
            stream = sys.stderr if args.json else sys.stdout  # --json: one JSON line on stdout
            profile_round(path, Path(tmp) / "profiled", tokenizer_file, args.profile, stream)

    pipeline, reference = statistics.median(pipeline_rates), statistics.median(reference_rates)
    stages = {
        name: statistics.median(r[name] for r in stage_rates if name in r)
        for name in stage_rates[-1]
    }
    result_json = {
        "benchmark": "dataprep_pipeline_vs_encode_batch",
        "documents_in": docs_in,
        "documents_kept": kept,
        "tokens": tokens,
        "pipeline_tokens_per_s": round(pipeline),
        "reference_tokens_per_s": round(reference),
        "ratio": round(pipeline / reference, 3),
        "goal": 0.7,
        "stage_docs_per_s": {k: round(v) for k, v in stages.items()},
        "pipeline_cpu_s": round(statistics.median(pipeline_cpu), 2),
        "reference_cpu_s": round(statistics.median(reference_cpu), 2),
        "rounds": args.rounds,
    }
    if args.json:
        print(json.dumps(result_json))
        return
    print(f"documents in {docs_in:,}, kept {kept:,}, output tokens {tokens:,}")
    print(f"pipeline (end to end)   {pipeline:>12,.0f} tokens/s")
    print(f"encode_batch reference  {reference:>12,.0f} tokens/s")
    print(f"ratio                   {pipeline / reference:>12.3f}  (goal >= 0.7)")
    print(
        f"CPU seconds per round: pipeline {result_json['pipeline_cpu_s']}, "
        f"reference {result_json['reference_cpu_s']}"
    )
    print("per stage (documents/s):")
    for name, rate in stages.items():
        print(f"  {name:<16}{rate:>12,.0f}")
    print(json.dumps(result_json))


if __name__ == "__main__":
    main()
