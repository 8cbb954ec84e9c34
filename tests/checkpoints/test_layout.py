"""The checkpoint layout contract: names, COMPLETE markers, finalize, scanning, resolving."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from olmo.checkpoints import folders, layout
from olmo.checkpoints.layout import (
    COMPLETE,
    EVALUATED,
    LATEST,
    checkpoints_dir,
    eval_result_path,
    final_dir,
    finalize,
    is_complete,
    is_evaluated,
    latest_complete,
    list_checkpoints,
    list_temp_dirs,
    mark_evaluated,
    parse_step,
    prepare_temp_dir,
    read_complete,
    read_latest_pointer,
    resolve_checkpoint,
    sha256_file,
    step_dir_name,
    temp_dir,
    write_complete,
)

from ..conftest import top_level_modules_after_import

FILES = {"zero/mp_rank_00_model_states.pt": b"model" * 100, "trainer_state.json": b'{"a": 1}'}


def save(run_dir: Path, step: int, tokens: int | None = None, files=FILES) -> Path:
    """Write a checkpoint the way the trainer does: temp folder, files, finalize."""
    temp = prepare_temp_dir(run_dir, step)
    for rel, data in files.items():
        (temp / rel).parent.mkdir(parents=True, exist_ok=True)
        (temp / rel).write_bytes(data)
    return finalize(run_dir, temp, step=step, tokens=step * 100 if tokens is None else tokens)


def test_names_and_paths(tmp_path):
    assert step_dir_name(0) == "step000000"
    assert step_dir_name(123) == "step000123"
    assert step_dir_name(1_234_567) == "step1234567"
    assert parse_step("step000123") == 123
    assert parse_step("step1234567") == 1_234_567
    for bad in (".tmp-step000123", "step123", "step0000123", "step00012a", "latest", "", "step"):
        assert parse_step(bad) is None, bad
    assert temp_dir(tmp_path, 5) == tmp_path / "checkpoints" / ".tmp-step000005"
    assert final_dir(tmp_path, 5) == tmp_path / "checkpoints" / "step000005"
    assert eval_result_path(tmp_path, 5) == tmp_path / "eval" / "step000005.json"
    with pytest.raises(ValueError, match="non-negative integer"):
        step_dir_name(-1)


@given(st.integers(min_value=0, max_value=10**15))
def test_step_names_round_trip(step):
    assert parse_step(step_dir_name(step)) == step


@given(st.text(max_size=20))
def test_parse_step_accepts_only_canonical_names(name):
    step = parse_step(name)
    assert step is None or step_dir_name(step) == name


def test_sha256_file_streams(tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "_CHUNK", 7)
    data = bytes(range(256)) * 10
    (tmp_path / "f").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "f", chunk_bytes=7) == expected
    assert folders.hash_and_sync(tmp_path / "f") == expected  # what COMPLETE records


def test_finalize_writes_complete_and_latest(tmp_path):
    final = save(tmp_path, 100, tokens=4096)
    assert final == tmp_path / "checkpoints" / "step000100"
    assert not temp_dir(tmp_path, 100).exists()
    marker = json.loads((final / COMPLETE).read_text())
    assert marker["step"] == 100 and marker["tokens"] == 4096
    assert marker["files"] == {rel: hashlib.sha256(data).hexdigest() for rel, data in FILES.items()}
    assert marker["created"].endswith("Z")  # olmo.json_records.now_iso: RFC 3339, UTC
    assert read_complete(final) == marker
    assert (tmp_path / "checkpoints" / LATEST).read_text() == "step000100\n"
    assert is_complete(final) and is_complete(final, verify=True)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")] == []
    info = latest_complete(tmp_path)
    assert info is not None and info.step == 100 and info.tokens == 4096 and info.complete
    assert (
        info.size_bytes == sum(len(d) for d in FILES.values()) + (final / COMPLETE).stat().st_size
    )


def test_write_complete_excludes_markers_and_lists_nested_files(tmp_path):
    ckpt = tmp_path / "step000001"
    (ckpt / "a" / "b").mkdir(parents=True)
    (ckpt / "a" / "b" / "c.bin").write_bytes(b"x")
    (ckpt / EVALUATED).write_text("{}")
    content = write_complete(ckpt, step=1, tokens=0)
    assert list(content["files"]) == ["a/b/c.bin"]
    assert write_complete(ckpt, step=1, tokens=0)["files"] == content["files"]  # idempotent
    with pytest.raises(ValueError, match="tokens"):
        write_complete(ckpt, step=1, tokens=-1)


def test_temp_folder_without_complete_is_not_a_checkpoint(tmp_path):
    save(tmp_path, 100)
    temp = prepare_temp_dir(tmp_path, 200)
    (temp / "shard.bin").write_bytes(b"partial")
    assert [c.step for c in list_checkpoints(tmp_path)] == [100]
    assert list_temp_dirs(tmp_path) == [temp]
    assert latest_complete(tmp_path).step == 100
    # Even a COMPLETE marker inside a temp folder does not make it loadable.
    write_complete(temp, step=200, tokens=1)
    assert not is_complete(temp)
    assert latest_complete(tmp_path).step == 100
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        resolve_checkpoint(tmp_path, ".tmp-step000200")


def test_incomplete_final_folder_is_listed_but_not_complete(tmp_path):
    save(tmp_path, 100)
    broken = final_dir(tmp_path, 200)
    broken.mkdir()
    (broken / "shard.bin").write_bytes(b"x")
    infos = list_checkpoints(tmp_path)
    assert [(c.step, c.complete, c.tokens) for c in infos] == [
        (100, True, 10000),
        (200, False, None),
    ]
    assert latest_complete(tmp_path).step == 100


def test_verify_detects_modified_and_missing_files(tmp_path):
    final = save(tmp_path, 100)
    (final / "trainer_state.json").write_bytes(b'{"a": 2}')
    assert is_complete(final)
    assert not is_complete(final, verify=True)
    final2 = save(tmp_path, 200)
    (final2 / "zero" / "mp_rank_00_model_states.pt").unlink()
    assert not is_complete(final2, verify=True)
    final3 = save(tmp_path, 300)
    (final3 / "extra.txt").write_text("unlisted files are allowed")
    mark_evaluated(final3, {"ppl": 1.0})
    assert is_complete(final3, verify=True)


def test_completeness_problem_says_why_in_words(tmp_path):
    final = save(tmp_path, 100)
    assert layout.completeness_problem(final, verify=True) is None
    (final / "trainer_state.json").write_bytes(b'{"a": 2}')
    assert layout.completeness_problem(final) is None  # unverified: the marker is fine
    assert "sha256 of trainer_state.json" in layout.completeness_problem(final, verify=True)
    (final / "trainer_state.json").unlink()
    assert "trainer_state.json (listed in COMPLETE) is missing" in layout.completeness_problem(
        final, verify=True
    )
    (final / COMPLETE).unlink()
    assert "no COMPLETE marker" in layout.completeness_problem(final)
    assert "not a checkpoint folder" in layout.completeness_problem(tmp_path / "notastep")


def test_complete_marker_must_match_folder_step(tmp_path):
    final = save(tmp_path, 100)
    marker = json.loads((final / COMPLETE).read_text())
    (final / COMPLETE).write_text(json.dumps({**marker, "step": 99}))
    assert not is_complete(final)
    (final / COMPLETE).write_text("{not json")
    assert read_complete(final) is None and not is_complete(final)
    (final / COMPLETE).write_text("[1, 2]")
    assert read_complete(final) is None
    with pytest.raises(ValueError, match="invalid COMPLETE marker"):
        resolve_checkpoint(tmp_path, "step000100")


def test_unsafe_paths_in_marker_fail_verification(tmp_path):
    final = save(tmp_path, 100)
    (tmp_path / "outside").write_bytes(b"x")
    marker = json.loads((final / COMPLETE).read_text())
    marker["files"]["../../outside"] = sha256_file(tmp_path / "outside")
    (final / COMPLETE).write_text(json.dumps(marker))
    assert is_complete(final) and not is_complete(final, verify=True)


def test_stale_latest_pointer_is_ignored(tmp_path):
    save(tmp_path, 100)
    save(tmp_path, 200)
    pointer = checkpoints_dir(tmp_path) / LATEST
    pointer.write_text("step000100\n")  # older than the newest
    assert latest_complete(tmp_path).step == 200
    pointer.write_text("step000900\n")  # names a missing folder
    assert latest_complete(tmp_path).step == 200
    assert resolve_checkpoint(tmp_path, "latest") == final_dir(tmp_path, 200)
    (final_dir(tmp_path, 200) / COMPLETE).unlink()  # the newest becomes incomplete
    assert latest_complete(tmp_path).step == 100
    pointer.unlink()
    assert latest_complete(tmp_path).step == 100


def test_latest_is_not_moved_backwards(tmp_path):
    save(tmp_path, 200)
    save(tmp_path, 100)
    assert read_latest_pointer(tmp_path) == "step000200"
    save(tmp_path, 300)
    assert read_latest_pointer(tmp_path) == "step000300"


def test_latest_is_repaired_when_it_names_something_incomplete(tmp_path):
    save(tmp_path, 200)
    (final_dir(tmp_path, 200) / COMPLETE).unlink()
    save(tmp_path, 100)
    assert read_latest_pointer(tmp_path) == "step000100"


def test_step_names_with_more_than_six_digits(tmp_path):
    save(tmp_path, 999_999)
    save(tmp_path, 1_000_000)
    save(tmp_path, 12_345_678)
    assert [c.path.name for c in list_checkpoints(tmp_path)] == [
        "step999999",
        "step1000000",
        "step12345678",
    ]
    assert latest_complete(tmp_path).step == 12_345_678
    assert read_latest_pointer(tmp_path) == "step12345678"


def test_finalize_over_existing_folders(tmp_path):
    stale = final_dir(tmp_path, 100)
    stale.mkdir(parents=True)
    (stale / "old-partial.bin").write_bytes(b"old")
    final = save(tmp_path, 100)
    assert not (final / "old-partial.bin").exists()
    assert is_complete(final, verify=True)
    temp = prepare_temp_dir(tmp_path, 100)
    (temp / "new.bin").write_bytes(b"new")
    with pytest.raises(FileExistsError, match="already exists and is complete"):
        finalize(tmp_path, temp, step=100, tokens=1)
    assert temp.exists() and not (temp / COMPLETE).exists()  # nothing changed
    with pytest.raises(FileNotFoundError):
        finalize(tmp_path, tmp_path / "nope", step=101, tokens=1)


def test_prepare_temp_dir_clears_leftovers(tmp_path):
    temp = prepare_temp_dir(tmp_path, 7)
    (temp / "stale.bin").write_bytes(b"crashed attempt")
    assert prepare_temp_dir(tmp_path, 7) == temp
    assert list(temp.iterdir()) == []


def test_resolve_checkpoint(tmp_path):
    assert resolve_checkpoint(tmp_path, "latest") is None
    final = save(tmp_path, 100)
    assert resolve_checkpoint(tmp_path, "latest") == final
    assert resolve_checkpoint(tmp_path, "step000100") == final
    assert resolve_checkpoint(tmp_path, str(final.resolve())) == final.resolve()
    with pytest.raises(ValueError, match=r"step000200 does not exist"):
        resolve_checkpoint(tmp_path, "step000200")
    incomplete = final_dir(tmp_path, 300)
    incomplete.mkdir()
    with pytest.raises(ValueError, match=r"step000300 has no COMPLETE marker") as e:
        resolve_checkpoint(tmp_path, str(incomplete))
    assert str(incomplete) in str(e.value)
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        resolve_checkpoint(tmp_path, str(tmp_path))
    with pytest.raises(ValueError, match="empty"):
        resolve_checkpoint(tmp_path, "")


def test_evaluated_marker(tmp_path):
    final = save(tmp_path, 100)
    assert not is_evaluated(final)
    mark_evaluated(final, {"tasks": {"piqa": 0.6}})
    assert is_evaluated(final)
    marker = json.loads((final / EVALUATED).read_text())
    assert marker["tasks"] == {"piqa": 0.6} and "created" in marker
    assert list_checkpoints(tmp_path)[0].evaluated
    assert is_complete(final, verify=True)  # EVALUATED is not part of the hashed files
    with pytest.raises(FileNotFoundError):
        mark_evaluated(final_dir(tmp_path, 999), {})


def test_missing_run_dir(tmp_path):
    assert list_checkpoints(tmp_path / "nope") == []
    assert list_temp_dirs(tmp_path / "nope") == []
    assert latest_complete(tmp_path / "nope") is None
    assert read_latest_pointer(tmp_path / "nope") is None


def test_package_is_standard_library_only():
    loaded = top_level_modules_after_import("olmo.checkpoints", "olmo.checkpoints.cli")
    assert not loaded & {"torch", "numpy", "yaml", "pydantic"}
