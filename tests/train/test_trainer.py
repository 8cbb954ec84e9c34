"""The trainer as real processes: DeepSpeed ZeRO-3 bf16 on CPU with gloo, 1 or 2 processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

from olmo.checkpoints import layout
from olmo.checkpoints.paths import (
    COMPLETE,
    CONFIG_FILE,
    DEEPSPEED_TAG,
    RNG_DIR,
    TRAINER_STATE,
    UNIVERSAL_CACHE,
)
from olmo.train import exit_codes
from olmo.train.checkpointing import TrainerState
from olmo.train.inspect import batch_documents
from olmo.train.metrics import read_metrics
from olmo.train.trainer import check_batch_split

from .conftest import losses, run_trainer, small_config, train_config, trainer_command, trainer_env


def fp32_weights(checkpoint):
    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, dataset, validation_set):
    """8 steps, 2 processes, no interruption: the reference run."""
    tmp = tmp_path_factory.mktemp("reference")
    config = small_config(tmp, dataset)
    run_trainer(config, tmp / "run", 2)
    return config, tmp / "run"


def test_resume_is_bit_exact(uninterrupted, tmp_path):
    config, reference = uninterrupted
    run = tmp_path / "run"
    run_trainer(config, run, 2, "--set", "stop_at=4")
    assert layout.latest_complete(run).step == 4
    run_trainer(config, run, 2, "--resume", "latest")
    assert losses(run) == losses(reference)  # same loss sequence, compared exactly
    assert [s for s, _ in losses(run)] == list(range(1, 9))
    ours = fp32_weights(run / "checkpoints" / "step000008")
    theirs = fp32_weights(reference / "checkpoints" / "step000008")
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def test_resume_with_a_different_world_size_keeps_the_data_order(uninterrupted, tmp_path):
    config, reference = uninterrupted
    run = tmp_path / "run"
    run_trainer(config, run, 2, "--set", "stop_at=4")
    result = run_trainer(config, run, 1, "--resume", "latest")  # 2 processes → 1
    assert "resumed from" in result.stderr
    ours, theirs = read_metrics(run), read_metrics(reference)
    assert [m["batch_sha1"] for m in ours] == [m["batch_sha1"] for m in theirs]
    # Weights and Adam state came across whole: the first step after resuming matches the
    # reference up to float summation order; later steps stay close.
    assert ours[4]["loss"] == pytest.approx(theirs[4]["loss"], rel=1e-3)
    assert [m["loss"] for m in ours] == pytest.approx([m["loss"] for m in theirs], rel=2e-2)
    assert not (run / UNIVERSAL_CACHE).exists()  # the converted copy was a temporary cache
    assert TrainerState.read(layout.latest_complete(run).path).world_size == 1


def test_reference_run_trains_and_records_its_state(uninterrupted):
    _config, run = uninterrupted
    seq = losses(run)
    assert seq[-1][1] < seq[0][1] - 1.0  # it learns the phrase structure
    state = TrainerState.read(run / "checkpoints" / "step000008")
    assert (state.step, state.instances_consumed, state.world_size) == (8, 64, 2)
    assert state.tokens == 8 * 8 * 64
    assert state.versions["torch"] and state.versions["deepspeed"]
    assert state.data_manifest_sha256[0] and len(state.data_manifest_sha256[0]) == 64
    assert state.config["model"]["d_model"] == 64
    # What a checkpoint holds is named by the layout contract (olmo.checkpoints.paths).
    checkpoint = run / "checkpoints" / "step000008"
    names = {COMPLETE, CONFIG_FILE, DEEPSPEED_TAG, RNG_DIR, TRAINER_STATE}
    assert names <= {p.name for p in checkpoint.iterdir()}  # (and DeepSpeed's own scripts)
    assert (run / CONFIG_FILE).read_text() == (checkpoint / CONFIG_FILE).read_text()
    # Retention ran after each save: keep_last 2 of saves at 4 and 8.
    assert [c.step for c in layout.list_checkpoints(run)] == [4, 8]
    metrics = read_metrics(run)
    for key in ("lr", "grad_norm", "tokens_per_s", "tokens_per_s_per_device", "memory_gib",
                "eta_seconds", "batch_sha1"):  # fmt: skip
        assert key in metrics[-1], key


def test_data_order_does_not_depend_on_world_size(uninterrupted, tmp_path):
    config, reference = uninterrupted
    run = tmp_path / "one-process"
    run_trainer(config, run, 1, "--set", "stop_at=3")
    one = [m["batch_sha1"] for m in read_metrics(run)]
    two = [m["batch_sha1"] for m in read_metrics(reference)][:3]
    assert one == two
    # And the loss is the same function of the data, up to reduction order.
    one_losses = [loss for _, loss in losses(run)]
    two_losses = [loss for _, loss in losses(reference)][:3]
    assert one_losses == pytest.approx(two_losses, rel=2e-2)


def test_inspect_batch_rebuilds_the_batches_the_trainer_used(uninterrupted):
    import hashlib

    import numpy as np

    _, run = uninterrupted
    for metrics in read_metrics(run):
        rows = batch_documents(run, metrics["step"])
        assert len(rows) == 8
        indices = np.array([r["instance"] for r in rows], dtype=np.int64)
        assert hashlib.sha1(indices.tobytes()).hexdigest()[:16] == metrics["batch_sha1"]
        for row in rows:
            spans = [(d["instance_start"], d["instance_end"]) for d in row["documents"]]
            assert spans[0][0] == 0 and spans[-1][1] == 64  # documents cover the instance
            assert all(d["id"].startswith("doc-") for d in row["documents"])


def test_interrupted_checkpoint_is_ignored_and_rotated_away(uninterrupted, tmp_path):
    config, _ = uninterrupted
    run = tmp_path / "run"
    run_trainer(config, run, 1, "--set", "stop_at=4")
    # A save of step 6 that died half-way, and one of step 7 that died before its rename.
    half = layout.final_dir(run, 6)
    half.mkdir()
    (half / "trainer_state.json").write_text("{")
    abandoned = layout.temp_dir(run, 7)
    abandoned.mkdir()
    (abandoned / "partial.pt").write_bytes(b"\0" * 100)
    old = time.time() - 2 * 3600
    for path in (half, abandoned, half / "trainer_state.json", abandoned / "partial.pt"):
        os.utime(path, (old, old))
    result = run_trainer(config, run, 1, "--resume", "latest", "--set", "stop_at=5")
    assert "resumed from" in result.stderr and "step000004" in result.stderr
    assert [s for s, _ in losses(run)] == [1, 2, 3, 4, 5]
    # The next save rotated the debris away.
    assert not half.exists() and not abandoned.exists()
    assert [c.step for c in layout.list_checkpoints(run)] == [4, 5]


def test_resume_from_a_path_without_complete_is_refused(uninterrupted, tmp_path):
    config, _ = uninterrupted
    bogus = tmp_path / "run" / "checkpoints" / "step000002"
    bogus.mkdir(parents=True)
    result = run_trainer(
        config, tmp_path / "run", 1, "--resume", str(bogus), check_rc=exit_codes.CONFIG_ERROR
    )
    assert "COMPLETE" in result.stderr


def test_sigterm_saves_and_exits_with_the_preempted_code(tmp_path, dataset):
    config = small_config(tmp_path, dataset, max_steps=100000)
    run = tmp_path / "run"
    proc = subprocess.Popen(
        trainer_command(config, run, 1), env=trainer_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(read_metrics(run)) < 3:
            time.sleep(0.2)
        assert len(read_metrics(run)) >= 3, "trainer did not start"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == exit_codes.PREEMPTED, err[-3000:]
    latest = layout.latest_complete(run)
    last_step = read_metrics(run)[-1]["step"]
    assert latest is not None and latest.step == last_step
    assert layout.is_complete(latest.path, verify=True)
    assert json.loads((latest.path / "trainer_state.json").read_text())["step"] == last_step


def test_validation_perplexity_is_logged(tmp_path, dataset, validation_set):
    config = small_config(
        tmp_path, dataset, max_steps=6,
        **{"eval.interval": 3, "eval.validation_paths": [str(validation_set)],
           "eval.validation_instances": 8},
    )  # fmt: skip
    run_trainer(config, tmp_path / "run", 1)
    evals = [m for m in read_metrics(tmp_path / "run") if "eval/val_loss" in m]
    assert [m["step"] for m in evals] == [3, 6]
    assert evals[1]["eval/val_loss"] < evals[0]["eval/val_loss"]
    assert evals[0]["eval/val_perplexity"] == pytest.approx(
        2.718281828 ** evals[0]["eval/val_loss"]
    )


def test_progress_reported_to_the_olmojob(tmp_path, dataset, status_server):
    """Started by the operator (OLMOJOB_* set), rank 0 reports steps, checkpoints and rotations
    to the OLMoJob's progress ConfigMap (the operator's contract, olmo/progress.py)."""
    config = small_config(
        tmp_path, dataset, max_steps=4, **{"checkpoint.save_interval": 2, "checkpoint.keep_last": 1}
    )
    env = {
        "OLMOJOB_NAME": "tiny", "OLMOJOB_NAMESPACE": "default", "OLMOJOB_ATTEMPT": "2",
        "OLMO_K8S_API_URL": status_server.url, "OLMO_PROGRESS_INTERVAL_SECONDS": "0",
    }  # fmt: skip
    run_trainer(config, tmp_path / "run", 1, env=env)
    progress = status_server.progress()
    assert {p["attempt"] for p in progress} == {2}
    assert [p["step"] for p in progress if "step" in p][-1] == 4
    # Each document is the whole state so far: a checkpoint stays in the ones after it.
    checkpoints = [p["latestCheckpoint"] for p in progress if "latestCheckpoint" in p]
    assert sorted({c["step"] for c in checkpoints}) == [2, 4]
    assert checkpoints[-1]["path"] == str(layout.final_dir(tmp_path / "run", 4))
    rotations = [p["rotation"] for p in progress if "rotation" in p]
    assert rotations and rotations[-1]["deleted"] == [str(layout.final_dir(tmp_path / "run", 2))]


def test_downstream_tasks_in_loop(tmp_path, dataset):
    """eval.tasks runs olmo.eval's downstream tasks every eval.interval steps (ZeRO-3 engine)."""
    from ..eval.conftest import train_bpe

    tokenizer = tmp_path / "tokenizer.json"
    train_bpe().save(str(tokenizer))
    config = small_config(
        tmp_path, dataset, max_steps=2,
        **{"eval.interval": 2, "eval.tasks": ["piqa", "copa"], "eval.limit": 4,
           "eval.tokenizer": str(tokenizer)},
    )  # fmt: skip
    run_trainer(config, tmp_path / "run", 1)
    (evals,) = [m for m in read_metrics(tmp_path / "run") if "eval/piqa/headline" in m]
    assert evals["step"] == 2
    for task in ("piqa", "copa"):
        for norm in ("none", "per_token", "per_char", "pmi"):
            assert 0.0 <= evals[f"eval/{task}/acc_{norm}"] <= 1.0
    assert evals["eval/piqa/headline"] == evals["eval/piqa/acc_per_token"]


def test_downstream_tasks_need_a_tokenizer(tmp_path, dataset):
    config = small_config(tmp_path, dataset, **{"eval.tasks": ["piqa"]})
    result = run_trainer(config, tmp_path / "run", 1, check_rc=exit_codes.CONFIG_ERROR)
    assert "no tokenizer is known" in result.stderr


def test_every_batch_of_the_warmup_must_split_over_the_processes(tmp_path):
    warmup = {"batch.warmup_start_size": 2, "batch.warmup_double_every_tokens": 256}
    check_batch_split(train_config(tmp_path, **warmup), 2)
    with pytest.raises(ValueError, match="global batch of 2 instances does not split evenly"):
        check_batch_split(train_config(tmp_path, **warmup), 4)


def test_bad_config_exits_2(tmp_path, dataset):
    config = small_config(tmp_path, dataset)
    result = run_trainer(
        config, tmp_path / "run", 1, "--set", "model.n_heads=3", check_rc=exit_codes.CONFIG_ERROR
    )
    assert "n_heads (3) must divide d_model (64)" in result.stderr


def test_export_hf_loads_in_transformers(uninterrupted, tmp_path):
    from transformers import AutoModelForCausalLM

    from olmo.checkpoints.cli import main as ckpt_main
    from olmo.model.transformer import OLMo
    from olmo.train.export import load_consolidated

    _, run = uninterrupted
    checkpoint = run / "checkpoints" / "step000008"
    assert ckpt_main(["export-hf", str(checkpoint), str(tmp_path / "hf")]) == 0
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    model_config, state = load_consolidated(checkpoint)
    ours = OLMo(model_config).eval()
    ours.load_state_dict(state)
    ids = torch.randint(2, 512, (2, 32))
    with torch.no_grad():
        assert (hf_model(input_ids=ids).logits - ours(ids)).abs().max().item() <= 1e-4
    assert torch.equal(hf_model.model.embed_tokens.weight, state["embed.weight"])


def test_export_hf_refuses_incomplete_checkpoint(tmp_path, capsys):
    from olmo.checkpoints.cli import main as ckpt_main

    folder = tmp_path / "checkpoints" / "step000001"
    folder.mkdir(parents=True)
    assert ckpt_main(["export-hf", str(folder), str(tmp_path / "hf")]) == 2
    assert "not a complete checkpoint" in capsys.readouterr().err


def test_gradient_clipping_is_applied(uninterrupted, tmp_path, dataset):
    # Clipping to a vanishing norm makes every gradient tiny next to AdamW's eps, so the model
    # cannot learn; without clipping the same 4 steps take the loss down by ~0.7.
    _, reference = uninterrupted
    config = small_config(tmp_path, dataset, max_steps=4, **{"grad_clip.max_norm": 1e-9})
    run_trainer(config, tmp_path / "run", 2)
    clipped = [loss for _, loss in losses(tmp_path / "run")]
    free = [loss for _, loss in losses(reference)][:4]
    assert clipped[0] == free[0]  # same first batch, same initial weights
    assert free[0] - free[3] > 0.4
    assert abs(clipped[3] - clipped[0]) < 0.15 and clipped[3] > free[3] + 0.4
    assert all(m["grad_norm"] > 1e-3 for m in read_metrics(tmp_path / "run"))  # pre-clip norm


def test_batch_size_warmup_in_the_trainer(tmp_path, dataset):
    # Start at 2 instances (128 tokens), double every 256 tokens, cap at 8.
    config = small_config(
        tmp_path, dataset, max_steps=5,
        **{"batch.warmup_start_size": 2, "batch.warmup_double_every_tokens": 256,
           "batch.micro_batch_size": 2},
    )  # fmt: skip
    run_trainer(config, tmp_path / "run", 2)
    metrics = read_metrics(tmp_path / "run")
    assert [m["batch_instances"] for m in metrics] == [2, 2, 4, 8, 8]
    assert [m["micro_batches"] for m in metrics] == [1, 1, 1, 2, 2]  # per rank, 2 ranks
    assert [m["instances_consumed"] for m in metrics] == [2, 4, 8, 16, 24]
    rows = batch_documents(tmp_path / "run", 4)
    assert len(rows) == 8 and rows[0]["position"] == 8


def test_plot_writes_pngs(uninterrupted, tmp_path):
    from olmo.train.cli import main

    _, run = uninterrupted
    assert main(["plot", str(run), "--out", str(tmp_path / "plots")]) == 0
    for name in ("loss.png", "lr.png", "throughput.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_resuming_on_different_data_warns(tmp_path, dataset, validation_set):
    config = small_config(tmp_path, dataset, max_steps=4)
    run_trainer(config, tmp_path / "run", 1, "--set", "stop_at=2")
    other = f"data.paths=[{validation_set}]"
    result = run_trainer(config, tmp_path / "run", 1, "--resume", "latest", "--set", other)
    assert "training data differs from the checkpoint's" in result.stderr


def test_a_run_from_before_the_order_was_recorded_resumes_in_its_own_order(tmp_path, dataset):
    """Checkpoints made before ``data.order`` existed record no order: they were trained in the
    pcg64 shuffle, and resuming one continues it (the default for new runs is feistel)."""
    import hashlib

    import numpy as np
    import yaml

    from olmo.data import GlobalOrder, InstanceDataset, open_shards

    config = small_config(tmp_path, dataset, max_steps=4, **{"checkpoint.save_interval": 2})
    run = tmp_path / "run"
    run_trainer(config, run, 1, "--set", "stop_at=2", "--set", "data.order=pcg64-shuffle")
    # Make it look like a run from before: no order in its checkpoint or its config files.
    checkpoint = layout.latest_complete(run).path
    state = json.loads((checkpoint / TRAINER_STATE).read_text())
    assert state.pop("data_order") == "pcg64-shuffle"
    (checkpoint / TRAINER_STATE).write_text(json.dumps(state))
    for path in (run / CONFIG_FILE, checkpoint / CONFIG_FILE):
        saved = yaml.safe_load(path.read_text())
        assert saved["data"].pop("order") == "pcg64-shuffle"
        path.write_text(yaml.safe_dump(saved))
    record = json.loads((checkpoint / COMPLETE).read_text())  # what resume verifies
    for name in (TRAINER_STATE, CONFIG_FILE):
        data = (checkpoint / name).read_bytes()
        record["files"][name] = hashlib.sha256(data).hexdigest()
        record["sizes"][name] = len(data)
    (checkpoint / COMPLETE).write_text(json.dumps(record))

    instances = len(InstanceDataset(open_shards([dataset]), 64))
    legacy = GlobalOrder(instances, 1234, kind="pcg64-shuffle")
    # inspect-batch reads a config.yaml without an order as the order of its time.
    assert [r["instance"] for r in batch_documents(run, 2)] == legacy.indices(8, 8).tolist()

    refused = run_trainer(config, run, 1, "--resume", "latest", "--set", "data.order=feistel",
                          check_rc=None)  # fmt: skip
    assert refused.returncode != 0
    assert "trained in the 'pcg64-shuffle' order" in refused.stderr

    run_trainer(config, run, 1, "--resume", "latest")
    assert TrainerState.read(layout.latest_complete(run).path).data_order == "pcg64-shuffle"
    assert yaml.safe_load((run / CONFIG_FILE).read_text())["data"]["order"] == "pcg64-shuffle"
    for kind, expect_equal in (("pcg64-shuffle", True), ("feistel", False)):
        order = GlobalOrder(instances, 1234, kind=kind)
        sha1 = [
            hashlib.sha1(order.indices(8 * step, 8).astype(np.int64).tobytes()).hexdigest()[:16]
            for step in range(4)
        ]
        assert ([m["batch_sha1"] for m in read_metrics(run)] == sha1) is expect_equal, kind


def test_new_runs_record_the_feistel_order(uninterrupted):
    _config, run = uninterrupted
    assert TrainerState.read(layout.latest_complete(run).path).data_order == "feistel"
    assert "order: feistel" in (run / CONFIG_FILE).read_text()
