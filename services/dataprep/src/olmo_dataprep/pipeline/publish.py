"""A run whose ``output`` is a URI on an object store (``s3://bucket/tokens``, ``gs://...``).

The pipeline works as it does for a local folder, in a local **staging folder**
(``$OLMO_STAGING_DIR/dataprep/<scheme>/<bucket>/<prefix>``, default
``~/.cache/olmo/staging/...``; workers of one run must share it, as they would share a local
output folder), and publishes to the store as it goes:

- each file's final shards (``.npy`` and ``.csv.gz`` index) and its accounting table are
  uploaded when the file is mixed, *before* the file is marked done, so a resumed run never
  skips an upload;
- once every file is done, worker 0 uploads ``tokenizer.json``, ``summary.json`` and
  ``manifest.json`` **last**: a reader (``open_shards("s3://...")``) that sees the manifest sees
  every shard it names. An object store has no rename, so the manifest's arrival is the commit.

The store's manifest is also what "complete already" means for a re-run, and a manifest of a
different pipeline there is refused as it is in a local folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from olmo.data.shards import MANIFEST_NAME, Manifest, ShardInfo, parse_manifest
from olmo.storage import Location, location

from .plan import InputFile, Layout

ENV_STAGING_DIR = "OLMO_STAGING_DIR"


def staging_dir(uri: str) -> Path:
    """The local folder a run with output ``uri`` works in (see the module doc)."""
    env = os.environ.get(ENV_STAGING_DIR)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "olmo" / "staging"
    where = location(uri)
    return base / "dataprep" / str(where.protocol) / where.path.strip("/")


class Publisher:
    """Uploads a run's outputs from its staging ``layout`` to ``uri``, in the contract's order."""

    def __init__(self, uri: str, layout: Layout) -> None:
        self.remote: Location = location(uri)
        self.layout = layout

    def _upload(self, local: Path) -> None:
        self.remote_path(local).upload(local)

    def remote_path(self, local: Path) -> Location:
        return self.remote / local.relative_to(self.layout.out).as_posix()

    def file_done(self, f: InputFile, shards: Iterable[ShardInfo]) -> None:
        """Upload one mixed file's shards, their indexes and its accounting table."""
        for shard in shards:
            self._upload(self.layout.out / shard.path)
            self._upload(self.layout.out / shard.index)
        self._upload(self.layout.accounting_table(f))

    def finish(self) -> None:
        """Upload the dataset's own files, ``manifest.json`` last (the dataset is then
        complete on the store)."""
        for path in (self.layout.tokenizer, self.layout.summary):
            if path.exists():
                self._upload(path)
        self._upload(self.layout.manifest)

    def upload_logs(self) -> None:
        for path in sorted(self.layout.logs.glob("*.json")):
            self._upload(path)

    def remote_manifest(self) -> Manifest | None:
        """The manifest on the store, or None when the dataset is not complete there."""
        where = self.remote / MANIFEST_NAME
        try:
            raw = where.read_bytes()
        except FileNotFoundError:
            return None
        return parse_manifest(raw, where=str(where))

    def remote_summary(self) -> dict | None:
        import json

        try:
            return json.loads((self.remote / self.layout.summary.name).read_bytes())
        except FileNotFoundError:
            return None
