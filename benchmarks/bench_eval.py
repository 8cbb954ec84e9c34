"""Downstream-eval throughput: scored continuations per second, batched engine vs naive scoring.

The tiny preset model (randomly initialised: accuracy does not matter here, the work does) with a
byte-level BPE trained on the task texts (or ``--tokenizer tokenizer.json``), on the first
``--limit`` items of ``--tasks``. The engine (``olmo.eval``: distinct requests computed once,
shared rows, length-sorted right-padded batches, fp32 log-probs of continuation tokens only) is
timed against the reference measured in the same run: every choice's conditional and
unconditional request scored one at a time (one unpadded forward each, no batching, no sharing).
Both must produce the same scores; they alternate round by round. Prints continuations/s for
each and the ratio (engine / naive). Also shown: the engine forced through ``model(input_ids)``
with full logits (what a ZeRO-3 module gets) instead of projecting only the scored positions.

OLMo's own evaluator on the same model: ``ai2-olmo-eval`` 0.9.0 in its own venv (built on first
use from ``locks/olmo-eval-ref.txt`` and cached; ``benchmarks/olmo_eval_ref``; building it is
never timed) gets the same weights and tokenizer as an HF directory, builds its requests with its
own task code, batches them with its collate function (``--batch-size``), runs transformers'
``OlmoForCausalLM`` and scores each task with its own ``ICLMetric``, as OLMo's trainer does,
``--rounds`` times in its process (after ours, same threads). Per round: its request
construction + forwards + metric for every task, against one round of our engine (request
construction included). Printed and in the JSON: its continuations/s, ``ratio_vs_olmo_eval``
(ours ÷ theirs, goal ≥ 3) and the largest per-choice |Σ log p| difference between the two
(``olmo_eval_max_abs_loglikelihood_difference``). ``--no-reference`` skips it.

    python benchmarks/bench_eval.py [--tasks arc_easy,boolq,...] [--limit 20] [--rounds 3]
                                    [--no-reference]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _tokenizer(path: str | None, texts: list[str], vocab_size: int):
    """The given tokenizer.json, or a byte-level BPE trained on the task texts by data-prep's
    trainer (the one the pipeline uses when OLMo's tokenizer is not there)."""
    from tokenizers import Tokenizer

    from olmo_dataprep.tokenizer import train_bpe

    if path:
        return Tokenizer.from_file(path)
    return train_bpe(texts, vocab_size=vocab_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="arc_easy,boolq,hellaswag,piqa,winogrande")
    parser.add_argument("--limit", type=int, default=20, help="items per task")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokenizer", default=None, help="a tokenizer.json (default: train one)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="of the trained BPE")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip OLMo's own evaluator (ai2-olmo-eval)"
    )
    args = parser.parse_args()

    from olmo.eval import PromptTokenizer, load_items
    from olmo.eval.downstream import item_requests, score_items
    from olmo.eval.engine import EngineStats, score_requests_naive
    from olmo.model.config import model_preset
    from olmo.model.transformer import OLMo

    tasks = [t for t in args.tasks.split(",") if t]
    items = [item for task in tasks for item in load_items(task, args.limit)]
    texts = [text for item in items for c in item.choices for text in (c.context, c.continuation)]
    tokenizer = _tokenizer(args.tokenizer, texts, args.vocab_size)
    eos = tokenizer.token_to_id("<|endoftext|>")
    config = model_preset(args.preset)
    if eos is not None:
        config = config.model_copy(update={"eos_token_id": eos})
    torch.manual_seed(0)
    model = OLMo(config).eval()
    ptok = PromptTokenizer(tokenizer, config.eos_token_id)
    continuations = sum(len(item.choices) for item in items)
    by_task = {task: [i for i in items if i.task == task] for task in tasks}

    def engine(full_forward: bool = False) -> list[float]:
        scores = []
        for task_items in by_task.values():  # one engine call per task, as evaluate() does
            for scored in score_items(
                model, ptok, task_items, batch_size=args.batch_size, full_forward=full_forward
            ):
                scores += [c.logprob for c in scored.choices]
        return scores

    def naive() -> list[float]:
        scores = []
        for requests in item_requests(items, ptok):
            scores += score_requests_naive(model, requests)[0::2]  # conditional ones
        return scores

    # Warm-up, and the check that both compute the same thing.
    reference_scores = naive()
    difference = max(
        abs(a - b)
        for scores in (engine(), engine(full_forward=True))
        for a, b in zip(scores, reference_scores, strict=True)
    )
    stats = EngineStats()
    score_items(model, ptok, items, batch_size=args.batch_size, stats=stats)

    rates: dict[str, list[float]] = {"engine": [], "full_forward": [], "naive": []}
    runs = [
        ("engine", engine),
        ("full_forward", lambda: engine(full_forward=True)),
        ("naive", naive),
    ]
    for round_index in range(args.rounds):
        order = runs[round_index % 3 :] + runs[: round_index % 3]
        for name, run in order:
            start = time.perf_counter()
            run()
            rates[name].append(continuations / (time.perf_counter() - start))

    olmo_eval = None if args.no_reference else _olmo_eval(args, tasks, model, tokenizer, by_task)

    ours, reference = statistics.median(rates["engine"]), statistics.median(rates["naive"])
    full = statistics.median(rates["full_forward"])
    result = {
        "benchmark": "eval_continuations_cpu_fp32",
        "preset": args.preset,
        "tasks": tasks,
        "items": len(items),
        "continuations": continuations,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "requests": stats.requests,
        "unique_requests": stats.unique_requests,
        "forward_rows": stats.rows,
        "max_abs_score_difference": difference,
        "continuations_per_s": round(ours, 1),
        "full_forward_continuations_per_s": round(full, 1),
        "reference_continuations_per_s": round(reference, 1),
        "ratio": round(ours / reference, 3),
    }
    if olmo_eval is not None:
        theirs = olmo_eval["continuations"] / statistics.median(olmo_eval["seconds"])
        result["olmo_eval_continuations_per_s"] = round(theirs, 1)
        result["ratio_vs_olmo_eval"] = round(ours / theirs, 3)
        result["olmo_eval_max_abs_loglikelihood_difference"] = olmo_eval["difference"]
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"downstream eval, CPU fp32, preset={args.preset}, {len(items)} items of "
        f"{','.join(tasks)} ({continuations} continuations), batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, {platform.processor()}"
    )
    print(
        f"  requests {stats.requests} → {stats.unique_requests} distinct → {stats.rows} forward "
        f"rows; max |engine − naive| score difference {difference:.2e}"
    )
    print(f"  batched engine       {ours:12.1f} continuations/s")
    print(f"  ... with full logits {full:12.1f} continuations/s   (model(ids), as under ZeRO-3)")
    print(f"  naive (one by one)   {reference:12.1f} continuations/s")
    print(f"  batched engine vs naive: {ours / reference:.2f}x")
    if olmo_eval is not None:
        print(
            f"  ai2-olmo-eval (OLMo's evaluator, own venv) {result['olmo_eval_continuations_per_s']}"
            f" continuations/s; max |ours − theirs| Σ log p {olmo_eval['difference']:.2e}"
        )
        print(f"  batched engine vs ai2-olmo-eval: {result['ratio_vs_olmo_eval']:.2f}x (goal ≥ 3)")


def _olmo_eval(args, tasks, model, tokenizer, by_task) -> dict:
    """OLMo's evaluator on the same weights and tokenizer (its venv, benchmarks/olmo_eval_ref):
    its timed rounds, and its Σ log p per choice compared with ours (the engine's ``none``)."""
    import olmo_eval_ref

    from olmo.eval import PromptTokenizer
    from olmo.eval.downstream import score_items
    from olmo.model.hf import save_hf_directory

    python = olmo_eval_ref.ensure_venv()  # not timed
    config = model.config
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_hf_directory(model.state_dict(), config, folder)
        tokenizer.save(str(folder / "tokenizer.json"))
        fixture = olmo_eval_ref.Fixture(
            folder, config.eos_token_id, config.pad_token_id, config.max_sequence_length
        )
        spec = fixture.spec(
            tasks, args.limit, args.batch_size, metrics=["acc"], rounds=args.rounds,
            threads=torch.get_num_threads(),
        )  # fmt: skip
        result = olmo_eval_ref.run_reference(python, spec)
    ptok = PromptTokenizer(tokenizer, config.eos_token_id)
    difference = 0.0
    for task, items in by_task.items():
        scored = score_items(model, ptok, items, batch_size=args.batch_size)
        for mine, doc in zip(scored, result["tasks"][task]["docs"], strict=True):
            for a, b in zip(mine.scores("none"), doc["acc"], strict=True):
                difference = max(difference, abs(a - b))
    result["difference"] = difference
    return result


if __name__ == "__main__":
    main()
