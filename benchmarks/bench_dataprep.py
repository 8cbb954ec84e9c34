"""Data-prep throughput: the whole pipeline against raw ``tokenizers`` ``encode_batch``.

Runs ``olmo-dataprep``'s pipeline (one worker, every stage on, recipe defaults) over an input
corpus (default: the embedded corpus, ``make corpus``) into a temporary folder and measures its
end-to-end rate in output tokens per second of wall time. The reference, measured in the same
run, is the tokenizer alone: ``Tokenizer.encode_batch`` over exactly the text the pipeline kept
(decoded back from its output), in batches of the same size. Prints both rates, their ratio
(pipeline / reference; the goal is ≥ 0.7) and documents/s for each stage from the run's timings.

    python benchmarks/bench_dataprep.py [--corpus data/corpus] [--tokenizer olmo|train|PATH]
                                        [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from olmo.data.shards import open_shards
from olmo_dataprep.config import load_pipeline_config
from olmo_dataprep.pipeline import run_pipeline
from olmo_dataprep.tokenizer import TextTokenizer

REPO = Path(__file__).resolve().parent.parent


def pipeline_file(folder: Path, corpus: Path, tokenizer: str) -> Path:
    sources = sorted(p for p in corpus.iterdir() if p.is_dir())
    if not sources:
        raise SystemExit(f"{corpus}: no source folders (build the corpus with `make corpus`)")
    data = {
        "sources": [
            {
                "name": p.name,
                "paths": [str(p)],
                **(
                    {"skip": ["langid", "quality", "bad_words", "paragraph_dedup"]}
                    if p.name == "code"
                    else {}
                ),
            }
            for p in sources
        ],
        "tokenizer": {"name": tokenizer, "train_vocab_size": 4096},
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def kept_texts(out: Path, tokenizer: TextTokenizer) -> list[str]:
    texts = []
    for shard in open_shards([out]).shards:
        tokens = shard.tokens
        for start, end in zip(shard.starts, shard.ends, strict=True):
            texts.append(tokenizer.decode(tokens[start : end - 1].tolist()))
    return texts


def reference_rate(tokenizer: TextTokenizer, texts: list[str], batch: int) -> float:
    start = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), batch):
        tokens += sum(len(ids) + 1 for ids in tokenizer.encode_batch(texts[i : i + batch]))
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus")
    parser.add_argument("--tokenizer", default="auto", help="olmo, train, auto or a tokenizer.json")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()

    pipeline_rates, reference_rates, stage_rates = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench_dataprep_") as tmp:
        path = pipeline_file(Path(tmp), args.corpus.resolve(), args.tokenizer)
        tokenizer_file = None
        for round_index in range(args.rounds):
            out = Path(tmp) / f"out{round_index}"
            config = load_pipeline_config(path, output=str(out))
            if tokenizer_file is not None:  # train once; later rounds reuse it
                config.tokenizer.name = str(tokenizer_file)
            start = time.perf_counter()
            result = run_pipeline(config, quiet=True)
            wall = time.perf_counter() - start
            assert result.summary is not None
            tokens = result.summary["tokens"]
            pipeline_rates.append(tokens / wall)
            tokenizer_file = out / "tokenizer.json"
            tokenizer = TextTokenizer.from_file(tokenizer_file)
            texts = kept_texts(out, tokenizer)
            reference_rates.append(reference_rate(tokenizer, texts, config.tokenizer.batch_size))
            t = result.timings
            stage_rates.append(
                {
                    name: t[f"{name}_docs"] / t[f"{name}_s"]
                    for name in ("read", "langid", "quality", "bad_words", "pii", "hashes",
                                 "dedup", "decontamination", "tokenize", "mixing")
                    if t.get(f"{name}_s")
                }
            )  # fmt: skip
            docs_in, kept = result.summary["documents_in"], result.summary["documents_kept"]

    pipeline, reference = statistics.median(pipeline_rates), statistics.median(reference_rates)
    stages = {
        name: statistics.median(r[name] for r in stage_rates if name in r)
        for name in stage_rates[-1]
    }
    result_json = {
        "benchmark": "dataprep_pipeline_vs_encode_batch",
        "documents_in": docs_in,
        "documents_kept": kept,
        "tokens": tokens,
        "pipeline_tokens_per_s": round(pipeline),
        "reference_tokens_per_s": round(reference),
        "ratio": round(pipeline / reference, 3),
        "goal": 0.7,
        "stage_docs_per_s": {k: round(v) for k, v in stages.items()},
        "rounds": args.rounds,
    }
    if args.json:
        print(json.dumps(result_json))
        return
    print(f"documents in {docs_in:,}, kept {kept:,}, output tokens {tokens:,}")
    print(f"pipeline (end to end)   {pipeline:>12,.0f} tokens/s")
    print(f"encode_batch reference  {reference:>12,.0f} tokens/s")
    print(f"ratio                   {pipeline / reference:>12.3f}  (goal >= 0.7)")
    print("per stage (documents/s):")
    for name, rate in stages.items():
        print(f"  {name:<16}{rate:>12,.0f}")
    print(json.dumps(result_json))


if __name__ == "__main__":
    main()
