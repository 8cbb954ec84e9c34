"""Data-prep peak memory: a worker's peak RSS against the size of its input file.

Generates gzip JSON Lines files of normal-sized documents (about 2 KB of English each, every one
distinct, so they are all kept and tokenized) of 10 MB, 100 MB and 1 GB, and one file holding a
single 1 GB line, into a temporary folder (sizes count the JSON Lines bytes, before gzip). Each
goes through one worker (``run_pipeline``, one process) in a fresh Python process, which reports
its own peak RSS (``VmHWM``; Linux). The reference is the smallest file, measured in the same run:
the benchmark prints each case's peak and its ratio to the reference, and ``ratio``, the largest
of them (goal: ≤ 1.2, memory that does not grow with file size or line length).

By default the per-document stages that hold one document at a time and dominate the time
(language ID, quality, bad words, PII) and decontamination are off, so the 1 GB file takes
minutes, not an hour, on 2 cores; reading, hashing, the dedup pass, tokenizing and mixing, the
stages that meet a whole file, are on. ``--all-stages`` runs the recipe's defaults instead
(use it with smaller ``--sizes``). The tokenizer is a byte-level BPE trained once on a sample of
the documents (``--tokenizer`` takes a ``tokenizer.json`` or ``olmo`` instead).

    python benchmarks/bench_dataprep_memory.py [--sizes 10MB,100MB,1GB] [--line 1GB]
                                               [--all-stages] [--tokenizer PATH|olmo] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from olmo_dataprep.tokenizer import TextTokenizer, train_bpe

GOAL = 1.2
DOCUMENT_CHARS = 2000

# Plain English sentences, 8**4 of them, made from four word lists (sentence k takes its parts
# from k's base-8 digits).
_PARTS = (
    ("The miller", "A farmer", "The engineer", "Each visitor", "The teacher", "A historian",
     "The town council", "Every baker"),
    ("repairs", "describes", "measures", "visits", "records", "cleans", "protects", "studies"),
    ("the old water wheel", "the stone bridge", "the village archive", "the heavy flour sacks",
     "the river bank", "the tools in the museum", "the festival square", "the road to the station"),
    ("before the season begins.", "after each storm.", "at the end of the summer.",
     "when the river is low.", "with great care.", "for the children of the valley.",
     "once a year.", "while the family watches."),
)  # fmt: skip
SENTENCES = tuple(
    f"{a} {b} {c} {d}" for d in _PARTS[3] for c in _PARTS[2] for b in _PARTS[1] for a in _PARTS[0]
)

# The worker: run the pipeline file argv[1] in this process; print its peak RSS and summary.
# The peak is the address space's high-water mark (VmHWM): a fresh process's ``ru_maxrss``
# starts at its parent's RSS (Linux carries it over fork and exec), this benchmark's included.
WORKER = """
import json, sys, time
from olmo_dataprep.config import load_pipeline_config
from olmo_dataprep.pipeline import run_pipeline
start = time.perf_counter()
result = run_pipeline(load_pipeline_config(sys.argv[1]), quiet=True)
seconds = time.perf_counter() - start
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak_kib": peak_kib, "seconds": seconds, "summary": result.summary}))
"""

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_size(text: str) -> int:
    """``10MB``, ``1GB``, ``500kB``, ``2000000`` → bytes (decimal units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10MB, 1GB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def size_name(size: int) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= factor:
            return f"{size / factor:g}{unit}"
    return f"{size}B"


def document(i: int) -> str:
    """Document ``i``: distinct (its number leads), one paragraph, no sentence twice."""
    n = len(SENTENCES)
    parts = [f"Record {i} of the mill archive."]
    chars = len(parts[0])
    j = 0
    while chars < DOCUMENT_CHARS and j < n:
        sentence = SENTENCES[(i * 7 + j * 613) % n]  # 613 and n coprime: j distinct sentences
        parts.append(sentence)
        chars += len(sentence) + 1
        j += 1
    return " ".join(parts)


def write_documents(path: Path, size: int) -> int:
    """At least ``size`` bytes of JSON Lines (gzip level 1); returns the document count."""
    written = 0
    count = 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        while written < size:
            line = json.dumps({"id": f"doc-{count}", "text": document(count)}).encode() + b"\n"
            out.write(line)
            written += len(line)
            count += 1
    return count


def write_line(path: Path, size: int) -> None:
    """One JSON line of ``size`` bytes (an over-long document), written in 1 MiB blocks."""
    head, tail = b'{"id": "one-line", "text": "', b'"}\n'
    block = (" ".join(SENTENCES[:64]) + " ").encode()
    block = block * max(1, (1 << 20) // len(block))
    left = max(0, size - len(head) - len(tail))
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(head)
        while left > 0:
            piece = block[:left]
            out.write(piece)
            left -= len(piece)
        out.write(tail)


def pipeline_file(folder: Path, data: Path, tokenizer: str, all_stages: bool) -> Path:
    off = {"enabled": False}
    stages = (
        {}
        if all_stages
        else {"langid": off, "quality": off, "bad_words": off, "pii": off, "decontamination": off}
    )
    config = {
        "output": str(folder / "out"),
        "sources": [{"name": "bench", "paths": [str(data)]}],
        "tokenizer": {"name": tokenizer},
        "processes": 1,
        **stages,
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_worker(pipeline: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(pipeline)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"the worker failed on {pipeline}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="10MB,100MB,1GB",
        help="comma-separated file sizes of documents; the first is the reference",
    )
    parser.add_argument(
        "--line", type=parse_size, default=parse_size("1GB"), help="size of the one-line file"
    )
    parser.add_argument("--all-stages", action="store_true", help="every stage as by default")
    parser.add_argument(
        "--tokenizer", default=None, help="a tokenizer.json or olmo (default: a BPE trained here)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes:
        parser.error("--sizes names no size")

    cases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_dataprep_memory_") as tmp:
        root = Path(tmp)
        tokenizer = args.tokenizer
        if tokenizer is None:  # trained once, on a sample; a file every case loads the same
            sample = [document(i) for i in range(2000)]
            trained = train_bpe(sample, vocab_size=4096)
            tokenizer = str(root / "tokenizer.json")
            TextTokenizer.from_tokenizer(
                trained, eos_token_id=0, pad_token_id=1, name="bench-bpe"
            ).save(tokenizer)
        elif tokenizer != "olmo":
            tokenizer = str(Path(tokenizer).resolve())
        inputs: list[tuple[str, str, int, Path]] = []
        for size in sizes:
            path = root / f"docs-{size}.jsonl.gz"
            write_documents(path, size)
            inputs.append((size_name(size), "documents", size, path))
        path = root / f"line-{args.line}.jsonl.gz"
        write_line(path, args.line)
        inputs.append((f"{size_name(args.line)} line", "one line", args.line, path))
        for name, kind, size, path in inputs:
            folder = root / f"run-{len(cases)}"
            folder.mkdir()
            report = run_worker(pipeline_file(folder, path, tokenizer, args.all_stages))
            summary = report["summary"]
            cases.append(
                {
                    "name": name,
                    "kind": kind,
                    "bytes": size,
                    "gzip_bytes": path.stat().st_size,
                    "documents_in": summary["documents_in"],
                    "documents_kept": summary["documents_kept"],
                    "dropped": summary["dropped"],
                    "tokens": summary["tokens"],
                    "peak_rss_mib": round(report["peak_kib"] / 1024, 1),
                    "seconds": round(report["seconds"], 1),
                }
            )
            path.unlink()
            if not args.json:
                print(
                    f"{name:>12}  {summary['documents_in']:>9,} documents  "
                    f"peak RSS {report['peak_kib'] / 1024:8.1f} MiB  ({report['seconds']:.0f} s)",
                    file=sys.stderr,
                )

    reference = cases[0]
    for case in cases:
        case["ratio"] = round(case["peak_rss_mib"] / reference["peak_rss_mib"], 3)
    ratio = max(case["ratio"] for case in cases[1:])
    result = {
        "benchmark": "dataprep_peak_memory",
        "stages": "all" if args.all_stages else "reading, hashes, dedup, tokenize, mix",
        "reference": reference["name"],
        "cases": cases,
        "ratio": ratio,
        "goal": GOAL,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"peak RSS of one worker against its input file ({result['stages']}):")
    for case in cases:
        print(
            f"  {case['name']:>12}  {case['gzip_bytes'] / 1e6:9.1f} MB gzip  "
            f"{case['peak_rss_mib']:8.1f} MiB  {case['ratio']:6.3f}x  ({case['seconds']:.0f} s)"
        )
    print(f"largest ratio to {reference['name']}: {ratio:.3f}  (goal <= {GOAL})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
