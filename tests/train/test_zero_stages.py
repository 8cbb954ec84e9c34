"""ZeRO stage as a setting (``deepspeed.zero_stage``): each stage trains the same model to the
same losses as ZeRO-3, keeps the checkpoint contract, and a run resumes at another stage through
DeepSpeed's universal format. Real ``olmo-train`` processes, 2 of them, gloo on CPU.

Measured tolerances (8 steps of the tiny model): ZeRO-1 and ZeRO-2 agree to ~4e-5 relative (their
gradient reductions differ in bucketing only); either against ZeRO-3 to ~2e-3, because
``zero.Init`` creates the parameters in bf16, so the model's truncated-normal init runs in bf16
at stage 3 and in fp32 at stages 1/2 (first-step losses differ by 1e-4). A resumed run's first
step equals the source stage's own next step to ~2e-4 (weights and AdamW state come across
whole; only the summation order of the new stage differs)."""

from __future__ import annotations

import shutil

import pytest

from olmo.checkpoints import layout
from olmo.checkpoints.paths import (
    COMPLETE,
    CONFIG_FILE,
    DEEPSPEED_TAG,
    RNG_DIR,
    TRAINER_STATE,
    UNIVERSAL_CACHE,
)
from olmo.train.checkpointing import TrainerState, needs_reshard
from olmo.train.distributed import DistInfo
from olmo.train.engine import ZERO12_BUCKET, build_engine, deepspeed_config
from olmo.train.export import load_consolidated
from olmo.train.metrics import read_metrics

from .conftest import run_trainer, small_config, train_config

STAGES = (1, 2, 3)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset) -> dict:
    """An uninterrupted 8-step, 2-process run at each stage (checkpoints at steps 4 and 8)."""
    out = {}
    for stage in STAGES:
        tmp = tmp_path_factory.mktemp(f"stage{stage}")
        run_trainer(small_config(tmp, dataset, **{"deepspeed.zero_stage": stage}), tmp / "run", 2)
        out[stage] = tmp / "run"
    return out


def loss_curve(run) -> list[float]:
    return [m["loss"] for m in read_metrics(run)]


def test_every_stage_trains_like_zero3_and_keeps_the_checkpoint_contract(runs):
    zero3 = loss_curve(runs[3])
    assert zero3[-1] < zero3[0] - 1.0
    assert loss_curve(runs[1]) == pytest.approx(zero3, rel=5e-3)
    assert loss_curve(runs[2]) == pytest.approx(zero3, rel=5e-3)
    assert loss_curve(runs[1]) == pytest.approx(loss_curve(runs[2]), rel=5e-4)
    for stage, run in runs.items():
        checkpoint = layout.latest_complete(run).path
        assert {COMPLETE, CONFIG_FILE, DEEPSPEED_TAG, RNG_DIR, TRAINER_STATE} <= {
            p.name for p in checkpoint.iterdir()
        }
        state = TrainerState.read(checkpoint)
        assert (state.step, state.world_size, state.zero_stage) == (8, 2, stage)
        shards = {p.name for p in (checkpoint / DEEPSPEED_TAG).iterdir()}
        # ZeRO-3 partitions the module states too; ZeRO-1/2 write them whole, once.
        assert ("mp_rank_00_model_states.pt" in shards) == (stage != 3), shards
    # The eval worker and export-hf read every stage's shards (fp32 weights merged).
    _, merged = load_consolidated(layout.latest_complete(runs[1]).path)
    _, reference = load_consolidated(layout.latest_complete(runs[3]).path)
    assert merged.keys() == reference.keys()
    assert all(merged[k].shape == reference[k].shape for k in merged)


@pytest.mark.parametrize(("source", "target"), [(3, 1), (1, 3)])  # 2 shares 1's path
def test_resume_at_another_stage_continues_the_run(runs, tmp_path, dataset, source, target):
    run = tmp_path / "run"
    step4 = layout.checkpoints_dir(runs[source]) / "step000004"
    shutil.copytree(step4, layout.checkpoints_dir(run) / step4.name)
    config = small_config(tmp_path, dataset, **{"deepspeed.zero_stage": target})
    result = run_trainer(config, run, 2, "--resume", "latest")
    assert "resumed from" in result.stderr
    ours, reference = read_metrics(run), read_metrics(runs[target])
    assert [m["step"] for m in ours] == [5, 6, 7, 8]
    assert [m["batch_sha1"] for m in ours] == [m["batch_sha1"] for m in reference[4:]]
    # Weights and AdamW state came across whole: the first step is the source run's own next
    # step up to summation order; the rest follow the new stage's uninterrupted run.
    assert ours[0]["loss"] == pytest.approx(read_metrics(runs[source])[4]["loss"], rel=1e-3)
    assert [m["loss"] for m in ours] == pytest.approx([m["loss"] for m in reference[4:]], rel=5e-3)
    state = TrainerState.read(layout.latest_complete(run).path)
    assert (state.step, state.zero_stage) == (8, target)
    assert not (run / UNIVERSAL_CACHE).exists()


def test_a_stage_change_goes_through_the_universal_format(runs):
    step8 = layout.latest_complete(runs[1]).path
    two = DistInfo(rank=0, local_rank=0, world_size=2, device=None, backend="gloo")
    assert not needs_reshard(step8, two, 1)
    assert needs_reshard(step8, two, 3)
    one = DistInfo(rank=0, local_rank=0, world_size=1, device=None, backend="gloo")
    assert needs_reshard(step8, one, 1)


def test_zero_sections_per_stage(tmp_path):
    zero3 = deepspeed_config(train_config(tmp_path), 2)["zero_optimization"]
    d = 64  # small_config's width: buckets derived from it
    assert zero3["stage"] == 3 and zero3["overlap_comm"] and zero3["contiguous_gradients"]
    assert zero3["reduce_bucket_size"] == d * d
    assert zero3["stage3_prefetch_bucket_size"] == int(0.9 * d * d)
    assert zero3["stage3_param_persistence_threshold"] == 10 * d
    zero1 = deepspeed_config(train_config(tmp_path, **{"deepspeed.zero_stage": 1}), 2)
    section = zero1["zero_optimization"]
    assert section["stage"] == 1 and not any(k.startswith("stage3_") for k in section)
    assert section["reduce_bucket_size"] == section["allgather_bucket_size"] == ZERO12_BUCKET
    tuned = train_config(
        tmp_path,
        **{
            "deepspeed.zero_stage": 2,
            "deepspeed.reduce_bucket_size": 50_000_000,
            "deepspeed.overlap_comm": False,
        },
    )
    section = deepspeed_config(tuned, 2)["zero_optimization"]
    assert section["reduce_bucket_size"] == 50_000_000 and not section["overlap_comm"]


def test_an_unknown_stage_is_refused(tmp_path):
    with pytest.raises(ValueError, match="zero_stage"):
        train_config(tmp_path, **{"deepspeed.zero_stage": 4})


def test_compile_wraps_the_module_under_zero3_hooks(tmp_path, dist, monkeypatch):
    """``compile: true`` compiles through the engine (DeepSpeed keeps the ZeRO-3 hooks outside
    the graphs). The compilation itself happens at the first forward, minutes on CPU, so the
    compiled training step is measured by benchmarks/gpu_all.py, not here."""
    monkeypatch.setenv("LOCAL_RANK", "0")  # what torchrun sets for deepspeed.initialize
    stage = 3  # the stage with hooks on every module (one stage: DeepSpeed keeps its groups)
    config = train_config(tmp_path, compile=True, **{"deepspeed.zero_stage": stage})
    engine = build_engine(config, deepspeed_config(config, 1))
    assert engine.is_compiled
    assert not build_engine(
        train_config(tmp_path, **{"deepspeed.zero_stage": stage}), deepspeed_config(config, 1)
    ).is_compiled
