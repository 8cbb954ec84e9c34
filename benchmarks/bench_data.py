"""Read throughput of training batches (GlobalOrder + InstanceDataset) against a raw memmap.

Builds a synthetic token set in a temporary folder with ``ShardWriter`` (default 20M uint16
tokens in about 5 shards), then reads global batches of ``seq_len`` instances in the training
order (a random permutation, instances spanning shards) and, as the reference measured in the same
run, the same number of instances as contiguous slices of one ``np.memmap`` of the same tokens,
read sequentially into the same int64 batch arrays. Both read from the page cache (the files were
just written), so this measures the loader's overhead, not the disk. Prints instances/s for each
and the ratio (ours / reference).

Slicing an ``np.memmap`` costs more per slice than slicing a plain ndarray (the subclass's
``__array_finalize__``); the dataset slices plain views of its memmaps, which is why the ratio can
exceed 1. The same reference read through a plain view (``view_instances_per_s``) is printed too:
against it the ratio shows what the shard lookup, random order and bounds checks cost.

    python benchmarks/bench_data.py [--tokens 20000000] [--seq-len 2048] [--batch 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from olmo.data import GlobalOrder, InstanceDataset, ShardWriter, open_shards, write_manifest

EOS = 50279


def build(folder: Path, num_tokens: int, shards: int, seed: int = 0) -> tuple[float, Path]:
    """Write ~num_tokens tokens as documents into ``shards`` shards; return write rate, raw copy."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, EOS, num_tokens, dtype=np.uint16)
    lengths = rng.geometric(1 / 1500, size=num_tokens // 1000 + 1)
    cuts = np.cumsum(lengths)
    cuts = cuts[cuts < num_tokens]
    documents = np.split(tokens, cuts)
    start = time.perf_counter()
    max_tokens = (num_tokens + len(documents)) // shards + 1
    with ShardWriter(
        folder, dtype="uint16", eos_token_id=EOS, max_tokens_per_shard=max_tokens
    ) as writer:
        for i, document in enumerate(documents):
            writer.add_document(document, doc_id=f"doc-{i}", source="synthetic")
    infos = writer.close()
    write_rate = sum(info.num_tokens for info in infos) / (time.perf_counter() - start)
    write_manifest(
        folder,
        shards=infos,
        dtype="uint16",
        eos_token_id=EOS,
        tokenizer={"name": "synthetic"},
        sources={"synthetic": {"documents": len(documents)}},
    )
    reference = folder.parent / "reference.raw"  # the same tokens as one file (not a shard)
    with open(reference, "wb") as out:
        for info in infos:
            out.write((folder / info.path).read_bytes())
    return write_rate, reference


def read_ours(dataset: InstanceDataset, order: GlobalOrder, batch: int, steps: int) -> float:
    start = time.perf_counter()
    for step in range(steps):  # positions past one epoch continue into the next permutation
        dataset.get_batch(order.indices(step * batch, batch))
    return steps * batch / (time.perf_counter() - start)


def read_reference(memmap: np.ndarray, seq_len: int, batch: int, steps: int) -> float:
    start = time.perf_counter()
    for step in range(steps):
        out = np.empty((batch, seq_len), dtype=np.int64)
        for row in range(batch):
            offset = ((step * batch + row) * seq_len) % (len(memmap) - seq_len)
            out[row] = memmap[offset : offset + seq_len]
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000_000)
    parser.add_argument("--shards", type=int, default=5)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64, help="global batch size in instances")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="passes over the data per round")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        write_rate, reference_path = build(Path(tmp) / "data", args.tokens, args.shards)
        dataset = InstanceDataset(open_shards([Path(tmp) / "data"]), args.seq_len)
        order = GlobalOrder(len(dataset), seed=1234)
        memmap = np.memmap(reference_path, dtype=np.uint16, mode="r")
        steps = args.epochs * len(dataset) // args.batch
        if steps < 1:
            raise SystemExit(f"--tokens {args.tokens} is too few for one batch")

        read_ours(dataset, order, args.batch, 1)  # warm-up: open memmaps, cache the permutation
        read_reference(memmap, args.seq_len, args.batch, 1)
        view = memmap.view(np.ndarray)
        rates: dict[str, list[float]] = {"ours": [], "reference": [], "view": []}
        runs = [
            ("ours", lambda: read_ours(dataset, order, args.batch, steps)),
            ("reference", lambda: read_reference(memmap, args.seq_len, args.batch, steps)),
            ("view", lambda: read_reference(view, args.seq_len, args.batch, steps)),
        ]
        for round_index in range(args.rounds):  # alternate so that machine noise hits all alike
            for name, run in runs if round_index % 2 == 0 else runs[::-1]:
                rates[name].append(run())

    ours, reference = statistics.median(rates["ours"]), statistics.median(rates["reference"])
    view_rate = statistics.median(rates["view"])
    result = {
        "benchmark": "data_read_batches",
        "tokens": args.tokens,
        "shards": len(dataset.shards),
        "seq_len": args.seq_len,
        "batch": args.batch,
        "instances": steps * args.batch,
        "instances_per_s": round(ours, 1),
        "reference_instances_per_s": round(reference, 1),
        "ratio": round(ours / reference, 3),
        "view_instances_per_s": round(view_rate, 1),
        "ratio_vs_view": round(ours / view_rate, 3),
        "write_tokens_per_s": round(write_rate, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"read {steps * args.batch} instances of {args.seq_len} tokens in global batches of "
        f"{args.batch}, {args.tokens} uint16 tokens in {len(dataset.shards)} shards"
    )
    print(f"  ours (GlobalOrder + get_batch, random)  {ours:12.1f} instances/s")
    print(f"  reference (one memmap, contiguous)      {reference:12.1f} instances/s")
    print(f"  reference via a plain ndarray view      {view_rate:12.1f} instances/s")
    print(f"  ratio ours/reference                    {ours / reference:12.3f}x")
    print(f"  ratio ours/plain view                   {ours / view_rate:12.3f}x")
    print(f"  ShardWriter                             {write_rate / 1e6:12.1f} M tokens/s")


if __name__ == "__main__":
    main()
