"""Saving a step that exists already replaces it atomically (old moved aside, new moved in,
old deleted), a crash at any point leaves a loadable COMPLETE checkpoint of that step once
``recover_interrupted_saves`` ran, and the cheap size check a resume runs catches truncation."""

from __future__ import annotations

import json
import os

import pytest

from olmo.checkpoints import layout
from olmo.checkpoints.paths import COMPLETE


def save(run, step: int, content: bytes, *, replace: bool = False):
    temp = layout.prepare_temp_dir(run, step)
    (temp / "shard.pt").write_bytes(content)
    return layout.finalize(run, temp, step=step, tokens=step * 10, replace=replace)


def test_an_existing_complete_step_is_kept_unless_replace_is_asked(tmp_path):
    save(tmp_path, 3, b"old")
    with pytest.raises(FileExistsError):
        save(tmp_path, 3, b"new")
    final = save(tmp_path, 3, b"new", replace=True)
    assert (final / "shard.pt").read_bytes() == b"new"
    assert layout.is_complete(final, verify=True)
    assert layout.list_temp_dirs(tmp_path) == []  # neither the new temp nor the old copy left
    assert layout.read_latest_pointer(tmp_path) == final.name


class Crash(Exception):
    pass


@pytest.mark.parametrize(
    ("point", "survivor"),
    [
        ("move_old_aside", b"old"),  # the first rename fails: nothing moved
        ("move_new_in", b"new"),  # between the renames: no stepN until recovery
        ("delete_old", b"new"),  # both renames done, the old copy not yet deleted
    ],
)
def test_a_crash_at_each_point_of_a_replace_leaves_a_loadable_checkpoint(
    tmp_path, monkeypatch, point, survivor
):
    save(tmp_path, 2, b"older step")
    save(tmp_path, 4, b"old")
    renames = []
    real_rename, real_remove = os.rename, layout.remove_tree

    def rename(src, dst):
        renames.append(dst)
        if (point, len(renames)) in (("move_old_aside", 1), ("move_new_in", 2)):
            raise Crash(point)
        real_rename(src, dst)

    def remove_tree(path):
        if point == "delete_old" and str(path).endswith("replaced-step000004"):
            raise Crash(point)
        real_remove(path)

    monkeypatch.setattr(layout.os, "rename", rename)
    monkeypatch.setattr(layout, "remove_tree", remove_tree)
    with pytest.raises(Crash):
        save(tmp_path, 4, b"new", replace=True)
    monkeypatch.undo()

    layout.recover_interrupted_saves(tmp_path)  # what the trainer does before it resumes
    final = layout.final_dir(tmp_path, 4)
    assert layout.complete_checkpoints(tmp_path)[0] == final
    assert layout.quick_check_problem(final) is None and layout.is_complete(final, verify=True)
    assert (final / "shard.pt").read_bytes() == survivor
    assert not layout.replaced_dir(tmp_path, 4).exists()
    assert layout.read_latest_pointer(tmp_path) == final.name


def test_recovery_moves_a_completed_but_unrenamed_save_into_place(tmp_path):
    save(tmp_path, 2, b"two")
    temp = layout.prepare_temp_dir(tmp_path, 5)
    (temp / "shard.pt").write_bytes(b"five")
    layout.write_complete(temp, step=5, tokens=50)  # crashed before the rename
    half = layout.prepare_temp_dir(tmp_path, 6)  # crashed while writing: stays for rotation
    assert layout.recover_interrupted_saves(tmp_path) == [layout.final_dir(tmp_path, 5)]
    assert [p.name for p in layout.complete_checkpoints(tmp_path)] == ["step000005", "step000002"]
    assert half.exists()


def test_the_quick_check_catches_a_truncated_or_missing_file(tmp_path):
    final = save(tmp_path, 1, b"0123456789")
    assert json.loads((final / COMPLETE).read_text())["sizes"] == {"shard.pt": 10}
    assert layout.quick_check_problem(final) is None
    (final / "shard.pt").write_bytes(b"01234")
    problem = layout.quick_check_problem(final)
    assert "shard.pt has 5 bytes, COMPLETE recorded 10" in problem
    assert layout.is_complete(final)  # the marker alone does not show it
    (final / "shard.pt").unlink()
    assert "shard.pt (listed in COMPLETE) is missing" in layout.quick_check_problem(final)


def test_the_quick_check_accepts_markers_written_before_sizes_existed(tmp_path):
    final = save(tmp_path, 1, b"0123456789")
    marker = json.loads((final / COMPLETE).read_text())
    del marker["sizes"]
    (final / COMPLETE).write_text(json.dumps(marker))
    assert layout.quick_check_problem(final) is None
    (final / "shard.pt").unlink()
    assert "missing" in layout.quick_check_problem(final)
