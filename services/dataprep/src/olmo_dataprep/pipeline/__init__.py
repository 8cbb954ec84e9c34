"""The pipeline runner: raw documents → filtered, deduplicated, mixed token shards, every
document accounted for, split over any number of workers with the same result.

Stages, in the recipe's order (``STAGES``): read → language ID → exact URL dedup → exact
document dedup → near-duplicate (MinHash, optional) → quality (Gopher + C4 lines) → bad words →
PII → exact paragraph dedup (Bloom filter) → decontamination → mixing → tokenization. The
first stage that rejects a document decides its ``(stage, reason)``.

**Order and workers** (``plan``). Input files are numbered in one global order (sources in
pipeline order, files sorted within a source). Worker ``w`` of ``n`` owns files ``w, w+n,
w+2n, ...`` and every per-file output is named after the file, never after the worker, so the
dataset does not depend on ``n``. Dedup keeps the first occurrence in the global order. A run
(``run``) is four phases; workers meet at a file barrier after each one (so an Indexed Job
needs all its pods running at once: ``parallelism == completions``):

1. **map** (``map_phase``, per file, parallel): read, language ID, hashes and the
   per-document stages → ``work/map/fNNNNNN.parquet``.
2. **dedup** (``dedup_phase``): passes over the hashes of all files in global order, the key
   state split into ``dedup.partitions`` partitions shared out over the workers (each keeps
   only its own partitions' URL/document hashes and paragraph Bloom filters; the levels meet
   at file barriers under ``work/dedup/``). Worker 0 then settles the tokenizer
   (``run_tokenizer``: ``tokenizer.json``; when training one, on the kept text in global order).
3. **tokenize** (``tokenize_phase``, per file): remove duplicate paragraphs, decontaminate,
   tokenize in batches → staging shards ``work/tok/`` and the per-document decisions.
4. **mix** (``mix_phase``, per file): per-source rates, copies per document from a seeded
   hash → the final shards ``part-fNNNNNN-NNNNN.npy`` and ``accounting/fNNNNNN.parquet``.
   Worker 0 writes ``summary.json`` and ``manifest.json`` (``finalize``; the manifest last:
   its presence means the dataset is complete).

**Resume.** Every per-file output is written atomically (``tables``) and marked done; a re-run
(after a kill, a pod eviction) skips what is done and, the work being deterministic, produces
the same bytes. ``work/config.json`` pins the pipeline's hash: a different pipeline in the same
output folder is refused.

**Accounting.** One row per input item in ``accounting/`` (see ``finalize``). A damaged gzip
file's unreadable tail is one row (its document count is unknowable).

No module here imports torch.
"""

from __future__ import annotations

from .finalize import load_accounting
from .mix_phase import copies_for
from .plan import InputFile, Layout, PipelineError, plan_inputs, worker_files
from .run import RunResult, run_pipeline
from .tables import KEPT, STAGES

__all__ = [
    "KEPT",
    "STAGES",
    "InputFile",
    "Layout",
    "PipelineError",
    "RunResult",
    "copies_for",
    "load_accounting",
    "plan_inputs",
    "run_pipeline",
    "worker_files",
]
