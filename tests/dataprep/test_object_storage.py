"""Data-prep on object storage (a real S3 API server): inputs read from s3 by URI, folder and
glob, streamed; shards uploaded as files finish, ``manifest.json`` last; and ``open_shards`` on
the s3 output yields exactly the tokens, documents and shard hashes of a local run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from olmo.data.shards import open_shards, read_manifest
from olmo.storage import Location, location
from olmo_dataprep.cli import main
from olmo_dataprep.config import load_pipeline_config
from olmo_dataprep.input_files import iter_input_files
from olmo_dataprep.pipeline import PipelineError, run_pipeline
from olmo_dataprep.pipeline.publish import ENV_STAGING_DIR, Publisher
from olmo_dataprep.readers import read_documents

from .conftest import write_pipeline
from .test_pipeline import mixed_corpus


def _upload_tree(local: Path, uri: str) -> None:
    root = location(uri)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        (root / path.relative_to(local).as_posix()).upload(path)


def _documents(shards) -> list[tuple[str, str, int, int]]:  # type: ignore[no-untyped-def]
    return [(d.id, d.src, d.start, d.end) for shard in shards for d in shard.documents()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, s3_server):
    """The mixed corpus run locally, and again with inputs and output on s3 (once per module:
    the tests below look at the two runs from different sides)."""
    import fsspec

    from tests.s3server import new_bucket

    tmp_path = tmp_path_factory.mktemp("object-storage")
    with pytest.MonkeyPatch.context() as env:
        for key, value in s3_server.env().items():
            env.setenv(key, value)
        env.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        env.setenv(ENV_STAGING_DIR, str(tmp_path / "staging"))
        fsspec.filesystem("s3").clear_instance_cache()
        s3_bucket = f"s3://{new_bucket(s3_server)}"
        pipeline, _ = mixed_corpus(tmp_path)
        local = run_pipeline(load_pipeline_config(pipeline), quiet=True)
        _upload_tree(tmp_path / "in", f"{s3_bucket}/in")
        out = f"{s3_bucket}/datasets/mixed"
        remote_pipeline = write_pipeline(
            tmp_path / "remote.yaml",
            {
                "output": out,
                "sources": [
                    {"name": "web", "paths": [f"{s3_bucket}/in/web"]},  # a folder
                    {"name": "books", "paths": [f"{s3_bucket}/in/books/*.parquet"]},  # a glob
                    {"name": "notes", "paths": [f"{s3_bucket}/in/notes/notes.jsonl"]},  # a file
                ],
                "read": {"max_chars": 20000},
                "decontamination": {"paragraph_files": ["eval.txt"]},
            },
        )
        config = load_pipeline_config(remote_pipeline)
        uploads: list[str] = []
        real_upload = Location.upload

        def recording_upload(self: Location, local_file) -> None:  # type: ignore[no-untyped-def]
            uploads.append(self.uri)
            real_upload(self, local_file)

        def no_download(self: Location, local_file):  # type: ignore[no-untyped-def]
            raise AssertionError(f"{self} was downloaded whole; inputs must be streamed")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Location, "upload", recording_upload)
            patch.setattr(Location, "download", no_download)
            remote = run_pipeline(config, quiet=True)
        yield local, remote, config, uploads, out, tmp_path


def test_s3_output_has_exactly_the_tokens_of_a_local_run(runs):
    local, remote, _config, _uploads, out, tmp_path = runs
    assert remote.uri == out and remote.finalized
    local_manifest = read_manifest(local.out)
    local_shards = open_shards([local.out])
    remote_shards = open_shards([out], cache_dir=tmp_path / "cache")
    remote_manifest = remote_shards.manifests[0]
    assert remote_manifest is not None
    # Same shards, byte for byte (the sha256 of every shard), same totals and accounting.
    assert [(s.path, s.num_tokens, s.sha256) for s in remote_manifest.shards] == [
        (s.path, s.num_tokens, s.sha256) for s in local_manifest.shards
    ]
    assert remote_manifest.total_tokens == local_manifest.total_tokens > 1000
    assert remote_manifest.stage_counts == local_manifest.stage_counts
    # (The pipeline's hash differs: its inputs are named by other paths.)
    tokens = remote_shards.read(0, remote_shards.total_tokens)
    np.testing.assert_array_equal(tokens, local_shards.read(0, local_shards.total_tokens))
    # Same documents at the same spans (their loc differs: a path here, a URI there).
    assert _documents(remote_shards) == _documents(local_shards)
    assert any(d.loc.startswith("s3://") for d in remote_shards[0].documents())
    assert remote.summary is not None and local.summary is not None
    assert remote.summary["documents_in"] == local.summary["documents_in"]
    assert remote.summary["dropped"] == local.summary["dropped"]
    # The accounting, tokenizer and summary went to the store as well.
    files = location(out).files()
    assert {"summary.json", "tokenizer.json", "manifest.json"} <= set(files)
    assert sorted(f for f in files if f.startswith("accounting/")) == sorted(
        f"accounting/{p.name}" for p in (local.out / "accounting").iterdir()
    )


def test_every_shard_is_uploaded_before_the_manifest(runs):
    _local, _remote, _config, uploads, out, tmp_path = runs
    manifest_at = uploads.index(f"{out}/manifest.json")
    dataset_files = [u for u in uploads if not u.startswith(f"{out}/logs/")]
    assert dataset_files[-1] == f"{out}/manifest.json"
    manifest = open_shards([out], cache_dir=tmp_path / "cache2").manifests[0]
    assert manifest is not None
    for shard in manifest.shards:
        assert uploads.index(f"{out}/{shard.path}") < manifest_at
        assert uploads.index(f"{out}/{shard.index}") < manifest_at


def test_a_rerun_is_complete_already_and_stats_read_the_store(runs, capsys):
    _local, remote, config, _uploads, out, _ = runs
    again = run_pipeline(config, quiet=True)
    assert not again.finalized and again.summary == remote.summary
    assert main(["stats", out, "--json"]) == 0
    assert '"documents_in"' in capsys.readouterr().out
    # A different pipeline is refused rather than mixed into the published dataset.
    other = config.model_copy(deep=True)
    other.seed += 1
    with pytest.raises(PipelineError, match="different pipeline"):
        run_pipeline(other, quiet=True)


def test_inputs_are_listed_and_streamed_from_the_store(tmp_path, s3_bucket):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.jsonl").write_text('{"id": "x", "text": "hello"}\n')
    (tmp_path / "in" / "sub" / "b.jsonl").write_text('{"id": "y", "text": "world"}\n')
    (tmp_path / "in" / "notes.txt").write_text("not an input")
    _upload_tree(tmp_path / "in", f"{s3_bucket}/in")
    found = iter_input_files([f"{s3_bucket}/in", f"{s3_bucket}/in/**/*.jsonl"])
    assert [str(f) for f in found] == [f"{s3_bucket}/in/a.jsonl", f"{s3_bucket}/in/sub/b.jsonl"]
    docs = list(read_documents(found[1], source="s"))
    assert [(d.id, d.text, d.loc) for d in docs] == [
        ("y", "world", f"{s3_bucket}/in/sub/b.jsonl:1")
    ]
    with pytest.raises(FileNotFoundError, match="no input files match"):
        iter_input_files([f"{s3_bucket}/nothing/*.jsonl"])
    with pytest.raises(ValueError, match="unsupported input file"):
        iter_input_files([f"{s3_bucket}/in/notes.txt"])


def test_publisher_keeps_the_store_layout(tmp_path, s3_bucket):
    from olmo_dataprep.pipeline.plan import Layout
    from olmo_dataprep.pipeline.publish import staging_dir

    layout = Layout(tmp_path / "stage")
    publisher = Publisher(f"{s3_bucket}/ds", layout)
    assert str(publisher.remote_path(layout.summary)) == f"{s3_bucket}/ds/summary.json"
    assert publisher.remote_manifest() is None
    assert staging_dir(f"{s3_bucket}/ds/x").parts[-4:] == ("s3", s3_bucket[5:], "ds", "x")


def test_workers_with_separate_staging_folders_fail_with_a_hint(tmp_path, s3_bucket, monkeypatch):
    """Workers writing to a bucket meet in their staging folder: a worker whose folder nobody
    else writes to gives up at the barrier and says what to share (not a bare timeout)."""
    pipeline, _ = mixed_corpus(tmp_path)
    config = load_pipeline_config(pipeline).model_copy(
        update={"output": f"{s3_bucket}/datasets/mixed", "barrier_timeout_s": 1}
    )
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path / "own-staging"))
    with pytest.raises(PipelineError, match=r"every worker needs the same one \(OLMO_STAGING_DIR"):
        run_pipeline(config, worker_index=1, num_workers=2, quiet=True)
