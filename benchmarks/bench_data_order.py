"""The data order and manifest at Dolma scale: memory per rank and time to the first batch.

Two synthetic datasets, manifests only (no token files: nothing here reads a token):

- ``3T tokens``: a manifest of 3·10^12 uint32 tokens in shards of 2^28 tokens (about 11,200
  shards), cut into 2048-token instances (about 1.46 billion).
- ``100k shards``: a manifest of 100,000 shards of 2^20 tokens (about 105 billion tokens).

For each, a fresh process does what a training rank does before its first step: open the
shards (``open_shards``, lazily), build the ``InstanceDataset`` and the ``GlobalOrder``, take the
first global batch of 2048 instances at a position deep into the third epoch and locate every
instance in its shard. It prints the wall time from the start of that work to the located batch
and the process's peak RSS (the whole process, interpreter and numpy included). Goals: peak RSS
≤ 256 MB and ≤ 5 s to the first batch.

The reference is the order a run used before ``feistel``: ``pcg64-shuffle`` materialises an
int64 permutation per epoch. At 3T tokens that array alone is 1.46·10^9 × 8 bytes ≈ 11.7 GB on
every rank (printed, computed; with ``--measure-shuffle N`` it is also measured for N instances,
e.g. 100 million, to show it grows as 8 bytes per instance and how long it takes to build).

    python benchmarks/bench_data_order.py [--tokens 3e12] [--shards 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEQ_LEN = 2048
BATCH = 2048
GOAL_RSS_MB = 256
GOAL_SECONDS = 5.0


def write_synthetic_manifest(folder: Path, total_tokens: int, shard_tokens: int) -> int:
    """A manifest listing ``ceil(total_tokens / shard_tokens)`` shards that do not exist."""
    from olmo.data import ShardInfo, write_manifest

    count, last = divmod(total_tokens, shard_tokens)
    sizes = [shard_tokens] * count + ([last] if last else [])
    infos = [
        ShardInfo(f"part-{i:06d}.npy", f"part-{i:06d}.csv.gz", size, size // 1000, "0" * 64)
        for i, size in enumerate(sizes)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(
        folder,
        shards=infos,
        dtype="uint32",
        eos_token_id=0,
        tokenizer={"name": "synthetic"},
        sources={"synthetic": {"documents": sum(i.num_documents for i in infos)}},
    )
    return len(infos)


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``: unlike ``ru_maxrss``, it does not carry the parent's
    peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def first_batch(folder: str) -> dict:
    """In this (fresh) process: open, order, take and locate the first batch; time and RSS."""
    import numpy as np

    from olmo.data import GlobalOrder, InstanceDataset, open_shards

    before = peak_rss_mb()
    start = time.perf_counter()
    shards = open_shards([folder])
    dataset = InstanceDataset(shards, SEQ_LEN)
    order = GlobalOrder(len(dataset), seed=1234)
    position = 2 * len(dataset) + len(dataset) // 3  # well into the third epoch
    batch = order.indices(position, BATCH)
    shard_of, local_of = shards.locate_many(batch * SEQ_LEN)
    seconds = time.perf_counter() - start
    assert len(np.unique(batch)) == BATCH and (local_of >= 0).all()
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": before,
        "instances": len(dataset),
        "shards": len(shards),
        "tokens": shards.total_tokens,
        "first_shards": shard_of[:3].tolist(),
    }


def measure_shuffle(instances: int | str) -> dict:
    """In this (fresh) process: the pcg64-shuffle reference, built whole for one epoch."""
    from olmo.data import GlobalOrder

    instances = int(instances)
    start = time.perf_counter()
    order = GlobalOrder(instances, seed=1234, kind="pcg64-shuffle")
    order.indices(instances // 3, BATCH)
    return {
        "instances": instances,
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
    }


def in_fresh_process(function: str, argument: str) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import bench_data_order as b; "
        f"print(json.dumps(b.{function}(sys.argv[2])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), argument],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=float, default=3e12, help="tokens in the large manifest")
    p.add_argument("--shard-tokens", type=int, default=1 << 28)
    p.add_argument("--shards", type=int, default=100_000, help="shards in the many-shards case")
    p.add_argument("--measure-shuffle", type=int, default=0, metavar="N",
                   help="also build the pcg64-shuffle reference for N instances")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-data-order-") as tmp:
        large, many = Path(tmp) / "large", Path(tmp) / "many"
        write_synthetic_manifest(large, int(args.tokens), args.shard_tokens)
        write_synthetic_manifest(many, args.shards * (1 << 20), 1 << 20)
        results = {
            "large": in_fresh_process("first_batch", str(large)),
            "many_shards": in_fresh_process("first_batch", str(many)),
        }
    if args.measure_shuffle:
        results["shuffle"] = in_fresh_process("measure_shuffle", str(args.measure_shuffle))
    large_r = results["large"]
    results["shuffle_bytes_per_rank_at_large"] = large_r["instances"] * 8
    for key in ("large", "many_shards"):
        r = results[key]
        r["rss_ratio"] = r["peak_rss_mb"] / GOAL_RSS_MB
        r["time_ratio"] = r["seconds"] / GOAL_SECONDS

    print(f"data order and manifest at scale ({SEQ_LEN}-token instances, batch of {BATCH})",
          file=sys.stderr)  # fmt: skip
    for key, label in (("large", "3T tokens"), ("many_shards", "100k shards")):
        r = results[key]
        print(
            f"  {label:<12} {r['tokens'] / 1e12:7.3f}T tokens, {r['shards']:>7,} shards, "
            f"{r['instances']:>14,} instances: first batch in {r['seconds']:.3f} s "
            f"(÷ {GOAL_SECONDS:.0f} s goal = {r['time_ratio']:.3f}), peak RSS "
            f"{r['peak_rss_mb']:.0f} MB (÷ {GOAL_RSS_MB} MB goal = {r['rss_ratio']:.3f})",
            file=sys.stderr,
        )
    print(
        f"  reference: a pcg64-shuffle epoch at 3T tokens is "
        f"{results['shuffle_bytes_per_rank_at_large'] / 1e9:.1f} GB per rank",
        file=sys.stderr,
    )
    if "shuffle" in results:
        s = results["shuffle"]
        print(
            f"  measured pcg64-shuffle of {s['instances']:,} instances: {s['seconds']:.1f} s, "
            f"peak RSS {s['peak_rss_mb']:.0f} MB",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
