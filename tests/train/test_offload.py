"""Optimizer (and ZeRO-3 parameter) offload to host memory: ``deepspeed.offload_optimizer: cpu``
trains like the GPU-resident optimizer, with DeepSpeed's CPU Adam in place of torch's AdamW
(same groups and hyperparameters), and a checkpoint crosses between the two on resume, at the
same stage and through the universal format at another. Real ``olmo-train`` processes, one
each, gloo on CPU.

Measured tolerances (8 steps of the tiny model, ZeRO-3): the offloaded run's losses equal the
resident run's to ~2e-4 relative (the first two steps exactly; CPU Adam's vectorised update
rounds differently from torch's fused one); ``offload_param`` changes nothing further. A
resumed run's steps equal the uninterrupted run's to ~2e-4 whichever optimizer saved the
checkpoint.

DeepSpeed builds CPU Adam on first use where it is not prebuilt (the trainer image prebuilds
it): ~100 s once per machine on 2 cores, cached in ``~/.cache/torch_extensions``."""

from __future__ import annotations

import shutil

import pytest
import torch

from olmo.checkpoints import layout
from olmo.checkpoints.paths import UNIVERSAL_CACHE
from olmo.model.transformer import OLMo
from olmo.train.checkpointing import TrainerState
from olmo.train.engine import build_optimizer, deepspeed_config
from olmo.train.metrics import read_metrics

from .conftest import run_trainer, small_config, train_config

OFFLOAD = {"deepspeed.offload_optimizer": "cpu"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset) -> dict:
    """Uninterrupted 8-step ZeRO-3 runs (checkpoints at steps 4 and 8): resident, and with the
    optimizer and the parameters offloaded."""
    out = {}
    for name, extra in (
        ("resident", {}),
        ("offload", {**OFFLOAD, "deepspeed.offload_param": "cpu"}),
    ):
        tmp = tmp_path_factory.mktemp(name)
        run_trainer(small_config(tmp, dataset, **extra), tmp / "run")
        out[name] = tmp / "run"
    return out


def losses(run) -> list[float]:
    return [m["loss"] for m in read_metrics(run)]


def test_an_offloaded_run_trains_like_a_resident_one(runs):
    resident, offloaded = losses(runs["resident"]), losses(runs["offload"])
    assert offloaded[-1] < offloaded[0] - 1.0
    assert offloaded == pytest.approx(resident, rel=1e-3)
    assert offloaded[:2] == resident[:2]  # before the updates differ in rounding


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("offload", {}),  # CPU Adam's checkpoint into torch's AdamW, ZeRO-3
        ("resident", {**OFFLOAD, "deepspeed.zero_stage": 1}),  # AdamW's into CPU Adam, ZeRO-1
    ],
)
def test_a_checkpoint_resumes_with_offload_switched(runs, tmp_path, dataset, source, target):
    run = tmp_path / "run"
    step4 = layout.checkpoints_dir(runs[source]) / "step000004"
    shutil.copytree(step4, layout.checkpoints_dir(run) / step4.name)
    result = run_trainer(small_config(tmp_path, dataset, **target), run, 1, "--resume", "latest")
    assert "resumed from" in result.stderr
    ours = read_metrics(run)
    assert [m["step"] for m in ours] == [5, 6, 7, 8]
    # Weights and both moments came across: the rest of the uninterrupted run, to rounding.
    assert [m["loss"] for m in ours] == pytest.approx(losses(runs[source])[4:], rel=1e-3)
    state = TrainerState.read(layout.latest_complete(run).path)
    assert (state.step, state.zero_stage) == (8, target.get("deepspeed.zero_stage", 3))
    assert not (run / UNIVERSAL_CACHE).exists()


def test_offload_sections_in_the_deepspeed_config(tmp_path):
    plain = deepspeed_config(train_config(tmp_path), 1)["zero_optimization"]
    assert "offload_optimizer" not in plain and "offload_param" not in plain
    both = {**OFFLOAD, "deepspeed.offload_param": "cpu", "deepspeed.pin_memory": False}
    section = deepspeed_config(train_config(tmp_path, **both), 1)["zero_optimization"]
    assert section["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    assert section["offload_param"] == {"device": "cpu", "pin_memory": False}
    zero2 = train_config(tmp_path, **OFFLOAD, **{"deepspeed.zero_stage": 2})
    section = deepspeed_config(zero2, 1)["zero_optimization"]
    assert section["offload_optimizer"] == {"device": "cpu", "pin_memory": True}


@pytest.mark.parametrize("stage", [1, 2])
def test_parameter_offload_is_refused_below_zero3(tmp_path, stage):
    extra = {"deepspeed.offload_param": "cpu", "deepspeed.zero_stage": stage}
    with pytest.raises(ValueError, match=r"offload_param: cpu needs deepspeed\.zero_stage: 3"):
        train_config(tmp_path, **extra)


def test_cpu_adam_keeps_the_groups_and_hyperparameters_and_swaps_state_with_adamw(tmp_path):
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    config = train_config(tmp_path, **{"optimizer.betas": [0.8, 0.9], "optimizer.eps": 1e-6})
    model = OLMo(config.model)
    cpu_adam = build_optimizer(model, config.optimizer, offload=True)
    adamw = build_optimizer(model, config.optimizer)
    assert isinstance(cpu_adam, DeepSpeedCPUAdam) and cpu_adam.adam_w_mode
    for theirs, ours in zip(adamw.param_groups, cpu_adam.param_groups, strict=True):
        assert ours["params"] == theirs["params"]
        for key in ("lr", "betas", "eps", "weight_decay"):
            assert ours[key] == theirs[key], key
    assert [g["weight_decay"] for g in cpu_adam.param_groups] == [0.1, 0.0]  # none on embed
    # One step of each from the same weights and gradients: the same update (AdamW semantics).
    start = [p.detach().clone() for p in model.parameters()]
    grads = [torch.randn_like(p) for p in model.parameters()]
    after = {}
    for name, optimizer in (("cpu_adam", cpu_adam), ("adamw", adamw)):
        with torch.no_grad():
            for p, s, g in zip(model.parameters(), start, grads, strict=True):
                p.copy_(s)
                p.grad = g.clone()
        optimizer.step()
        after[name] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(after["cpu_adam"], after["adamw"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # Each loads the other's state: its own implementation settings, its own step type.
    cpu_adam.load_state_dict(adamw.state_dict())
    assert all(g["bias_correction"] for g in cpu_adam.param_groups)
    assert all(type(s["step"]) is int and s["step"] == 1 for s in cpu_adam.state.values())
    adamw.load_state_dict(cpu_adam.state_dict())
    assert all(g["fused"] for g in adamw.param_groups)
    assert all(torch.is_tensor(s["step"]) and s["step"] == 1 for s in adamw.state.values())
    assert [g["betas"] for g in adamw.param_groups] == [(0.8, 0.9)] * 2


def test_a_prebuilt_cpu_adam_is_loaded_under_any_accelerator(monkeypatch):
    """The image prebuilds CPU Adam under the CPU accelerator; on a GPU (accelerator ``cuda``)
    DeepSpeed would compile it again, so the trainer hands DeepSpeed the installed module."""
    import sys

    import deepspeed.git_version_info as info
    from deepspeed.ops.op_builder.builder import OpBuilder

    from olmo.train.engine import CPU_ADAM_OP, use_prebuilt_cpu_adam

    monkeypatch.setitem(info.installed_ops, "cpu_adam", False)
    monkeypatch.delitem(OpBuilder._loaded_ops, "cpu_adam", raising=False)
    assert not use_prebuilt_cpu_adam() and "cpu_adam" not in OpBuilder._loaded_ops
    prebuilt = type(sys)(CPU_ADAM_OP)  # what the image's wheel installs under that name
    monkeypatch.setitem(sys.modules, CPU_ADAM_OP, prebuilt)
    monkeypatch.setitem(info.installed_ops, "cpu_adam", True)
    monkeypatch.setattr(info, "accelerator_name", "cpu")
    assert use_prebuilt_cpu_adam()
    assert OpBuilder._loaded_ops["cpu_adam"] is prebuilt
