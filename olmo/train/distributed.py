"""Process-group setup for one process, ``torchrun`` on one node, or many nodes.

torchrun (and the operator's pods) provide RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; a plain ``olmo-train`` call gets a one-process group on a free local port. nccl
on GPU, gloo on CPU, chosen from what the machine has.

``OLMO_COLLECTIVE_TIMEOUT_SECONDS`` (set by the operator, in agreement with its hang timeout) is
the process group's collective timeout: a collective that some rank never joins fails after it
on the ranks that wait (NCCL through its watchdog, gloo by an error), so a hung rank ends the
attempt instead of holding the gang forever. Absent, 30 minutes (torch's default; DeepSpeed's
own would be 10). ``cpu_group`` makes the gloo group with a timeout of its own
that the preflight (``olmo.train.preflight``) uses.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


COLLECTIVE_TIMEOUT_ENV = "OLMO_COLLECTIVE_TIMEOUT_SECONDS"
DEFAULT_COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
"""Without ``OLMO_COLLECTIVE_TIMEOUT_SECONDS``: torch's own default (DeepSpeed's would be 10
minutes, below the operator's derived hang timeout, so a slow rank would fail as a plain error
before the operator could call it a hang)."""


def collective_timeout(environ: dict[str, str] | None = None) -> datetime.timedelta | None:
    """The collective timeout from ``OLMO_COLLECTIVE_TIMEOUT_SECONDS`` (None: absent or empty;
    ValueError for anything but a positive number of seconds)."""
    env = os.environ if environ is None else environ
    text = (env.get(COLLECTIVE_TIMEOUT_ENV) or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(
            f"{COLLECTIVE_TIMEOUT_ENV}={text!r}: expected a positive number of seconds"
        )
    return datetime.timedelta(seconds=seconds)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> DistInfo:
    """Initialise torch.distributed through DeepSpeed and pick this rank's device (ValueError
    for a bad ``OLMO_COLLECTIVE_TIMEOUT_SECONDS``, before anything starts)."""
    timeout = collective_timeout()
    use_cuda = torch.cuda.is_available()
    if not use_cuda:
        # DeepSpeed picks its accelerator at import time; make the CPU choice explicit.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:
        os.environ.update(
            RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
            MASTER_ADDR=os.environ.get("MASTER_ADDR", "127.0.0.1"),
            MASTER_PORT=os.environ.get("MASTER_PORT", str(_free_port())),
        )  # fmt: skip
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend, timeout=timeout or DEFAULT_COLLECTIVE_TIMEOUT)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return DistInfo(rank, local_rank, world, device, backend)


def all_reduce_mean(value: float, device: torch.device) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.item() / torch.distributed.get_world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank (a collective: call it everywhere)."""
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def barrier() -> None:
    torch.distributed.barrier()


def cpu_group(timeout_seconds: float):
    """A new gloo group of every rank whose collectives fail after ``timeout_seconds`` (a
    collective call itself: every rank must call it, in the same order). Destroy it with
    ``torch.distributed.destroy_process_group(group)`` when done."""
    return torch.distributed.new_group(
        backend="gloo", timeout=datetime.timedelta(seconds=timeout_seconds)
    )
