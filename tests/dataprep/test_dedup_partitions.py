"""The partitioned dedup state: a fixed number of key partitions split over the workers, so each
worker holds only its share of the URL/document hashes and paragraph Bloom filters, and the
dataset is the same for any number of workers."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from olmo_dataprep.config import load_pipeline_config
from olmo_dataprep.pipeline import dedup_phase, run_pipeline
from olmo_dataprep.pipeline.dedup_phase import DedupPass, partition_of

from .conftest import english_docs, write_jsonl_gz, write_pipeline


def _corpus(root: Path) -> Path:
    docs = english_docs(120, seed=11, paragraphs=3)
    for i in range(6):
        records = [
            {"id": f"d{i}-{j}", "text": docs[i * 20 + j], "url": f"https://example.org/{i}/{j}"}
            for j in range(20)
        ]
        if i:  # a repeated URL, a repeated document and repeated paragraphs across files
            records.append(
                {"id": f"u{i}", "text": docs[0] + " again", "url": "https://example.org/0/0"}
            )
            records.append({"id": f"t{i}", "text": docs[(i - 1) * 20 + 1]})
            head = docs[(i - 1) * 20 + 2].split("\n")[0]
            records.append({"id": f"p{i}", "text": head + "\n" + english_docs(1, seed=100 + i)[0]})
        write_jsonl_gz(root / f"in/part-{i}.jsonl.gz", records)
    return write_pipeline(
        root / "pipeline.yaml",
        {"sources": [{"name": "web", "paths": ["in"]}], "processes": 1,
         "tokenizer": {"name": "train", "train_vocab_size": 512},
         "decontamination": {"enabled": False}, "dedup": {"partitions": 8}},
    )  # fmt: skip


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] not in ("work", "logs")
    }


def _run_workers(pipeline: Path, out: Path, workers: int) -> None:
    config = load_pipeline_config(pipeline, output=str(out))
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            run_pipeline(config, worker_index=index, num_workers=workers, quiet=True)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors


def test_each_worker_keeps_only_its_partitions_and_the_dataset_does_not_change(
    tmp_path, monkeypatch
):
    pipeline = _corpus(tmp_path)
    added: dict[int, list[bytes]] = {}
    real = dedup_phase.DigestSet.check_and_add

    def recording(self, digest, in_runs):  # which worker's set saw which key
        added.setdefault(threading.get_ident(), []).append(digest)
        return real(self, digest, in_runs)

    monkeypatch.setattr(dedup_phase.DigestSet, "check_and_add", recording)
    _run_workers(pipeline, tmp_path / "one", 1)
    one_keys = sorted(k for keys in added.values() for k in keys)
    added.clear()
    _run_workers(pipeline, tmp_path / "four", 4)

    assert _digests(tmp_path / "one") == _digests(tmp_path / "four")
    summary = (tmp_path / "one" / "summary.json").read_text()
    for reason in ('"url_duplicate": 5', '"duplicate": 5'):
        assert reason in summary
    # Four workers: every key went to exactly one worker's set, and each holds about a quarter.
    per_worker = list(added.values())
    assert len(per_worker) == 4
    assert sorted(k for keys in per_worker for k in keys) == one_keys
    owners = [{partition_of(k, 8) % 4 for k in keys} for keys in per_worker]
    assert all(len(o) == 1 for o in owners) and {o.pop() for o in owners} == {0, 1, 2, 3}
    assert max(len(keys) for keys in per_worker) < 0.5 * len(one_keys)
    # Each level's decisions are one file per partition, whoever wrote them.
    for level in ("url", "doc", "para"):
        names = sorted(p.name for p in (tmp_path / "four/work/dedup" / level).iterdir())
        assert names == [f"p{i:04d}.npy" for i in range(8)]


def test_partitions_are_split_round_robin():
    config = (
        load_pipeline_config.__wrapped__ if hasattr(load_pipeline_config, "__wrapped__") else None
    )
    del config
    layout = type("L", (), {"work": Path("/nonexistent")})()
    cfg = type("C", (), {"dedup": type("D", (), {"partitions": 10})()})()
    passes = [DedupPass(layout, [], cfg, None, worker_index=w, num_workers=3) for w in range(3)]
    assert [p.mine for p in passes] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert partition_of(bytes([7, 0, 0, 0]) + bytes(12), 10) == 7
    with pytest.raises(IndexError):
        passes[0].owned[10]
