"""Every GPU measurement of issue 18 in one run (about 8 minutes on one H100/H200-class GPU).

1. ``trainer``: the real trainer step (``Trainer.train_step``: DeepSpeed, bf16, AdamW, clip 1.0,
   seq 2048) of the 1B preset at ZeRO stages 1, 2 and 3, each eager and compiled
   (``compile: true``), then the 7B preset at ZeRO-3 with activation checkpointing. Each case
   runs in its own process (a fresh CUDA context: no memory left over from the last engine) and
   only when its memory estimate fits the free GPU memory (``plan_case``); a 7B case that does
   not fit (one 80 GB GPU: ~138 GiB of training state) runs with the optimizer offloaded to host
   memory (``deepspeed.offload_optimizer: cpu``, ~16 bytes per parameter there, 8 micro-batches
   per step to amortise the CPU step) when the host can hold it, else it is recorded as skipped
   with the numbers. tokens/s, MFU (989 TFLOP/s bf16 peak), peak memory.
2. ``model_vs_hf``: our model's forward+backward against HF ``OlmoForCausalLM`` (1B, 4×2048,
   ``gpu_model.fwd_bwd_1b``) and the GPU logit agreement (``gpu_model.numerics``).
3. ``eval``: downstream-eval scoring throughput (continuations/s) of the batched engine on the
   1B model (random weights: the work, not the accuracy), as ``bench_eval.py`` measures it.

Writes a results JSON and prints a Markdown table for the README's GPU table (date, device).
Without a CUDA device the GPU sections are skipped with the reason printed; ``--dry-run`` runs
the same code on CPU with tiny shapes (no compile) so that the script cannot rot
(``tests/benchmarks/test_gpu_all.py``).

    PYTHONUNBUFFERED=1 python benchmarks/gpu_all.py --out gpu_all.json [--dry-run] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PEAK_BF16 = 989e12
"""H100/H200 SXM dense bf16 peak FLOP/s, the MFU denominator of the issue."""
BUDGET_S = 8 * 60
ROOT = Path(__file__).resolve().parent.parent


def trainer_cases(dry_run: bool) -> list[dict]:
    """(preset, stage, compile) in the order they run; the 7B ones last (the likeliest skipped)."""
    if dry_run:
        # The code paths in two processes: without zero.Init and offloaded (stage 1; 2 is the
        # same path), and with zero.Init (stage 3).
        return [
            {"preset": "tiny", "stage": 1, "compile": False, "offload": True},
            {"preset": "tiny", "stage": 3, "compile": False},
        ]
    cases = [{"preset": "1b", "stage": s, "compile": c} for c in (False, True) for s in (1, 2, 3)]
    # 7B on one GPU: ZeRO-3 (the goal); stages 1/2 would build the whole fp32 model in
    # host memory first (~26 GiB) next to the offloaded state, more than a 128 GiB host holds.
    return [*cases, {"preset": "7b", "stage": 3, "compile": False}]


def num_params(preset: str) -> int:
    from olmo.model.config import model_preset
    from olmo.model.size import model_size

    return model_size(model_preset(preset)).num_params


def estimate_gib(preset: str, stage: int, world_size: int = 1, offload: bool = False) -> float:
    """Memory one GPU needs: 2 bytes/param of bf16 weights (÷N at ZeRO-3), 2 of bf16 gradients
    plus 4 of fp32 gradient partitions (÷N at ZeRO-2/3), 12 of fp32 master weights and AdamW
    moments (÷N at every stage), and 10 GiB for activations (1B at 4×2048; 7B with activation
    checkpointing at 2×2048), buckets and allocator slack. ``offload``: the fp32 gradient
    partitions, master weights and moments are in host memory (``host_estimate_gib``)."""
    weights = 2 / (world_size if stage == 3 else 1)
    grads = 2 + (0 if offload else 4 / (world_size if stage >= 2 else 1))
    state = 0 if offload else 12 / world_size
    return num_params(preset) * (weights + grads + state) / 2**30 + 10


def host_estimate_gib(preset: str, world_size: int = 1) -> float:
    """Host memory of one process with the optimizer offloaded: 16 bytes/param ÷ N (fp32
    gradient partitions, master weights, AdamW moments; pinned) and 8 GiB for the process."""
    return num_params(preset) * 16 / world_size / 2**30 + 8


def host_available_gib() -> float:
    """MemAvailable of /proc/meminfo (free pages where it is missing), in GiB."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/meminfo") as f:
            line = next(line for line in f if line.startswith("MemAvailable:"))
        return int(line.split()[1]) / 2**20
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def plan_case(case: dict, free_gib: float, host_gib: float) -> tuple[dict, str | None]:
    """(the case as it runs, None) or (the case, why it is skipped): the GPU-resident optimizer
    when it fits ``free_gib``, else, for 7B, the optimizer offloaded when the GPU and the host
    (``host_gib`` available) hold their parts."""
    need = estimate_gib(case["preset"], case["stage"])
    if need <= free_gib:
        return case, None
    if case["preset"] != "7b" or case.get("offload"):
        return case, f"needs ~{need:.0f} GiB, {free_gib:.0f} GiB free"
    offloaded = {**case, "offload": True}
    gpu = estimate_gib(case["preset"], case["stage"], offload=True)
    host = host_estimate_gib(case["preset"])
    if gpu > free_gib:
        return offloaded, f"needs ~{gpu:.0f} GiB even offloaded, {free_gib:.0f} GiB free"
    if host > host_gib:
        reason = f"needs ~{need:.0f} GiB on the GPU, or ~{gpu:.0f} GiB with the optimizer"
        return (
            offloaded,
            f"{reason} offloaded and ~{host:.0f} GiB of host memory ({host_gib:.0f} GiB available)",
        )
    return offloaded, None


def case_config(case: dict, data: Path, dry_run: bool):
    from olmo.train.config import TrainConfig

    seq, micro = (64, 2) if dry_run else (2048, 4 if case["preset"] == "1b" else 2)
    offload = case.get("offload", False)
    # The CPU step is long: amortise it over 8 micro-batches (a dry run only shows the path).
    accumulation = 8 if offload and not dry_run else 1
    return TrainConfig.model_validate(
        {
            "run_name": f"gpu-all-{case['preset']}-z{case['stage']}",
            "model": {
                "preset": case["preset"],
                "max_sequence_length": seq,
                "activation_checkpointing": case["preset"] == "7b",
            },
            "batch": {"global_batch_size": micro * accumulation, "micro_batch_size": micro},
            "max_steps": 1_000_000,
            "scheduler": {"warmup_steps": 10},
            "precision": "bf16",
            "deepspeed": {
                "zero_stage": case["stage"],
                "offload_optimizer": "cpu" if offload else "none",
            },
            "compile": case["compile"],
            "data": {"paths": [str(data)]},
            "checkpoint": {"save_interval": 1_000_000},
            "eval": {"interval": None},
            "wandb": {"mode": "disabled"},
        }
    )


def run_case(case: dict, dry_run: bool, steps: int, warmup: int) -> dict:
    """One trainer case in this process: build the trainer, warm up, time ``steps`` steps."""
    from bench_train import write_tokens

    from olmo.model.size import flops_per_token
    from olmo.train.distributed import init_distributed
    from olmo.train.trainer import Trainer

    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints its op builds
        dist = init_distributed()
    with tempfile.TemporaryDirectory(prefix="gpu-all-") as tmp:
        from olmo.model.config import model_preset

        model = model_preset(case["preset"])
        config = case_config(case, Path(tmp) / "data", dry_run)
        tokens = config.tokens_per_step
        write_tokens(
            Path(tmp) / "data", model.vocab_size, model.eos_token_id,
            num_tokens=(steps + warmup + 2) * tokens + config.model.max_sequence_length,
        )  # fmt: skip
        start = time.perf_counter()
        trainer = Trainer(config, Path(tmp) / "run", dist)
        build_s = time.perf_counter() - start
        cuda = dist.device.type == "cuda"
        try:
            start = time.perf_counter()
            losses = [trainer.train_step()["loss"] for _ in range(warmup)]
            warmup_s = time.perf_counter() - start
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            seconds = []
            for _ in range(steps):
                start = time.perf_counter()
                losses.append(trainer.train_step()["loss"])  # .item(): synchronised
                seconds.append(time.perf_counter() - start)
        finally:
            trainer.callbacks.on_finish()
    step_s = statistics.median(seconds)
    tps = tokens / step_s
    fpt = flops_per_token(config.model, config.model.max_sequence_length)
    return {
        **case,
        "seq_len": config.model.max_sequence_length,
        "tokens_per_step": tokens,
        "tokens_per_s": round(tps, 1),
        "mfu": round(tps * fpt / PEAK_BF16, 4) if cuda else None,
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "build_s": round(build_s, 1),
        "warmup_s": round(warmup_s, 1),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
    }


def trainer_section(args, device: torch.device, deadline: float) -> list[dict]:
    results = []
    for case in trainer_cases(args.dry_run):
        name = case_name(case)
        if time.monotonic() > deadline:
            results.append({**case, "skipped": "out of the time budget"})
            print(f"trainer {name}: skipped (out of the time budget)", flush=True)
            continue
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            case, reason = plan_case(case, free / 2**30, host_available_gib())
            name = case_name(case)
            if reason is not None:
                results.append({**case, "skipped": reason})
                print(f"trainer {name}: skipped ({reason})", flush=True)
                continue
        result = run_case_process(case, args)
        results.append(result)
        print(f"trainer {name}: {json.dumps(result)}", flush=True)
    return results


def case_name(case: dict) -> str:
    compiled = " compiled" if case["compile"] else ""
    offload = " offload" if case.get("offload") else ""
    return f"{case['preset']} ZeRO-{case['stage']}{compiled}{offload}"


def run_case_process(case: dict, args) -> dict:
    """``run_case`` in a fresh process (its own CUDA context and process group)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, __file__, "--case", json.dumps(case), "--steps", str(args.steps)]
    if args.dry_run:
        command.append("--dry-run")
    # An offloaded case pins ~100 GiB of host memory and may build CPU Adam first: twice the time.
    timeout = args.case_timeout * (2 if case.get("offload") else 1)
    try:
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "error": f"timed out after {timeout}s"}
    if out.returncode != 0:
        return {**case, "error": f"exit {out.returncode}: {out.stderr[-1500:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_vs_hf_section(device: torch.device, dry_run: bool) -> dict:
    import gpu_model

    preset, batch, seq, steps = ("tiny", 2, 64, 1) if dry_run else ("1b", 4, 2048, 10)
    result = {"numerics": gpu_model.numerics(device)}
    result["fwd_bwd"] = gpu_model.fwd_bwd_1b(device, preset, batch, seq, steps, 2)
    return result


def eval_section(device: torch.device, dry_run: bool) -> dict:
    """Continuations/s of the batched engine on the model (bench_eval's tasks and tokenizer)."""
    from bench_eval import _tokenizer

    from olmo.eval import PromptTokenizer, load_items
    from olmo.eval.downstream import score_items
    from olmo.model.config import model_preset
    from olmo.model.transformer import OLMo

    tasks = ["arc_easy", "boolq", "hellaswag", "piqa", "winogrande"]
    limit, preset, vocab = (2, "tiny", 600) if dry_run else (100, "1b", 8192)
    items = [item for task in tasks for item in load_items(task, limit)]
    texts = [t for item in items for c in item.choices for t in (c.context, c.continuation)]
    tokenizer = _tokenizer(None, texts, vocab)
    config = model_preset(preset)
    eos = tokenizer.token_to_id("<|endoftext|>")
    if eos is not None:
        config = config.model_copy(update={"eos_token_id": eos})
    torch.manual_seed(0)
    with torch.device(device):
        model = OLMo(config).eval()
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    ptok = PromptTokenizer(tokenizer, config.eos_token_id)
    continuations = sum(len(item.choices) for item in items)
    by_task = [[i for i in items if i.task == task] for task in tasks]

    def score() -> None:
        for task_items in by_task:
            score_items(model, ptok, task_items, batch_size=32)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    score()  # warm-up
    rates = []
    for _ in range(1 if dry_run else 3):
        start = time.perf_counter()
        score()
        rates.append(continuations / (time.perf_counter() - start))
    dtype = "bf16" if device.type == "cuda" else "fp32"
    return {
        "preset": preset, "dtype": dtype, "tasks": tasks, "items": len(items),
        "continuations": continuations, "continuations_per_s": round(max(rates), 1),
    }  # fmt: skip


def markdown(results: dict) -> str:
    """The README's GPU table rows for this run."""
    head = f"GPU figures, {results['date']}, {results['device']} (torch {results['torch']})"
    rows = [head, "", "| measurement | tokens/s | MFU | peak GiB |", "|---|---:|---:|---:|"]
    for r in results.get("trainer", []):
        what = f"trainer {case_name(r)}"
        if "tokens_per_s" in r:
            rows.append(f"| {what} | {r['tokens_per_s']:.0f} | {r['mfu']} | {r['peak_mem_gib']} |")
        else:
            rows.append(f"| {what} | {r.get('skipped') or r.get('error', '')[:60]} | | |")
    fwd = results.get("model_vs_hf", {}).get("fwd_bwd", {})
    for name in ("ours", "hf"):
        if f"{name}_tokens_per_s" in fwd:
            mem = fwd.get("peak_mem_gib", {}).get(name)
            rows.append(
                f"| model fwd+bwd {fwd['preset']} {name} | {fwd[f'{name}_tokens_per_s']:.0f} | "
                f"{fwd[f'{name}_mfu']} | {mem} |"
            )
    ev = results.get("eval", {})
    if "continuations_per_s" in ev:
        rows.append(
            f"| eval {ev['preset']} {ev['dtype']}: {ev['continuations_per_s']} cont/s | | | |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_all.json")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, no compile")
    parser.add_argument("--json", action="store_true", help="print the results JSON last")
    parser.add_argument("--steps", type=int, default=None, help="timed trainer steps per case")
    parser.add_argument("--case-timeout", type=int, default=150, help="seconds per case")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one trainer case, in a subprocess
    args = parser.parse_args()
    args.steps = args.steps or (2 if args.dry_run else 6)
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if args.dry_run else "cuda")
    if args.case:
        print(json.dumps(run_case(json.loads(args.case), args.dry_run, args.steps, warmup=2)))
        return

    start = time.monotonic()
    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    results: dict = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device)
        if cuda
        else ("cpu (dry run)" if args.dry_run else "cpu"),
        "torch": torch.__version__,
        "dry_run": args.dry_run,
    }
    if not cuda and not args.dry_run:
        reason = "no CUDA device: GPU sections skipped (--dry-run runs them on CPU, tiny shapes)"
        print(reason, flush=True)
        results["skipped"] = reason
    else:
        # The trainer cases take most of the budget; the other two need about a minute.
        deadline = start + BUDGET_S - (30 if args.dry_run else 90)
        results["trainer"] = trainer_section(args, device, deadline)
        for name, section in (("model_vs_hf", model_vs_hf_section), ("eval", eval_section)):
            t0 = time.monotonic()
            try:
                results[name] = section(device, args.dry_run)
            except Exception as e:  # keep the other sections' numbers
                results[name] = {"error": f"{type(e).__name__}: {e}"}
            results[name]["seconds"] = round(time.monotonic() - t0, 1)
            print(name, json.dumps(results[name]), flush=True)
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
    results["wall_s"] = round(time.monotonic() - start, 1)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(markdown(results), flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
