"""Which attempt owns a run directory: the fence that keeps an old trainer from writing after
the operator has started the next attempt.

The operator starts attempt N+1 once attempt N's pods are gone or, at the latest, after the
grace period plus a wait; a pod that outlives that (a node that stopped answering, a kubelet
that never killed it) could still save into the run directory. So every trainer the operator
starts claims the directory when it starts (``claim``: rank 0 writes ``RUN_DIR/ATTEMPT``
atomically) and, before every write that could clobber the owner's work (a checkpoint save, the
rename that finalizes it, a rotation), checks that it still owns it (``check``). An older
attempt that finds a newer one's marker stops without writing.

The marker names the job as well as the attempt: attempt numbers restart at 1 when an OLMoJob
is deleted and created again with the same run directory, so attempts are ordered only within
one job. A claim by a different job takes the directory over (a re-created job continues the
run); a trainer that finds another job's marker is fenced, like one that finds a newer attempt.
Two live jobs sharing a run directory therefore fence each other at every restart and use up
their restart budgets instead of corrupting each other's checkpoints.

The marker is one file replaced atomically, so a reader sees a whole marker. Two claims racing
(both read before either writes) can leave the older attempt's marker; ``check`` by the newer
attempt then claims again, so the older one is fenced at its next check. Trainers not started by
the operator (no ``OLMOJOB_ATTEMPT``) neither claim nor check.

On an object store (a run directory ``s3://…``/``gs://…``) the marker is the object
``RUN/ATTEMPT``, written with one PUT (whole or absent, like the local rename). An object store
has no atomic read-compare-write (no rename, no lock; conditional writes are not portable across
S3-compatible stores), so a claim there is exactly as strong as the local one's read-then-write:
two attempts claiming within the same instant can both believe they own the directory until the
next ``check``, which one of them then fails. What makes that safe is that the trainer checks
before every write that could clobber the owner's work: before each save, before each upload and
before each rotation on the store; the window is one upload, and an upload by a fenced attempt
never deletes anything the owner wrote (a step folder is replaced ``COMPLETE`` first, and the
owner saves that step again). The operator's ordering (attempt N+1 starts only after attempt N's
pods are gone or the grace period is over) keeps real races rare. Standard library and
``olmo.storage`` only.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from olmo.checkpoints.paths import ATTEMPT_MARKER, StrPath
from olmo.fileio import write_atomic
from olmo.json_records import now_iso
from olmo.storage import Location, location

__all__ = ["Claim", "FencedError", "check", "claim", "claim_from_env", "read_marker"]

ENV_ATTEMPT = "OLMOJOB_ATTEMPT"
ENV_UID = "OLMOJOB_UID"
ENV_NAME = "OLMOJOB_NAME"
ENV_NAMESPACE = "OLMOJOB_NAMESPACE"


class FencedError(RuntimeError):
    """A newer attempt (or another job) owns the run directory: this trainer must not write."""


@dataclass(frozen=True)
class Claim:
    """Who a trainer is: the job (its uid, else namespace/name) and the attempt number."""

    job: str
    attempt: int

    def describe(self) -> str:
        return f"attempt {self.attempt} of job {self.job}"


def claim_from_env(environ: Mapping[str, str] | None = None) -> Claim | None:
    """The claim of a trainer the operator started (``OLMOJOB_ATTEMPT`` set), else None.

    Raises ValueError naming the variable when ``OLMOJOB_ATTEMPT`` is not a positive integer.
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_ATTEMPT)
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{ENV_ATTEMPT} must be a positive integer, got {raw!r}")
    job = env.get(ENV_UID) or f"{env.get(ENV_NAMESPACE, '')}/{env.get(ENV_NAME, '')}"
    return Claim(job=job, attempt=int(raw))


def marker_path(run_dir: StrPath | Location) -> Path | Location:
    """``RUN_DIR/ATTEMPT``: a local path, or the object's location for a run dir on a store."""
    if isinstance(run_dir, Location) or "://" in str(run_dir):
        loc = location(run_dir)
        if loc.is_remote:
            return loc / ATTEMPT_MARKER
        run_dir = loc.local_path()
    return Path(run_dir) / ATTEMPT_MARKER


def read_marker(run_dir: StrPath | Location) -> Claim | None:
    """The claim the marker holds; None when there is none (or it is unreadable: a claim
    rewrites it)."""
    marker = marker_path(run_dir)
    try:
        data = json.loads(marker.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    job, attempt = data.get("job"), data.get("attempt")
    if not isinstance(job, str) or not isinstance(attempt, int) or isinstance(attempt, bool):
        return None
    return Claim(job=job, attempt=attempt)


def _refusal(mine: Claim, owner: Claim, run_dir: StrPath | Location) -> str | None:
    """Why ``mine`` may not write to a run dir that ``owner`` claimed (None: it may)."""
    if owner.job != mine.job:
        return (
            f"{marker_path(run_dir)} names {owner.describe()}: another OLMoJob now owns this "
            f"run directory, so {mine.describe()} stops without writing"
        )
    if owner.attempt > mine.attempt:
        return (
            f"{marker_path(run_dir)} names attempt {owner.attempt}: a newer attempt of this "
            f"job owns the run directory, so attempt {mine.attempt} stops without writing"
        )
    return None


def claim(run_dir: StrPath | Location, mine: Claim) -> None:
    """Make ``mine`` the owner of ``run_dir`` (a local one must exist; a URI need not). Raises FencedError, writing
    nothing, when a newer attempt of the same job owns it; another job's marker is replaced."""
    owner = read_marker(run_dir)
    if owner is not None and owner.job == mine.job:
        reason = _refusal(mine, owner, run_dir)
        if reason is not None:
            raise FencedError(reason)
        if owner == mine:
            return
    content = {
        "job": mine.job,
        "attempt": mine.attempt,
        "claimed": now_iso(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    marker = marker_path(run_dir)
    text = json.dumps(content, indent=1, sort_keys=True) + "\n"
    if isinstance(marker, Location):
        marker.write_text(text)  # one PUT: visible whole or not at all
    else:
        write_atomic(marker, text.encode())


def check(run_dir: StrPath | Location, mine: Claim) -> None:
    """Raise FencedError when a newer attempt or another job owns ``run_dir``.

    A missing marker, or an older attempt's of the same job (an older trainer that raced this
    one's claim, or deleted by hand), is claimed again: this attempt is the newest one known.
    """
    owner = read_marker(run_dir)
    if owner == mine:
        return
    if owner is not None:
        reason = _refusal(mine, owner, run_dir)
        if reason is not None:
            raise FencedError(reason)
    claim(run_dir, mine)
