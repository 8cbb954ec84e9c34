"""The pipeline's outputs for a fixed small corpus, against digests recorded from the code before
``pipeline.py`` became a package (issue 14): a change meant to keep the output must keep them.

The corpus goes through every stage and most drop reasons (read errors, language, URL, document
and near duplicates, quality, bad words, PII, paragraph dedup, decontamination, mixing by weight
and by token budget), over several files, shards and tokenizer batches. Outputs hold the input
paths (``loc``, ``file``) and the pipeline hash covers them, so a digest is taken with the run's
folder written as ``<root>``, the pipeline hash as ``<pipeline-hash>`` and ids generated from a
location as ``<generated>``; an accounting table is compared by its columns and rows (Parquet
bytes vary with the pyarrow version), a shard index by its CSV text (gzip bytes vary with zlib).

Two runs, both with a fixed tokenizer file (``golden/bpe-400.json``: training a BPE may change
between ``tokenizers`` versions, and the digests must not): the map phase in a process pool, and
in-process.

After a change of the output that is intended, record them again (and say why in the commit):

    .venv/bin/python -m tests.dataprep.test_pipeline_golden
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from olmo_dataprep.config import config_hash, load_pipeline_config
from olmo_dataprep.pipeline import run_pipeline
from olmo_dataprep.readers import generated_id
from olmo_dataprep.tokenizer import TextTokenizer, train_bpe

from .conftest import (
    FRENCH,
    bad_word,
    english_docs,
    write_jsonl,
    write_jsonl_gz,
    write_parquet,
    write_pipeline,
)

GOLDEN = Path(__file__).parent / "golden"
DIGESTS = GOLDEN / "pipeline_outputs.json"
FIXED_TOKENIZER = GOLDEN / "bpe-400.json"
RUNS = {"process_pool": (FIXED_TOKENIZER.name, 2), "in_process": (FIXED_TOKENIZER.name, 1)}


def golden_corpus(root: Path, tokenizer: str, processes: int) -> Path:
    """The inputs and pipeline file of one golden run under ``root``."""
    docs = english_docs(30, seed=31)
    p1, p2, p3 = english_docs(1, seed=32, paragraphs=3)[0].split("\n\n")
    emails = " ".join(f"user{i}@example.com" for i in range(7))
    web = [
        {"id": f"web-{i}", "text": docs[i], "url": f"https://example.org/{i}"} for i in range(12)
    ]
    web += [
        {"id": "two-paras", "text": f"{p1}\n{p2}"},
        {"id": "dup-text", "text": docs[0], "url": "https://example.org/copy"},
        {"id": "dup-url", "text": docs[20], "url": "https://EXAMPLE.org/1"},
        {"id": "near-dup", "text": docs[3].replace(" the ", " a ", 1)},
    ]
    write_jsonl_gz(root / "in/web/a.jsonl.gz", web)
    odd: list[dict[str, Any] | bytes] = [
        {"id": "french", "text": FRENCH},
        {"id": "short", "text": "Too short to be a real document about anything."},
        {"id": "pii-drop", "text": f"{docs[21]} Contact {emails}."},
        {"id": "pii-mask", "text": f"{docs[22]} Write to someone@example.com today."},
        {"id": "bad-words", "text": f"{docs[23]} This {bad_word()} is here."},
        {"id": "para-dup", "text": p2},
        {"id": "para-partial", "text": f"{p1}\n{p3}"},
        {"id": "contaminated", "text": docs[25]},
        {"id": "web-late", "text": docs[26]},
        b'{"id": "broken", "text": "unterminated',
        b'{"id": "latin1", "text": "caf\xe9"}',
        b"[1, 2, 3]",
        {"id": "no-text"},
        {"id": "empty", "text": "   "},
        {"id": "huge", "text": "word " * 5000},
        {"id": "not-string", "text": 42},
    ]
    write_jsonl_gz(root / "in/web/b.jsonl.gz", odd)
    books = english_docs(6, seed=33, paragraphs=3)
    write_parquet(
        root / "in/books/books.parquet",
        [{"id": f"book-{i}", "text": t} for i, t in enumerate(books)],
    )
    notes = english_docs(12, seed=34)
    write_jsonl(
        root / "in/notes.jsonl", [{"id": f"note-{i}", "text": t} for i, t in enumerate(notes)]
    )
    (root / "eval.txt").write_text(docs[25] + "\n")
    shutil.copyfile(FIXED_TOKENIZER, root / FIXED_TOKENIZER.name)
    return write_pipeline(
        root / "pipeline.yaml",
        {
            "output": "out",
            "seed": 5,
            "sources": [
                {"name": "web", "paths": ["in/web"]},
                {"name": "books", "paths": ["in/books"], "weight": 1.5},
                {"name": "notes", "paths": ["in/notes.jsonl"], "target_tokens": 1000},
            ],
            "read": {"max_chars": 20000},
            "dedup": {"minhash": {"enabled": True}},
            "decontamination": {"paragraph_files": ["eval.txt"]},
            "tokenizer": {"name": tokenizer, "train_vocab_size": 400, "batch_size": 4},
            "shards": {"max_tokens_per_shard": 1500},
            "processes": processes,
        },
    )


def _accounting_rows(path: Path) -> bytes:
    table = pq.read_table(path)
    rows = table.to_pylist()
    for row in rows:
        if row["id"] == generated_id(row["source"], row["loc"]):
            row["id"] = "<generated>"
    columns = [(f.name, str(f.type)) for f in table.schema]
    return json.dumps({"columns": columns, "rows": rows}, sort_keys=True).encode()


def output_digests(root: Path, out: Path, pipeline_hash: str) -> dict[str, str]:
    """sha256 of every output (``work/`` and ``logs/`` aside), made independent of ``root``."""
    digests: dict[str, str] = {}
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if not path.is_file() or name.split("/")[0] in ("work", "logs"):
            continue
        if name.endswith(".parquet"):
            data = _accounting_rows(path)
        elif name.endswith(".gz"):
            data = gzip.decompress(path.read_bytes())
        else:
            data = path.read_bytes()
        if not name.endswith(".npy"):
            data = data.replace(str(root).encode(), b"<root>")
            data = data.replace(pipeline_hash.encode(), b"<pipeline-hash>")
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def golden_run(root: Path, run: str) -> dict[str, str]:
    tokenizer, processes = RUNS[run]
    config = load_pipeline_config(golden_corpus(root, tokenizer, processes))
    run_pipeline(config, quiet=True)
    return output_digests(root, root / "out", config_hash(config))


@pytest.mark.parametrize("run", sorted(RUNS))
def test_the_pipeline_matches_the_recorded_outputs(tmp_path: Path, run: str) -> None:
    recorded = json.loads(DIGESTS.read_text())["runs"][run]
    assert golden_run(tmp_path.resolve(), run) == recorded


def record() -> None:
    """Write ``golden/pipeline_outputs.json`` from the code that is imported now (and the fixed
    tokenizer, once: a byte-level BPE trained on the test sentences)."""
    if not FIXED_TOKENIZER.exists():
        trained = train_bpe(english_docs(200, seed=30), vocab_size=400)
        TextTokenizer.from_tokenizer(
            trained, eos_token_id=0, pad_token_id=1, name=FIXED_TOKENIZER.name
        ).save(FIXED_TOKENIZER)
    runs = {}
    for run in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            runs[run] = golden_run(Path(tmp).resolve(), run)
    golden = {"runs": runs}
    DIGESTS.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    print(f"{DIGESTS}: {sum(len(r) for r in runs.values())} outputs", file=sys.stderr)


if __name__ == "__main__":
    record()
