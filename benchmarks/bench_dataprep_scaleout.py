"""Data-prep scale-out: the same input with 1, 2 and 4 workers gives identical output, and the
work per document stays flat.

Builds an input of ``--copies`` variants of the embedded corpus (each copy's paragraphs get a
seeded prefix word, so copies are not duplicates of each other), split into ``--files`` gzip
JSON Lines files over the corpus's sources, then runs the pipeline (every stage on, recipe
defaults, one process per worker) as N worker processes side by side for each N in ``--workers``
(as an Indexed Job's pods would run: ``olmo-dataprep run --num-workers N --worker-index i``).

For each N it prints the wall time, the CPU seconds all workers used (``wait4`` rusage: user +
system) and the CPU milliseconds per input document, whose ratio to the one-worker run is the
scale-out overhead (goal ≤ 1.1: sharding costs no more than a tenth). Two costs grow with N: each
worker's start (imports, the language-ID model, the tokenizer, the decontamination set) and the
dedup pass, where each worker reads every file's key columns (it keeps only its partitions' keys,
see the data-prep README), printed as dedup seconds per worker. Wall time only falls with N when there are as many cores
as workers: on a 2-core machine 4 workers share 2 cores. The outputs' file digests (every file
but ``work/`` and ``logs/``) must be identical for every N, or the benchmark fails.

    python benchmarks/bench_dataprep_scaleout.py [--corpus data/corpus] [--tokenizer olmo]
        [--copies 10] [--files 16] [--workers 1,2,4] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
GOAL = 1.1
WORDS = ("Notes", "Aside", "Summary", "Context", "Remark", "Detail", "Preface", "Addendum")


def build_input(corpus: Path, folder: Path, copies: int, files: int) -> tuple[list[dict], int]:
    """``copies`` variants of every source of ``corpus``, split into ``files`` files in all."""
    sources = sorted(p for p in corpus.iterdir() if p.is_dir())
    if not sources:
        raise SystemExit(f"{corpus}: no source folders (build the corpus with `make corpus`)")
    per_source = max(1, files // len(sources))
    documents = 0
    config_sources = []
    for source in sources:
        records = []
        for path in sorted(source.glob("*.jsonl*")):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as f:
                records.extend(json.loads(line) for line in f if line.strip())
        rng = random.Random(f"{source.name}")
        out: list[dict] = []
        for copy in range(copies):
            for record in records:
                if copy:
                    lines = record["text"].split("\n")
                    prefix = f"{rng.choice(WORDS)} {copy}.{rng.randrange(10**6)}"
                    text = "\n".join(
                        f"{prefix}: {line}" if line.strip() else line for line in lines
                    )
                    record = {**record, "id": f"{record['id']}-c{copy}", "text": text}
                    record.pop("url", None)
                    record.get("metadata", {}).pop("url", None)
                out.append(record)
        documents += len(out)
        target = folder / "in" / source.name
        target.mkdir(parents=True)
        for i in range(per_source):
            chunk = out[i::per_source]
            with gzip.open(target / f"part-{i:03d}.jsonl.gz", "wt", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in chunk)
        config_sources.append(
            {
                "name": source.name,
                "paths": [str(target)],
                **(
                    {"skip": ["langid", "quality", "bad_words", "paragraph_dedup"]}
                    if source.name == "code"
                    else {}
                ),
            }
        )
    return config_sources, documents


def digest_tree(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.parts[0] not in ("work", "logs"):
            out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_workers(pipeline: Path, out: Path, workers: int) -> tuple[float, float]:
    """Start ``workers`` worker processes at once; (wall seconds, CPU seconds of all of them)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [
        sys.executable,
        "-m",
        "olmo_dataprep.cli",
        "run",
        str(pipeline),
        "--output",
        str(out),
    ]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*command, "--num-workers", str(workers), "--worker-index", str(i), "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(workers)
    ]
    cpu = 0.0
    failures = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        if proc.returncode:
            failures.append(f"worker exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
    wall = time.perf_counter() - start
    for proc in procs:
        proc.stderr.close()
    if failures:
        raise SystemExit("\n".join(failures))
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus")
    p.add_argument("--tokenizer", default="olmo", help="olmo, train or a tokenizer.json")
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--files", type=int, default=16)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = p.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        folder = Path(tmp)
        sources, documents = build_input(args.corpus.resolve(), folder, args.copies, args.files)
        pipeline = folder / "pipeline.yaml"
        pipeline.write_text(
            yaml.safe_dump(
                {
                    "sources": sources,
                    "processes": 1,
                    "tokenizer": {"name": args.tokenizer, "train_vocab_size": 4096},
                }
            )
        )
        digests = None
        for workers in counts:
            out = folder / f"out-{workers}"
            wall, cpu = run_workers(pipeline, out, workers)
            tree = digest_tree(out)
            if digests is None:
                digests = tree
            elif tree != digests:
                differ = sorted(
                    k for k in set(tree) | set(digests) if tree.get(k) != digests.get(k)
                )
                raise SystemExit(f"{workers} workers gave different output: {differ[:5]}")
            summary = json.loads((out / "summary.json").read_text())
            timings = [
                json.loads((out / "logs" / f"timings-worker{i}.json").read_text())
                for i in range(workers)
            ]
            results.append(
                {
                    "workers": workers,
                    "wall_s": round(wall, 2),
                    "cpu_s": round(cpu, 2),
                    "cpu_ms_per_document": round(1000 * cpu / documents, 3),
                    "dedup_s_per_worker": round(
                        sum(t.get("dedup_s", 0.0) for t in timings) / workers, 2
                    ),
                    "documents_kept": summary["documents_kept"],
                    "tokens": summary["tokens"],
                }
            )
    base = results[0]["cpu_ms_per_document"]
    for r in results:
        r["ratio_to_one_worker"] = round(r["cpu_ms_per_document"] / base, 3)
    worst = max(r["ratio_to_one_worker"] for r in results)
    report = {
        "benchmark": "dataprep_scaleout",
        "documents": documents,
        "files": args.files,
        "cpus": len(os.sched_getaffinity(0)),
        "identical_output": True,
        "results": results,
        "ratio": worst,
        "goal": GOAL,
    }
    print(f"{documents:,} documents in {args.files} files; outputs identical for workers "
          f"{args.workers}", file=sys.stderr)  # fmt: skip
    for r in results:
        print(
            f"  {r['workers']} worker(s): wall {r['wall_s']:7.1f} s, CPU {r['cpu_s']:7.1f} s, "
            f"{r['cpu_ms_per_document']:.2f} CPU ms/document (× {r['ratio_to_one_worker']:.2f} "
            f"of one worker); dedup {r['dedup_s_per_worker']:.1f} s per worker",
            file=sys.stderr,
        )
    print(f"  worst ratio {worst:.3f} (goal ≤ {GOAL})", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
