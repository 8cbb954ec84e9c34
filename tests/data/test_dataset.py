"""Instances: shards concatenated and cut into seq_len pieces; which documents each one holds."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olmo.data import (
    InstanceDataset,
    InstanceDocument,
    MissingIndexError,
    ShardWriter,
    open_shards,
    write_manifest,
)

E = 9  # EOS in these fixtures


def _dataset_folder(folder, docs, max_tokens):
    with ShardWriter(
        folder, dtype="uint16", eos_token_id=E, max_tokens_per_shard=max_tokens
    ) as writer:
        for name, tokens in docs:
            writer.add_document(tokens, doc_id=name, source=f"src-{name}")
    write_manifest(
        folder,
        shards=writer.close(),
        dtype="uint16",
        eos_token_id=E,
        tokenizer={"name": "t"},
        sources={},
    )
    return folder


@pytest.fixture
def small(tmp_path):
    """Three shards (max 8 tokens): [A B] [C D] [E]; 19 tokens in all.

    global: 0  1  2  3  4  5  6  7  8  9  10 11 12 13 14 15 16 17 18
    token:  1  2  3  E  4  5  E  6  7  8  10 11 E  12 E  13 14 15 E
    doc:    A  A  A  A  B  B  B  C  C  C  C  C  C  D  D  E  E  E  E
    shard:  0 ------------------ 1 ---------------------- 2 ---------
    """
    docs = [
        ("A", [1, 2, 3]),
        ("B", [4, 5]),
        ("C", [6, 7, 8, 10, 11]),
        ("D", [12]),
        ("E", [13, 14, 15]),
    ]
    return open_shards([_dataset_folder(tmp_path, docs, max_tokens=8)])


def test_instances_span_shard_boundaries_and_remainder_is_dropped(small):
    assert [len(s) for s in small] == [7, 8, 4]
    dataset = InstanceDataset(small, seq_len=5)
    assert len(dataset) == 3 and dataset.dropped_tokens == 4  # the last document is dropped
    assert dataset[0].tolist() == [1, 2, 3, E, 4]
    assert dataset[1].tolist() == [5, E, 6, 7, 8]  # shard 0 → shard 1
    assert dataset[2].tolist() == [10, 11, E, 12, E]
    assert dataset[1].dtype == np.int64 and dataset[1].shape == (5,)
    batch = dataset.get_batch(np.array([2, 0, 1, 1]))
    assert batch.dtype == np.int64 and batch.shape == (4, 5)
    assert batch.tolist() == [dataset[2].tolist(), dataset[0].tolist(), *[dataset[1].tolist()] * 2]
    assert dataset.get_batch([]).shape == (0, 5)
    # One instance of the whole set, spanning all three shards.
    whole = InstanceDataset(small, seq_len=19)
    assert len(whole) == 1 and whole[0].tolist()[-5:] == [E, 13, 14, 15, E]
    assert len(InstanceDataset(small, seq_len=20)) == 0


def test_pickles_without_the_data(small, tmp_path):
    dataset = InstanceDataset(small, seq_len=5)
    expected = dataset.get_batch([0, 1, 2])  # opens every shard's memmap
    dataset.documents(1)
    clone = pickle.loads(pickle.dumps(dataset))
    assert np.array_equal(clone.get_batch([0, 1, 2]), expected)
    assert clone.documents(1) == dataset.documents(1)
    np.arange(1 << 20, dtype=np.uint16).tofile(tmp_path / "big.raw")
    big = InstanceDataset(open_shards([tmp_path / "big.raw"], dtype="uint16"), 64)
    big.get_batch([0, len(big) - 1])
    assert len(pickle.dumps(big)) < 10_000  # a path, not 2 MB of tokens


def test_out_of_range(small):
    dataset = InstanceDataset(small, seq_len=5)
    for bad in (3, -1, 100):
        with pytest.raises(IndexError, match=rf"instance index {bad} out of range \[0, 3\)"):
            dataset[bad]
        with pytest.raises(IndexError, match="out of range"):
            dataset.get_batch([0, bad])
        with pytest.raises(IndexError, match="out of range"):
            dataset.documents(bad)
    with pytest.raises(TypeError):
        dataset.get_batch([0.5])
    with pytest.raises(ValueError, match="seq_len"):
        InstanceDataset(small, seq_len=0)


def test_documents_of_instances(small):
    dataset = InstanceDataset(small, seq_len=5)

    def doc(id, shard, start, end, i0, i1, shard_index):
        return InstanceDocument(id, f"src-{id}", shard, start, end, i0, i1, "", shard_index)

    assert dataset.documents(0) == [
        doc("A", "part-00000.npy", 0, 4, 0, 4, 0),
        doc("B", "part-00000.npy", 4, 7, 4, 5, 0),
    ]
    assert dataset.documents(1) == [
        doc("B", "part-00000.npy", 4, 7, 0, 2, 0),
        doc("C", "part-00001.npy", 0, 6, 2, 5, 1),
    ]
    assert dataset.documents(2) == [
        doc("C", "part-00001.npy", 0, 6, 0, 3, 1),
        doc("D", "part-00001.npy", 6, 8, 3, 5, 1),
    ]
    assert [d.id for d in InstanceDataset(small, seq_len=19).documents(0)] == list("ABCDE")


def test_documents_need_the_index(small):
    (small[1].index_path).unlink()
    dataset = InstanceDataset(open_shards([small.inputs[0]]), seq_len=5)
    assert dataset[1].tolist() == [5, E, 6, 7, 8]
    assert [d.id for d in dataset.documents(0)] == ["A", "B"]  # shard 0 still has its index
    with pytest.raises(MissingIndexError, match=r"part-00001\.npy"):
        dataset.documents(1)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lengths=st.lists(st.integers(0, 30), min_size=1, max_size=25),
    max_tokens=st.integers(1, 40),
    seq_len=st.integers(1, 50),
)
def test_instances_match_concatenation(tmp_path_factory, lengths, max_tokens, seq_len):
    rng = np.random.default_rng(len(lengths) * 1000 + max_tokens)
    docs = [(f"d{i}", rng.integers(0, 9, n).tolist()) for i, n in enumerate(lengths)]
    folder = _dataset_folder(tmp_path_factory.mktemp("ds"), docs, max_tokens)
    dataset = InstanceDataset(open_shards([folder]), seq_len)
    flat = np.array([t for _, tokens in docs for t in [*tokens, E]], dtype=np.int64)
    assert len(dataset) == len(flat) // seq_len
    if not len(dataset):
        return
    expected = flat[: len(dataset) * seq_len].reshape(-1, seq_len)
    order = rng.permutation(len(dataset))
    assert np.array_equal(dataset.get_batch(order), expected[order])
    doc_start = {}  # document id -> global offset of its first token
    pos = 0
    for name, tokens in docs:
        doc_start[name] = pos
        pos += len(tokens) + 1
    by_name = dict(docs)
    for i in range(len(dataset)):
        assert np.array_equal(dataset[i], expected[i])
        # The listed documents tile the instance exactly, each with its own tokens.
        pieces = dataset.documents(i)
        assert pieces[0].instance_start == 0 and pieces[-1].instance_end == seq_len
        assert [p.instance_start for p in pieces[1:]] == [p.instance_end for p in pieces[:-1]]
        for p in pieces:
            shard_offset = int(dataset.shards.offsets[p.shard_index])
            assert dataset.shards[p.shard_index].name == p.shard
            assert shard_offset + p.start == doc_start[p.id]
            assert p.end - p.start == len(by_name[p.id]) + 1
            within = i * seq_len - doc_start[p.id]  # the document's token at instance position 0
            doc_tokens = [*by_name[p.id], E]
            assert (
                dataset[i][p.instance_start : p.instance_end].tolist()
                == doc_tokens[within + p.instance_start : within + p.instance_end]
            )
