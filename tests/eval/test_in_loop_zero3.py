"""in_loop under DeepSpeed ZeRO-3 on 2 CPU processes, the way the trainer calls it: every rank
passes the engine's module, ranks score different items and make the same number of forwards
(or the parameter all-gathers would hang), and all ranks get the single-process metrics."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from .conftest import small_config, train_bpe

TASKS = ["piqa", "copa"]


def _worker(rank: int, world: int, port: int, queue, state_path: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world), DS_ACCELERATOR="cpu",
    )  # fmt: skip
    torch.set_num_threads(1)
    import deepspeed

    from olmo.eval import in_loop
    from olmo.model.transformer import OLMo

    deepspeed.init_distributed(dist_backend="gloo")
    ds_config = {
        "train_micro_batch_size_per_gpu": 1,
        "zero_optimization": {"stage": 3},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**62,
    }
    torch.manual_seed(0)
    with deepspeed.zero.Init(config_dict_or_path=ds_config):
        model = OLMo(small_config(320))
    deepspeed.zero.register_external_parameter(model, model.embed.weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    calls = []
    engine.module.blocks[0].register_forward_pre_hook(lambda module, args: calls.append(1))
    metrics = in_loop(engine.module, train_bpe(), tasks=TASKS, limit=5, batch_size=2,
                      device="cpu", rank=rank, world_size=world)  # fmt: skip
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        if rank == 0:  # the full weights, for the one-process reference
            torch.save({k: v.detach().clone() for k, v in engine.module.state_dict().items()},
                       state_path)  # fmt: skip
    queue.put((rank, metrics, len(calls)))
    torch.distributed.barrier()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_in_loop_under_zero3_matches_one_process(tmp_path):
    from olmo.eval import in_loop
    from olmo.model.transformer import OLMo

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    state_path = str(tmp_path / "state.pt")
    mp.start_processes(_worker, args=(2, port, queue, state_path), nprocs=2, start_method="spawn")
    (_, m0, calls0), (_, m1, calls1) = sorted(queue.get() for _ in range(2))
    assert m0 == m1 and calls0 == calls1
    reference = OLMo(small_config(320)).eval()
    reference.load_state_dict(torch.load(state_path))
    expected = in_loop(reference, train_bpe(), tasks=TASKS, limit=5, batch_size=2,
                       device="cpu", rank=0, world_size=1)  # fmt: skip
    assert m0 == pytest.approx(expected)
