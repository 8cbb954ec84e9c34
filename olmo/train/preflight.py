"""The preflight: before an attempt trains, every rank checks what training will need, and a
failing rank's node is named so that the operator can keep the next attempt off it.

Run by ``olmo-train`` (``olmo.train.cli``) right after the process group is up and before the
trainer is built, when ``OLMO_PREFLIGHT_TIMEOUT_SECONDS`` (or ``--preflight-timeout``) is above 0.
Every rank runs, in order:

1. **device**: a 256×256 matmul of small integers on this rank's device (its GPU, or the CPU),
   compared with the exact product computed in float64 on the CPU (every value is an integer
   that float32, and TF32, hold exactly): finite and equal, or a failure.
2. **storage**: a small file written under ``<run_dir>/.preflight/``, read back, compared and
   deleted (a local folder, or an object store through ``olmo.storage``); the local folder is
   removed once every rank is done with it.
3. **collective**: over a gloo group made for the preflight (``olmo.train.distributed.cpu_group``)
   the ranks first exchange who they are (node name from ``OLMO_NODE_NAME``, node rank), then
   meet in ``torch.distributed.monitored_barrier(wait_all_ranks=True)``, which names on rank 0
   every rank that did not arrive in time; then an all-reduce on the training group (NCCL on
   GPU, gloo on CPU), checked and bounded in time; finally every rank's failures are gathered
   so that all ranks reach the same verdict.

The two local checks run on a helper thread each, so that a hung device or store is a failure
("did not finish in N s") rather than a hung rank. The whole preflight takes about the time
limit at most: the device check gets 20 % of it, the storage check 30 %, the barrier 30 %, the
device all-reduce 10 % (each at least one second).

Only a failure that can be pinned on a rank names its node (a device or storage check, a rank
missing at the barrier): the operator keeps the next attempts off every node named. A failed
all-reduce, seen alike by every rank, names no node.

The result (``PreflightResult.as_report``) is the ``preflight`` field of rank 0's progress
report: ``{"passed", "seconds", "time", "failures": [{"node", "nodeRank", "check",
"message"}]}``, at most 64 failures of at most 1024 characters each; ranks of one node that failed
the same way are one failure (``ranks 0, 1: …``). A failure of no known node has ``node``
``""`` (and ``nodeRank`` 0: the report takes no negative index). Any failure: every rank exits
with ``exit_codes.PREFLIGHT_FAILED``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed

from olmo.json_records import now_iso
from olmo.storage import StrPath, describe_error, location
from olmo.train.distributed import DistInfo, cpu_group
from olmo.train.upload import NodeInfo

log = logging.getLogger("olmo.train")

TIMEOUT_ENV = "OLMO_PREFLIGHT_TIMEOUT_SECONDS"
NODE_NAME_ENV = "OLMO_NODE_NAME"
PREFLIGHT_DIR = ".preflight"
"""The folder under the run directory that the storage check writes in (and empties)."""
CHECKS = ("device", "collective", "storage")
MAX_FAILURES = 64
MAX_MESSAGE = 1024
MATMUL_SIZE = 256
SHARES = {"device": 0.2, "storage": 0.3, "barrier": 0.3, "all_reduce": 0.1}
"""Each phase's share of the time limit."""


@dataclass(frozen=True)
class Identity:
    """Who a rank is, as a failure names it."""

    rank: int
    node: str
    node_rank: int

    @classmethod
    def from_env(cls, dist: DistInfo) -> Identity:
        node_rank = NodeInfo.from_env(dist.rank, dist.local_rank, dist.world_size).index
        return cls(dist.rank, os.environ.get(NODE_NAME_ENV, ""), node_rank)


@dataclass(frozen=True)
class Failure:
    node: str
    """The Kubernetes node of the failing rank's pod ("" when unknown)."""
    node_rank: int
    """The failing node's index (torchrun's ``GROUP_RANK``); 0 when the node is unknown."""
    check: str
    """``device``, ``collective`` or ``storage``."""
    message: str

    def as_dict(self) -> dict:
        return {
            "node": self.node,
            "nodeRank": self.node_rank,
            "check": self.check,
            "message": _clip(self.message),
        }


@dataclass
class PreflightResult:
    passed: bool
    seconds: float
    time: str
    """When the preflight ended (RFC 3339)."""
    failures: list[Failure] = field(default_factory=list)

    def as_report(self) -> dict:
        """The ``preflight`` field of the progress report."""
        return {
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "time": self.time,
            "failures": [f.as_dict() for f in self.failures[:MAX_FAILURES]],
        }


def preflight_timeout(value: str | float | None = None) -> float:
    """The time limit in seconds: ``value`` (the command line), else ``OLMO_PREFLIGHT_TIMEOUT_SECONDS``;
    0 (absent, empty) means no preflight. ValueError for a negative or non-number value."""
    text = str(value if value is not None else os.environ.get(TIMEOUT_ENV) or "0").strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"preflight timeout {text!r}: expected a number of seconds ≥ 0")
    return seconds


# -- the local checks ------------------------------------------------------------------------


def _operands(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    i = torch.arange(n)
    a = (i[:, None] * 3 + i[None, :]) % 7 - 3
    b = (i[:, None] + 2 * i[None, :]) % 5 - 2
    return a.float(), b.float()


def check_device(device: torch.device, n: int = MATMUL_SIZE) -> str | None:
    """None when a matmul on ``device`` gives the exact product; else what went wrong."""
    a, b = _operands(n)
    expected = a.double() @ b.double()
    try:
        got = (a.to(device) @ b.to(device)).double().cpu()
    except Exception as e:
        return f"matmul on {device} failed: {type(e).__name__}: {e}"
    return compare(got, expected, f"matmul on {device}")


def compare(got: torch.Tensor, expected: torch.Tensor, what: str) -> str | None:
    """None when ``got`` is finite and equals ``expected``; else how it is wrong."""
    if not bool(torch.isfinite(got).all()):
        bad = int((~torch.isfinite(got)).sum())
        return f"{what}: {bad} of {got.numel()} values are not finite"
    if not torch.equal(got, expected):
        wrong = int((got != expected).sum())
        worst = float((got - expected).abs().max())
        return (
            f"{what}: {wrong} of {got.numel()} values differ from the reference "
            f"(largest error {worst:g})"
        )
    return None


def check_storage(run_dir: StrPath, name: str) -> str | None:
    """None when a file written under ``run_dir/.preflight/`` reads back the same and is
    deleted; else which step failed and why."""
    folder = location(run_dir) / PREFLIGHT_DIR
    target = folder / name
    data = os.urandom(4096)
    step = "write"
    try:
        target.write_bytes(data)
        step = "read back"
        if target.read_bytes() != data:
            return f"{target}: the file read back differs from the one written"
        step = "delete"
        target.remove()
    except Exception as e:
        return f"{step} {target} failed: {describe_error(e) or f'{type(e).__name__}: {e}'}"
    return None


def remove_empty_folder(run_dir: StrPath) -> None:
    """Remove the (local, empty) ``.preflight`` folder once every rank's storage check is over:
    a rank that removed it earlier could pull it from under another rank's write. An object
    store has no folders to remove."""
    folder = location(run_dir) / PREFLIGHT_DIR
    if not folder.is_remote:
        with contextlib.suppress(OSError):  # not empty or already gone: leave it
            folder.local_path().rmdir()


def bounded(check: Callable[[], str | None], seconds: float, what: str) -> str | None:
    """``check()`` on a helper thread: its result, or a failure when it raises or has not
    finished after ``seconds`` (the thread is left behind; the process exits soon)."""
    result: list[str | None] = []

    def target() -> None:
        try:
            result.append(check())
        except BaseException as e:  # a check must never kill the preflight
            result.append(f"{what} check raised {type(e).__name__}: {e}")

    thread = threading.Thread(target=target, name=f"preflight-{what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if not result:
        return f"{what} check did not finish in {seconds:.3g}s"
    return result[0]


# -- the collective part ---------------------------------------------------------------------

_MISSING = re.compile(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier")


def missing_ranks(error: BaseException) -> list[int]:
    """The ranks a failed ``monitored_barrier`` names on rank 0 ([] when none is named)."""
    match = _MISSING.search(str(error))
    return [int(r) for r in match.group(1).replace(" ", "").split(",") if r] if match else []


def _all_reduce_check(dist: DistInfo, seconds: float) -> str | None:
    """An all-reduce on the training group (the device's backend), checked, in ``seconds``."""
    world = dist.world_size
    t = torch.full((1024,), float(dist.rank + 1), device=dist.device)
    try:
        work = torch.distributed.all_reduce(t, async_op=True)
        work.wait(timeout=datetime.timedelta(seconds=seconds))
        values = t.cpu()
    except Exception as e:
        return f"{dist.backend} all-reduce failed: {type(e).__name__}: {_first_line(e)}"
    expected = torch.full_like(values, world * (world + 1) / 2)
    return compare(values, expected, f"{dist.backend} all-reduce of {world} ranks")


def merge_failures(found: list[tuple[Identity, str, str]]) -> list[Failure]:
    """One failure per (node, node rank, check, message), naming the ranks that had it."""
    ranks: dict[tuple[str, int, str, str], list[int]] = {}
    for who, check, message in found:
        ranks.setdefault((who.node, who.node_rank, check, message), []).append(who.rank)
    out = []
    for (node, node_rank, check, message), rs in ranks.items():
        if rs and rs[0] >= 0:
            label = "rank" if len(rs) == 1 else "ranks"
            message = f"{label} {', '.join(map(str, sorted(rs)))}: {message}"
        out.append(Failure(node, node_rank, check, message))
    return out[:MAX_FAILURES]


def run_preflight(dist: DistInfo, run_dir: StrPath, timeout: float) -> PreflightResult:
    """Run the checks on every rank (a collective: every rank must call it); every rank returns
    the same verdict, rank 0's with every failure known."""
    started = time.monotonic()
    me = Identity.from_env(dist)
    unknown = Identity(-1, "", 0)
    found: list[tuple[Identity, str, str]] = []
    group = cpu_group(timeout)
    try:
        try:
            identities: list[Identity | None] = [None] * dist.world_size
            torch.distributed.all_gather_object(identities, me, group=group)
        except Exception as e:
            return _result(started, [(unknown, "collective", _exchange_failed(e))])
        name = f"{me.node or 'node'}-rank{dist.rank}-{uuid.uuid4().hex[:8]}"
        for check, run in (
            ("device", lambda: check_device(dist.device)),
            ("storage", lambda: check_storage(run_dir, name)),
        ):
            if (message := bounded(run, _share(timeout, check), check)) is not None:
                found.append((me, check, message))
        try:
            barrier_timeout = datetime.timedelta(seconds=_share(timeout, "barrier"))
            torch.distributed.monitored_barrier(group, barrier_timeout, wait_all_ranks=True)
        except Exception as e:
            late = missing_ranks(e)
            message = (
                f"did not reach the preflight barrier {barrier_timeout.total_seconds():.0f}s "
                "after rank 0 did (a hung device, store or process)"
            )
            found.extend((identities[rank] or unknown, "collective", message) for rank in late)
            if not late:  # nobody to blame: no node
                message = f"preflight barrier failed: {_first_line(e)}"
                found.append((unknown, "collective", message))
            return _result(started, found)
        if (message := _all_reduce_check(dist, _share(timeout, "all_reduce"))) is not None:
            found.append((unknown, "collective", message))  # every rank sees it: no node
        try:
            everyone: list[list | None] = [None] * dist.world_size
            torch.distributed.all_gather_object(everyone, found, group=group)
        except Exception as e:
            found.append((unknown, "collective", _exchange_failed(e)))
            return _result(started, found)
        if dist.local_rank == 0:  # every rank's storage check is over
            remove_empty_folder(run_dir)
        return _result(started, [f for rank_found in everyone for f in rank_found or []])
    finally:
        try:
            torch.distributed.destroy_process_group(group)
        except Exception as e:  # a broken group: nothing more to do with it
            log.debug("preflight group not destroyed: %s", e)


def _result(started: float, found: list[tuple[Identity, str, str]]) -> PreflightResult:
    failures = merge_failures(found)
    return PreflightResult(not failures, time.monotonic() - started, now_iso(), failures)


def _share(timeout: float, phase: str) -> float:
    return max(timeout * SHARES[phase], 1.0)


def _exchange_failed(error: BaseException) -> str:
    return f"the ranks could not exchange preflight results: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def log_result(result: PreflightResult) -> None:
    """One log line for a pass, one per failure otherwise."""
    if result.passed:
        log.info("preflight passed in %.1fs", result.seconds)
        return
    for f in result.failures:
        node = f.node or "unknown node"
        log.error(
            "preflight %s failure on %s (node rank %d): %s", f.check, node, f.node_rank, f.message
        )
