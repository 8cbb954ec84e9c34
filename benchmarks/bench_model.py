"""Forward+backward throughput of our OLMo against HF ``OlmoForCausalLM``.

Same config, same weights, same inputs, same loss, one process; the two models alternate
round by round so that machine noise hits both alike. Prints tokens/s for each and the ratio
(ours / HF); the goal is ≥ 1.25×. The ratio reported is the median of the per-round ratios (each
round times ours and HF back to back), which holds up better than a ratio of medians when other
processes share the CPU; the per-round range is printed too.

``--profile`` adds the breakdown by component, timed the same way: the *body* (embedding,
blocks, final norm; forward + backward of the hidden states) and the *head + loss* (output
projection, fp32 softmax cross-entropy and their backward: the full step minus the body), each
the fastest of its rounds, plus the top aten operators of one step of each under
``torch.profiler``.

On a 2-core machine the two-thread ratio moves with whatever else runs (measured 0.88–1.51× for
the same code within ten minutes while a test suite ran beside it); ``--threads 1`` is steadier.

    python benchmarks/bench_model.py [--preset tiny] [--batch 4] [--seq-len 256] [--rounds 7]
                                     [--threads N] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch


def _step(model, ids: torch.Tensor, labels: torch.Tensor, hf: bool) -> None:
    """One training step's model work: forward, fp32 next-token loss, backward."""
    from olmo.model.loss import cross_entropy_loss

    if hf:
        loss = cross_entropy_loss(model(input_ids=ids).logits, labels)
    else:
        loss = model(ids, labels=labels)  # the trainer's path: loss fused with the head
    loss.backward()
    model.zero_grad(set_to_none=True)


def _body_step(model, ids: torch.Tensor, grad: torch.Tensor, hf: bool) -> None:
    """Forward + backward of everything before the output projection (a fixed upstream grad)."""
    hidden = model.model(input_ids=ids).last_hidden_state if hf else model.hidden_states(ids)
    hidden.backward(grad)
    model.zero_grad(set_to_none=True)


def _alternate(
    work: dict[str, Callable[[], None]], rounds: int, steps: int
) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds per step of each callable, rounds alternating in order; and per-round ratios of
    the first callable's rate to the second's."""
    names = list(work)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            for _ in range(steps):
                work[name]()
            seconds[name].append((time.perf_counter() - start) / steps)
    ratios = [b / a for a, b in zip(seconds[names[0]], seconds[names[1]], strict=True)]
    return seconds, ratios


def _profile(ours, theirs, ids, labels, rounds: int, steps: int) -> dict[str, dict[str, float]]:
    """Milliseconds per step (fastest round) of body and head + loss for both models."""
    grad = torch.randn(*ids.shape, ours.config.d_model, generator=torch.Generator().manual_seed(1))
    work = {
        "ours_full": lambda: _step(ours, ids, labels, False),
        "hf_full": lambda: _step(theirs, ids, labels, True),
        "ours_body": lambda: _body_step(ours, ids, grad, False),
        "hf_body": lambda: _body_step(theirs, ids, grad, True),
    }
    for fn in work.values():
        fn()
    full, _ = _alternate({k: work[k] for k in ("ours_full", "hf_full")}, rounds, steps)
    body, _ = _alternate({k: work[k] for k in ("ours_body", "hf_body")}, rounds, steps)
    out: dict[str, dict[str, float]] = {}
    for name in ("ours", "hf"):
        f = min(full[f"{name}_full"]) * 1e3  # min: other processes only ever add time
        b = min(body[f"{name}_body"]) * 1e3
        out[name] = {
            "step_ms": round(f, 1),
            "body_ms": round(b, 1),
            "head_loss_ms": round(f - b, 1),
        }
    return out


def _top_ops(model, ids, labels, hf: bool, rows: int = 8) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _step(model, ids, labels, hf)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, round(e.self_cpu_time_total / 1e3, 1)) for e in events[:rows]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--profile", action="store_true", help="body / head+loss breakdown")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    import transformers
    from transformers import OlmoForCausalLM

    from olmo.model.config import model_preset
    from olmo.model.hf import hf_config, to_hf_state_dict
    from olmo.model.transformer import OLMo

    torch.manual_seed(0)
    config = model_preset(args.preset).model_copy(update={"max_sequence_length": args.seq_len})
    ours = OLMo(config).train()
    theirs = OlmoForCausalLM(hf_config(config)).train()
    theirs.load_state_dict(to_hf_state_dict(ours.state_dict(), config))
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq_len))
    labels = torch.roll(ids, -1, dims=1)
    tokens = args.batch * args.seq_len

    for model, hf in ((ours, False), (theirs, True)):  # warm-up: allocator, kernels, caches
        for _ in range(2):
            _step(model, ids, labels, hf)

    seconds, ratios = _alternate(
        {
            "ours": lambda: _step(ours, ids, labels, False),
            "hf": lambda: _step(theirs, ids, labels, True),
        },
        args.rounds,
        args.steps,
    )
    ours_rate = tokens / statistics.median(seconds["ours"])
    hf_rate = tokens / statistics.median(seconds["hf"])
    ratio = statistics.median(ratios)
    result = {
        "benchmark": "model_fwd_bwd_cpu_fp32",
        "preset": args.preset,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "hf_attention": theirs.config._attn_implementation,
        "ours_tokens_per_s": round(ours_rate, 1),
        "hf_tokens_per_s": round(hf_rate, 1),
        "ratio": round(ratio, 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "goal": 1.25,
    }
    if args.profile:
        result["profile"] = _profile(ours, theirs, ids, labels, args.rounds, args.steps)
        result["top_ops_ms"] = {
            "ours": _top_ops(ours, ids, labels, False),
            "hf": _top_ops(theirs, ids, labels, True),
        }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"model forward+backward, CPU fp32, preset={args.preset} batch={args.batch} "
        f"seq_len={args.seq_len}, {torch.get_num_threads()} threads, {platform.processor()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__} "
        f"({result['hf_attention']} attention)"
    )
    print(f"  ours (OLMo)          {ours_rate:12.1f} tokens/s")
    print(f"  HF OlmoForCausalLM   {hf_rate:12.1f} tokens/s")
    print(
        f"  ratio ours/HF        {ratio:12.3f}x   (goal >= 1.25x; rounds "
        f"{result['ratio_min']:.2f}-{result['ratio_max']:.2f}x)"
    )
    if args.profile:
        prof = result["profile"]
        print("  breakdown, ms per step      ours        HF   HF/ours")
        for key, label in (("body_ms", "body (blocks)"), ("head_loss_ms", "head + loss")):
            o, h = prof["ours"][key], prof["hf"][key]
            print(f"    {label:22s} {o:9.1f} {h:9.1f} {h / o if o > 0 else float('nan'):8.2f}x")
        o, h = prof["ours"]["step_ms"], prof["hf"]["step_ms"]
        print(f"    {'whole step':22s} {o:9.1f} {h:9.1f} {h / o:8.2f}x")
        for name, ops in result["top_ops_ms"].items():
            print(f"  top operators ({name}, ms self CPU in one step):")
            for op, ms in ops:
                print(f"    {op[:48]:48s} {ms:9.1f}")


if __name__ == "__main__":
    main()
