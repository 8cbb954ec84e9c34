"""Runs inside the ai2-olmo-eval reference venv (never imports our code): OLMo's evaluator on one
model, as OLMo's trainer drives it.

    python reference.py SPEC.json

SPEC: ``model`` (an HF directory: ``OlmoForCausalLM`` via transformers, fp32), ``tokenizer`` (a
tokenizer.json), ``eos_token_id``, ``pad_token_id``, ``bos_token_id`` (or null), ``tasks`` (our
name → ai2-olmo-eval label), ``limit`` (first N documents of each validation split),
``batch_size``, ``model_ctx_len``, ``metrics`` (ICLMetric types to report, e.g. acc, len_norm,
pmi_dc; the task's own type is always timed), ``rounds`` (timed repetitions), ``threads``,
``output`` (where the JSON goes).

Per task: ``build_task(label, HFTokenizer(...), model_ctx_len)`` builds the requests (its
``prep_examples``), its ``collate_fn`` batches them, the model's logits on ``input_ids`` (and
``dc_input_ids`` when a pmi_dc metric is asked for) go to ``ICLMetric.update``; per document the
metric's per-continuation values (``loglikelihoods``) and ``compute()``'s accuracy are returned,
with each request's tokens (context, continuation) for diagnosis. ``seconds``: per round, the
wall time of request construction + forwards + the task's own metric over all tasks.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch
from torch.utils.data import DataLoader


def _limit_datasets(limit: int | None) -> None:
    """Make ai2-olmo-eval's dataset loader return the first ``limit`` rows of each split."""
    import olmo_eval.tasks as tasks

    original = tasks.load_hf_dataset

    def limited(path: str, name: str | None, split: str):
        dataset = original(path, name, split)
        return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))

    tasks.load_hf_dataset = limited


def _score(task: Any, model: Any, batch_size: int, metric_types: list[str]) -> dict[str, Any]:
    from olmo_eval import ICLMetric

    metrics = {m: ICLMetric(metric_type=m) for m in metric_types}
    need_dc = "pmi_dc" in metric_types
    loader = DataLoader(task, batch_size=batch_size, collate_fn=task.collate_fn, shuffle=False)
    with torch.no_grad():
        for batch in loader:
            logits = model(batch["input_ids"]).logits
            dc_logits = model(batch["dc_input_ids"]).logits if need_dc else None
            for metric in metrics.values():
                metric.update(batch, logits, dc_logits)
    return metrics


def main(spec_path: str) -> None:
    from olmo_eval import HFTokenizer, build_task
    from transformers import AutoModelForCausalLM

    with open(spec_path) as file:
        spec = json.load(file)
    torch.set_num_threads(int(spec.get("threads") or torch.get_num_threads()))
    _limit_datasets(spec.get("limit"))
    tokenizer = HFTokenizer(
        spec["tokenizer"],
        pad_token_id=spec["pad_token_id"],
        eos_token_id=spec["eos_token_id"],
        bos_token_id=spec.get("bos_token_id"),
    )
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32).eval()
    batch_size, ctx_len = int(spec["batch_size"]), int(spec["model_ctx_len"])
    metric_types = list(spec.get("metrics") or [])
    built = {name: build_task(label, tokenizer, model_ctx_len=ctx_len)
             for name, label in spec["tasks"].items()}  # fmt: skip

    result: dict[str, Any] = {"tasks": {}, "seconds": []}
    if metric_types:
        for name, task in built.items():
            metrics = _score(task, model, batch_size, metric_types)
            docs: dict[int, dict[str, Any]] = {}
            for sample in task.samples:
                doc = docs.setdefault(
                    sample["doc_id"], {"label": sample["label_id"], "requests": []}
                )
                doc["requests"].append([sample["ctx"], sample["continuation"]])
            for metric_type, metric in metrics.items():
                for doc_id, cont_id, value in metric.loglikelihoods:
                    scores = docs[doc_id].setdefault(metric_type, {})
                    scores.setdefault(cont_id, value)
            out_docs = []
            for doc_id in sorted(docs):
                doc = docs[doc_id]
                entry = {"doc_id": doc_id, "label": doc["label"], "requests": doc["requests"]}
                for metric_type in metric_types:
                    values = doc[metric_type]
                    entry[metric_type] = [values[i] for i in sorted(values)]
                out_docs.append(entry)
            accuracy = {m: float(metric.compute()[f"{m}_v2"]) for m, metric in metrics.items()}
            result["tasks"][name] = {
                "own_metric": task.metric_type, "docs": out_docs, "accuracy": accuracy,
            }  # fmt: skip

    for _ in range(int(spec.get("rounds") or 0)):
        start = time.perf_counter()
        continuations = 0
        for task in built.values():
            task.samples = []  # WinoGrande's prep_examples appends
            task.prep_examples()
            task._max_sequence_length = None
            metric = _score(task, model, batch_size, [task.metric_type])[task.metric_type]
            metric.compute()
            continuations += len(task.samples)
        result["seconds"].append(time.perf_counter() - start)
        result["continuations"] = continuations
    with open(spec["output"], "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main(sys.argv[1])
