"""The pipeline end to end on hand-made inputs: accounting, dedup across files and workers,
resume after a kill, mixing, the CLI. Tokenizers are trained small so no test needs a network."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from olmo.config import ConfigError
from olmo.data.shards import open_shards, read_manifest
from olmo_dataprep.cli import Terminated, main
from olmo_dataprep.config import load_pipeline_config
from olmo_dataprep.pipeline import (
    KEPT,
    InputFile,
    Layout,
    PipelineError,
    copies_for,
    load_accounting,
    map_phase,
    plan_inputs,
    run_pipeline,
    worker_files,
)
from olmo_dataprep.pipeline.progress import StageTimer, progress_bar
from olmo_dataprep.tokenizer import TextTokenizer

from ..pid1 import as_pid1, wait_for_file
from .conftest import (
    FRENCH,
    bad_word,
    english_docs,
    write_jsonl,
    write_jsonl_gz,
    write_parquet,
    write_pipeline,
)


def mixed_corpus(root: Path) -> tuple[Path, dict[str, int]]:
    """Three sources covering every kind of verdict; returns the pipeline and input counts."""
    docs = english_docs(40, seed=1)
    p1, p2, p3 = english_docs(1, seed=11, paragraphs=3)[0].split("\n\n")
    web = [{"id": "web-two-paras", "text": p1 + "\n" + p2}]
    web += [
        {"id": f"web-{i}", "text": t, "url": f"https://example.org/{i}"}
        for i, t in enumerate(docs[:20])
    ]
    web.append({"id": "web-dup-text", "text": docs[0], "url": "https://example.org/copy"})
    web.append({"id": "web-dup-url", "text": docs[30], "url": "https://EXAMPLE.org/1"})
    web.append({"id": "web-french", "text": FRENCH})
    web.append({"id": "web-short", "text": "Too short to be a real document about anything."})
    emails = " ".join(f"user{i}@example.com" for i in range(7))
    web.append({"id": "web-pii-drop", "text": docs[21] + " Contact " + emails + "."})
    web.append({"id": "web-pii-mask", "text": docs[22] + " Write to someone@example.com today."})
    web.append({"id": "web-bad-words", "text": docs[23] + f" This {bad_word()} is here."})
    # A document whose only paragraph repeats one seen earlier, plus a partial repeat.
    web.append({"id": "web-para-dup", "text": p2})
    web.append({"id": "web-para-partial", "text": p1 + "\n" + p3})
    web.append({"id": "web-contaminated", "text": docs[25]})
    bad_lines: list[dict | bytes] = [
        b'{"id": "broken", "text": "unterminated',
        b'{"id": "latin1", "text": "caf\xe9"}',
        {"id": "no-text"},
        {"id": "empty", "text": "   "},
        {"id": "huge", "text": "word " * 5000},
        b"[1, 2, 3]",
        {"id": "not-string", "text": 42},
    ]
    write_jsonl_gz(root / "in/web/a.jsonl.gz", web[:15])
    write_jsonl_gz(root / "in/web/b.jsonl.gz", web[15:] + bad_lines)
    # A truncated gzip file: the first documents survive, the rest is one error row.
    whole = gzip.compress(
        b"\n".join(
            json.dumps({"id": f"t-{i}", "text": t}).encode() for i, t in enumerate(docs[26:30])
        )
        + b"\n",
        mtime=0,
    )
    (root / "in/web/c.jsonl.gz").write_bytes(whole[: len(whole) * 3 // 4])
    write_parquet(
        root / "in/books/books.parquet",
        [
            {"id": f"book-{i}", "text": t}
            for i, t in enumerate(english_docs(6, seed=2, paragraphs=3))
        ],
    )
    write_jsonl(
        root / "in/notes/notes.jsonl",
        [{"id": f"note-{i}", "text": t} for i, t in enumerate(english_docs(5, seed=3))],
    )
    (root / "eval.txt").write_text(docs[25] + "\n")
    pipeline = write_pipeline(
        root / "pipeline.yaml",
        {
            "output": "out",
            "sources": [
                {"name": "web", "paths": ["in/web"]},
                {"name": "books", "paths": ["in/books/*.parquet"]},
                {"name": "notes", "paths": ["in/notes/notes.jsonl"]},
            ],
            "read": {"max_chars": 20000},
            "decontamination": {"paragraph_files": ["eval.txt"]},
        },
    )
    return pipeline, {"web_lines": len(web) + len(bad_lines)}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    pipeline, counts = mixed_corpus(root)
    config = load_pipeline_config(pipeline)
    result = run_pipeline(config, quiet=True)
    return root, config, result, counts


def test_accounting_invariant_on_a_mixed_corpus(mixed_run):
    root, _config, result, counts = mixed_run
    table = load_accounting(root / "out").to_pydict()
    summary = result.summary
    n = len(table["id"])
    kept = sum(1 for s in table["stage"] if s == KEPT)
    dropped = Counter(
        (s, r) for s, r in zip(table["stage"], table["reason"], strict=True) if s != KEPT
    )
    assert n == summary["documents_in"] == kept + sum(dropped.values())
    assert summary["documents_kept"] == kept
    assert sum(sum(r.values()) for r in summary["dropped"].values()) == sum(dropped.values())
    by_id = {
        i: (s, r) for i, s, r in zip(table["id"], table["stage"], table["reason"], strict=True)
    }
    expected = {
        "web-dup-text": ("doc_dedup", "duplicate"),
        "web-dup-url": ("url_dedup", "url_duplicate"),
        "web-french": ("langid", "language"),
        "web-short": ("quality", "gopher_min_words"),
        "web-pii-drop": ("pii", "pii_too_many"),
        "web-pii-mask": (KEPT, None),
        "web-bad-words": ("bad_words", "bad_words"),
        "web-para-dup": ("paragraph_dedup", "dedup_all_paragraphs"),
        "web-para-partial": (KEPT, None),
        "web-contaminated": ("decontamination", "decontaminated"),
        "no-text": ("read", "missing_text"),
        "empty": ("read", "empty_text"),
        "huge": ("read", "too_long"),
        "not-string": ("read", "text_not_string"),
        "web-0": (KEPT, None),
        "book-0": (KEPT, None),
        "note-0": (KEPT, None),
    }
    for doc_id, verdict in expected.items():
        assert by_id[doc_id] == verdict, doc_id
    reasons = {r for _, r in dropped}
    assert {"malformed_json", "invalid_utf8", "not_an_object", "truncated_gzip"} <= reasons
    # Every input line of the web files is one row; the truncated file adds its survivors + 1.
    web_rows = sum(1 for s in table["source"] if s == "web")
    truncated = [loc for loc in table["loc"] if "c.jsonl.gz" in loc]
    assert web_rows == counts["web_lines"] + len(truncated)
    assert len(truncated) >= 2


def test_output_is_what_was_kept(mixed_run):
    root, _config, result, _ = mixed_run
    out = root / "out"
    manifest = read_manifest(out)
    table = load_accounting(out).to_pydict()
    kept_ids = [i for i, s in zip(table["id"], table["stage"], strict=True) if s == KEPT]
    shards = open_shards([out], verify=True)
    tokenizer = TextTokenizer.from_file(out / "tokenizer.json")
    assert manifest.tokenizer["sha256"] == tokenizer.sha256
    assert manifest.tokenizer["name"] == "bpe-trained-on-corpus"
    assert manifest.tokenizer["path"] == "tokenizer.json"
    assert manifest.eos_token_id == tokenizer.eos_token_id
    assert manifest.total_documents == len(kept_ids) == result.summary["copies_written"]
    assert manifest.total_tokens == sum(
        t * c for t, c in zip(table["tokens"], table["copies"], strict=True)
    )
    assert manifest.pipeline_config_hash and manifest.stage_counts["documents_in"] == len(
        table["id"]
    )
    ids, texts = [], []
    for shard in shards.shards:
        for i in range(shard.num_documents):
            span = shard.document(i)
            ids.append(span.id)
            tokens = shard.tokens[span.start : span.end]
            assert tokens[-1] == tokenizer.eos_token_id
            texts.append(tokenizer.decode(tokens[:-1].tolist()))
    assert sorted(ids) == sorted(kept_ids)
    text_of = dict(zip(ids, texts, strict=True))
    assert "|||EMAIL_ADDRESS|||" in text_of["web-pii-mask"]
    assert "someone@example.com" not in text_of["web-pii-mask"]
    # The repeated paragraph was removed, the new one kept.
    assert (
        text_of["web-para-partial"].strip()
        == english_docs(1, seed=11, paragraphs=3)[0].split("\n\n")[2]
    )


def test_trainer_reader_loads_the_output(mixed_run):
    """The contract shared with the trainer: its reader takes the output folder unchanged."""
    from olmo.data.dataset import InstanceDataset

    root, *_ = mixed_run
    dataset = InstanceDataset(open_shards([root / "out"]), seq_len=64)
    assert len(dataset) > 10
    docs = dataset.documents(0)
    assert docs and docs[0].id
    assert np.asarray(dataset[len(dataset) - 1]).shape == (64,)


def test_rerun_of_a_complete_output_is_a_no_op(mixed_run):
    root, config, _, _ = mixed_run
    before = _digest_tree(root / "out")
    again = run_pipeline(config, quiet=True)
    assert again.skipped_files == again.files
    assert _digest_tree(root / "out") == before


def test_a_different_pipeline_in_the_same_output_is_refused(mixed_run):
    root, *_ = mixed_run
    other = load_pipeline_config(root / "pipeline.yaml", ["seed=7"])
    with pytest.raises(PipelineError, match="different pipeline"):
        run_pipeline(other, quiet=True)


def _digest_tree(folder: Path, skip: tuple[str, ...] = ("work", "logs")) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.parts[0] not in skip:
            out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _many_files_corpus(root: Path, files: int = 6, per_file: int = 30) -> Path:
    docs = english_docs(files * per_file, seed=5)
    for i in range(files):
        chunk = docs[i * per_file : (i + 1) * per_file]
        # Cross-file duplicates: every file repeats a document and a paragraph of the previous one.
        records = [{"id": f"d{i}-{j}", "text": t} for j, t in enumerate(chunk)]
        if i:
            records.append({"id": f"dup{i}", "text": docs[(i - 1) * per_file]})
            fresh = english_docs(files, seed=77)[i]
            records.append({"id": f"pdup{i}", "text": docs[(i - 1) * per_file + 1] + "\n" + fresh})
        write_jsonl_gz(root / f"in/s{i % 2}/part-{i}.jsonl.gz", records)
    return write_pipeline(
        root / "pipeline.yaml",
        {
            "sources": [
                {"name": "even", "paths": ["in/s0"]},
                {"name": "odd", "paths": ["in/s1"], "weight": 1.5},
            ],
            "seed": 3,
            "processes": 2,  # the map phase in a pool: the output must not depend on it
        },
    )


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "olmo_dataprep.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    pipeline = _many_files_corpus(root)
    proc = _cli("run", str(pipeline), "--output", str(root / "one"), "--quiet")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return root, pipeline, out


def test_two_workers_give_the_same_dataset_as_one(many_files):
    root, pipeline, _ = many_files
    procs = [
        _cli(
            "run",
            str(pipeline),
            "--output",
            str(root / "two"),
            "--num-workers",
            "2",
            "--worker-index",
            str(i),
            "--quiet",
        )
        for i in (1, 0)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    one, two = _digest_tree(root / "one"), _digest_tree(root / "two")
    assert one == two
    assert any(name.endswith(".npy") for name in one) and "manifest.json" in one
    summary = json.loads((root / "one/summary.json").read_text())
    assert summary["dropped"]["doc_dedup"]["duplicate"] == 5
    assert "paragraph_dedup" not in summary["dropped"]  # partial repeats lose a paragraph only


def test_worker_index_from_the_indexed_job_environment(many_files, tmp_path):
    _root, pipeline, _ = many_files
    env = {**os.environ, "JOB_COMPLETION_INDEX": "1"}
    # Worker 1 of 2 does its share, then waits for worker 0 (never started): it times out.
    proc = _cli(
        "run",
        str(pipeline),
        "--output",
        str(tmp_path / "o"),
        "--num-workers",
        "2",
        "--quiet",
        "--set",
        "barrier_timeout_s=2",
        env=env,
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "waiting for" in err and "parallelism == completions" in err
    done = sorted(p.name for p in (tmp_path / "o/work/map").glob("*.parquet"))
    assert done == ["f000001.parquet", "f000003.parquet", "f000005.parquet"]


@pytest.mark.parametrize(
    "kill_when", ["work/map/f000000.parquet", "work/tok/f000000.json", "work/final/f000000.json"]
)
def test_kill_and_rerun_gives_the_same_bytes(many_files, tmp_path, kill_when):
    root, pipeline, _ = many_files
    out = tmp_path / "killed"
    proc = _cli("run", str(pipeline), "--output", str(out), "--quiet")
    deadline = time.monotonic() + 120
    while not (out / kill_when).exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (out / "manifest.json").exists(), "finished before the kill: make the corpus bigger"
    rerun = _cli("run", str(pipeline), "--output", str(out), "--quiet")
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert _digest_tree(out) == _digest_tree(root / "one")


def test_mixing_rates_and_seeded_copies(many_files):
    root, _, _ = many_files
    table = load_accounting(root / "one").to_pydict()
    copies = Counter(
        c
        for s, src, c in zip(table["stage"], table["source"], table["copies"], strict=True)
        if src == "odd" and s == KEPT
    )
    assert set(copies) == {1, 2} and copies[2] > 10 and copies[1] > 10
    assert all(
        c == 1
        for s, src, c in zip(table["stage"], table["source"], table["copies"], strict=True)
        if src == "even" and s == KEPT
    )


def test_copies_for():
    assert copies_for(2.0, 0, "s", "d") == 2
    assert copies_for(0.0, 0, "s", "d") == 0
    draws = [copies_for(0.3, 1, "s", f"doc{i}") for i in range(4000)]
    assert set(draws) == {0, 1} and abs(sum(draws) / 4000 - 0.3) < 0.03
    assert draws == [copies_for(0.3, 1, "s", f"doc{i}") for i in range(4000)]
    assert draws != [copies_for(0.3, 2, "s", f"doc{i}") for i in range(4000)]


def test_target_tokens_and_downsampling(tmp_path):
    docs = english_docs(60, seed=9)
    write_jsonl(
        tmp_path / "in/a.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(docs[:30])]
    )
    write_jsonl(
        tmp_path / "in/b.jsonl", [{"id": f"b{i}", "text": t} for i, t in enumerate(docs[30:])]
    )
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        {
            "output": "out",
            "sources": [
                {"name": "a", "paths": ["in/a.jsonl"], "target_tokens": 6000},
                {"name": "b", "paths": ["in/b.jsonl"], "weight": 0.5},
            ],
        },
    )
    result = run_pipeline(load_pipeline_config(pipeline), quiet=True)
    a, b = result.summary["sources"]["a"], result.summary["sources"]["b"]
    kept_a_tokens = 6000 / a["rate"]  # the rate is target / kept tokens of the source
    assert 0.3 < a["rate"] < 0.7 and kept_a_tokens > 10000
    assert abs(a["tokens"] - 6000) < 0.4 * 6000
    assert 5 <= b["copies_written"] <= 25
    dropped = result.summary["dropped"]["mixing"]["downsampled"]
    # Rates below 1: a document is either dropped by mixing or written once.
    assert a["copies_written"] == a["documents_kept"] and b["copies_written"] == b["documents_kept"]
    assert dropped == 60 - a["documents_kept"] - b["documents_kept"]


def test_plan_inputs_and_worker_files(tmp_path):
    write_jsonl(tmp_path / "x/1.jsonl", [{"text": "a"}])
    write_jsonl(tmp_path / "x/2.jsonl", [{"text": "a"}])
    write_jsonl(tmp_path / "y/3.jsonl", [{"text": "a"}])
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        {"output": "o", "sources": [{"name": "y", "paths": ["y"]}, {"name": "x", "paths": ["x"]}]},
    )
    files = plan_inputs(load_pipeline_config(pipeline))
    assert [(f.index, f.source, f.path.name) for f in files] == [
        (0, "y", "3.jsonl"),
        (1, "x", "1.jsonl"),
        (2, "x", "2.jsonl"),
    ]
    assert [f.index for f in worker_files(files, 1, 2)] == [1]
    assert [f.index for f in worker_files(files, 0, 2)] == [0, 2]
    overlapping = write_pipeline(
        tmp_path / "q.yaml",
        {
            "output": "o",
            "sources": [{"name": "a", "paths": ["x"]}, {"name": "b", "paths": ["x/1.jsonl"]}],
        },
    )
    with pytest.raises(PipelineError, match="both source"):
        plan_inputs(load_pipeline_config(overlapping))


def test_config_errors(tmp_path):
    bad = write_pipeline(
        tmp_path / "bad.yaml",
        {"output": "o", "sources": [{"name": "a", "paths": ["x"]}], "qualty": {}},
    )
    with pytest.raises(ConfigError, match="qualty"):
        load_pipeline_config(bad)
    both = write_pipeline(
        tmp_path / "both.yaml",
        {
            "output": "o",
            "sources": [{"name": "a", "paths": ["x"], "weight": 2.0, "target_tokens": 5}],
        },
    )
    with pytest.raises(ConfigError, match="either weight or target_tokens"):
        load_pipeline_config(both)
    no_out = write_pipeline(tmp_path / "n.yaml", {"sources": [{"name": "a", "paths": ["x"]}]})
    with pytest.raises(ConfigError, match="no output folder"):
        load_pipeline_config(no_out)
    assert main(["run", str(bad)]) == 2
    assert (
        main(
            [
                "run",
                str(no_out),
                "--output",
                str(tmp_path / "o"),
                "--num-workers",
                "2",
                "--worker-index",
                "2",
            ]
        )
        == 2
    )


def test_stats_cli(mixed_run, capsys):
    root, *_ = mixed_run
    assert main(["stats", str(root / "out")]) == 0
    text = capsys.readouterr().out
    assert "documents in" in text and "duplicate" in text and "tokens" in text
    assert main(["stats", str(root / "out"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["documents_in"] == data["manifest"]["stage_counts"]["documents_in"]
    assert main(["stats", str(root / "in")]) == 1


def test_accounting_table_columns(mixed_run):
    root, *_ = mixed_run
    table = pq.read_table(next((root / "out/accounting").glob("*.parquet")))
    assert table.column_names == [
        "id",
        "source",
        "file",
        "loc",
        "stage",
        "reason",
        "tokens",
        "copies",
    ]


# --------------------------------------------------------------------------------------------
# SIGTERM: a container's PID 1 gets no default action for it, so the worker handles it


def test_worker_as_pid1_stops_on_sigterm_and_a_rerun_resumes(many_files, tmp_path):
    root, pipeline, _ = many_files
    out = tmp_path / "two"
    argv = [sys.executable, "-m", "olmo_dataprep.cli", "run", str(pipeline), "--output", str(out)]
    argv += ["--num-workers", "2", "--worker-index", "1", "--quiet"]
    mine = [out / f"work/map/f00000{i}.parquet" for i in (1, 3, 5)]
    with as_pid1(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as pid1:
        # Worker 1 maps its files, then waits at the barrier for worker 0 (not started yet).
        for path in mine:
            wait_for_file(path, pid1, timeout=120)
        sent = pid1.terminate()
        assert pid1.wait(timeout=30) == 143
        assert time.monotonic() - sent < 10
        assert pid1.process.stderr is not None
        assert "stopped by SIGTERM" in pid1.process.stderr.read()
    mapped = {path: path.stat().st_mtime_ns for path in mine}
    procs = [
        _cli("run", str(pipeline), "--output", str(out), "--num-workers", "2", "--worker-index",
             str(i), "--quiet")
        for i in (1, 0)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert {path: path.stat().st_mtime_ns for path in mine} == mapped  # resumed, not redone
    assert _digest_tree(out) == _digest_tree(root / "one")


def test_sigterm_mid_map_as_pid1_stops_at_once_and_a_rerun_gives_the_same_bytes(
    many_files, tmp_path
):
    root, pipeline, _ = many_files
    out = tmp_path / "stopped"
    argv = [sys.executable, "-m", "olmo_dataprep.cli", "run", str(pipeline), "--output", str(out)]
    with as_pid1(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as pid1:
        wait_for_file(out / "work/map/f000000.parquet", pid1, timeout=120)  # the pool runs
        sent = pid1.terminate()
        assert pid1.wait(timeout=30) == 143
        assert time.monotonic() - sent < 10
    assert not (out / "manifest.json").exists()
    rerun = _cli("run", str(pipeline), "--output", str(out), "--quiet")
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert _digest_tree(out) == _digest_tree(root / "one")


def map_slowly(config_json: str, f: InputFile, out: Path) -> tuple[int, dict[str, float]]:
    """Stands in for mapping one file (in the pool's processes): starts, then takes a minute."""
    (Path(os.environ["SLOW_MAP_DIR"]) / f"started-{f.index}").touch()
    time.sleep(60)
    return 0, {}


def test_a_stopped_map_phase_kills_its_pool_rather_than_waiting_for_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SLOW_MAP_DIR", str(tmp_path))
    monkeypatch.setattr(map_phase, "map_in_process", map_slowly)
    pools: list[ProcessPoolExecutor] = []

    class RecordedPool(ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(map_phase, "ProcessPoolExecutor", RecordedPool)
    processes = []

    def sigterm_once_both_run(futures):
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("started-*"))) < 2:
            assert time.monotonic() < deadline, "the pool did not start"
            time.sleep(0.05)
        (pool,) = pools
        processes.extend(pool._processes.values())
        raise Terminated("SIGTERM")  # what the CLI's handler raises

    monkeypatch.setattr(map_phase, "as_completed", sigterm_once_both_run)
    config = load_pipeline_config(
        write_pipeline(
            tmp_path / "pipeline.yaml",
            {"output": "out", "sources": [{"name": "s", "paths": ["in"]}], "processes": 2},
        )
    )
    files = [InputFile(i, "s", tmp_path / f"in/{i}.jsonl") for i in range(2)]
    started = time.monotonic()
    with pytest.raises(Terminated):
        map_phase.run_map_phase(
            Layout(tmp_path / "out"),
            config,
            files,
            StageTimer(),
            progress_bar(None, "", "doc", True),
            True,
        )
    assert time.monotonic() - started < 50  # not the minute the files would take
    assert len(processes) == 2
    # Killed at once; reaped by the pool's manager thread or by kill_pool, whichever waits first
    # (is_alive can read True until the reaping thread records the exit code).
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(p.is_alive() for p in processes)


def test_the_output_does_not_depend_on_the_row_groups(many_files, tmp_path, monkeypatch):
    """Every phase holds one row group of a file at a time (bounded memory): with groups of 4
    rows, every table is written and read in many pieces, and the dataset is the same (the
    same bytes but for the Parquet files' layout)."""
    from olmo_dataprep.pipeline import tables

    root, pipeline, _ = many_files
    monkeypatch.setattr(tables, "GROUP_ROWS", 4)
    monkeypatch.setattr(map_phase, "GROUP_ROWS", 4)
    out = tmp_path / "small-groups"
    config = load_pipeline_config(pipeline, ["processes=1"], output=str(out))  # in this process

    run_pipeline(config, quiet=True)

    ours, reference = _digest_tree(out), _digest_tree(root / "one")
    assert ours.keys() == reference.keys()
    for name in ours:  # Parquet bytes depend on the row groups; the rows must not
        if name.endswith(".parquet"):
            assert pq.read_table(out / name).equals(pq.read_table(root / "one" / name)), name
        else:
            assert ours[name] == reference[name], name
    for name in (
        "work/map/f000000.parquet",
        "work/tok/f000000.parquet",
        "accounting/f000000.parquet",
    ):
        assert pq.ParquetFile(out / name).num_row_groups >= 8
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary file left behind
