"""Smoke tests of the benchmarks: they run and report consistent numbers. Speed goals are
checked by running the benchmarks (`make bench`), never here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ..conftest import REPO_ROOT


def run_benchmark(script: str, *args: str, timeout: int = 300, **kwargs) -> list[str]:
    """Run ``benchmarks/SCRIPT`` with ``--json``; return its stdout lines (the JSON is last)."""
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(name, None)  # a one-process group on a free port of its own
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), "--json", *args],
        env=env, capture_output=True, text=True, timeout=timeout, **kwargs,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout.strip().splitlines()


def last_json(lines: list[str]) -> dict:
    return json.loads(lines[-1])


def summary_rows(name: str, result: dict) -> list:
    """The rows ``make bench``'s summary (benchmarks/run_all.py) makes of a benchmark's JSON."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", REPO_ROOT / "benchmarks/run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("run_all", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    rows = module.BENCHMARKS[name][3](result)
    assert rows and all(row.value > 0 for row in rows)
    return rows


def write_small_corpus(folder, docs_per_source: int):
    """A corpus folder as the data-prep benchmarks read it: sources ``books`` and ``docs``, each
    one JSON Lines file of English documents of two paragraphs."""
    from ..dataprep.conftest import english_docs, write_jsonl

    for i, source in enumerate(("books", "docs")):
        docs = english_docs(docs_per_source, seed=i, paragraphs=2)
        write_jsonl(
            folder / source / "part-0.jsonl",
            [{"id": f"{source}-{j}", "text": t} for j, t in enumerate(docs)],
        )
    return folder
