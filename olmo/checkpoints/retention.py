"""The one checkpoint retention policy, used by the trainer, ``olmo-ckpt rotate`` and the operator.

``plan`` decides, as a pure function of a scan, which checkpoints go; ``rotate`` scans a run
directory, applies that decision and also removes abandoned temporary folders. Keeping the
decision pure lets it be property-tested and lets every caller agree on exactly the same rules:

- the newest complete checkpoint is never deleted;
- the newest ``keep_last`` complete checkpoints are kept (None keeps all);
- complete checkpoints whose step is a multiple of ``keep_every`` are kept;
- with ``require_evaluated``, complete checkpoints without an ``EVALUATED`` marker are kept;
- every other complete checkpoint is deleted;
- incomplete step folders and ``.tmp-*`` folders are deleted once nothing in them has changed
  for ``temp_grace_seconds`` (a save in progress keeps touching its folder); on an object store
  an incomplete step folder is an upload in progress or abandoned (no ``COMPLETE``), collected
  by the same rule.

``rotate`` takes a local run directory or a URI (``s3://``, ``gs://``): on a store a checkpoint
is deleted ``COMPLETE`` first (``objectstore.delete_checkpoint``).

Standard library only.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from olmo.checkpoints import objectstore
from olmo.checkpoints.layout import (
    LATEST,
    TEMP_PREFIX,
    CheckpointInfo,
    StrPath,
    checkpoints_dir,
    is_complete,
    latest_complete,
    list_checkpoints,
    list_temp_dirs,
    parse_step,
    read_latest_pointer,
    remove_tree,
    tree_stats,
    write_latest_pointer,
)
from olmo.storage import Location, is_remote

__all__ = [
    "Decision",
    "RetentionPolicy",
    "RotationResult",
    "plan",
    "plan_deletions",
    "rotate",
]


@dataclass(frozen=True)
class RetentionPolicy:
    """Which checkpoints to keep. The defaults keep every complete checkpoint."""

    keep_last: int | None = None
    keep_every: int | None = None
    require_evaluated: bool = False
    temp_grace_seconds: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("keep_last", "keep_every"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"retention {name} must be an integer >= 1 or None, got {value!r}")
        if not isinstance(self.require_evaluated, bool):
            raise ValueError(
                f"retention require_evaluated must be true or false, got {self.require_evaluated!r}"
            )
        grace = self.temp_grace_seconds
        if (
            not isinstance(grace, int | float)
            or isinstance(grace, bool)
            or not math.isfinite(grace)
            or grace < 0
        ):
            raise ValueError(
                f"retention temp_grace_seconds must be a finite number >= 0, got {grace!r}"
            )


@dataclass(frozen=True)
class Decision:
    """What the policy does with one checkpoint folder, and why."""

    info: CheckpointInfo
    delete: bool
    reason: str


def plan(
    checkpoints: Sequence[CheckpointInfo], policy: RetentionPolicy, *, now: float
) -> list[Decision]:
    """Decide keep/delete for every folder in ``checkpoints`` (sorted by step). Pure."""
    items = sorted(enumerate(checkpoints), key=lambda item: (item[1].step, item[0]))
    complete = [index for index, info in items if info.complete]
    newest = set(complete[-1:])
    keep_n = len(complete) if policy.keep_last is None else policy.keep_last
    recent = set(complete[-keep_n:])
    decisions = []
    for index, info in items:
        if not info.complete:
            expired = info.mtime + policy.temp_grace_seconds < now
            reason = "incomplete, " + (
                "untouched for longer than the grace period" if expired else "recently modified"
            )
            decisions.append(Decision(info, expired, reason))
        elif index in newest:
            decisions.append(Decision(info, False, "newest complete"))
        elif index in recent:
            decisions.append(Decision(info, False, f"among the newest {keep_n} complete"))
        elif policy.keep_every is not None and info.step % policy.keep_every == 0:
            decisions.append(Decision(info, False, f"step is a multiple of {policy.keep_every}"))
        elif policy.require_evaluated and not info.evaluated:
            decisions.append(Decision(info, False, "not evaluated yet"))
        else:
            decisions.append(Decision(info, True, f"not among the newest {keep_n} complete"))
    return decisions


def plan_deletions(
    checkpoints: Sequence[CheckpointInfo], policy: RetentionPolicy, *, now: float
) -> list[CheckpointInfo]:
    """The checkpoints ``policy`` deletes, sorted by step. Pure: touches no files."""
    return [d.info for d in plan(checkpoints, policy, now=now) if d.delete]


@dataclass
class RotationResult:
    """What ``rotate`` deleted (or, with dry_run, would delete) and kept."""

    deleted: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    removed_temp: list[Path] = field(default_factory=list)
    kept_temp: list[Path] = field(default_factory=list)
    reasons: dict[Path, str] = field(default_factory=dict)


def rotate(
    run_dir: StrPath, policy: RetentionPolicy, *, dry_run: bool = False, now: float | None = None
) -> RotationResult:
    """Apply ``policy`` to ``RUN_DIR/checkpoints`` and remove abandoned ``.tmp-*`` folders.

    A missing run dir is an empty result. Deleting a checkpoint first renames it to a ``.tmp-*``
    name, so it leaves the listing atomically and a crash mid-delete leaves only a temporary
    folder that a later rotation removes. ``latest``, if it exists, is repointed to the newest
    complete checkpoint whenever it would otherwise name a folder that is gone or incomplete.
    """
    now = time.time() if now is None else now
    result = RotationResult()
    for decision in plan(list_checkpoints(run_dir), policy, now=now):
        path = decision.info.path
        result.reasons[path] = decision.reason
        if decision.delete and (dry_run or _delete(decision.info)):
            result.deleted.append(path)
        else:
            result.kept.append(path)
    for temp in list_temp_dirs(run_dir):
        try:
            _, mtime = tree_stats(temp)
        except FileNotFoundError:
            continue
        if mtime + policy.temp_grace_seconds < now:
            result.reasons[temp] = "temporary, untouched for longer than the grace period"
            if not dry_run:
                remove_tree(temp)
            result.removed_temp.append(temp)
        else:
            result.reasons[temp] = "temporary, recently modified (may still be being written)"
            result.kept_temp.append(temp)
    if not dry_run:
        _repair_latest(run_dir)
    return result


def _delete(info: CheckpointInfo) -> bool:
    """Delete one checkpoint folder; False if it must be kept after all."""
    path = info.path
    if not info.complete and is_complete(path):
        return False  # completed (finalize replaced it) since the scan
    if isinstance(path, Location):  # an object store: COMPLETE first, then the rest
        objectstore.delete_checkpoint(path)
        return True
    doomed = path.with_name(f"{TEMP_PREFIX}delete-{path.name}-{secrets.token_hex(4)}")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return True  # removed concurrently
    remove_tree(doomed)
    return True


def _repair_latest(run_dir: StrPath) -> None:
    """Repoint an existing ``latest`` that names a folder gone or incomplete."""
    name = read_latest_pointer(run_dir)
    if name is None and (is_remote(run_dir) or not (checkpoints_dir(run_dir) / LATEST).exists()):
        return
    folder = (
        objectstore.checkpoints_location(run_dir) / name
        if is_remote(run_dir) and name
        else checkpoints_dir(run_dir) / (name or "")
    )
    if name and parse_step(name) is not None and is_complete(folder):
        return
    newest = latest_complete(run_dir)
    write_latest_pointer(run_dir, None if newest is None else newest.name)
