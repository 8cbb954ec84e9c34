"""Seconds the Dolma toolkit's taggers spend on documents, in one process (run in Dolma's venv).

``benchmarks/bench_dolma.py`` runs this with the Python of the Dolma toolkit's virtualenv (one
process per share of the files, as many at once as our map phase has processes) to get the
compute time of each tagger apart from what a ``dolma tag`` command also spends (start-up,
worker processes, reading and writing files), the counterpart of our pipeline's stage timers.
Each file's lines are decoded as ``dolma tag`` decodes them (``msgspec`` into ``InputSpec``);
then, per tagger, building it (loading its model: our langid stage loads its model on first use,
inside its timer) and its ``tag(row)`` over every document (``predict`` plus grouping the spans,
what ``dolma tag`` calls per document) are timed. Prints one JSON object:
``{"documents": N, "seconds": {tagger: seconds}}``.

    python tagger_seconds.py --taggers gopher_v2,c4_v2 FILE.json.gz [FILE.json.gz ...]

Only the Dolma toolkit and the standard library are imported (this runs outside our venv).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taggers", required=True, help="comma-separated tagger names")
    parser.add_argument("files", nargs="+", help="Dolma documents (.json.gz)")
    args = parser.parse_args()

    import msgspec
    from dolma.core.data_types import InputSpec
    from dolma.core.registry import TaggerRegistry

    names = [n for n in args.taggers.split(",") if n]
    decoder = msgspec.json.Decoder(InputSpec)
    rows = []
    for path in args.files:
        with gzip.open(path, "rb") as stream:
            rows += [decoder.decode(line) for line in stream if line.strip()]
    seconds = {}
    for name in names:
        start = time.perf_counter()
        tagger = TaggerRegistry.get(name)()
        for row in rows:
            tagger.tag(row)
        seconds[name] = time.perf_counter() - start
    print(json.dumps({"documents": len(rows), "seconds": seconds}))


if __name__ == "__main__":
    main()
