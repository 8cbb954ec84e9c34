"""``make bench``: every component benchmark, then one table of ratios.

Each benchmark runs as its own process with ``--json`` (its full report goes to the terminal as
it runs, on stderr) and measures its reference in the same run; this script only collects the
ratios and prints them side by side with their goals:

    python benchmarks/run_all.py [--quick] [--only model,eval] [--json]

``--quick`` runs each with small settings (a smoke run, not numbers to report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    component: str
    measure: str
    value: float
    goal: str
    met: bool | None


def _model(r: dict) -> list[Row]:
    return [Row("model", "our fwd+bwd tokens/s ÷ HF OlmoForCausalLM", r["ratio"], "≥ 1.25", r["ratio"] >= 1.25)]  # fmt: skip


def _train(r: dict) -> list[Row]:
    return [
        Row("trainer", f"ZeRO-3 step ÷ bare step time ({x['preset']})", x["overhead_ratio"],
            "≤ 1.15", x["overhead_ratio"] <= 1.15)
        for x in r["results"]
    ]  # fmt: skip


def _checkpoint_upload(r: dict) -> list[Row]:
    return [
        Row("trainer", f"step blocked by a save: async s3 ÷ local ({x['preset']})", x["ratio"],
            "≤ 1.2", x["ratio"] <= 1.2)
        for x in r["results"]
    ]  # fmt: skip


def _data(r: dict) -> list[Row]:
    return [Row("data loader", "global-order batches ÷ contiguous memmap reads", r["ratio"], "≥ 1.0", r["ratio"] >= 1.0)]  # fmt: skip


def _data_order(r: dict) -> list[Row]:
    rows = []
    for key, label in (
        ("large", f"{r['large']['tokens'] / 1e12:g}T tokens"),
        ("many_shards", f"{r['many_shards']['shards']:,} shards"),
    ):
        x = r[key]
        rows.append(
            Row(
                "data order",
                f"{label}: peak RSS per rank ÷ 256 MB goal",
                x["rss_ratio"],
                "≤ 1",
                x["rss_ratio"] <= 1,
            )
        )
        rows.append(
            Row(
                "data order",
                f"{label}: time to first batch ÷ 5 s goal",
                x["time_ratio"],
                "≤ 1",
                x["time_ratio"] <= 1,
            )
        )
    return rows  # fmt: skip


def _dataprep(r: dict) -> list[Row]:
    return [Row("data-prep", "pipeline tokens/s ÷ encode_batch tokens/s", r["ratio"], "≥ 0.7", r["ratio"] >= 0.7)]  # fmt: skip


def _dataprep_memory(r: dict) -> list[Row]:
    return [Row("data-prep", f"peak RSS: largest file and line ÷ {r['reference']} file", r["ratio"], "≤ 1.2", r["ratio"] <= 1.2)]  # fmt: skip


def _dataprep_scaleout(r: dict) -> list[Row]:
    return [Row("data-prep", "CPU per document, 2 and 4 workers ÷ 1 worker", r["ratio"], "≤ 1.1", r["ratio"] <= 1.1)]  # fmt: skip


def _dolma(r: dict) -> list[Row]:
    tokenize = r["stages"]["tokenize"]["ratio"]
    return [
        Row("data-prep", "pipeline wall ÷ Dolma tag+dedupe+mix+tokens", r["ratio"], "< 1", r["ratio"] < 1),
        Row("data-prep", "tokenize time ÷ `dolma tokens` wall", tokenize, "-", None),
    ]  # fmt: skip


def _eval(r: dict) -> list[Row]:
    rows = [Row("eval", "engine continuations/s ÷ one at a time", r["ratio"], "> 1", r["ratio"] > 1)]  # fmt: skip
    if "ratio_vs_olmo_eval" in r:
        rows.append(Row("eval", "continuations/s ÷ ai2-olmo-eval (own venv)", r["ratio_vs_olmo_eval"], "≥ 3", r["ratio_vs_olmo_eval"] >= 3))  # fmt: skip
    return rows


def _operator(r: dict) -> list[Row]:
    names = {
        "create_to_job": "CR created → first Job (÷ 2 s goal)",
        "preempt_to_next_job": "pod preempted → next Job (÷ 2 s goal)",
        "all_jobs": f"{r['crs']} CRs at once → all Jobs (÷ 30 s goal)",
    }
    return [
        Row("operator", text, r[f"{key}_ratio"], "< 1", r[f"{key}_ratio"] < 1)
        for key, text in names.items()
    ]


def _checkpoint_interval(r: dict) -> list[Row]:
    rows = [
        Row(
            "operator",
            f"goodput adaptive ÷ best fixed interval, MTBF {x['mtbf_hours']:g} h",
            x["ratio_vs_best"],
            "≥ 0.95",
            x["ratio_vs_best"] >= 0.95,
        )
        for x in r["results"]
    ]
    x = min(r["results"], key=lambda x: x["mtbf_hours"])
    if x["ratio_vs_default"] is not None:
        rows.append(
            Row(
                "operator",
                f"goodput adaptive ÷ default interval, MTBF {x['mtbf_hours']:g} h",
                x["ratio_vs_default"],
                "> 1",
                x["ratio_vs_default"] > 1,
            )
        )
    return rows


# name → (script, arguments, quick arguments, rows)
BENCHMARKS = {
    "model": (
        "bench_model.py",
        ["--threads", "1"],
        ["--threads", "1", "--rounds", "1", "--steps", "1"],
        _model,
    ),
    "train": ("bench_train.py", [], ["--presets", "tiny", "--rounds", "1"], _train),
    "checkpoint_upload": (
        "bench_checkpoint_upload.py",
        [],
        ["--presets", "tiny", "--rounds", "2", "--steps-between", "2"],
        _checkpoint_upload,
    ),
    "data": ("bench_data.py", [], ["--tokens", "300000", "--rounds", "1"], _data),
    "data_order": (
        "bench_data_order.py",
        [],
        ["--tokens", "1e10", "--shards", "2000"],
        _data_order,
    ),
    "dataprep": (
        "bench_dataprep.py",
        ["--corpus", "data/corpus", "--tokenizer", "olmo"],
        ["--corpus", "data/corpus", "--tokenizer", "train", "--rounds", "1"],
        _dataprep,
    ),
    "dataprep_memory": (
        "bench_dataprep_memory.py",
        [],
        ["--sizes", "1MB,10MB", "--line", "20MB"],
        _dataprep_memory,
    ),
    "dataprep_scaleout": (
        "bench_dataprep_scaleout.py",
        ["--corpus", "data/corpus", "--tokenizer", "olmo"],
        [
            "--corpus",
            "data/corpus",
            "--tokenizer",
            "train",
            "--copies",
            "1",
            "--files",
            "4",
            "--workers",
            "1,2",
        ],
        _dataprep_scaleout,
    ),
    "dolma": (
        "bench_dolma.py",
        ["--corpus", "data/corpus", "--tokenizer", "olmo"],
        ["--corpus", "data/corpus", "--tokenizer", "olmo", "--quick"],
        _dolma,
    ),
    "eval": ("bench_eval.py", [], ["--limit", "3", "--rounds", "1", "--tasks", "piqa"], _eval),
    "operator": ("bench_operator.py", [], ["--crs", "5", "--rounds", "1"], _operator),
    "checkpoint_interval": (
        "bench_checkpoint_interval.py",
        [],
        ["--quick"],
        _checkpoint_interval,
    ),
}


def run(name: str, quick: bool) -> tuple[dict | None, float, str]:
    script, args, quick_args, _ = BENCHMARKS[name]
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, str(REPO / "benchmarks" / script), "--json"]
    cmd += quick_args if quick else args
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    sys.stderr.write(proc.stderr[-2000:])
    if proc.returncode != 0:
        return None, seconds, f"exit {proc.returncode}"
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), seconds, ""
    except (IndexError, json.JSONDecodeError):
        return None, seconds, "no JSON result"


def table(rows: list[Row], failures: dict[str, str]) -> str:
    lines = [
        f"benchmarks — {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"{'component':<12} {'measure':<52} {'ratio':>8}  {'goal':<7} met",
    ]
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        lines.append(f"{r.component:<12} {r.measure:<52} {r.value:>8.3f}  {r.goal:<7} {met}")
    for name, why in failures.items():
        lines.append(f"{name:<12} {'did not run: ' + why:<52}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small settings: a smoke run")
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    p.add_argument("--json", action="store_true", help="print the rows as one JSON line")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    rows: list[Row] = []
    failures: dict[str, str] = {}
    for name in names:
        print(f"==> {name}", file=sys.stderr, flush=True)
        result, seconds, error = run(name, args.quick)
        if result is None:
            failures[name] = error
            continue
        rows += BENCHMARKS[name][3](result)
        print(f"    {name}: {seconds:.0f}s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"rows": [r.__dict__ for r in rows], "failures": failures}))
    else:
        print(table(rows, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
