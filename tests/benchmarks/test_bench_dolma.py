"""benchmarks/bench_dolma.py without the Dolma toolkit: the corpus conversion to Dolma's layout,
the configurations it writes for both pipelines, the ratio arithmetic, its lock and its errors.
Running Dolma itself needs its own virtualenv (created from PyPI on first use), so the benchmark
is run by `make bench-dolma`, never here; nothing in this file touches the network."""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO_ROOT
from ..dataprep.conftest import english_docs, write_jsonl, write_jsonl_gz
from . import summary_rows


def _load():
    path = REPO_ROOT / "benchmarks" / "bench_dolma.py"
    spec = importlib.util.spec_from_file_location("bench_dolma", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_dolma", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load()


def _lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------------------------------------
# The corpus in Dolma's layout


def test_conversion_writes_dolma_documents_with_id_and_source(tmp_path):
    corpus = tmp_path / "corpus"
    write_jsonl(
        corpus / "books" / "part-0.jsonl",
        [{"text": "first", "metadata": {"k": 1}}, {"id": "b2", "text": "second"}],
    )
    (corpus / "books" / "part-0.jsonl").write_text(
        (corpus / "books" / "part-0.jsonl").read_text() + "\n\n"  # blank lines are skipped
    )
    write_jsonl_gz(corpus / "books" / "more" / "part-1.jsonl.gz", [{"id": 7, "text": "third"}])
    write_jsonl_gz(corpus / "code" / "c.json.gz", [{"id": "c1", "text": "x = 1", "source": "py"}])

    files = bench.to_dolma_layout(corpus, tmp_path / "out")

    docs = tmp_path / "out" / "documents"
    assert files == {
        "books": [docs / "books" / "more_part-1.json.gz", docs / "books" / "part-0.json.gz"],
        "code": [docs / "code" / "c.json.gz"],
    }
    assert _lines(files["books"][1]) == [
        {"text": "first", "metadata": {"k": 1}, "id": "part-0-1", "source": "books"},
        {"id": "b2", "text": "second", "source": "books"},
    ]
    assert _lines(files["books"][0]) == [{"id": "7", "text": "third", "source": "books"}]
    assert _lines(files["code"][0])[0]["source"] == "py"  # an existing source is kept
    assert bench.count_documents(files) == 4


def test_conversion_limits_documents_per_source(tmp_path):
    corpus = tmp_path / "corpus"
    for source in ("books", "docs"):
        for part in range(2):
            write_jsonl(
                corpus / source / f"p{part}.jsonl",
                [{"id": f"{source}-{part}-{i}", "text": "t"} for i in range(3)],
            )
    files = bench.to_dolma_layout(corpus, tmp_path / "out", max_docs=4)
    assert {s: [p.name for p in ps] for s, ps in files.items()} == {
        "books": ["p0.json.gz", "p1.json.gz"],
        "docs": ["p0.json.gz", "p1.json.gz"],
    }
    assert [d["id"] for d in _lines(files["books"][1])] == ["books-1-0"]
    assert bench.count_documents(files) == 8


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.jsonl", b'{"text": "ok"}\n{broken\n', "a.jsonl:2: not JSON"),
        ("a.jsonl", b'{"text": 3}\n', "a.jsonl:1: not an object with a string `text`"),
        ("a.jsonl", b'["text"]\n', "a.jsonl:1: not an object"),
        ("a.parquet", b"PAR1", "a.parquet: not a JSON-lines file"),
    ],
)
def test_conversion_rejects_what_dolma_cannot_read(tmp_path, name, content, message):
    (tmp_path / "corpus" / "books").mkdir(parents=True)
    (tmp_path / "corpus" / "books" / name).write_bytes(content)
    with pytest.raises(bench.BenchError, match=message.replace("`", ".").replace("[", r"\[")):
        bench.to_dolma_layout(tmp_path / "corpus", tmp_path / "out")


def test_conversion_of_a_missing_or_empty_corpus_says_so(tmp_path):
    with pytest.raises(bench.BenchError, match=r"no such corpus folder.*make corpus"):
        bench.to_dolma_layout(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(bench.BenchError, match="no source folders"):
        bench.to_dolma_layout(tmp_path / "empty", tmp_path / "out")


# ------------------------------------------------------------------------------------------------
# The configurations


def _configs(tmp_path, prose=("books", "docs"), code=("code",)):
    configs = bench.dolma_configs(
        tmp_path, list(prose), list(code), tmp_path / "tokenizer.json",
        documents=40, eos_token_id=50279, pad_token_id=1, dtype="uint16", processes=2,
    )  # fmt: skip
    paths = bench.write_configs(tmp_path / "configs", configs)
    return configs, {name: yaml.safe_load(path.read_text()) for name, path in paths.items()}


def test_dolma_configs_cover_every_command_and_read_back(tmp_path):
    configs, written = _configs(tmp_path)
    assert list(configs) == list(bench.COMMANDS)
    assert written == {name: config for name, (_, config) in configs.items()}
    subcommands = {name: sub for name, (sub, _) in configs.items()}
    assert subcommands == {
        **{n: "tag" for n in bench.COMMANDS if n.startswith("tag_") or n == "floor"},
        "dedupe_documents": "dedupe",
        "dedupe_paragraphs": "dedupe",
        "mix": "mix",
        "tokens": "tokens",
    }
    prose = [str(tmp_path / "documents" / s / "*.json.gz") for s in ("books", "docs")]
    code = [str(tmp_path / "documents" / "code" / "*.json.gz")]
    assert written["tag_prose"]["documents"] == prose
    assert written["tag_prose"]["taggers"] == [
        "ft_lang_id_en_doc_v2", "gopher_v2", "c4_v2", "pii_regex_with_counts_fast_v2"
    ]  # fmt: skip
    assert written["tag_code"] == {
        "documents": code,
        "experiment": bench.TAGS,
        "taggers": ["pii_regex_with_counts_fast_v2"],
        "processes": 2,
    }
    assert written["tag_pii"]["documents"] == prose + code
    assert all(written[n]["processes"] == 2 for n in bench.COMMANDS)
    # every pipeline command's inputs are the converted documents (Dolma needs `documents/`)
    assert written["dedupe_paragraphs"]["documents"] == prose
    assert written["dedupe_documents"]["dedupe"]["documents"]["key"] == "$.text"


def test_dolma_configs_use_our_thresholds_and_tokenizer(tmp_path):
    from olmo_dataprep.config import DedupConfig
    from olmo_dataprep.quality import QualityConfig

    _, written = _configs(tmp_path)
    paragraphs = DedupConfig().paragraphs
    bloom = written["dedupe_paragraphs"]["bloom_filter"]
    assert bloom["estimated_doc_count"] == paragraphs.capacity
    assert bloom["desired_false_positive_rate"] == paragraphs.false_positive_rate
    doc_bloom = written["dedupe_documents"]["bloom_filter"]
    assert doc_bloom["estimated_doc_count"] == 40
    assert doc_bloom["desired_false_positive_rate"] == paragraphs.false_positive_rate
    assert bloom["file"] != doc_bloom["file"] and not bloom["read_only"]

    prose, code = written["mix"]["streams"]
    assert prose["attributes"] == [bench.TAGS, bench.DOC_DEDUPE, bench.PARA_DEDUPE]
    assert code["attributes"] == [bench.TAGS, bench.DOC_DEDUPE]
    exclude = prose["filter"]["exclude"]
    key = "taggers__gopher_v2__word_count"
    assert f"@.{key}[0][2] < {QualityConfig().min_words})]" in "\n".join(exclude)
    assert f"@.{key}[0][2] > {QualityConfig().max_words})]" in "\n".join(exclude)
    assert any("taggers__ft_lang_id_en_doc_v2__en[0][2] < 0.5)]" in e for e in exclude)
    assert any("taggers__c4_v2__has_naughty_word" in e for e in exclude)
    assert any("pii_regex_with_counts_fast_v2__doc_count[0][2] > 5)]" in e for e in exclude)
    # every filter names an attribute of the streams' experiments, as Dolma writes them
    for expr in exclude + code["filter"]["exclude"]:
        attribute = expr.split("@.", 1)[1].split(" ", 1)[0]
        assert attribute.startswith(f"{bench.TAGS}__") or attribute == bench.DOC_ATTRIBUTE
    assert not any("ft_lang_id" in e or "gopher" in e for e in code["filter"]["exclude"])
    masks = {s["replacement"] for s in code["span_replacement"]}
    assert masks == {"|||EMAIL_ADDRESS|||", "|||PHONE_NUMBER|||", "|||IP_ADDRESS|||"}
    assert {"span": f"$.attributes.{bench.PARA_ATTRIBUTE}", "min_score": 0.5} in prose[
        "span_replacement"
    ]

    tokens = written["tokens"]
    assert tokens["tokenizer"] == {
        "name_or_path": str(tmp_path / "tokenizer.json"),
        "eos_token_id": 50279,
        "pad_token_id": 1,
    }
    assert tokens["documents"] == [str(tmp_path / "mixed" / s / "*.json.gz") for s in ("prose", "code")]  # fmt: skip
    assert tokens["dtype"] == "uint16"


def test_dolma_configs_without_code_or_without_prose(tmp_path):
    configs, _ = _configs(tmp_path, code=())
    assert "tag_code" not in configs and [s["name"] for s in configs["mix"][1]["streams"]] == [
        "prose"
    ]
    configs, _ = _configs(tmp_path, prose=())
    assert not {"tag_langid", "tag_quality", "tag_prose", "dedupe_paragraphs"} & set(configs)
    assert [s["name"] for s in configs["mix"][1]["streams"]] == ["code"]


def test_our_pipeline_file_mirrors_dolmas_and_runs_as_a_command(tmp_path):
    """Our side: the pipeline file validates, code skips what Dolma's code stream skips, and the
    command's timings and summary are where run_ours reads them."""
    from olmo_dataprep.config import load_pipeline_config

    corpus = tmp_path / "corpus"
    for i, source in enumerate(("books", "code")):
        docs = english_docs(12, seed=i, paragraphs=2)
        write_jsonl(corpus / source / "p.jsonl", [{"text": t} for t in docs])
    files = bench.to_dolma_layout(corpus, tmp_path)
    spec = bench.our_pipeline(tmp_path, list(files), {"code"}, tmp_path / "tokenizer.json")
    assert spec["decontamination"] == {"enabled": False}
    assert "skip" not in spec["sources"][0]
    assert spec["sources"][1]["skip"] == ["langid", "quality", "bad_words", "paragraph_dedup"]
    spec["tokenizer"] = {"name": "train", "train_vocab_size": 300}  # no cached tokenizer needed
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    config = load_pipeline_config(tmp_path / "pipeline.yaml", output=str(tmp_path / "x"))
    assert [s.paths for s in config.sources] == [
        [str(tmp_path / "documents" / "books")],
        [str(tmp_path / "documents" / "code")],
    ]

    seconds, timings, summary = bench.run_ours(
        tmp_path / "pipeline.yaml", tmp_path / "ours", 1, tmp_path / "ours.log"
    )
    assert seconds > 0 and summary["documents_in"] == 24
    assert 0 < summary["documents_kept"] <= 24 and summary["tokens"] > 0
    stages = {k[:-2]: v for k, v in timings.items() if k.endswith("_s") and k != "wall_s"}
    for stage in bench.STAGES:
        if stage.name != "mix":  # mixing at rate 1 may take no measurable time
            assert any(k in stages for k in stage.ours), stage.name


def test_a_failing_run_of_ours_shows_its_output(tmp_path):
    (tmp_path / "pipeline.yaml").write_text("sources: []\nbogus: 1\n")
    with pytest.raises(bench.BenchError, match=r"(?s)our pipeline failed.*bogus"):
        bench.run_ours(tmp_path / "pipeline.yaml", tmp_path / "out", 1, tmp_path / "log")


# ------------------------------------------------------------------------------------------------
# Arithmetic


def test_compare_divides_map_stages_by_processes_and_sums_dolmas_pipeline():
    ours = {
        "read": 0.4, "langid": 2.0, "quality": 1.0, "bad_words": 0.2, "pii": 0.6,
        "hashes": 0.4, "dedup": 0.3, "tokenize": 1.5, "mixing": 0.1, "tokenizer": 0.2,
    }  # fmt: skip
    dolma = {
        "floor": 2.0, "tag_langid": 2.5, "tag_quality": 3.0, "tag_pii": 2.4, "tag_prose": 4.0,
        "tag_code": 2.0, "dedupe_documents": 1.0, "dedupe_paragraphs": 1.5, "mix": 2.0,
        "tokens": 3.5,
    }  # fmt: skip
    taggers = {"ft_lang_id_en_doc_v2": 0.5, "gopher_v2": 0.9, "c4_v2": 0.1}
    result = bench.compare(7.0, ours, 2, dolma, taggers)

    assert result["dolma_s"] == 4.0 + 2.0 + 1.0 + 1.5 + 2.0 + 3.5  # not floor, not tag_langid...
    assert result["ratio"] == round(7.0 / 14.0, 3)
    s = result["stages"]
    assert s["langid"] == {
        "ours_s": 1.0, "dolma_s": 2.5, "ratio": 0.4,
        "ours_compute_s": 2.0, "dolma_compute_s": 0.5, "compute_ratio": 4.0,
    }  # fmt: skip
    assert s["quality"]["ours_s"] == 0.6 and s["quality"]["ratio"] == 0.2
    assert s["quality"]["compute_ratio"] == round(1.2 / 1.0, 3)
    assert s["pii"]["compute_ratio"] is None  # its tagger was not timed
    assert s["dedup"] == {"ours_s": 0.5, "dolma_s": 2.5, "ratio": 0.2}  # hashes/2 + dedup
    assert s["tokenize"] == {"ours_s": 1.5, "dolma_s": 3.5, "ratio": round(1.5 / 3.5, 3)}
    assert s["mix"]["ratio"] == 0.05


def test_compare_marks_stages_that_did_not_run():
    result = bench.compare(1.0, {"tokenize": 1.0}, 2, {"tokens": 2.0}, {})
    assert result["stages"]["langid"]["ratio"] is None
    assert result["stages"]["tokenize"]["ratio"] == 0.5
    with pytest.raises(bench.BenchError, match="no Dolma pipeline command ran"):
        bench.compare(1.0, {}, 1, {"floor": 1.0}, {})


def test_median_rounds_per_key():
    rounds = [{"a": 1.0, "b": 5.0}, {"a": 3.0}, {"a": 2.0, "b": 7.0}]
    assert bench.median_rounds(rounds) == {"a": 2.0, "b": 6.0}


def test_summary_takes_medians_and_reports_in_both_forms(capsys):
    ours = [
        {
            "wall_s": w,
            "documents_kept": 10,
            "tokens": 900,
            "stage:langid": 2 * w,
            "stage:tokenize": w,
        }
        for w in (3.0, 1.0, 2.0)
    ]
    dolma = [
        {
            **{f"command:{c}": w for c in bench.COMMANDS},
            "tagger:ft_lang_id_en_doc_v2": w,
            "documents_kept": 11,
            "tokens": 1000,
        }
        for w in (1.0, 2.0, 4.0)
    ]
    result = bench.summarize(
        ours, dolma, map_processes=2, version="1.2.1", processes=2, documents_in=12, convert_s=0.1
    )
    n = len(bench.DOLMA_PIPELINE)
    assert result["rounds"] == 3 and result["documents_in"] == 12
    assert result["ours"] == {
        "wall_s": 2.0, "documents_kept": 10, "tokens": 900,
        "stage_s": {"langid": 4.0, "tokenize": 2.0},
    }  # fmt: skip
    assert result["dolma"]["pipeline_s"] == 2.0 * n and result["dolma"]["floor_s"] == 2.0
    assert result["dolma"]["documents_kept"] == 11 and result["dolma"]["tokens"] == 1000
    assert result["ratio"] == round(2.0 / (2.0 * n), 3)
    assert result["stages"]["langid"]["ratio"] == 1.0  # 4 s over 2 processes vs 2 s
    assert result["stages"]["langid"]["compute_ratio"] == 2.0
    assert result["stages"]["tokenize"]["ratio"] == 1.0

    bench.report(result, as_json=True)
    assert json.loads(capsys.readouterr().out) == result
    bench.report(result, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[-1]) == result  # the table, then the same JSON
    assert any(line.startswith("whole pipeline") and "(goal < 1)" in line for line in lines)
    assert len(summary_rows("dolma", result)) == 2  # make bench's table reads it


def test_dolma_output_counts_documents_and_tokens(tmp_path):
    (tmp_path / "tokens").mkdir()
    for name, rows in (
        ("part-0-00000.csv.gz", ["0,10,a", "10,25,b"]),
        ("part-1.csv.gz", ["0,3,c"]),
    ):
        (tmp_path / "tokens" / name).write_bytes(gzip.compress("\n".join(rows).encode() + b"\n"))
    assert bench.dolma_output(tmp_path) == (3, 28)


# ------------------------------------------------------------------------------------------------
# The lock, the virtualenv, the command line


def test_lock_pins_dolma_and_every_distribution_with_hashes():
    version = bench.locked_dolma_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version)
    blocks: list[list[str]] = []
    for line in bench.LOCK.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace():
            blocks[-1].append(line.strip())
        else:
            blocks.append([line])
    pins = {block[0].split()[0] for block in blocks}
    assert f"dolma=={version}" in pins
    for block in blocks:
        assert re.fullmatch(r"[A-Za-z0-9._-]+==\S+ \\", block[0]), block[0]
        assert block[1:] and all(re.match(r"--hash=sha256:[0-9a-f]{64}", h) for h in block[1:])


def test_locked_version_of_a_lock_without_dolma(tmp_path):
    (tmp_path / "lock.txt").write_text("numpy==1.26.4 \\\n    --hash=sha256:00\n")
    with pytest.raises(bench.BenchError, match="pins no dolma"):
        bench.locked_dolma_version(tmp_path / "lock.txt")


def test_venv_that_cannot_be_created_is_a_clear_error(tmp_path):
    with pytest.raises(bench.BenchError, match=r"could not create the virtualenv.*Python 3\.11"):
        bench.ensure_venv(tmp_path / "venv", str(tmp_path / "no-python"))


def test_venv_folder_not_made_by_the_benchmark_is_left_alone(tmp_path):
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "mine.txt").write_text("keep me")
    with pytest.raises(bench.BenchError, match="not made by this benchmark"):
        bench.ensure_venv(tmp_path / "venv", sys.executable)
    assert (tmp_path / "venv" / "mine.txt").read_text() == "keep me"


def test_built_venv_is_reused_while_the_lock_is_unchanged(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "dolma").write_text("")
    (venv / ".olmo-k8s-lock-sha256").write_text(bench._stamp(bench.LOCK) + "\n")
    # no Python is run: the stamp matches
    assert bench.ensure_venv(venv, str(tmp_path / "no-python")) == venv / "bin" / "dolma"


def test_benchmark_exits_nonzero_with_a_message_when_the_venv_fails(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_dolma.py"), "--json",
         "--venv", str(tmp_path / "venv"), "--python", str(tmp_path / "no-python")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stdout == ""
    assert "error: could not create the virtualenv" in out.stderr


def test_work_folder_is_never_one_with_other_files(tmp_path):
    (tmp_path / "data" / "corpus").mkdir(parents=True)
    with pytest.raises(bench.BenchError, match="not empty and not a work folder"):
        bench.claim_work_folder(tmp_path / "data")
    assert (tmp_path / "data" / "corpus").is_dir()
    bench.claim_work_folder(tmp_path / "work")
    (tmp_path / "work" / "round0").mkdir()
    bench.claim_work_folder(tmp_path / "work")  # its own: emptied for the next run
    assert [p.name for p in (tmp_path / "work").iterdir()] == [".bench_dolma"]


def test_tagger_timer_imports_only_dolma_and_the_standard_library():
    """It runs with the Python of Dolma's virtualenv, where none of our packages is installed."""
    tree = ast.parse(bench.TAGGER_SECONDS.read_text())
    roots = {
        (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert roots - sys.stdlib_module_names == {"dolma", "msgspec"}
