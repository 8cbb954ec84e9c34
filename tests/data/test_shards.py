"""The token-shard contract: writer → reader round trip, manifest, Dolma output, errors."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olmo.data import (
    MissingIndexError,
    ShardFormatError,
    ShardInfo,
    ShardWriter,
    TokenShard,
    dtype_for_vocab,
    manifest_sha256,
    open_shards,
    read_manifest,
    write_manifest,
)

from ..conftest import top_level_modules_after_import

EOS = 50279
TOKENIZER = {"name": "test-tokenizer", "sha256": "ab" * 32, "vocab_size": 50280}


def _read_index(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.reader(f))


def _write(folder: Path, docs: list[list[int]], *, max_tokens: int = 1 << 28, **kw) -> list:
    with ShardWriter(
        folder, dtype=kw.pop("dtype", "uint16"), eos_token_id=EOS, max_tokens_per_shard=max_tokens
    ) as writer:
        for i, doc in enumerate(docs):
            writer.add_document(doc, doc_id=f"doc{i}", source=f"src{i % 2}", loc=str(i))
    return writer.close()


def _write_dataset(folder: Path, docs: list[list[int]], **kw) -> list:
    shards = _write(folder, docs, **kw)
    write_manifest(
        folder,
        shards=shards,
        dtype="uint16",
        eos_token_id=EOS,
        tokenizer=TOKENIZER,
        sources={"src0": {"documents": 1, "tokens": 1, "weight": 1.0}},
        pipeline_config_hash="cafe",
        stage_counts={"tokenize": {"kept": len(docs)}},
    )
    return shards


def test_package_is_torch_free():
    loaded = top_level_modules_after_import("olmo.data")
    assert "torch" not in loaded


def test_dtype_for_vocab():
    assert dtype_for_vocab(50280) == np.uint16
    assert dtype_for_vocab(65536) == np.uint16  # ids 0..65535 all fit
    assert dtype_for_vocab(65537) == np.uint32
    assert dtype_for_vocab(100_278) == np.uint32
    with pytest.raises(ValueError):
        dtype_for_vocab(0)


def test_round_trip_tokens_eos_and_index(tmp_path):
    docs = [[1, 2, 3], [], [7, 8], [65535, 0]]
    [info] = _write(tmp_path, docs)
    assert info.path == "part-00000.npy" and info.index == "part-00000.csv.gz"
    assert info.num_documents == 4 and info.num_tokens == 3 + 1 + 1 + 2 + 1 + 2 + 1

    raw = np.fromfile(tmp_path / info.path, dtype=np.uint16)  # raw, header-less
    assert raw.tolist() == [1, 2, 3, EOS, EOS, 7, 8, EOS, 65535, 0, EOS]
    assert hashlib.sha256((tmp_path / info.path).read_bytes()).hexdigest() == info.sha256
    assert _read_index(tmp_path / info.index) == [
        ["0", "4", "doc0", "src0", "0"],
        ["4", "5", "doc1", "src1", "1"],
        ["5", "8", "doc2", "src0", "2"],
        ["8", "11", "doc3", "src1", "3"],
    ]

    shard = TokenShard(tmp_path / info.path, "uint16")
    assert isinstance(shard.tokens, np.memmap) and not shard.tokens.flags.writeable
    assert shard.tokens.tolist() == raw.tolist()
    assert shard.starts.tolist() == [0, 4, 5, 8] and shard.ends.tolist() == [4, 5, 8, 11]
    assert shard.ids == ["doc0", "doc1", "doc2", "doc3"]
    spans = list(shard.documents())
    assert [(d.start, d.end, d.id, d.src, d.loc) for d in spans][2] == (5, 8, "doc2", "src0", "2")


def test_index_quotes_awkward_ids(tmp_path):
    with ShardWriter(tmp_path, dtype="uint16", eos_token_id=0) as writer:
        writer.add_document([5], doc_id='a,"b"\nc', source="s3://x/y,z.json.gz", loc="")
    shard = open_shards([tmp_path / "part-00000.npy"], dtype="uint16")[0]
    [doc] = list(shard.documents())
    assert (doc.id, doc.src, doc.loc) == ('a,"b"\nc', "s3://x/y,z.json.gz", "")


def test_shard_rollover(tmp_path):
    # max 10 tokens: docs of 4 (3+EOS) fit twice; a 21-token document gets a shard of its own.
    docs = [[1, 1, 1], [2, 2, 2], [3, 3, 3], [4] * 20, [5]]
    shards = _write(tmp_path, docs, max_tokens=10)
    assert [s.num_tokens for s in shards] == [8, 4, 21, 2]
    assert [s.num_documents for s in shards] == [2, 1, 1, 1]
    assert [s.path for s in shards] == [f"part-{i:05d}.npy" for i in range(4)]
    assert np.fromfile(tmp_path / shards[1].path, np.uint16).tolist() == [3, 3, 3, EOS]
    assert _read_index(tmp_path / shards[2].index) == [["0", "21", "doc3", "src1", "3"]]
    # Exactly full: 4 + 4 + 2 = 10 stays in one shard.
    exact = _write(tmp_path / "exact", [[1, 1, 1], [2, 2, 2], [3]], max_tokens=10)
    assert [s.num_tokens for s in exact] == [10]


def test_uint32_shards(tmp_path):
    with ShardWriter(tmp_path, dtype=dtype_for_vocab(100_278), eos_token_id=100_257) as writer:
        writer.add_document([70_000, 1], doc_id="a", source="s")
    [info] = writer.close()
    assert (tmp_path / info.path).stat().st_size == 3 * 4
    assert np.fromfile(tmp_path / info.path, np.uint32).tolist() == [70_000, 1, 100_257]


@pytest.mark.parametrize(
    ("dtype", "tokens"),
    [("uint16", [1, 65536]), ("uint16", [-1]), ("uint32", [2**32]), ("uint32", [5, -3])],
)
def test_token_id_range_errors(tmp_path, dtype, tokens):
    writer = ShardWriter(tmp_path, dtype=dtype, eos_token_id=0)
    with pytest.raises(ValueError, match=rf"document 'bad': token id .* {dtype}"):
        writer.add_document(np.array(tokens, dtype=np.int64), doc_id="bad", source="s")
    writer.add_document([1], doc_id="ok", source="s")  # the writer is still usable
    assert writer.close()[0].num_documents == 1


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="eos_token_id 70000 does not fit uint16"):
        ShardWriter(tmp_path, dtype="uint16", eos_token_id=70_000)
    with pytest.raises(ValueError, match="token dtype"):
        ShardWriter(tmp_path, dtype="int32", eos_token_id=0)
    writer = ShardWriter(tmp_path, dtype="uint16", eos_token_id=0)
    with pytest.raises(ValueError, match="integers"):
        writer.add_document([1.5], doc_id="f", source="s")
    with pytest.raises(ValueError, match="1-D"):
        writer.add_document([[1, 2]], doc_id="m", source="s")
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.add_document([1], doc_id="late", source="s")


def test_atomic_naming(tmp_path):
    writer = ShardWriter(tmp_path, dtype="uint16", eos_token_id=0, max_tokens_per_shard=4)
    writer.flush_tokens = 2  # force writes to the temporary file before the shard is finished
    writer.add_document([1, 2], doc_id="a", source="s")
    # In progress: only a hidden temporary file, nothing under a final name or matching *.npy.
    assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob("*.csv.gz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".part-00000.csv.gz.tmp",  # the index, written as documents come
        ".part-00000.npy.tmp",
    ]
    writer.add_document([3, 4], doc_id="b", source="s")  # rolls over: shard 0 is finished
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".part-00001.csv.gz.tmp",
        ".part-00001.npy.tmp",
        "part-00000.csv.gz",
        "part-00000.npy",
    ]
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "part-00000.csv.gz",
        "part-00000.npy",
        "part-00001.csv.gz",
        "part-00001.npy",
    ]
    assert writer.close() == writer.shards  # close is idempotent


def test_index_is_written_as_it_goes_with_the_bytes_of_one_gzip_compress(tmp_path):
    """The index is never held whole (50,000 rows cross many flushes), yet its bytes are those
    of compressing it in one go: an index does not depend on how it was written."""
    rows = [
        (2 * i, 2 * i + 2, f"doc-{i}", "src", f'in/part-0.jsonl:{i}, "quoted"')
        for i in range(50_000)
    ]
    with ShardWriter(tmp_path, dtype="uint16", eos_token_id=0) as writer:
        for _, _, doc_id, source, loc in rows:
            writer.add_document([7], doc_id=doc_id, source=source, loc=loc)
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    (info,) = writer.shards
    expected = gzip.compress(text.getvalue().encode("utf-8"), mtime=0)
    assert (tmp_path / info.index).read_bytes() == expected
    assert info.num_documents == len(rows)
    assert not list(tmp_path.glob(".*.tmp"))


def test_exception_discards_shard_in_progress(tmp_path):
    with (
        pytest.raises(KeyError),
        ShardWriter(tmp_path, dtype="uint16", eos_token_id=0, max_tokens_per_shard=3) as writer,
    ):
        writer.add_document([1, 2], doc_id="a", source="s")
        writer.add_document([3], doc_id="b", source="s")
        raise KeyError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.csv.gz", "part-00000.npy"]


def test_empty_writer(tmp_path):
    with ShardWriter(tmp_path, dtype="uint16", eos_token_id=0) as writer:
        pass
    assert writer.close() == [] and not list(tmp_path.iterdir())


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    docs=st.lists(st.lists(st.integers(0, 65535), max_size=40), min_size=1, max_size=30),
    max_tokens=st.integers(1, 64),
)
def test_round_trip_random_documents(tmp_path_factory, docs, max_tokens):
    folder = tmp_path_factory.mktemp("rt")
    shards = _write_dataset(folder, docs, max_tokens=max_tokens)
    assert all(s.num_tokens <= max_tokens or s.num_documents == 1 for s in shards)
    shard_set = open_shards([folder], verify=True)
    assert shard_set.total_tokens == sum(len(d) + 1 for d in docs)
    assert shard_set.eos_token_id == EOS
    flat = np.concatenate([s.tokens for s in shard_set]).tolist()
    assert flat == [t for doc in docs for t in [*doc, EOS]]
    read_back = [
        (doc.id, shard.tokens[doc.start : doc.end].tolist())
        for shard in shard_set
        for doc in shard.documents()
    ]
    assert read_back == [(f"doc{i}", [*doc, EOS]) for i, doc in enumerate(docs)]


def test_manifest_round_trip(tmp_path):
    shards = _write_dataset(tmp_path, [[1, 2], [3], [4, 5, 6]], max_tokens=4)
    manifest = read_manifest(tmp_path)
    assert manifest.format_version == 1
    assert manifest.dtype == "uint16" and manifest.eos_token_id == EOS
    assert manifest.tokenizer == TOKENIZER
    assert manifest.shards == shards
    assert manifest.total_tokens == 3 + 2 + 4 and manifest.total_documents == 3
    assert manifest.sources["src0"]["weight"] == 1.0
    assert manifest.pipeline_config_hash == "cafe"
    assert manifest.stage_counts == {"tokenize": {"kept": 3}}
    raw = (tmp_path / "manifest.json").read_bytes()
    assert manifest_sha256(tmp_path) == hashlib.sha256(raw).hexdigest()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files

    shard_set = open_shards(tmp_path)  # a single path works too
    assert shard_set.manifest_sha256 == (manifest_sha256(tmp_path),)
    assert [s.name for s in shard_set] == [s.path for s in shards]
    assert shard_set.offsets.tolist() == [0, 3, 5, 9]


def test_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"manifest\.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ShardFormatError, match="not valid JSON"):
        read_manifest(tmp_path)
    _write_dataset(tmp_path, [[1]])
    data = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "format_version": 2}))
    with pytest.raises(ShardFormatError, match="unknown format_version 2"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "total_tokens": 99}))
    with pytest.raises(ShardFormatError, match="total_tokens"):
        read_manifest(tmp_path)
    del data["shards"][0]["sha256"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ShardFormatError, match=r"shards\[0\]: 'sha256'"):
        read_manifest(tmp_path)


def test_verify_catches_modified_shard(tmp_path):
    [info] = _write_dataset(tmp_path, [[1, 2, 3], [4, 5]])
    open_shards([tmp_path], verify=True)
    path = tmp_path / info.path
    data = bytearray(path.read_bytes())
    data[0] ^= 1  # same size, different content
    path.write_bytes(bytes(data))
    open_shards([tmp_path])  # sizes still match: only verify notices
    with pytest.raises(ShardFormatError, match=r"part-00000\.npy: sha256 .* does not match"):
        open_shards([tmp_path], verify=True)


def test_size_mismatch_with_manifest(tmp_path):
    [info] = _write_dataset(tmp_path, [[1, 2, 3], [4, 5]])
    path = tmp_path / info.path
    path.write_bytes(path.read_bytes()[:-2])  # one token short
    shards = open_shards([tmp_path])  # lazily: no shard file is touched yet
    with pytest.raises(
        ShardFormatError, match=r"1 of 1 token shards .* has 6 uint16 tokens .* manifest says 7"
    ):
        shards.check_files()
    with pytest.raises(ShardFormatError, match=r"has 6 uint16 tokens .* manifest says 7"):
        open_shards([tmp_path]).read(0, 1)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"part-00000\.npy"):
        open_shards([tmp_path]).check_files()
    with pytest.raises(FileNotFoundError, match=r"part-00000\.npy"):
        open_shards([tmp_path]).read(0, 1)


def test_size_not_multiple_of_itemsize(tmp_path):
    (tmp_path / "odd.npy").write_bytes(b"\x01\x02\x03")
    with pytest.raises(ShardFormatError, match=r"odd\.npy: size 3 bytes is not a multiple"):
        open_shards([tmp_path / "odd.npy"], dtype="uint16")


def test_dtype_conflict_and_missing_dtype(tmp_path):
    _write_dataset(tmp_path / "ours", [[1, 2]])
    assert open_shards([tmp_path / "ours"], dtype="uint16").dtype == np.uint16
    with pytest.raises(ShardFormatError, match="uint32 was requested but the manifest says uint16"):
        open_shards([tmp_path / "ours"], dtype="uint32")
    _write(tmp_path / "bare", [[1, 2]])  # shards without a manifest
    with pytest.raises(ShardFormatError, match=r"no manifest\.json.*dtype='uint16'"):
        open_shards([tmp_path / "bare"])
    with pytest.raises(ShardFormatError, match=r"no manifest\.json.*pass"):
        open_shards([tmp_path / "bare" / "part-00000.npy"])
    shard_set = open_shards([tmp_path / "bare"], dtype="uint16")
    assert shard_set.eos_token_id is None and shard_set.manifest_sha256 == (None,)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_shards([tmp_path / "nowhere"], dtype="uint16")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardFormatError, match=r"no manifest\.json and no"):
        open_shards([tmp_path / "empty"])


def test_np_save_file_is_rejected(tmp_path):
    np.save(tmp_path / "saved.npy", np.arange(10, dtype=np.uint16))
    with pytest.raises(ShardFormatError, match=r"np\.save header"):
        open_shards([tmp_path], dtype="uint16")


def test_dolma_toolkit_output(tmp_path):
    """Output of `dolma tokens`, hand-made: raw uint16 memmaps + 5-column csv.gz, no manifest."""
    docs = {
        "part-0-00000": [("d-a", [10, 11, 12]), ("d-b", [13])],
        "part-0-00001": [("d-c", [20, 21])],
    }
    for name, rows in docs.items():
        tokens, index, pos = [], [], 0
        for line, (doc_id, toks) in enumerate(rows):
            tokens += [*toks, EOS]
            index.append([pos, pos + len(toks) + 1, doc_id, f"s3://bucket/{name}.json.gz", line])
            pos += len(toks) + 1
        np.array(tokens, dtype=np.uint16).tofile(tmp_path / f"{name}.npy")
        with gzip.open(tmp_path / f"{name}.csv.gz", "wt", newline="") as f:
            csv.writer(f).writerows(index)  # Dolma uses csv.writer's default "\r\n"

    shard_set = open_shards([tmp_path], dtype="uint16")
    assert [s.name for s in shard_set] == ["part-0-00000.npy", "part-0-00001.npy"]
    assert shard_set.total_tokens == 9 and shard_set.eos_token_id is None
    assert shard_set[0].tokens.tolist() == [10, 11, 12, EOS, 13, EOS]
    assert shard_set[1].tokens.tolist() == [20, 21, EOS]
    assert [d.id for s in shard_set for d in s.documents()] == ["d-a", "d-b", "d-c"]
    doc_b = shard_set[0].document(1)
    assert (doc_b.start, doc_b.end) == (4, 6)
    assert doc_b.src == "s3://bucket/part-0-00000.json.gz" and doc_b.loc == "1"
    assert shard_set.locate(6) == (1, 0)


def test_missing_index_says_so(tmp_path):
    [info] = _write(tmp_path, [[1, 2], [3]])
    (tmp_path / info.index).unlink()
    shard = open_shards([tmp_path], dtype="uint16")[0]
    assert shard.tokens.tolist() == [1, 2, EOS, 3, EOS]  # tokens still readable
    assert not shard.has_index
    with pytest.raises(MissingIndexError, match=r"no document index \(part-00000.csv.gz"):
        list(shard.documents())


def test_bad_index_rows(tmp_path):
    [info] = _write(tmp_path, [[1, 2], [3]])
    with gzip.open(tmp_path / info.index, "wt") as f:
        f.write("0,3,a,s\n")
    with pytest.raises(ShardFormatError, match=r"csv.gz:1: expected 5 columns"):
        _ = open_shards([tmp_path], dtype="uint16")[0].ids
    with gzip.open(tmp_path / info.index, "wt") as f:
        f.write("0,3,a,s,\n2,5,b,s,\n")  # overlapping spans
    with pytest.raises(ShardFormatError, match="non-overlapping"):
        _ = open_shards([tmp_path], dtype="uint16")[0].starts


def test_several_inputs_and_locate(tmp_path):
    _write_dataset(tmp_path / "a", [[1, 2], [3]], max_tokens=3)  # shards of 3 and 2 tokens
    _write_dataset(tmp_path / "b", [[4, 5, 6, 7]])  # 5 tokens
    shard_set = open_shards([tmp_path / "a", tmp_path / "b"])
    assert shard_set.total_tokens == 10 and len(shard_set) == 3
    assert len(shard_set.manifest_sha256) == 2 and None not in shard_set.manifest_sha256
    expected = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4)]
    assert [shard_set.locate(g) for g in range(10)] == expected
    for bad in (-1, 10):
        with pytest.raises(IndexError, match="out of range"):
            shard_set.locate(bad)
    assert shard_set.read(1, 7).tolist() == [2, EOS, 3, EOS, 4, 5]


def test_locate_skips_empty_shards(tmp_path):
    np.array([1, 2], dtype=np.uint16).tofile(tmp_path / "a.npy")
    (tmp_path / "b.npy").write_bytes(b"")
    np.array([3], dtype=np.uint16).tofile(tmp_path / "c.npy")
    shard_set = open_shards([tmp_path], dtype="uint16")
    assert [len(s) for s in shard_set] == [2, 0, 1]
    assert shard_set.locate(2) == (2, 0)
    assert shard_set[1].tokens.size == 0


def test_a_manifest_of_many_shards_opens_without_touching_them(tmp_path):
    """20,000 shards listed, none on disk: opening parses the manifest only; reading a shard
    (or check_files) is what finds it missing, and names it."""
    count, tokens = 20_000, 1 << 20
    shards = [
        ShardInfo(f"part-{i:06d}.npy", f"part-{i:06d}.csv.gz", tokens, 10, "0" * 64)
        for i in range(count)
    ]
    write_manifest(
        tmp_path, shards=shards, dtype="uint32", eos_token_id=0, tokenizer={}, sources={}
    )
    opened = open_shards([tmp_path])
    assert len(opened) == count and opened.total_tokens == count * tokens
    assert opened.locate(count * tokens - 1) == (count - 1, tokens - 1)
    assert not opened.shards._made  # no TokenShard made, no file stat'ed
    with pytest.raises(FileNotFoundError, match=r"part-012345\.npy"):
        opened.read(12345 * tokens, 12345 * tokens + 1)
    with pytest.raises(FileNotFoundError, match=r"20000 of 20000 token shards are unusable"):
        opened.check_files()
