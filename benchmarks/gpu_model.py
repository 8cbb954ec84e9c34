"""GPU measurements of the model paths (run on a lent GPU machine; CI never runs this).

1. numerics: tiny model, ours vs HF ``OlmoForCausalLM`` logits on the GPU (fp32 and bf16);
2. 1B forward+backward, bf16 autocast over fp32 weights, micro-batch 4×2048: ours (fused loss)
   vs HF (logits + fp32 cross-entropy), alternating rounds; tokens/s and MFU;
3. 7B forward+backward of ours with bf16 weights and activation checkpointing, 2×2048 tokens
   (the recipe's 4096 tokens per GPU); tokens/s and MFU;
4. a DeepSpeed ZeRO-3 bf16 training step of the 1B model on one GPU (AdamW, clip 1.0):
   tokens/s, MFU, and that the loss goes down on a repeated batch.

MFU = tokens/s × ``flops_per_token`` (the same function the trainer uses) / peak bf16 FLOP/s.
``--smoke`` runs the same code on CPU with tiny shapes (to check the script before a GPU run).

    PYTHONUNBUFFERED=1 python benchmarks/gpu_model.py --out results.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import traceback

import torch

from olmo.model.config import model_preset
from olmo.model.loss import cross_entropy_loss
from olmo.model.size import flops_per_token
from olmo.model.transformer import OLMo

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def numerics(device: torch.device) -> dict:
    from transformers import OlmoForCausalLM

    from olmo.model.hf import hf_config, to_hf_state_dict

    torch.manual_seed(0)
    config = model_preset("tiny")
    ours = OLMo(config).to(device).eval()
    theirs = OlmoForCausalLM(hf_config(config)).to(device).eval()
    theirs.load_state_dict(to_hf_state_dict(ours.state_dict(), config))
    ids = torch.randint(0, config.vocab_size, (2, 128), device=device)
    out = {}
    with torch.no_grad():
        out["fp32_max_abs_logit_diff"] = (
            (ours(ids) - theirs(input_ids=ids).logits).abs().max().item()
        )
        with autocast(device):
            a, b = ours(ids).float(), theirs(input_ids=ids).logits.float()
        out["bf16_max_abs_logit_diff"] = (a - b).abs().max().item()
        out["bf16_max_abs_logit"] = a.abs().max().item()
    return out


def fwd_bwd_1b(device, preset, batch, seq, steps, rounds) -> dict:
    from transformers import OlmoForCausalLM

    from olmo.model.hf import hf_config, to_hf_state_dict

    torch.manual_seed(0)
    config = model_preset(preset).model_copy(update={"max_sequence_length": seq})
    with torch.device(device):
        ours = OLMo(config)
    theirs = OlmoForCausalLM(hf_config(config)).to(device)
    theirs.load_state_dict(to_hf_state_dict(ours.state_dict(), config))
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=device)
    labels = torch.roll(ids, -1, 1)

    def step_ours():
        with autocast(device):
            loss = ours(ids, labels=labels)
        loss.backward()
        ours.zero_grad(set_to_none=True)

    def step_hf():
        with autocast(device):
            loss = cross_entropy_loss(theirs(input_ids=ids).logits, labels)
        loss.backward()
        theirs.zero_grad(set_to_none=True)

    times = {"ours": [], "hf": []}
    peak_mem = {}
    for name, fn in (("ours", step_ours), ("hf", step_hf)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timed(fn, 2, device)
        if device.type == "cuda":
            peak_mem[name] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    for r in range(rounds):
        order = [("ours", step_ours), ("hf", step_hf)]
        for name, fn in order if r % 2 == 0 else reversed(order):
            times[name].append(timed(fn, steps, device))
    tokens = batch * seq
    fpt = flops_per_token(config, seq)
    peak = peak_flops(device)
    result = {"preset": preset, "batch": batch, "seq_len": seq, "peak_mem_gib": peak_mem}
    for name, ts in times.items():
        tps = tokens / min(ts)
        result[f"{name}_tokens_per_s"] = round(tps, 1)
        result[f"{name}_mfu"] = round(tps * fpt / peak, 4) if peak else None
    result["ratio_ours_over_hf"] = round(result["ours_tokens_per_s"] / result["hf_tokens_per_s"], 3)
    return result


def fwd_bwd_7b(device, preset, batch, seq, steps) -> dict:
    torch.manual_seed(0)
    config = model_preset(preset).model_copy(
        update={"max_sequence_length": seq, "activation_checkpointing": True}
    )
    with torch.device(device):
        model = OLMo(config)
    model = model.to(torch.bfloat16).train()
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=device)
    labels = torch.roll(ids, -1, 1)

    def step():
        loss = model(ids, labels=labels)
        loss.backward()
        model.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed(step, 2, device)
    t = timed(step, steps, device)
    tps = batch * seq / t
    peak = peak_flops(device)
    fpt = flops_per_token(config, seq)
    out = {
        "preset": preset,
        "batch": batch,
        "seq_len": seq,
        "weights": "bf16",
        "activation_checkpointing": True,
        "tokens_per_s": round(tps, 1),
        "mfu": round(tps * fpt / peak, 4) if peak else None,
    }
    if device.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def deepspeed_zero3(device, preset, batch, seq, steps) -> dict:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29511")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(0)
    config = model_preset(preset).model_copy(update={"max_sequence_length": seq})
    model = OLMo(config)
    if config.weight_tying:
        # The tied head uses the embedding's weight outside the embedding module's forward.
        deepspeed.zero.register_external_parameter(model, model.embed.weight)
    ds_config = {
        "train_micro_batch_size_per_gpu": batch,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": True},
        "zero_optimization": {"stage": 3},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }
    decay = [p for n, p in model.named_parameters() if not n.startswith("embed")]
    no_decay = [p for n, p in model.named_parameters() if n.startswith("embed")]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=4e-4,
        betas=(0.9, 0.95),
        eps=1e-5,
    )
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=engine.device)
    labels = torch.roll(ids, -1, 1)
    losses = []

    def step():
        loss = engine(ids, labels=labels)
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())

    timed(step, 3, device)
    t = timed(step, steps, device)
    tps = batch * seq / t
    peak = peak_flops(device)
    out = {
        "preset": preset,
        "batch": batch,
        "seq_len": seq,
        "zero_stage": 3,
        "precision": "bf16 (fp32 master weights)",
        "tokens_per_s": round(tps, 1),
        "mfu": round(tps * flops_per_token(config, seq) / peak, 4) if peak else None,
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
    }
    if device.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_model.json")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes")
    parser.add_argument("--only", nargs="*", help="run only these sections")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    small = args.smoke
    sections = {
        "numerics": lambda: numerics(device),
        "fwd_bwd_1b": lambda: fwd_bwd_1b(
            device,
            "tiny" if small else "1b",
            2 if small else 4,
            64 if small else 2048,
            1 if small else 10,
            2,
        ),
        "fwd_bwd_7b": lambda: fwd_bwd_7b(
            device, "tiny" if small else "7b", 2, 64 if small else 2048, 1 if small else 5
        ),
        "deepspeed_zero3_1b": lambda: deepspeed_zero3(
            device,
            "tiny" if small else "1b",
            2 if small else 4,
            64 if small else 2048,
            2 if small else 10,
        ),
    }
    results: dict = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    with contextlib.suppress(ImportError):
        import transformers

        results["transformers"] = transformers.__version__
    for name, fn in sections.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as e:  # keep measuring the other sections
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            traceback.print_exc()
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(name, json.dumps(results[name]), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
