"""A run directory on an object store (``--run-dir s3://…`` / ``gs://…``): the local mirror the
trainer writes into, and the background upload of each checkpoint.

**The mirror.** The trainer works in a local folder, the mirror of the run directory under the
staging folder (``--staging-dir``, else ``OLMO_STAGING_DIR``, else ``olmo-staging`` in the system
temp folder): ``STAGING/runs/s3/bucket/prefix/run``. Checkpoints are saved there with the local
layout (``.tmp-`` folder, ``COMPLETE``, rename), as are ``metrics.jsonl`` and ``config.yaml``.
The store holds the durable copy: each checkpoint (``objectstore.upload_checkpoint``: every file,
then ``COMPLETE``, then ``latest``), ``config.yaml``, and ``metrics.jsonl`` (uploaded with each
checkpoint). After a checkpoint is on the store, rotation runs there (``rotate(uri, policy)``)
and the mirror's older checkpoints are removed: the mirror holds at most the newest uploaded
checkpoint plus the one being saved, so the staging disk stays bounded. A resume downloads the
checkpoint from the store (``olmo.train.engine``).

**Asynchronous saves.** A save is collective and local (fast); then the uploading process starts
the upload on a background thread and training goes on. The next save first waits for that
upload (``Uploader.wait``). A failed upload is retried (``RETRIES`` times, with exponential
backoff) and then ends the run with ``UploadError`` at the next step (all ranks agree on it): a
checkpoint is never lost silently. On SIGTERM the checkpointer waits for the pending upload for
as long as the grace period allows; a process killed mid-upload leaves a step folder without
``COMPLETE`` on the store, never trusted, collected by rotation after its grace period (or
replaced when that step is saved again), and the previous complete checkpoint stands.

**Who uploads, on one node and on many.** Under ZeRO-3 every rank writes its own shard files into
the checkpoint folder. On one node that folder is shared by all ranks, and global rank 0 uploads
the whole checkpoint with ``objectstore.upload_checkpoint``. On several nodes the staging folder
is node-local scratch (an ``emptyDir``; it must not be shared between nodes), so each node's
folder holds only the files its ranks wrote, and the local rank 0 of every node uploads its own
node's files. The nodes meet on the store, not in a collective (a collective on a background
thread would interleave with training's): before anything is written, global rank 0 deletes what
an earlier save of that step left on the store; each node uploads its files, then the object
``stepN/.nodes/nodeK.json`` with their sha256 and sizes; global rank 0, after its own files, waits
for every node's object, writes ``COMPLETE`` with the union (the contract's last write), advances
``latest`` and removes the ``.nodes`` objects. So ``COMPLETE`` appears only once every node's
files are on the store; a node that dies leaves a step folder without ``COMPLETE``.

``OLMO_UPLOAD_FILE_DELAY_SECONDS`` (fault injection for tests and demos only) sleeps after each
uploaded file, so that an upload can be observed, interrupted or killed part-way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from olmo.checkpoints import layout, objectstore
from olmo.checkpoints.fence import FencedError
from olmo.checkpoints.paths import COMPLETE, CONFIG_FILE
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.storage import Location, location, walk_local_files

log = logging.getLogger("olmo.train")

ENV_STAGING_DIR = "OLMO_STAGING_DIR"
ENV_FILE_DELAY = "OLMO_UPLOAD_FILE_DELAY_SECONDS"
RETRIES = 3
"""Attempts after the first before an upload failure ends the run."""
BACKOFF_SECONDS = 2.0
"""The wait before the first retry; doubled before each next one."""
NODES_DIR = ".nodes"
NODE_WAIT_SECONDS = 3600.0
"""How long global rank 0 waits for the other nodes' files of one checkpoint."""
SIDE_FILES = (CONFIG_FILE, "metrics.jsonl", "wandb_id")
"""Files of the run directory uploaded with every checkpoint (when the mirror has them)."""


class UploadError(RuntimeError):
    """A checkpoint could not be uploaded after every retry: the run stops."""


def staging_root(explicit: str | None = None) -> Path:
    """The staging folder: ``explicit``, else ``$OLMO_STAGING_DIR``, else a temp folder."""
    value = explicit or os.environ.get(ENV_STAGING_DIR)
    return Path(value) if value else Path(tempfile.gettempdir()) / "olmo-staging"


def mirror_dir(staging: Path, remote: Location) -> Path:
    """The local mirror of the run directory ``remote``: the same on every rank of a node."""
    protocol, rest = remote.uri.split("://", 1)
    return Path(staging) / "runs" / protocol / rest.strip("/")


@dataclass(frozen=True)
class NodeInfo:
    """Where this process sits: its node's index and the number of nodes (torchrun's
    ``GROUP_RANK``/``LOCAL_WORLD_SIZE``), for the per-node upload."""

    index: int = 0
    count: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, rank: int, local_rank: int, world_size: int) -> NodeInfo:
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world_size) or world_size)
        index = int(os.environ.get("GROUP_RANK", rank // max(per_node, 1)))
        return cls(index=index, count=max(world_size // max(per_node, 1), 1), local_rank=local_rank)

    @property
    def uploads(self) -> bool:
        """Whether this process uploads (local rank 0 of each node)."""
        return self.local_rank == 0

    @property
    def publishes(self) -> bool:
        """Whether this process writes ``COMPLETE`` (global rank 0)."""
        return self.index == 0 and self.local_rank == 0


@dataclass(frozen=True)
class Uploaded:
    """One finished upload, as the metrics and the progress report show it."""

    step: int
    tokens: int
    location: Location
    files: int
    bytes: int
    seconds: float
    rotated_out: list[str] = field(default_factory=list)


@dataclass
class _Job:
    step: int
    tokens: int
    local: Path
    side_files: dict[str, bytes]
    done: threading.Event = field(default_factory=threading.Event)
    result: Uploaded | None = None
    error: BaseException | None = None


class Uploader:
    """Uploads one checkpoint at a time on a background thread (in the uploading processes)."""

    def __init__(
        self,
        remote: Location,
        mirror: Path,
        node: NodeInfo,
        *,
        policy: RetentionPolicy | None = None,
        check_fence: Callable[[str], None] | None = None,
        retries: int = RETRIES,
        backoff: float = BACKOFF_SECONDS,
    ):
        self.remote, self.mirror, self.node, self.policy = remote, Path(mirror), node, policy
        self.check_fence = check_fence or (lambda before: None)
        self.retries, self.backoff = retries, backoff
        self._job: _Job | None = None
        self.finished: list[Uploaded] = []
        """Uploads finished and not yet reported (``take_finished``)."""
        self.last_seconds: float | None = None

    # ---- the main thread ----------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return self._job is not None and not self._job.done.is_set()

    @property
    def failed(self) -> BaseException | None:
        return self._job.error if self._job is not None else None

    def prepare(self, step: int) -> None:
        """Before a save of ``step`` writes anything (global rank 0, multi-node only): remove
        what an earlier save of this step left on the store, ``COMPLETE`` first, so that no node's
        fresh files are mixed with stale ones."""
        if self.node.count > 1 and self.node.publishes:
            dest = objectstore.step_location(self.remote, step)
            if dest.files():
                objectstore.delete_checkpoint(dest)

    def start(self, step: int, tokens: int, local: Path) -> None:
        """Upload the checkpoint of ``step`` saved at ``local`` (a ``stepN`` folder, or on a node
        other than the first its ``.tmp-stepN`` folder). The previous upload must be over."""
        if self.pending:
            raise RuntimeError("an upload is still running: wait() for it first")
        side = {}
        if self.node.publishes:  # snapshots: metrics.jsonl is appended to while we upload
            for name in SIDE_FILES:
                if (self.mirror / name).is_file():
                    side[name] = (self.mirror / name).read_bytes()
        job = _Job(step, tokens, Path(local), side)
        self._job = job
        threading.Thread(target=self._run, args=(job,), name=f"upload-{step}", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the pending upload; True when none is pending any more (False: the timeout
        passed first). Raises what ended a failed upload (UploadError, FencedError)."""
        job = self._job
        if job is None:
            return True
        if not job.done.wait(timeout):
            return False
        if job.error is not None:
            raise job.error
        return True

    def upload_side_files(self) -> None:
        """``metrics.jsonl`` and the rest of ``SIDE_FILES`` now (at the end of training, after
        the last upload was reported). Global rank 0 only."""
        if self.node.publishes:
            for name in SIDE_FILES:
                if (self.mirror / name).is_file():
                    (self.remote / name).write_bytes((self.mirror / name).read_bytes())

    def take_finished(self) -> list[Uploaded]:
        done, self.finished = self.finished, []
        return done

    # ---- the upload thread --------------------------------------------------------------------

    def _run(self, job: _Job) -> None:
        started = time.monotonic()
        try:
            self.check_fence(f"upload step {job.step}")
            files, size = self._with_retries(job, lambda: self._upload(job))
            rotated = []
            if self.node.publishes and self.policy is not None:
                self.check_fence("rotate checkpoints on the store")
                result = self._with_retries(job, lambda: rotate(self.remote.uri, self.policy))
                rotated = [str(p) for p in result.deleted]
                for deleted in rotated:
                    log.info("rotated out %s", deleted)
            self._prune_mirror(job)
            seconds = time.monotonic() - started
            self.last_seconds = seconds
            where = objectstore.step_location(self.remote, job.step)
            job.result = Uploaded(job.step, job.tokens, where, files, size, seconds, rotated)
            if self.node.publishes:
                self.finished.append(job.result)
                log.info("uploaded %s: %d files, %d bytes in %.1fs", where, files, size, seconds)
        except BaseException as e:  # reported to the main thread by wait()
            job.error = e
            log.error("upload of step %d failed: %s", job.step, e)
        finally:
            job.done.set()

    def _with_retries(self, job: _Job, action):
        for attempt in range(self.retries + 1):
            try:
                return action()
            except FencedError:
                raise
            except Exception as e:
                if attempt == self.retries:
                    raise UploadError(
                        f"upload of checkpoint step {job.step} to {self.remote} failed "
                        f"{attempt + 1} times; last error: {type(e).__name__}: {e}. The local "
                        f"copy is {job.local}; the last complete checkpoint on the store stands"
                    ) from e
                wait = self.backoff * 2**attempt
                log.warning("upload of step %d failed (%s); retrying in %.0fs", job.step, e, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _upload(self, job: _Job) -> tuple[int, int]:
        delay = float(os.environ.get(ENV_FILE_DELAY) or 0)

        def on_file(_rel: str, _size: int) -> None:
            if delay:
                time.sleep(delay)

        for name, data in job.side_files.items():
            (self.remote / name).write_bytes(data)
        if self.node.count == 1:
            stats = objectstore.upload_checkpoint(job.local, self.remote, on_file=on_file)
            return stats.files, stats.bytes
        return self._upload_node(job, on_file)

    def _upload_node(self, job: _Job, on_file: Callable[[str, int], None]) -> tuple[int, int]:
        """Multi-node: this node's files, its ``.nodes`` object, and (global rank 0) the
        ``COMPLETE`` that lists every node's files."""
        dest = objectstore.step_location(self.remote, job.step)
        files, sizes = {}, {}
        for rel, path in walk_local_files(job.local):
            if rel == COMPLETE:
                continue
            files[rel], sizes[rel] = _sha256(path), path.stat().st_size
            (dest / rel).upload(path)
            on_file(rel, sizes[rel])
        manifest = {"files": files, "sizes": sizes}
        (dest / NODES_DIR / f"node{self.node.index}.json").write_text(json.dumps(manifest))
        if not self.node.publishes:
            return len(files), sum(sizes.values())
        marker = json.loads((job.local / COMPLETE).read_bytes())
        for other in self._wait_for_nodes(dest, job.step):
            for rel, digest in other["files"].items():
                if marker["files"].get(rel, digest) != digest:
                    raise UploadError(f"{dest}/{rel}: two nodes uploaded different contents")
            marker["files"].update(other["files"])
            marker["sizes"].update(other["sizes"])
        listing = dest.files()
        missing = sorted(set(marker["files"]) - set(listing))
        if missing:
            raise OSError(f"upload to {dest}: {len(missing)} objects missing, e.g. {missing[0]}")
        (dest / COMPLETE).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
        objectstore.advance_latest(self.remote, job.step)
        (dest / NODES_DIR).remove()
        return len(marker["files"]), sum(marker["sizes"].values())

    def _wait_for_nodes(self, dest: Location, step: int) -> list[dict]:
        deadline = time.monotonic() + NODE_WAIT_SECONDS
        names = [f"node{i}.json" for i in range(self.node.count)]
        while True:
            present = {name for name, _ in (dest / NODES_DIR).children()}
            if all(name in present for name in names):
                return [json.loads((dest / NODES_DIR / name).read_bytes()) for name in names]
            if time.monotonic() > deadline:
                absent = [n for n in names if n not in present]
                raise UploadError(f"step {step}: no upload from {absent} after {deadline:.0f}s")
            time.sleep(1.0)

    def _prune_mirror(self, job: _Job) -> None:
        """Remove the mirror's checkpoints older than the one just uploaded (all uploaded, since
        uploads run one at a time in step order, or downloaded to resume from); a node other
        than the first keeps none (its folder of the upload is a ``.tmp-`` one)."""
        for info in layout.list_checkpoints(self.mirror):
            if info.step < job.step:
                layout.remove_tree(info.path)
        if not self.node.publishes:
            layout.remove_tree(job.local)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_side_files(remote: Location, mirror: Path) -> None:
    """At start (the uploading process of the first node): copy the store's ``metrics.jsonl``
    (and W&B's run id) into the mirror when the mirror has none, so a resumed run continues it."""
    for name in SIDE_FILES[1:]:
        if not (mirror / name).exists() and (remote / name).exists():
            (remote / name).download(mirror / name)


def upload_config(remote: Location, mirror: Path) -> None:
    """``config.yaml`` of the mirror to the store (at start; with every checkpoint as well)."""
    location(remote / CONFIG_FILE).write_bytes((mirror / CONFIG_FILE).read_bytes())
