"""Global order: one permutation per (seed, epoch), positions across epochs, rank slices."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from olmo.data import GlobalOrder, epoch_permutation, rank_slice


@pytest.mark.parametrize("n", [0, 1, 2, 17, 1000])
def test_epoch_permutation_is_a_permutation(n):
    perm = epoch_permutation(n, seed=3, epoch=0)
    assert perm.dtype == np.int64 and perm.shape == (n,)
    assert np.array_equal(np.sort(perm), np.arange(n))


def test_epoch_permutation_is_pinned():
    """The exact values: a numpy upgrade that changed them would silently change the order."""
    assert epoch_permutation(10, seed=0, epoch=0).tolist() == [4, 6, 2, 7, 3, 5, 9, 0, 8, 1]
    assert epoch_permutation(10, seed=0, epoch=1).tolist() == [9, 1, 3, 8, 7, 6, 0, 4, 2, 5]
    assert epoch_permutation(10, seed=1, epoch=0).tolist() == [8, 4, 7, 0, 1, 2, 5, 9, 6, 3]


def test_deterministic_across_processes():
    code = (
        "from olmo.data import epoch_permutation as p; "
        "print(p(1000, 42, 3).sum(), p(1000, 42, 3)[:5].tolist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    perm = epoch_permutation(1000, 42, 3)
    assert outputs == {f"{perm.sum()} {perm[:5].tolist()}\n"}


def test_differs_between_epochs_and_seeds():
    base = epoch_permutation(1000, seed=7, epoch=0)
    assert np.array_equal(base, epoch_permutation(1000, seed=7, epoch=0))
    assert not np.array_equal(base, epoch_permutation(1000, seed=7, epoch=1))
    assert not np.array_equal(base, epoch_permutation(1000, seed=8, epoch=0))
    # [seed, epoch] is not a sum: (1, 0) and (0, 1) differ.
    assert not np.array_equal(epoch_permutation(1000, 1, 0), epoch_permutation(1000, 0, 1))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="seed"):
        epoch_permutation(10, seed=-1, epoch=0)
    with pytest.raises(ValueError, match="num_instances"):
        GlobalOrder(0, seed=0)
    order = GlobalOrder(10, seed=0)
    with pytest.raises(ValueError, match="start"):
        order.indices(-1, 2)
    with pytest.raises(TypeError):
        order.indices(1.5, 2)


def test_indices_across_epoch_boundary():
    order = GlobalOrder(10, seed=5)
    perm0, perm1, perm2 = (epoch_permutation(10, 5, e) for e in range(3))
    assert np.array_equal(order.indices(0, 10), perm0)
    assert np.array_equal(order.indices(7, 6), np.concatenate([perm0[7:], perm1[:3]]))
    assert np.array_equal(order.indices(5, 25), np.concatenate([perm0[5:], perm1, perm2]))
    assert order.indices(3, 0).shape == (0,)
    assert [order.epoch_of(p) for p in (0, 9, 10, 25)] == [0, 0, 1, 2]
    assert order[13] == perm1[3]
    # Each epoch visits every instance exactly once.
    assert np.array_equal(np.sort(order.indices(10, 10)), np.arange(10))


def test_cache_does_not_change_results():
    cached = GlobalOrder(50, seed=1, cache_epochs=1)
    reference = np.concatenate([epoch_permutation(50, 1, e) for e in range(4)])
    for start in (120, 10, 160, 49, 0, 99):  # revisit epochs out of order
        assert np.array_equal(cached.indices(start, 31), reference[start : start + 31])
    with pytest.raises(ValueError):
        cached.permutation(0)[0] = 1  # cached permutations are read-only


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 2**32),
    start=st.integers(0, 200),
    count=st.integers(0, 120),
)
def test_indices_match_positions(n, seed, start, count):
    order = GlobalOrder(n, seed)
    fresh = GlobalOrder(n, seed)
    expected = [epoch_permutation(n, seed, p // n)[p % n] for p in range(start, start + count)]
    assert order.indices(start, count).tolist() == expected
    assert [fresh[p] for p in range(start, start + count)] == expected


def test_rank_slices_rebuild_the_global_batch():
    order = GlobalOrder(100, seed=11)
    batch_size = 8
    for step in range(30):  # crosses two epoch boundaries
        batch = order.indices(step * batch_size, batch_size)
        for world_size in (1, 2, 4):
            slices = [rank_slice(batch, rank, world_size) for rank in range(world_size)]
            assert all(len(s) == batch_size // world_size for s in slices)
            assert np.array_equal(np.concatenate(slices), batch)
    assert np.array_equal(rank_slice(np.arange(8), 1, 4), [2, 3])


def test_resume_on_another_world_size():
    """Train 5 steps on 2 ranks, resume from "instances consumed" on 4: same instances seen."""
    num_instances, batch_size, steps = 64, 8, 12
    seen: list[int] = []
    for step in range(steps):
        world_size = 2 if step < 5 else 4
        consumed = step * batch_size  # what a checkpoint stores, whatever the world size
        batch = GlobalOrder(num_instances, seed=0).indices(consumed, batch_size)
        for rank in range(world_size):
            seen.extend(rank_slice(batch, rank, world_size).tolist())
    assert seen == GlobalOrder(num_instances, seed=0).indices(0, steps * batch_size).tolist()
    assert sorted(seen[:num_instances]) == list(range(num_instances))


def test_rank_slice_errors():
    with pytest.raises(ValueError, match="not divisible by world_size 3"):
        rank_slice(np.arange(8), 0, 3)
    with pytest.raises(ValueError, match="rank 4 out of range"):
        rank_slice(np.arange(8), 4, 4)
    with pytest.raises(ValueError, match="1-D"):
        rank_slice(np.zeros((2, 2)), 0, 1)
