"""Token shards on an object store: opened from a real S3 API server (and ``memory://``, the same
code as ``gs://``), read through the node's bounded, sha256-checked cache, shared by processes,
prefetched ahead of the data order; or, in range mode, read by ranged GETs into a bounded
memory buffer, never downloaded whole."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from olmo.data import GlobalOrder, InstanceDataset, ShardWriter, open_shards, write_manifest
from olmo.data.order import rank_slice
from olmo.data.shards import (
    CacheFullError,
    RangeShardList,
    RemoteShardList,
    ShardCache,
    ShardFormatError,
)
from olmo.data.shards.cache import ENV_CACHE_DIR, default_cache_dir
from olmo.storage import Location, location
from olmo.train.config import DataConfig

EOS = 7
SEQ_LEN = 16


def _dataset(folder: Path, num_docs: int = 40, max_tokens: int = 100) -> np.ndarray:
    """A small dataset (uint16, several shards); returns all its tokens concatenated."""
    rng = np.random.default_rng(0)
    docs = [rng.integers(8, 1000, size=int(rng.integers(5, 30))) for _ in range(num_docs)]
    with ShardWriter(
        folder, dtype="uint16", eos_token_id=EOS, max_tokens_per_shard=max_tokens
    ) as writer:
        for i, doc in enumerate(docs):
            writer.add_document(doc, doc_id=f"d{i}", source="s", loc=str(i))
    write_manifest(
        folder,
        shards=writer.shards,
        dtype="uint16",
        eos_token_id=EOS,
        tokenizer={"name": "t"},
        sources={"s": {}},
    )
    return np.concatenate([np.append(d, EOS) for d in docs]).astype(np.uint16)


def _upload(folder: Path, uri: str) -> None:
    root = location(uri)
    for path in sorted(folder.iterdir()):
        (root / path.name).upload(path)


@pytest.fixture
def remote(tmp_path, s3_bucket) -> tuple[str, np.ndarray]:
    tokens = _dataset(tmp_path / "src")
    uri = f"{s3_bucket}/tokens"
    _upload(tmp_path / "src", uri)
    return uri, tokens


def _cached(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.glob("*.npy"))


def test_open_from_s3_reads_every_token_and_caches_by_sha256(tmp_path, remote):
    uri, tokens = remote
    cache = tmp_path / "cache"
    shards = open_shards([uri], cache_dir=cache)
    manifest = shards.manifests[0]
    assert shards.total_tokens == len(tokens) and len(shards) > 3
    assert (
        shards.manifest_sha256[0]
        == __import__("hashlib").sha256(location(f"{uri}/manifest.json").read_bytes()).hexdigest()
    )
    assert _cached(cache) == []  # opening reads the manifest only
    shards.check_files()  # listed on the store, nothing downloaded
    assert _cached(cache) == []
    np.testing.assert_array_equal(shards.read(0, shards.total_tokens), tokens)
    assert _cached(cache) == sorted(f"{s.sha256}.npy" for s in manifest.shards)
    # The document index travels the same way when asked for.
    doc = shards[1].document(0)
    assert doc.id.startswith("d") and (cache / f"{manifest.shards[1].sha256}.csv.gz").is_file()
    # A second dataset object (another rank, a restart) reads the same files: no download.
    again = open_shards([uri], cache_dir=cache)
    dataset = InstanceDataset(again, SEQ_LEN)
    np.testing.assert_array_equal(dataset[3], tokens[3 * SEQ_LEN : 4 * SEQ_LEN])
    assert again.shards.cache.downloads == 0
    assert dataset.documents(0)[0].id == "d0"


def test_memory_store_goes_through_the_same_code(tmp_path):
    tokens = _dataset(tmp_path / "src")
    uri = f"memory://olmo-remote-shards-{os.getpid()}/tokens"
    _upload(tmp_path / "src", uri)
    try:
        shards = open_shards(uri, cache_dir=tmp_path / "cache")
        assert type(shards.shards).__name__ == "RemoteShardList"
        np.testing.assert_array_equal(shards.read(0, shards.total_tokens), tokens)
    finally:
        location(uri).remove()


def test_cache_dir_defaults_to_the_env_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    assert ShardCache().root == tmp_path / "env-cache"
    monkeypatch.delenv(ENV_CACHE_DIR)
    assert default_cache_dir() == Path.home() / ".cache" / "olmo" / "shards"


def test_cache_is_bounded_and_evicts_least_recently_used_unheld_shards(tmp_path, remote):
    uri, tokens = remote
    shards = open_shards([uri], cache_dir=tmp_path / "cache")
    sizes = [s.num_tokens * 2 for s in shards.manifests[0].shards]
    bound = sizes[0] + sizes[1] + sizes[2]  # three shards at most
    shards = open_shards(
        [uri], cache_dir=tmp_path / "cache", cache_max_bytes=bound, remote_read="cache"
    )
    shards.shards.max_open = 1  # hold one shard open at a time
    np.testing.assert_array_equal(shards.read(0, shards.total_tokens), tokens)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "cache").glob("*.npy"))
    assert on_disk <= bound
    # The most recent shards stayed, the first ones were evicted.
    last = shards.manifests[0].shards[-1].sha256
    first = shards.manifests[0].shards[0].sha256
    assert f"{last}.npy" in _cached(tmp_path / "cache")
    assert f"{first}.npy" not in _cached(tmp_path / "cache")
    # Shards held open are never evicted: with every slot held, a new shard does not fit.
    held = open_shards(
        [uri], cache_dir=tmp_path / "small", cache_max_bytes=max(sizes) + 1, remote_read="cache"
    )
    held[0].array  # noqa: B018 (held open: the shared lock stays)
    with pytest.raises(CacheFullError, match="held by shards in use"):
        held[1].array  # noqa: B018
    # A shard bigger than the whole cache is an error that says so.
    tiny = open_shards([uri], cache_dir=tmp_path / "tiny", cache_max_bytes=10, remote_read="cache")
    with pytest.raises(CacheFullError, match="bigger than the whole shard cache"):
        tiny.read(0, 1)


def test_sha256_mismatch_is_an_error_and_leaves_no_file(tmp_path, remote):
    uri, _ = remote
    manifest = json.loads(location(f"{uri}/manifest.json").read_text())
    shard = manifest["shards"][2]
    good = shard["sha256"]
    shard["sha256"] = "0" * 64
    location(f"{uri}/manifest.json").write_text(json.dumps(manifest))
    shards = open_shards([uri], cache_dir=tmp_path / "cache")
    with pytest.raises(ShardFormatError) as err:
        shards[2].array  # noqa: B018
    assert shard["path"] in str(err.value) and good in str(err.value) and "0" * 64 in str(err.value)
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def _read_in_child(uri: str, cache: str, env: dict[str, str], out) -> None:  # type: ignore[no-untyped-def]
    os.environ.update(env)
    shards = open_shards([uri], cache_dir=cache)
    total = shards.read(0, shards.total_tokens)
    out.put((int(total.sum()), shards.shards.cache.downloads))


def test_two_processes_share_one_download(tmp_path, remote):
    uri, tokens = remote
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    procs = [
        ctx.Process(target=_read_in_child, args=(uri, str(tmp_path / "cache"), env, queue))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    num_shards = len(open_shards([uri], cache_dir=tmp_path / "cache"))
    assert [r[0] for r in results] == [int(tokens.sum())] * 2
    assert sum(r[1] for r in results) == num_shards  # each shard downloaded once on the node


def test_prefetch_ahead_of_the_order_makes_later_reads_local(tmp_path, remote):
    """Drives the hook the way the trainer does: each step, the instances of the next steps."""
    uri, tokens = remote
    dataset = InstanceDataset(open_shards([uri], cache_dir=tmp_path / "cache"), SEQ_LEN)
    shard_list = dataset.shards.shards
    order = GlobalOrder(len(dataset), seed=3)
    batch, ahead_steps, rank, world = 4, 2, 1, 2
    consumed = checked = 0
    for _ in range(3):
        # What the trainer adds after taking a step's indices: its share of the next steps.
        upcoming = order.indices(consumed + batch, batch * ahead_steps)
        mine = np.concatenate(
            [rank_slice(upcoming[s * batch : (s + 1) * batch], rank, world) for s in range(2)]
        )
        started = dataset.prefetch(mine)
        assert len(started) <= shard_list.prefetch_shards
        shard_list.wait_prefetched(timeout=30)
        consumed += batch
        before = shard_list.cache.downloads
        step_indices = rank_slice(order.indices(consumed, batch), rank, world)
        wanted = dataset.shards_of(step_indices)
        if len(wanted) <= shard_list.prefetch_shards:
            got = dataset.get_batch(step_indices)
            assert shard_list.cache.downloads == before  # every shard was local already
            checked += 1
            for row, i in zip(got, step_indices, strict=True):
                np.testing.assert_array_equal(row, tokens[i * SEQ_LEN : (i + 1) * SEQ_LEN])
    assert checked  # at least one step's shards fit the prefetch bound
    # A whole upcoming window within the bound: after prefetch, no read downloads anything.
    window = order.indices(consumed, 3)
    assert dataset.prefetch(window)  # something new to fetch
    shard_list.wait_prefetched(timeout=30)
    before = shard_list.cache.downloads
    dataset.get_batch(window)
    assert shard_list.cache.downloads == before
    dataset.shards.close()


def test_prefetch_is_bounded_and_a_no_op_for_local_shards(tmp_path, remote):
    uri, _ = remote
    dataset = InstanceDataset(
        open_shards([uri], cache_dir=tmp_path / "cache", prefetch_shards=2), SEQ_LEN
    )
    everything = np.arange(len(dataset))
    first = dataset.prefetch(everything)
    assert first == dataset.shards_of(everything)[:2]
    assert dataset.prefetch(everything) == []  # still two in flight, or now cached
    dataset.shards.shards.wait_prefetched(timeout=30)
    assert len(_cached(tmp_path / "cache")) == 2
    local_folder = tmp_path / "local"
    _dataset(local_folder)
    local = InstanceDataset(open_shards([local_folder]), SEQ_LEN)
    assert local.prefetch(np.arange(len(local))) == []


# ---- range mode ----------------------------------------------------------------------------


@pytest.fixture
def no_downloads(monkeypatch):
    """Range mode must never download a shard whole: any download or cache use fails."""

    def fail(*args, **kwargs):
        raise AssertionError("range mode downloaded a whole object")

    monkeypatch.setattr(Location, "download", fail)
    monkeypatch.setattr(ShardCache, "lease", fail)


@pytest.fixture
def gets(monkeypatch) -> list[tuple[str, int, int]]:
    """Every ranged GET made, as (object, first byte, end byte)."""
    calls: list[tuple[str, int, int]] = []
    real = Location.read_range

    def counted(self, start, end):
        calls.append((self.name, start, end))
        return real(self, start, end)

    monkeypatch.setattr(Location, "read_range", counted)
    return calls


def _range_dataset(uri: str, tmp_path: Path, **kwargs) -> InstanceDataset:
    shards = open_shards([uri], cache_dir=tmp_path / "cache", remote_read="range", **kwargs)
    assert isinstance(shards.shards, RangeShardList)
    return InstanceDataset(shards, SEQ_LEN)


def test_range_mode_reads_exactly_the_local_tokens_and_downloads_nothing(
    tmp_path, remote, no_downloads
):
    uri, tokens = remote
    dataset = _range_dataset(uri, tmp_path)
    local = InstanceDataset(open_shards([tmp_path / "src"]), SEQ_LEN)
    dataset.shards.check_files()  # sizes against the store's listing
    last = len(dataset) - 1
    spanning = [i for i in range(len(dataset)) if len(dataset.shards_of([i])) == 2]
    assert spanning and len(dataset.shards_of([last])) == 1
    rng = np.random.default_rng(5)
    picks = [0, last, *spanning[:4], *rng.integers(0, len(dataset), 10).tolist()]
    np.testing.assert_array_equal(dataset.get_batch(picks), local.get_batch(picks))
    for i in (last, spanning[0]):
        np.testing.assert_array_equal(dataset[i], tokens[i * SEQ_LEN : (i + 1) * SEQ_LEN])
    # Without prefetching every read is a synchronous ranged GET: same tokens.
    dataset.shards.shards.prefetch_requests = 0
    np.testing.assert_array_equal(dataset.get_batch(picks[::-1]), local.get_batch(picks[::-1]))
    # The whole concatenation, a single token, and the document index (read into memory).
    shards = dataset.shards
    np.testing.assert_array_equal(shards.read(0, shards.total_tokens), tokens)
    assert shards[1].array[3] == tokens[shards.offsets[1] + 3]
    assert not shards[1].has_npy_header() and shards[1].has_index
    assert dataset.documents(spanning[0]) == local.documents(spanning[0])
    assert not (tmp_path / "cache").exists()  # nothing written to disk
    shards.close()


def test_range_prefetch_merges_requests_and_later_reads_hit_the_buffer(tmp_path, remote, gets):
    uri, tokens = remote
    dataset = _range_dataset(uri, tmp_path)
    shard_list = dataset.shards.shards
    order = GlobalOrder(len(dataset), seed=3)
    batch, rank, world = 8, 1, 2
    # What the trainer asks for at a step: this rank's instances of the next two steps.
    upcoming = order.indices(batch, batch * 2)
    mine = np.concatenate([rank_slice(upcoming[s : s + batch], rank, world) for s in (0, batch)])
    touched = dataset.shards_of(mine)
    assert dataset.prefetch(mine)
    shard_list.wait_prefetched(timeout=30)
    # Ranges of one shard this close are one request: one GET per shard touched.
    assert sorted(name for name, *_ in gets) == sorted(dataset.shards[s].name for s in touched)
    assert dataset.prefetch(mine) == []  # all buffered already
    before, hits = len(gets), shard_list.hits
    got = dataset.get_batch(mine)
    assert len(gets) == before  # every read came from the buffer
    assert shard_list.hits - hits >= len(mine)
    for row, i in zip(got, mine, strict=True):
        np.testing.assert_array_equal(row, tokens[i * SEQ_LEN : (i + 1) * SEQ_LEN])
    # Without merging across gaps, two adjacent instances are still one request, and two apart
    # are two.
    shard_list.close()
    shard_list.merge_gap = 0
    pair = next(
        i
        for i in range(len(dataset) - 3)
        if len(dataset.shards_of([i, i + 1, i + 3])) == 1 and i + 3 < len(dataset)
    )
    gets.clear()
    dataset.prefetch([pair, pair + 1])
    shard_list.wait_prefetched(timeout=30)
    assert len(gets) == 1
    gets.clear()
    dataset.prefetch([pair + 3, pair + 1])
    shard_list.wait_prefetched(timeout=30)
    assert len(gets) == 1  # pair + 1 was buffered already: only pair + 3 is fetched
    dataset.shards.close()


def test_range_buffer_stays_under_its_bound(tmp_path, remote):
    uri, tokens = remote
    bound = 3 * SEQ_LEN * 2  # three uint16 instances
    dataset = _range_dataset(uri, tmp_path, range_buffer_bytes=bound)
    shard_list = dataset.shards.shards
    shard_list.merge_gap = 0
    order = GlobalOrder(len(dataset), seed=1)
    batch = 4
    for step in range(len(dataset) // batch):
        ahead = order.indices((step + 1) * batch, 2 * batch)
        dataset.prefetch(ahead)
        assert shard_list.buffered_bytes <= bound
        shard_list.wait_prefetched(timeout=30)
        assert shard_list.buffered_bytes <= bound
        indices = order.indices(step * batch, batch)
        got = dataset.get_batch(indices)  # oldest blocks dropped, misses read
        assert shard_list.buffered_bytes <= bound
        for row, i in zip(got, indices, strict=True):
            np.testing.assert_array_equal(row, tokens[i * SEQ_LEN : (i + 1) * SEQ_LEN])
    assert shard_list.hits and shard_list.misses
    # A range bigger than the whole buffer is not prefetched; its read fetches it.
    assert dataset.shards.prefetch_ranges([(0, 4 * SEQ_LEN)]) == []
    np.testing.assert_array_equal(dataset.shards.read(0, 4 * SEQ_LEN), tokens[: 4 * SEQ_LEN])
    dataset.shards.close()


def test_auto_reads_by_range_only_when_the_data_exceed_the_cache(tmp_path, remote, caplog):
    uri, tokens = remote
    nbytes = tokens.nbytes
    caplog.set_level("INFO", logger="olmo.data.shards.inputs")
    fits = open_shards([uri], cache_dir=tmp_path / "c", cache_max_bytes=nbytes)
    assert isinstance(fits.shards, RemoteShardList) and "chose cache" in caplog.text
    caplog.clear()
    exceeds = open_shards([uri], cache_dir=tmp_path / "c", cache_max_bytes=nbytes - 1)
    assert isinstance(exceeds.shards, RangeShardList) and "chose range" in caplog.text
    assert exceeds.shards.remote_bytes == nbytes
    forced = open_shards([uri], cache_max_bytes=nbytes - 1, remote_read="cache")
    assert isinstance(forced.shards, RemoteShardList)
    with pytest.raises(ValueError, match="remote_read must be one of"):
        open_shards([uri], remote_read="stream")
    # The run's config carries the choice to every open_shards of the run.
    options = DataConfig(remote_read="range", range_buffer_bytes=1 << 20).shard_options()
    opened = open_shards([uri], **options)
    assert isinstance(opened.shards, RangeShardList) and opened.shards.buffer_bytes == 1 << 20
    with pytest.raises(ValueError):
        DataConfig(remote_read="stream")


def test_range_mode_checks_sizes_and_retries_a_failed_prefetch(
    tmp_path, remote, monkeypatch, caplog
):
    uri, tokens = remote
    dataset = _range_dataset(uri, tmp_path)
    # A failed prefetch is logged; the read fetches the range again.
    real = Location.read_range
    failures = [RuntimeError("connection reset")]

    def flaky(self, start, end):
        if failures:
            raise failures.pop()
        return real(self, start, end)

    monkeypatch.setattr(Location, "read_range", flaky)
    dataset.prefetch([0])
    dataset.shards.shards.wait_prefetched(timeout=30)
    assert "connection reset" in caplog.text
    np.testing.assert_array_equal(dataset[0], tokens[:SEQ_LEN])
    # The pickled dataset (a spawned worker's copy) reads the same, with an empty buffer.
    copy = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(copy.get_batch([1, 2]), dataset.get_batch([1, 2]))
    shard = pickle.loads(pickle.dumps(dataset.shards[2]))
    np.testing.assert_array_equal(shard.array[:5], dataset.shards[2].array[:5])
    # A shard changed on the store: the listing and the reads see its size is not the manifest's.
    name = dataset.shards[1].name
    location(f"{uri}/{name}").write_bytes(b"\0\0" * 3)
    with pytest.raises(ShardFormatError, match="manifest says"):
        dataset.shards.check_files()
    fresh = _range_dataset(uri, tmp_path)
    with pytest.raises(ShardFormatError, match="smaller than its manifest says"):
        fresh.shards[1].array[: fresh.shards[1].num_tokens]
    dataset.shards.close()
