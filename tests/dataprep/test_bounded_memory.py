"""Bounded memory (issue 19): a worker's peak RSS does not follow its input.

Each case runs the real pipeline (``run_pipeline``, one process) over one input file in a fresh
Python process, which reports its own peak RSS (``VmHWM``) and the run's summary; the bound
is the peak of the same worker on a one-document file plus a fixed margin. The inputs are made
so that holding them would blow the margin many times over: a 300 MB line (the old reader
buffered, decoded and parsed it whole: about 4x its size), a gzip bomb (read to the end before),
and 100,000 documents (every stage used to hold all of a file's rows).
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from olmo_dataprep.pipeline import load_accounting
from olmo_dataprep.pipeline.dedup_phase import DigestSet

from .conftest import english_docs, write_jsonl_gz, write_pipeline

MARGIN_MIB = 150
FIXED_TOKENIZER = Path(__file__).parent / "golden" / "bpe-400.json"

# The worker: run the pipeline file argv[1] in this process, print its peak RSS and summary.
# The peak is the address space's high-water mark (VmHWM): a child's ``ru_maxrss`` starts at its
# parent's RSS (Linux carries it over fork and exec), and pytest's grows with the session.
_WORKER = """
import json, sys
from olmo_dataprep.config import load_pipeline_config
from olmo_dataprep.pipeline import run_pipeline
result = run_pipeline(load_pipeline_config(sys.argv[1]), quiet=True)
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak_mib": peak_kib / 1024, "summary": result.summary}))
"""


def run_worker(root: Path, input_file: Path, **settings: Any) -> tuple[float, dict[str, Any]]:
    """Peak RSS (MiB) and summary of one worker on ``input_file`` (stages as ``settings``)."""
    shutil.copyfile(FIXED_TOKENIZER, root / FIXED_TOKENIZER.name)
    pipeline = write_pipeline(
        root / "pipeline.yaml",
        {
            "output": "out",
            "sources": [{"name": "web", "paths": [str(input_file)]}],
            "tokenizer": {"name": FIXED_TOKENIZER.name},
            **settings,
        },
    )
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, str(pipeline)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["peak_mib"], report["summary"]


@pytest.fixture(scope="module")
def bound_mib(tmp_path_factory: pytest.TempPathFactory) -> float:
    """The peak of a worker on a one-document file (every stage on), plus the margin."""
    root = tmp_path_factory.mktemp("baseline")
    path = write_jsonl_gz(root / "one.jsonl.gz", [{"id": "a", "text": english_docs(1)[0]}])
    peak, summary = run_worker(root, path)
    assert summary["documents_in"] == summary["documents_kept"] == 1
    return peak + MARGIN_MIB


def write_gzip(path: Path, pieces: list[tuple[bytes, int]], level: int = 1) -> Path:
    """A gzip file of each ``(block, times)`` repeated, compressed as it goes (never held)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip container
    with open(path, "wb") as out:
        for block, times in pieces:
            for _ in range(times):
                out.write(compressor.compress(block))
        out.write(compressor.flush())
    return path


def test_a_300mb_line_is_skipped_as_it_is_read(tmp_path: Path, bound_mib: float) -> None:
    docs = english_docs(2, seed=4)
    block = b"a very long line " * (1 << 16)  # 1.06 MiB
    path = write_gzip(
        tmp_path / "long.jsonl.gz",
        [
            (json.dumps({"id": "before", "text": docs[0]}).encode() + b"\n", 1),
            (b'{"id": "huge", "text": "', 1),
            (block, 300 * 10**6 // len(block)),
            (b'"}\n', 1),
            (json.dumps({"id": "after", "text": docs[1]}).encode() + b"\n", 1),
        ],
    )
    assert path.stat().st_size < 4 * 10**6

    peak, summary = run_worker(tmp_path, path)

    assert summary["documents_in"] == 3 and summary["documents_kept"] == 2
    assert summary["dropped"] == {"read": {"too_long": 1}}
    assert peak < bound_mib, f"peak RSS {peak:.0f} MiB, bound {bound_mib:.0f} MiB"


def test_a_gzip_bomb_stops_at_the_cap(tmp_path: Path, bound_mib: float) -> None:
    docs = english_docs(2, seed=5)
    lines = b"".join(
        json.dumps({"id": f"d{i}", "text": t}).encode() + b"\n" for i, t in enumerate(docs)
    )
    # 2 documents, then 256 MiB of spaces (one blank line, were it read to its end) in 256 KiB.
    path = write_gzip(tmp_path / "bomb.jsonl.gz", [(lines, 1), (b" " * (1 << 20), 256)], level=9)
    assert path.stat().st_size < 2**20

    cap = 16 << 20
    peak, summary = run_worker(tmp_path, path, read={"max_file_bytes": cap})

    assert summary["documents_in"] == 3 and summary["documents_kept"] == 2
    assert summary["dropped"] == {"read": {"too_large": 1}}
    accounting = _accounting(tmp_path / "out")
    (error,) = [row for row in accounting if row["stage"] == "read"]
    assert error["loc"] == f"{path}:3"  # the first line not completely read
    assert peak < bound_mib, f"peak RSS {peak:.0f} MiB, bound {bound_mib:.0f} MiB"


def test_100k_documents_are_accounted_for_in_bounded_memory(
    tmp_path: Path, bound_mib: float
) -> None:
    # Small distinct documents; every 10th repeats the one before it; every 1000th is empty.
    # The per-document stages that need a model or many regexes are off (they would take
    # minutes here): reading, the hashes, dedup, tokenizing and mixing are what hold rows.
    n = 100_000
    base = "A short note about the mill by the river."
    path = tmp_path / "many.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        for i in range(n):
            if i % 1000 == 999:
                text = " "
            elif i % 10 == 9:
                text = f"Document {i - 1}. {base}"
            else:
                text = f"Document {i}. {base}"
            out.write(json.dumps({"id": f"doc-{i}", "text": text}).encode() + b"\n")

    off = {"enabled": False}
    peak, summary = run_worker(tmp_path, path, langid=off, quality=off, bad_words=off, pii=off)

    empty = n // 1000
    duplicates = sum(1 for i in range(n) if i % 10 == 9 and i % 1000 != 999)
    assert summary["documents_in"] == n
    assert summary["dropped"] == {
        "read": {"empty_text": empty},
        "doc_dedup": {"duplicate": duplicates},
    }
    assert summary["documents_kept"] == n - empty - duplicates
    assert peak < bound_mib, f"peak RSS {peak:.0f} MiB, bound {bound_mib:.0f} MiB"


def _accounting(out: Path) -> list[dict[str, Any]]:
    return load_accounting(out).to_pylist()


@pytest.mark.parametrize("width", [16, 8, 20])
def test_digest_set_is_a_set(width: int) -> None:
    """The dedup pass's compact set answers as a Python set does, across many merges of runs
    (a tiny ``recent_limit``), for digests of any width, with ``None`` never a member."""
    rng = random.Random(width)
    pool = [rng.randbytes(width) for _ in range(300)]
    pool += [pool[0][:-1] + bytes([pool[0][-1] ^ 1])]  # differs in the last byte only
    digests = DigestSet(recent_limit=4)
    reference: set[bytes] = set()
    for _ in range(60):
        group: list[bytes | None] = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
        group.insert(rng.randint(0, len(group)), None)
        flags = digests.in_runs(group)
        assert flags[group.index(None)] is False
        for digest, flag in zip(group, flags, strict=True):
            if digest is not None:
                assert digests.check_and_add(digest, flag) == (digest in reference)
                reference.add(digest)
        digests.settle()
    assert len(digests) == len(reference) > 100
    assert digests.in_runs(sorted(reference)).count(True) > len(reference) // 2  # most in runs
