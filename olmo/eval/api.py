"""The evaluation entry points: ``evaluate`` (a model in memory), ``evaluate_checkpoint`` (a
folder on disk) and ``in_loop`` (the trainer's periodic evaluation, all ranks together)."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from olmo.eval.downstream import accuracies, item_requests, score_items, task_metrics
from olmo.eval.engine import EngineStats, PromptTokenizer, count_batches, model_config
from olmo.eval.loading import LoadedModel, TokenizerNotFound, load_model, load_tokenizer
from olmo.eval.perplexity import evaluate_perplexity
from olmo.eval.tasks import HEADLINE, NORMALIZATIONS, Item, load_items, resolve_tasks

__all__ = ["evaluate", "evaluate_checkpoint", "in_loop", "prompt_tokenizer"]

PathLike = str | os.PathLike[str]


def prompt_tokenizer(tokenizer: Any, model: Any) -> PromptTokenizer:
    """A ``PromptTokenizer`` from a ``tokenizers.Tokenizer``, a tokenizer.json path or an
    existing ``PromptTokenizer``; the EOS id (the fallback document prefix) is the model's."""
    if isinstance(tokenizer, PromptTokenizer):
        return tokenizer
    if isinstance(tokenizer, str | os.PathLike):
        tokenizer = load_tokenizer(tokenizer)
    return PromptTokenizer(tokenizer, model_config(model).eos_token_id)


@functools.lru_cache(maxsize=32)
def _cached_items(task: str, limit: int | None) -> tuple[Item, ...]:
    return tuple(load_items(task, limit))


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[eval] {message}", file=sys.stderr, flush=True)


def evaluate(
    model: Any,
    tokenizer: Any,
    *,
    tasks: str | Sequence[str] = "core",
    limit: int | None = None,
    batch_size: int = 32,
    perplexity: Mapping[str, Sequence[PathLike]] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    perplexity_limit: int | None = None,
) -> dict[str, Any]:
    """Downstream accuracy on ``tasks`` (first ``limit`` items each; ``[]`` for none) and, when
    ``perplexity`` maps source names to inputs, perplexity and bits per byte. JSON-ready.

    ``model`` is an OLMo module (or a ``LoadedModel``); it is moved to ``device`` and put in eval
    mode for the duration. ``perplexity_limit`` caps the documents scored per source.
    """
    if isinstance(model, LoadedModel):
        model = model.model
    names = resolve_tasks(tasks) if tasks else ()
    ptok = prompt_tokenizer(tokenizer, model)
    stats = EngineStats()
    started = time.perf_counter()
    results: dict[str, Any] = {"tasks": {}}
    continuations = 0
    was_training = model.training
    model.to(device)
    model.eval()
    try:
        for task in names:
            task_started = time.perf_counter()
            items = _cached_items(task, limit)
            scored = score_items(
                model, ptok, items, batch_size=batch_size, device=device, stats=stats
            )
            continuations += sum(len(item.choices) for item in items)
            results["tasks"][task] = task_metrics(task, len(items), accuracies(scored))
            _say(
                progress,
                f"{task}: {len(items)} items, {HEADLINE[task]} acc "
                f"{results['tasks'][task]['headline']:.4f} "
                f"({time.perf_counter() - task_started:.1f}s)",
            )
        if perplexity:
            ppl_started = time.perf_counter()
            results["perplexity"] = evaluate_perplexity(
                model,
                ptok,
                perplexity,
                batch_size=batch_size,
                device=device,
                limit=perplexity_limit,
                stats=stats,
            )
            aggregate = results["perplexity"]["aggregate"]
            _say(
                progress,
                f"perplexity: {aggregate['documents']} documents, ppl "
                f"{aggregate['perplexity']:.3f}, bpb {aggregate['bits_per_byte']:.4f} "
                f"({time.perf_counter() - ppl_started:.1f}s)",
            )
    finally:
        model.train(was_training)
    results["continuations_scored"] = continuations
    results["engine"] = stats.as_dict()
    results["seconds"] = round(time.perf_counter() - started, 3)
    return results


def evaluate_checkpoint(
    path: PathLike,
    *,
    tasks: str | Sequence[str] = "core",
    limit: int | None = None,
    batch_size: int = 32,
    tokenizer: Any = None,
    perplexity: Mapping[str, Sequence[PathLike]] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    perplexity_limit: int | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """``load_model`` + ``load_tokenizer`` + ``evaluate`` for a checkpoint or HF directory.

    ``tokenizer`` (a path or a ``tokenizers.Tokenizer``) overrides the one found with the model.
    Raises ``CheckpointError`` for a bad folder, ``TokenizerNotFound`` when there is no tokenizer.
    """
    loaded_at = time.perf_counter()
    loaded = load_model(path, device=device, verify=verify)
    if tokenizer is None:
        if loaded.tokenizer_path is None:
            where = (
                "inside the HF directory"
                if loaded.kind == "hf"
                else "next to the manifest.json of the run's data.paths"
            )
            raise TokenizerNotFound(
                f"no tokenizer.json for {path} ({where}); pass tokenizer=PATH explicitly"
            )
        tokenizer = loaded.tokenizer_path
    _say(
        progress, f"loaded {loaded.kind} model from {path} ({time.perf_counter() - loaded_at:.1f}s)"
    )
    results = evaluate(
        loaded.model,
        tokenizer,
        tasks=tasks,
        limit=limit,
        batch_size=batch_size,
        perplexity=perplexity,
        device=device,
        progress=progress,
        perplexity_limit=perplexity_limit,
    )
    config = loaded.config
    header = {
        "checkpoint": str(path),
        "step": loaded.step,
        "tokens": loaded.tokens,
        "kind": loaded.kind,
        "model": {
            "d_model": config.d_model,
            "n_layers": config.n_layers,
            "params": sum(p.numel() for p in loaded.model.parameters()),
        },
        "tokenizer": str(tokenizer) if isinstance(tokenizer, str | Path) else None,
    }
    return {**header, **results}


def in_loop(
    model: Any,
    tokenizer: Any,
    *,
    tasks: str | Sequence[str],
    limit: int | None,
    batch_size: int,
    device: str | torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, float]:
    """Downstream accuracies for the trainer's metrics: ``{"eval/<task>/acc_<norm>": v,
    "eval/<task>/headline": v}`` (identical on every rank).

    Collective: every rank calls it with the same arguments. Items are spread over ranks
    (rank r takes items r, r + world_size, ...); correct counts are summed with
    ``torch.distributed.all_reduce`` when a process group with ``world_size`` > 1 is initialised.
    Under ZeRO-3 every rank must call forward the same number of times (each forward gathers the
    sharded parameters), so ranks with fewer batches run one-token dummy forwards to match. Pass
    the engine's module (``engine.module``); the model's mode is restored afterwards.
    ``tokenizer``: a ``tokenizers.Tokenizer``, a path, or a ``PromptTokenizer`` (pass the same
    one every time to keep its encoding cache). Task items are cached per (task, limit).
    """
    import torch.distributed as dist

    distributed = world_size > 1
    if distributed and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"in_loop with world_size={world_size} needs an initialised torch.distributed group"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    ptok = prompt_tokenizer(tokenizer, model)
    config = model_config(model)
    metrics: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        for task in resolve_tasks(tasks):
            mine = _cached_items(task, limit)[rank::world_size]
            forwards = 0
            if distributed:
                requests = [r for rs in item_requests(mine, ptok) for r in rs]
                forwards = count_batches(requests, config.max_sequence_length, batch_size)
                most = torch.tensor([forwards], dtype=torch.long, device=device)
                dist.all_reduce(most, op=dist.ReduceOp.MAX)
                forwards = int(most.item())
            scored = score_items(
                model, ptok, mine, batch_size=batch_size, device=device, min_forwards=forwards
            )
            counts = [len(scored)] + [sum(s.correct(n) for s in scored) for n in NORMALIZATIONS]
            if distributed:
                summed = torch.tensor(counts, dtype=torch.float64, device=device)
                dist.all_reduce(summed, op=dist.ReduceOp.SUM)
                counts = [round(v) for v in summed.tolist()]
            total = counts[0]
            acc = {
                n: (c / total if total else 0.0)
                for n, c in zip(NORMALIZATIONS, counts[1:], strict=True)
            }
            for norm in NORMALIZATIONS:
                metrics[f"eval/{task}/acc_{norm}"] = acc[norm]
            metrics[f"eval/{task}/headline"] = acc[HEADLINE[task]]
    finally:
        model.train(was_training)
    return metrics
