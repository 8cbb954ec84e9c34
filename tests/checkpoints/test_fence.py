"""The run-directory fence: which attempt of which OLMoJob owns ``RUN_DIR/ATTEMPT``, and who
must stop writing (``olmo.checkpoints.fence``). Pure file work, no torch."""

from __future__ import annotations

import json

import pytest

from olmo.checkpoints import fence
from olmo.checkpoints.fence import Claim, FencedError
from olmo.checkpoints.paths import ATTEMPT_MARKER

A1, A2, A3 = Claim("uid-a", 1), Claim("uid-a", 2), Claim("uid-a", 3)


def test_a_claim_writes_the_marker_atomically(tmp_path):
    fence.claim(tmp_path, A2)
    assert fence.read_marker(tmp_path) == A2
    marker = json.loads((tmp_path / ATTEMPT_MARKER).read_text())
    assert marker["job"] == "uid-a" and marker["attempt"] == 2 and marker["host"]
    assert [p.name for p in tmp_path.iterdir()] == [ATTEMPT_MARKER]  # no temporary file left


def test_a_newer_attempt_overrides_an_older_marker(tmp_path):
    fence.claim(tmp_path, A1)
    fence.claim(tmp_path, A2)
    assert fence.read_marker(tmp_path) == A2
    fence.check(tmp_path, A2)  # the owner may write


def test_an_older_attempt_refuses_to_start_and_leaves_the_marker(tmp_path):
    fence.claim(tmp_path, A3)
    with pytest.raises(FencedError, match="names attempt 3: a newer attempt of this job owns"):
        fence.claim(tmp_path, A2)
    assert fence.read_marker(tmp_path) == A3


def test_an_old_attempt_is_fenced_once_a_newer_one_claimed(tmp_path):
    fence.claim(tmp_path, A1)
    fence.check(tmp_path, A1)
    fence.claim(tmp_path, A2)
    with pytest.raises(FencedError, match="attempt 1 stops without writing"):
        fence.check(tmp_path, A1)
    assert fence.read_marker(tmp_path) == A2


def test_a_lost_claim_race_heals_at_the_newer_attempts_next_check(tmp_path):
    # Both read an empty directory; the older attempt's write landed last.
    fence.claim(tmp_path, A2)
    (tmp_path / ATTEMPT_MARKER).unlink()
    fence.claim(tmp_path, A1)
    fence.check(tmp_path, A2)  # claims again instead of stopping
    assert fence.read_marker(tmp_path) == A2
    with pytest.raises(FencedError):
        fence.check(tmp_path, A1)


def test_a_re_created_job_takes_the_directory_over(tmp_path):
    old_job = Claim("uid-old", 7)
    fence.claim(tmp_path, old_job)
    fence.claim(tmp_path, A1)  # attempt numbers restart with the new OLMoJob
    assert fence.read_marker(tmp_path) == A1
    with pytest.raises(FencedError, match="another OLMoJob now owns this run directory"):
        fence.check(tmp_path, old_job)


def test_an_unreadable_marker_is_claimed_again(tmp_path):
    (tmp_path / ATTEMPT_MARKER).write_text("{not json")
    fence.check(tmp_path, A1)
    assert fence.read_marker(tmp_path) == A1


def test_claim_from_env():
    assert fence.claim_from_env({}) is None  # not started by the operator: no fence
    env = {"OLMOJOB_ATTEMPT": "4", "OLMOJOB_NAME": "run", "OLMOJOB_NAMESPACE": "ns"}
    assert fence.claim_from_env(env) == Claim("ns/run", 4)
    assert fence.claim_from_env({**env, "OLMOJOB_UID": "u-1"}) == Claim("u-1", 4)
    with pytest.raises(ValueError, match="OLMOJOB_ATTEMPT must be a positive integer"):
        fence.claim_from_env({"OLMOJOB_ATTEMPT": "x"})


def test_the_fence_reads_the_variables_the_operator_sets():
    from olmo_operator import contract as c

    assert (fence.ENV_ATTEMPT, fence.ENV_UID) == (c.ENV_ATTEMPT, c.ENV_JOB_UID)
    assert (fence.ENV_NAME, fence.ENV_NAMESPACE) == (c.ENV_JOB_NAME, c.ENV_JOB_NAMESPACE)
