"""The retention policy: property tests of ``plan_deletions`` and ``rotate`` on real folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from olmo.checkpoints.layout import (
    COMPLETE,
    CheckpointInfo,
    final_dir,
    finalize,
    list_checkpoints,
    mark_evaluated,
    prepare_temp_dir,
    read_latest_pointer,
    step_dir_name,
    temp_dir,
    write_latest_pointer,
)
from olmo.checkpoints.retention import RetentionPolicy, plan, plan_deletions, rotate

NOW = 1_000_000.0


def info(step, complete=True, evaluated=False, mtime=NOW - 10) -> CheckpointInfo:
    return CheckpointInfo(
        step=step,
        path=Path("/nonexistent/run/checkpoints") / step_dir_name(step),
        complete=complete,
        evaluated=evaluated,
        tokens=step if complete else None,
        size_bytes=0,
        mtime=mtime,
    )


checkpoint_sets = st.dictionaries(
    st.integers(min_value=0, max_value=5000),
    st.tuples(st.booleans(), st.booleans(), st.floats(min_value=0, max_value=2 * NOW)),
    max_size=25,
).map(lambda d: [info(s, c, e, m) for s, (c, e, m) in d.items()])

policies = st.builds(
    RetentionPolicy,
    keep_last=st.none() | st.integers(min_value=1, max_value=8),
    keep_every=st.none() | st.integers(min_value=1, max_value=600),
    require_evaluated=st.booleans(),
    temp_grace_seconds=st.floats(min_value=0, max_value=NOW),
)


@given(checkpoint_sets, policies, st.floats(min_value=0, max_value=3 * NOW))
def test_plan_deletions_invariants(checkpoints, policy, now):
    shuffled = list(reversed(checkpoints))
    deleted = plan_deletions(shuffled, policy, now=now)
    ids = {id(c) for c in deleted}
    assert len(ids) == len(deleted) and all(any(c is d for c in checkpoints) for d in deleted)
    assert [c.step for c in deleted] == sorted(c.step for c in deleted)

    complete = sorted((c for c in checkpoints if c.complete), key=lambda c: c.step)
    keep_n = len(complete) if policy.keep_last is None else policy.keep_last
    newest_n = {id(c) for c in complete[-keep_n:]}
    for c in checkpoints:
        if c.complete:
            allowed = (
                id(c) not in newest_n
                and not (policy.keep_every and c.step % policy.keep_every == 0)
                and not (policy.require_evaluated and not c.evaluated)
            )
            # Deletes exactly what the policy does not protect.
            assert (id(c) in ids) == allowed, (c, policy)
        else:
            assert (id(c) in ids) == (c.mtime + policy.temp_grace_seconds < now), (c, policy)
    kept_complete = [c for c in complete if id(c) not in ids]
    if complete:
        assert complete[-1] in kept_complete  # the newest complete is never deleted
    assert len(kept_complete) >= min(keep_n, len(complete))


@given(checkpoint_sets, policies)
def test_plan_is_total_and_consistent(checkpoints, policy):
    decisions = plan(checkpoints, policy, now=NOW)
    assert sorted(id(d.info) for d in decisions) == sorted(id(c) for c in checkpoints)
    assert all(d.reason for d in decisions)


def test_examples():
    ckpts = [info(s) for s in (100, 200, 300, 400, 500)]
    steps = lambda policy: [c.step for c in plan_deletions(ckpts, policy, now=NOW)]  # noqa: E731
    assert steps(RetentionPolicy(keep_last=2)) == [100, 200, 300]
    assert steps(RetentionPolicy(keep_last=2, keep_every=200)) == [100, 300]
    assert steps(RetentionPolicy(keep_last=10)) == []
    assert steps(RetentionPolicy()) == []
    assert steps(RetentionPolicy(keep_last=1, require_evaluated=True)) == []
    ckpts[0] = info(100, evaluated=True)
    assert steps(RetentionPolicy(keep_last=1, require_evaluated=True)) == [100]
    # An incomplete folder newer than everything never counts as "newest" and goes after grace.
    ckpts.append(info(600, complete=False, mtime=NOW - 7200))
    assert steps(RetentionPolicy(keep_last=1)) == [100, 200, 300, 400, 600]
    ckpts[-1] = info(600, complete=False, mtime=NOW - 60)
    assert steps(RetentionPolicy(keep_last=1)) == [100, 200, 300, 400]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keep_last": 0}, "keep_last must be an integer >= 1"),
        ({"keep_last": True}, "keep_last"),
        ({"keep_every": 0}, "keep_every must be an integer >= 1"),
        ({"keep_every": 2.5}, "keep_every"),
        ({"temp_grace_seconds": -1}, "temp_grace_seconds must be a finite number >= 0"),
        ({"temp_grace_seconds": float("inf")}, "temp_grace_seconds"),
        ({"require_evaluated": "yes"}, "require_evaluated"),
    ],
)
def test_policy_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetentionPolicy(**kwargs)


def save(run_dir: Path, step: int) -> Path:
    temp = prepare_temp_dir(run_dir, step)
    (temp / "state.bin").write_bytes(b"s" * step)
    return finalize(run_dir, temp, step=step, tokens=step)


def age(path: Path, seconds: float) -> None:
    """Make a folder and everything in it look last modified ``seconds`` ago."""
    t = NOW - seconds
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (t, t))
    os.utime(path, (t, t))


@pytest.fixture
def run(tmp_path) -> Path:
    for step in (100, 200, 300, 400):
        save(tmp_path, step)
    mark_evaluated(final_dir(tmp_path, 100), {})
    old_temp = prepare_temp_dir(tmp_path, 900)
    (old_temp / "partial.bin").write_bytes(b"p")
    age(old_temp, 7200)
    fresh_temp = prepare_temp_dir(tmp_path, 500)
    (fresh_temp / "partial.bin").write_bytes(b"p")
    age(fresh_temp, 10)
    old_broken = final_dir(tmp_path, 50)
    old_broken.mkdir()
    age(old_broken, 7200)
    return tmp_path


def test_rotate_dry_run_removes_nothing(run):
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    result = rotate(run, RetentionPolicy(keep_last=2), dry_run=True, now=NOW)
    assert [p.name for p in result.deleted] == ["step000050", "step000100", "step000200"]
    assert [p.name for p in result.kept] == ["step000300", "step000400"]
    assert result.removed_temp == [temp_dir(run, 900)]
    assert result.kept_temp == [temp_dir(run, 500)]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_rotate_deletes(run):
    policy = RetentionPolicy(keep_last=1, keep_every=200, require_evaluated=True)
    # 100 is evaluated, 300 is not (kept), 200 is a multiple of keep_every, 400 is the newest.
    result = rotate(run, policy, now=NOW)
    assert [p.name for p in result.deleted] == ["step000050", "step000100"]
    assert [p.name for p in result.kept] == ["step000200", "step000300", "step000400"]
    assert result.removed_temp == [temp_dir(run, 900)]
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [".tmp-step000500", "latest", "step000200", "step000300", "step000400"]
    assert read_latest_pointer(run) == "step000400"
    assert "newest complete" in result.reasons[final_dir(run, 400)]
    assert rotate(run, policy, now=NOW).deleted == []  # idempotent


def test_rotate_repairs_latest(tmp_path):
    for step in (100, 200, 300):
        save(tmp_path, step)
    write_latest_pointer(tmp_path, "step000100")  # stale pointer to a folder rotation deletes
    rotate(tmp_path, RetentionPolicy(keep_last=2), now=NOW)
    assert read_latest_pointer(tmp_path) == "step000300"
    (final_dir(tmp_path, 300) / COMPLETE).unlink()  # now latest names an incomplete folder
    rotate(tmp_path, RetentionPolicy(keep_last=2), now=NOW)
    assert read_latest_pointer(tmp_path) == "step000200"
    assert [c.step for c in list_checkpoints(tmp_path)] == [200, 300]  # 300: within grace
    (final_dir(tmp_path, 200) / COMPLETE).unlink()  # no complete checkpoint is left
    rotate(tmp_path, RetentionPolicy(keep_last=2), now=NOW)
    assert read_latest_pointer(tmp_path) is None


def test_rotate_keeps_folder_completed_after_the_scan(tmp_path, monkeypatch):
    from olmo.checkpoints import retention

    save(tmp_path, 100)
    broken = final_dir(tmp_path, 200)
    broken.mkdir()
    age(broken, 7200)
    real = retention.list_checkpoints

    def scan_then_finalize(run_dir):
        infos = real(run_dir)
        save(tmp_path, 200)  # the trainer finalizes step 200 right after the scan
        return infos

    monkeypatch.setattr(retention, "list_checkpoints", scan_then_finalize)
    result = rotate(tmp_path, RetentionPolicy(keep_last=1), now=NOW)
    assert final_dir(tmp_path, 200) in result.kept
    assert (final_dir(tmp_path, 200) / COMPLETE).exists()


def test_rotate_missing_run_dir(tmp_path):
    result = rotate(tmp_path / "nope", RetentionPolicy(keep_last=1), now=NOW)
    assert result.deleted == result.kept == result.removed_temp == []
