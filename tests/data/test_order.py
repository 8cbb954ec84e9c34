"""Global order: one permutation per (seed, epoch), positions across epochs, rank slices — the
same contract for both kinds (``feistel``, per index; ``pcg64-shuffle``, materialised)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from olmo.data import GlobalOrder, epoch_permutation, rank_slice
from olmo.data.order import ORDERS, FeistelPermutation, resolve_order


def reference(kind: str, n: int, seed: int, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s permutation, built whole, straight from its definition."""
    if kind == "pcg64-shuffle":
        return epoch_permutation(n, seed, epoch)
    return FeistelPermutation(n, seed, epoch)(np.arange(n))


kinds = pytest.mark.parametrize("kind", ORDERS)


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


@kinds
def test_indices_across_epoch_boundary(kind):
    order = GlobalOrder(10, seed=5, kind=kind)
    perm0, perm1, perm2 = (reference(kind, 10, 5, e) for e in range(3))
    assert np.array_equal(order.indices(0, 10), perm0)
    assert np.array_equal(order.indices(7, 6), np.concatenate([perm0[7:], perm1[:3]]))
    assert np.array_equal(order.indices(5, 25), np.concatenate([perm0[5:], perm1, perm2]))
    assert order.indices(3, 0).shape == (0,)
    assert [order.epoch_of(p) for p in (0, 9, 10, 25)] == [0, 0, 1, 2]
    assert order[13] == perm1[3]
    # Each epoch visits every instance exactly once.
    assert np.array_equal(np.sort(order.indices(10, 10)), np.arange(10))


@kinds
def test_cache_does_not_change_results(kind):
    cached = GlobalOrder(50, seed=1, kind=kind, cache_epochs=1)
    expected = np.concatenate([reference(kind, 50, 1, e) for e in range(4)])
    for start in (120, 10, 160, 49, 0, 99):  # revisit epochs out of order
        assert np.array_equal(cached.indices(start, 31), expected[start : start + 31])


def test_cached_permutations_are_read_only():
    cached = GlobalOrder(50, seed=1, kind="pcg64-shuffle")
    with pytest.raises(ValueError):
        cached.permutation(0)[0] = 1


@settings(max_examples=50, deadline=None)
@given(
    kind=st.sampled_from(ORDERS),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**32),
    start=st.integers(0, 200),
    count=st.integers(0, 120),
)
def test_indices_match_positions(kind, n, seed, start, count):
    order = GlobalOrder(n, seed, kind=kind)
    fresh = GlobalOrder(n, seed, kind=kind)
    expected = [reference(kind, n, seed, p // n)[p % n] for p in range(start, start + count)]
    assert order.indices(start, count).tolist() == expected
    assert [fresh[p] for p in range(start, start + count)] == expected


@kinds
def test_rank_slices_rebuild_the_global_batch(kind):
    order = GlobalOrder(100, seed=11, kind=kind)
    batch_size = 8
    for step in range(30):  # crosses two epoch boundaries
        batch = order.indices(step * batch_size, batch_size)
        for world_size in (1, 2, 4):
            slices = [rank_slice(batch, rank, world_size) for rank in range(world_size)]
            assert all(len(s) == batch_size // world_size for s in slices)
            assert np.array_equal(np.concatenate(slices), batch)
    assert np.array_equal(rank_slice(np.arange(8), 1, 4), [2, 3])


@kinds
def test_resume_on_another_world_size(kind):
    """Train 5 steps on 2 ranks, resume from "instances consumed" on 4: same instances seen."""
    num_instances, batch_size, steps = 64, 8, 12
    seen: list[int] = []
    for step in range(steps):
        world_size = 2 if step < 5 else 4
        consumed = step * batch_size  # what a checkpoint stores, whatever the world size
        batch = GlobalOrder(num_instances, seed=0, kind=kind).indices(consumed, batch_size)
        for rank in range(world_size):
            seen.extend(rank_slice(batch, rank, world_size).tolist())
    expected = GlobalOrder(num_instances, seed=0, kind=kind).indices(0, steps * batch_size)
    assert seen == expected.tolist()
    assert sorted(seen[:num_instances]) == list(range(num_instances))


def test_rank_slice_errors():
    with pytest.raises(ValueError, match="not divisible by world_size 3"):
        rank_slice(np.arange(8), 0, 3)
    with pytest.raises(ValueError, match="rank 4 out of range"):
        rank_slice(np.arange(8), 4, 4)
    with pytest.raises(ValueError, match="1-D"):
        rank_slice(np.zeros((2, 2)), 0, 1)


# --- feistel: a permutation computed per index --------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), seed=st.integers(0, 2**63), epoch=st.integers(0, 10**6))
def test_feistel_is_a_permutation(n, seed, epoch):
    perm = FeistelPermutation(n, seed, epoch)(np.arange(n))
    assert perm.dtype == np.int64
    assert np.array_equal(np.sort(perm), np.arange(n))


@pytest.mark.parametrize("n", [2**31 + 7, 3 * 10**12 // 2048, 2**62])
def test_feistel_at_scale_is_injective_and_in_range(n):
    """Dolma-sized index spaces: a sample of positions maps to distinct in-range instances, and
    consecutive positions are not consecutive instances."""
    positions = np.concatenate([np.arange(50_000), np.arange(n - 50_000, n)])
    ids = FeistelPermutation(n, seed=1234, epoch=2)(positions)
    assert ids.min() >= 0 and ids.max() < n
    assert len(np.unique(ids)) == len(ids)
    assert np.mean(np.abs(np.diff(ids)) == 1) < 0.001


def test_feistel_is_pinned():
    """The exact values: pure uint64 arithmetic and BLAKE2b keys, so no library upgrade may
    change them; if this fails, old runs would resume in a different order."""
    assert GlobalOrder(10, seed=0).indices(0, 20).tolist() == [
        9, 8, 0, 5, 6, 2, 3, 4, 1, 7,  # epoch 0
        3, 1, 2, 5, 0, 8, 7, 6, 9, 4,  # epoch 1
    ]  # fmt: skip
    assert GlobalOrder(10**9, seed=7).indices(5 * 10**9 + 3, 4).tolist() == [
        375538434, 246717403, 710189000, 780555966,
    ]  # fmt: skip


def test_feistel_deterministic_across_processes():
    code = "from olmo.data import GlobalOrder as G; print(G(10**6, 42).indices(3 * 10**6 - 2, 5).tolist())"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert outputs == {f"{GlobalOrder(10**6, 42).indices(3 * 10**6 - 2, 5).tolist()}\n"}


def test_feistel_differs_between_epochs_and_seeds():
    base = reference("feistel", 1000, seed=7, epoch=0)
    assert not np.array_equal(base, reference("feistel", 1000, seed=7, epoch=1))
    assert not np.array_equal(base, reference("feistel", 1000, seed=8, epoch=0))
    assert not np.array_equal(reference("feistel", 1000, 1, 0), reference("feistel", 1000, 0, 1))
    assert not np.array_equal(reference("feistel", 1000, 12, 3), reference("feistel", 1000, 1, 23))


def test_feistel_looks_uniform():
    """Over many seeds, every instance is equally likely at every position (chi-square well
    within what chance allows), and within one large epoch, position and instance are
    uncorrelated."""
    n, seeds = 8, 3000
    counts = np.zeros((n, n))
    for seed in range(seeds):
        counts[np.arange(n), reference("feistel", n, seed, 0)] += 1
    expected = seeds / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = (n - 1) ** 2
    assert chi2 < dof + 5 * (2 * dof) ** 0.5, chi2
    perm = reference("feistel", 200_000, 3, 0)
    assert abs(np.corrcoef(np.arange(len(perm)), perm)[0, 1]) < 0.01
    assert abs(np.corrcoef(perm[:-1], perm[1:])[0, 1]) < 0.01


def test_feistel_needs_no_per_instance_memory():
    """An order over Dolma v1.7's ~1.5 billion 2048-token instances keeps nothing per instance."""
    order = GlobalOrder(3 * 10**12 // 2048, seed=0)
    batch = order.indices(10**12, 2048)
    assert len(np.unique(batch)) == 2048
    assert order._cache and all(isinstance(v, FeistelPermutation) for v in order._cache.values())


def test_feistel_invalid_arguments():
    with pytest.raises(ValueError, match="size"):
        FeistelPermutation(0, 0, 0)
    with pytest.raises(IndexError):
        FeistelPermutation(10, 0, 0)(np.array([10]))
    with pytest.raises(TypeError):
        FeistelPermutation(10, 0, 0)(np.array([1.5]))
    with pytest.raises(ValueError, match="unknown data order"):
        GlobalOrder(10, 0, kind="random")  # type: ignore[arg-type]


# --- which order a run uses ---------------------------------------------------------------------


def test_new_runs_use_feistel_and_resumed_runs_keep_their_order():
    assert resolve_order(None, None, resuming=False) == "feistel"
    assert resolve_order("pcg64-shuffle", None, resuming=False) == "pcg64-shuffle"
    # A checkpoint from before the order was recorded was trained in the pcg64 shuffle.
    assert resolve_order(None, None, resuming=True) == "pcg64-shuffle"
    assert resolve_order(None, "feistel", resuming=True) == "feistel"
    assert resolve_order("feistel", "feistel", resuming=True) == "feistel"
    with pytest.raises(ValueError, match="trained in the 'pcg64-shuffle' order"):
        resolve_order("feistel", None, resuming=True)
    with pytest.raises(ValueError, match="not one of"):
        resolve_order("shuffled", None, resuming=False)
