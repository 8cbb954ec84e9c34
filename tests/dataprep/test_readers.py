"""Reading raw documents (``olmo_dataprep.readers``): formats, bad input, accounting, sharding."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from olmo_dataprep.input_files import iter_input_files, shard_files
from olmo_dataprep.readers import (
    READ_ERROR_REASONS,
    Document,
    ReadError,
    generated_id,
    max_line_bytes,
    read_documents,
)


def dolma_record(i: int, **extra: object) -> dict[str, object]:
    return {
        "id": f"doc-{i}",
        "text": f"Document number {i}.\nIt has two lines.",
        "source": "common-crawl",
        "added": "2024-01-01T00:00:00Z",
        "created": "2023-06-01T00:00:00Z",
        "metadata": {"url": f"https://example.com/{i}", "lang": "en"},
        **extra,
    }


def jsonl_bytes(records: list[object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def read_all(path: Path, **kwargs: object) -> list[Document | ReadError]:
    return list(read_documents(path, source="cc", **kwargs))  # type: ignore[arg-type]


def reasons(items: list[Document | ReadError]) -> list[str]:
    return [item.reason if isinstance(item, ReadError) else "ok" for item in items]


def test_dolma_gzip_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "part-0.json.gz"
    records = [dolma_record(i) for i in range(3)]
    records[2]["url"] = "https://top-level.example/2"  # a top-level url wins over metadata.url
    with gzip.open(path, "wb") as f:
        f.write(jsonl_bytes(records))

    docs = read_all(path)

    assert all(isinstance(d, Document) for d in docs)
    assert [d.id for d in docs] == ["doc-0", "doc-1", "doc-2"]
    first = docs[0]
    assert isinstance(first, Document)
    assert first.text == "Document number 0.\nIt has two lines."
    assert first.source == "cc"
    assert first.url == "https://example.com/0"
    assert first.added == "2024-01-01T00:00:00Z"
    assert first.created == "2023-06-01T00:00:00Z"
    assert first.metadata == {"url": "https://example.com/0", "lang": "en"}
    assert first.loc == f"{path}:1"
    assert docs[2].url == "https://top-level.example/2"  # type: ignore[union-attr]


def test_jsonl_gz_suffix_and_plain_jsonl(tmp_path: Path) -> None:
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl_bytes([{"id": "g", "text": "gzipped"}])))
    plain = tmp_path / "b.jsonl"
    # A blank line is not a document but still counts for the physical line numbers; a raw
    # U+2028 inside a string is not a line break; a record without url/metadata is fine.
    plain.write_bytes(
        b'{"id": "x", "text": "first"}\n\n   \n'
        + '{"text": "second\u2028same line", "url": "https://u"}\n'.encode()
        + b'{"id": 7, "text": "last, no newline"}'
    )
    also_json = tmp_path / "c.json"
    also_json.write_bytes(jsonl_bytes([{"id": "j", "text": "json suffix"}]))

    (g,) = read_all(gz)
    assert isinstance(g, Document) and g.text == "gzipped"
    docs = read_all(plain)
    assert [d.loc for d in docs] == [f"{plain}:1", f"{plain}:4", f"{plain}:5"]
    assert all(isinstance(d, Document) for d in docs)
    assert docs[1].text == "second\u2028same line"  # type: ignore[union-attr]
    assert docs[1].url == "https://u"  # type: ignore[union-attr]
    assert docs[1].metadata == {}  # type: ignore[union-attr]
    assert docs[1].id == generated_id("cc", f"{plain}:4")
    assert docs[2].id == "7"
    (j,) = read_all(also_json)
    assert isinstance(j, Document) and j.id == "j"


def test_parquet_round_trip_with_null_text(tmp_path: Path) -> None:
    path = tmp_path / "shard.parquet"
    table = pa.table(
        {
            "id": ["p0", None, "p2", "p3"],
            "text": ["parquet one", "parquet two", None, "   "],
            "url": ["https://a", None, None, None],
            "metadata": [{"lang": "en"}, {"lang": "de"}, None, {"lang": "fr"}],
            "unrelated": [1, 2, 3, 4],
        }
    )
    pq.write_table(table, path, row_group_size=2)

    items = read_all(path)

    assert reasons(items) == ["ok", "ok", "missing_text", "empty_text"]
    first, second, missing, empty = items
    assert isinstance(first, Document) and isinstance(second, Document)
    assert (first.id, first.text, first.url, first.loc) == (
        "p0",
        "parquet one",
        "https://a",
        f"{path}:0",
    )
    assert first.metadata == {"lang": "en"}
    assert "unrelated" not in first.metadata
    assert second.id == generated_id("cc", f"{path}:1") and second.url is None
    assert isinstance(missing, ReadError) and missing.id == "p2" and missing.loc == f"{path}:2"
    assert isinstance(empty, ReadError) and empty.id == "p3"


def test_parquet_without_text_column_accounts_every_row(tmp_path: Path) -> None:
    path = tmp_path / "notext.parquet"
    pq.write_table(pa.table({"body": ["a", "b", "c"]}), path)
    assert reasons(read_all(path)) == ["missing_text"] * 3


def test_parquet_invalid_utf8_cell_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.parquet"
    raw = pa.array([b"ok text", b"caf\xe9", b"fine"], pa.binary())
    text = pa.Array.from_buffers(pa.string(), 3, raw.buffers())  # unvalidated string column
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": text}), path)
    items = read_all(path)
    assert reasons(items) == ["ok", "invalid_utf8", "ok"]
    assert items[1].id == "b"


def test_corrupt_parquet_yields_an_error_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    (err,) = read_all(path)
    assert isinstance(err, ReadError) and err.reason == "corrupt_parquet"


def test_mixed_bad_file_exact_reasons_and_good_lines_survive(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps({"id": "good-1", "text": "hello world"}).encode(),
        b'{"id": "broken", "text": "no closing brace"',
        b'{"id": "latin1", "text": "caf\xe9"}',
        json.dumps({"id": "no-text", "body": "x"}).encode(),
        json.dumps({"id": "number", "text": 42}).encode(),
        json.dumps({"id": "good-2", "text": "between the errors"}).encode(),
        json.dumps({"id": "empty", "text": " \n\t "}).encode(),
        json.dumps(["an", "array"]).encode(),
        json.dumps({"id": "long", "text": "x" * 51}).encode(),
        json.dumps({"id": "surrogate", "text": "bad \ud800 escape"}).encode(),
        json.dumps({"id": "good-3", "text": "y" * 50}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")

    items = read_all(path, max_chars=50)

    assert reasons(items) == [
        "ok",
        "malformed_json",
        "invalid_utf8",
        "missing_text",
        "text_not_string",
        "ok",
        "empty_text",
        "not_an_object",
        "too_long",
        "invalid_utf8",
        "ok",
    ]
    assert [d.id for d in items if isinstance(d, Document)] == ["good-1", "good-2", "good-3"]
    errors = [e for e in items if isinstance(e, ReadError)]
    assert all(e.reason in READ_ERROR_REASONS for e in errors)
    assert [e.id for e in errors] == [
        None,  # malformed: id unknown
        None,  # undecodable: id unknown
        "no-text",
        "number",
        "empty",
        None,  # not an object
        "long",
        "surrogate",
    ]
    assert [e.loc for e in errors][:2] == [f"{path}:2", f"{path}:3"]
    assert all(e.source == "cc" for e in errors)


def test_accounting_documents_plus_errors_equal_non_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "acct.json.gz"
    raw_lines = [
        json.dumps(dolma_record(0)).encode(),
        b"",
        b"not json",
        json.dumps({"text": ""}).encode(),
        b"  ",
        b"\xff\xfe",
        json.dumps(dolma_record(1)).encode(),
        b"null",
        json.dumps({"text": None}).encode(),
    ]
    path.write_bytes(gzip.compress(b"\r\n".join(raw_lines) + b"\r\n"))

    items = read_all(path)

    non_blank = sum(1 for line in raw_lines if line.strip())
    assert len(items) == non_blank == 7
    assert sum(isinstance(i, Document) for i in items) == 2
    assert len({i.loc for i in items}) == len(items)


def test_truncated_gzip_yields_docs_before_the_cut_then_one_error(tmp_path: Path) -> None:
    records = [dolma_record(i, text=f"doc {i} " + "filler " * 200) for i in range(50)]
    payload = gzip.compress(jsonl_bytes(records))
    path = tmp_path / "cut.json.gz"
    path.write_bytes(payload[: len(payload) // 2])

    items = read_all(path)

    *docs, last = items
    assert isinstance(last, ReadError) and last.reason == "truncated_gzip"
    assert docs and all(isinstance(d, Document) for d in docs)
    assert [d.id for d in docs] == [f"doc-{i}" for i in range(len(docs))]
    assert len(docs) < 50
    assert last.loc == f"{path}:{len(docs) + 1}"


def test_gzip_missing_only_its_trailer_loses_no_document(tmp_path: Path) -> None:
    payload = gzip.compress(jsonl_bytes([dolma_record(i) for i in range(3)]))
    path = tmp_path / "trailer.json.gz"
    path.write_bytes(payload[:-8])  # CRC32 and size gone, deflate data intact
    assert reasons(read_all(path)) == ["ok", "ok", "ok", "truncated_gzip"]


def test_not_gzip_data_is_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "plain-but-named.json.gz"
    path.write_bytes(jsonl_bytes([dolma_record(0)]))
    assert reasons(read_all(path)) == ["corrupt_gzip"]


def test_generated_ids_are_stable_across_reads(tmp_path: Path) -> None:
    path = tmp_path / "noids.jsonl"
    path.write_bytes(jsonl_bytes([{"text": f"text {i}"} for i in range(5)]))

    first = [d.id for d in read_all(path)]
    second = [d.id for d in read_all(path)]

    assert first == second
    assert len(set(first)) == 5
    other_source = [d.id for d in read_documents(path, source="other")]
    assert set(other_source).isdisjoint(first)


def test_read_documents_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        read_documents(tmp_path / "x.txt", source="cc")
    with pytest.raises(ValueError, match="max_chars"):
        read_documents(tmp_path / "x.jsonl", source="cc", max_chars=0)
    with pytest.raises(FileNotFoundError):
        read_all(tmp_path / "missing.jsonl")


def make_tree(root: Path) -> None:
    for rel in [
        "a/one.json.gz",
        "a/two.jsonl",
        "a/deep/three.parquet",
        "a/deep/notes.txt",
        "b/four.jsonl.gz",
        "b/five.json",
        "README.md",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def test_iter_input_files_globs_folders_dedup_and_sort(tmp_path: Path) -> None:
    make_tree(tmp_path)
    files = iter_input_files(
        [
            str(tmp_path / "b"),
            str(tmp_path / "a" / "*.jsonl"),
            str(tmp_path / "**" / "*.parquet"),
            str(tmp_path / "a"),  # overlaps the two above
        ]
    )
    rel = [f.relative_to(tmp_path).as_posix() for f in files]
    assert rel == [
        "a/deep/three.parquet",
        "a/one.json.gz",
        "a/two.jsonl",
        "b/five.json",
        "b/four.jsonl.gz",
    ]
    assert iter_input_files([str(tmp_path / "a" / "two.jsonl")]) == [tmp_path / "a" / "two.jsonl"]


def test_iter_input_files_errors(tmp_path: Path) -> None:
    make_tree(tmp_path)
    pattern = str(tmp_path / "nothing-*.jsonl")
    with pytest.raises(FileNotFoundError, match="nothing-"):
        iter_input_files([str(tmp_path / "a"), pattern])
    with pytest.raises(FileNotFoundError):
        iter_input_files([str(tmp_path / "missing-dir")])
    with pytest.raises(FileNotFoundError):
        iter_input_files([str(tmp_path / "*.md")])  # matches only an unsupported file
    with pytest.raises(ValueError, match="unsupported"):
        iter_input_files([str(tmp_path / "README.md")])
    with pytest.raises(ValueError):
        iter_input_files([])


@pytest.mark.parametrize("num_workers", [1, 2, 3, 7, 10, 25])
def test_shard_files_partition(num_workers: int) -> None:
    files = [Path(f"data/part-{i:03d}.json.gz") for i in range(10)]
    shuffled = files[::-1]

    shards = [shard_files(shuffled, w, num_workers) for w in range(num_workers)]

    flat = [f for shard in shards for f in shard]
    assert sorted(flat) == sorted(files)  # union is everything, nothing twice
    assert len(flat) == len(set(flat))
    assert shards == [shard_files(files, w, num_workers) for w in range(num_workers)]
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert shards[0][0] == files[0]


def test_shard_files_rejects_bad_arguments() -> None:
    files = [Path("a.jsonl"), Path("b.jsonl")]
    with pytest.raises(ValueError):
        shard_files(files, 0, 0)
    with pytest.raises(ValueError):
        shard_files(files, 2, 2)
    with pytest.raises(ValueError):
        shard_files(files, -1, 2)
    with pytest.raises(TypeError):
        shard_files(files, True, 2)
    with pytest.raises(TypeError):
        shard_files(files, 0, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicate"):
        shard_files([Path("a.jsonl"), Path("a.jsonl")], 0, 1)


# -- bounded memory: over-long lines, the per-file cap, long Parquet cells -----------------------


def test_an_over_long_line_is_skipped_unparsed_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    big = b'{"id": "big", "text": "' + b"x" * (max_line_bytes(10) + 1) + b'"}'
    path.write_bytes(
        jsonl_bytes([{"id": "a", "text": "first"}])
        + b"\n"
        + big
        + b"\n"
        + b'{"id": "b", "text": "last"}'
    )

    items = read_all(path, max_chars=10)

    assert reasons(items) == ["ok", "too_long", "ok"]
    assert [i.loc for i in items] == [f"{path}:1", f"{path}:3", f"{path}:4"]
    assert items[1].id is None  # never parsed: the id is unknown
    assert items[2].text == "last"  # type: ignore[union-attr]


def test_the_line_limit_never_rejects_a_document_the_character_limit_accepts(
    tmp_path: Path,
) -> None:
    # json.dumps escapes a supplementary-plane character as two \uXXXX escapes: 12 bytes.
    max_chars = 200_000
    path = tmp_path / "escaped.jsonl.gz"
    path.write_bytes(
        gzip.compress(jsonl_bytes([{"id": "emoji", "text": "\U0001f600" * max_chars}]))
    )
    assert path.stat().st_size < 100_000

    (doc,) = read_all(path, max_chars=max_chars)

    assert isinstance(doc, Document) and len(doc.text) == max_chars
    assert len(json.dumps(doc.text)) > 6 * max_chars + (1 << 20)  # a 6-byte bound would reject it


def test_an_over_long_blank_line_is_still_blank(tmp_path: Path) -> None:
    path = tmp_path / "spaces.json.gz"
    spaces = b" \t" * (max_line_bytes(5) // 2 + 1)
    path.write_bytes(gzip.compress(b'{"text": "one"}\n' + spaces + b'\n{"text": "two"}\n' + spaces))
    items = read_all(path, max_chars=5)
    assert reasons(items) == ["ok", "ok"]
    assert [i.loc for i in items] == [f"{path}:1", f"{path}:3"]


@pytest.mark.parametrize("gzipped", [True, False])
def test_bytes_past_max_file_bytes_are_one_too_large_error(tmp_path: Path, gzipped: bool) -> None:
    data = jsonl_bytes([dolma_record(i) for i in range(4)])
    path = tmp_path / ("cap.jsonl.gz" if gzipped else "cap.jsonl")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    two_lines = len(jsonl_bytes([dolma_record(0), dolma_record(1)]))

    items = read_all(path, max_file_bytes=two_lines + 5)

    assert reasons(items) == ["ok", "ok", "too_large"]
    assert items[2].loc == f"{path}:3" and items[2].id is None
    assert reasons(read_all(path, max_file_bytes=len(data))) == ["ok"] * 4  # exactly at the cap
    assert reasons(read_all(path, max_file_bytes=len(data) - 1)) == ["ok"] * 3 + ["too_large"]


def test_parquet_long_cells_are_screened_before_conversion(tmp_path: Path) -> None:
    path = tmp_path / "long.parquet"
    raw = pa.array(
        [b"x" * 41, "\u00e9".encode() * 15, b"  " * 30, b"caf\xe9" * 20, b"short"], pa.binary()
    )
    text = pa.Array.from_buffers(pa.string(), 5, raw.buffers())  # unvalidated string column
    pq.write_table(pa.table({"id": ["a", "b", "c", "d", "e"], "text": text}), path)

    items = read_all(path, max_chars=10)  # cells of more than 40 bytes are screened

    # 41 bytes: too long unconverted; 15 two-byte characters (30 bytes): too long by count;
    # 60 bytes of spaces: blank; 80 bytes of Latin-1: not UTF-8; as an unscreened cell would be.
    assert reasons(items) == ["too_long", "too_long", "empty_text", "invalid_utf8", "ok"]
    assert [i.id for i in items] == ["a", "b", "c", "d", "e"]


def test_parquet_past_max_file_bytes_accounts_every_row(tmp_path: Path) -> None:
    path = tmp_path / "cap.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["one", "two", "three"]}), path)
    items = read_all(path, max_file_bytes=8)
    assert reasons(items) == ["too_large"] * 3
    assert [i.loc for i in items] == [f"{path}:{row}" for row in range(3)]
    assert reasons(read_all(path)) == ["ok"] * 3


def test_read_documents_rejects_a_bad_max_file_bytes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_file_bytes"):
        read_documents(tmp_path / "x.jsonl", source="cc", max_file_bytes=0)
