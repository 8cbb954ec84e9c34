"""Forward+backward throughput of our OLMo against HF ``OlmoForCausalLM``.

Same config, same weights, same inputs, same loss, one process; the two models alternate
round by round so that machine noise hits both alike. Prints tokens/s for each and the ratio
(ours / HF); the goal is ≥ 1.25×.

    python benchmarks/bench_model.py [--preset tiny] [--batch 4] [--seq-len 256] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()

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
    tokens = args.batch * args.seq_len * args.steps

    for model, hf in ((ours, False), (theirs, True)):  # warm-up: allocator, kernels, caches
        for _ in range(2):
            _step(model, ids, labels, hf)

    rates: dict[str, list[float]] = {"ours": [], "hf": []}
    for round_index in range(args.rounds):
        order = [("ours", ours, False), ("hf", theirs, True)]
        if round_index % 2:
            order.reverse()
        for name, model, hf in order:
            start = time.perf_counter()
            for _ in range(args.steps):
                _step(model, ids, labels, hf)
            rates[name].append(tokens / (time.perf_counter() - start))

    ours_rate, hf_rate = statistics.median(rates["ours"]), statistics.median(rates["hf"])
    result = {
        "benchmark": "model_fwd_bwd_cpu_fp32",
        "preset": args.preset,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "threads": torch.get_num_threads(),
        "ours_tokens_per_s": round(ours_rate, 1),
        "hf_tokens_per_s": round(hf_rate, 1),
        "ratio": round(ours_rate / hf_rate, 3),
        "goal": 1.25,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"model forward+backward, CPU fp32, preset={args.preset} batch={args.batch} "
        f"seq_len={args.seq_len}, {torch.get_num_threads()} threads, {platform.processor()}"
    )
    print(f"  ours (OLMo)          {ours_rate:12.1f} tokens/s")
    print(f"  HF OlmoForCausalLM   {hf_rate:12.1f} tokens/s")
    print(f"  ratio ours/HF        {ours_rate / hf_rate:12.3f}x   (goal >= 1.25x)")


if __name__ == "__main__":
    main()
