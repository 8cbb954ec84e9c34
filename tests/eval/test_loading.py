"""Loading models for evaluation: HF directories, trainer checkpoints, and every way a folder
can be unusable (each a CheckpointError with a reason the eval worker can record)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from olmo.checkpoints import layout
from olmo.checkpoints.paths import CONFIG_FILE
from olmo.eval import (
    CheckpointError,
    TokenizerNotFound,
    evaluate_checkpoint,
    find_tokenizer,
    load_model,
    load_tokenizer,
)
from olmo.model.hf import save_hf_directory

from .conftest import tiny_olmo


@pytest.fixture
def hf_dir(tmp_path, bpe, olmo_model) -> Path:
    path = save_hf_directory(olmo_model.state_dict(), olmo_model.config, tmp_path / "hf")
    bpe.save(str(path / "tokenizer.json"))
    return path


def test_load_hf_directory(hf_dir, olmo_model):
    loaded = load_model(hf_dir)
    assert loaded.kind == "hf" and loaded.step is None and loaded.tokens is None
    assert loaded.tokenizer_path == hf_dir / "tokenizer.json"
    assert not loaded.model.training
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert loaded.config.d_model == 32 and loaded.config.embedding_size == 320
    ids = torch.randint(0, 320, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), olmo_model(ids))


def test_evaluate_checkpoint_on_hf_directory(hf_dir):
    results = evaluate_checkpoint(hf_dir, tasks=["copa"], limit=3, batch_size=4)
    assert results["checkpoint"] == str(hf_dir) and results["kind"] == "hf"
    assert results["step"] is None and results["tokens"] is None
    params = sum(p.numel() for p in tiny_olmo().parameters())
    assert results["model"] == {"d_model": 32, "n_layers": 2, "params": params}
    assert results["tasks"]["copa"]["items"] == 3 and results["continuations_scored"] == 6
    json.dumps(results)


def test_missing_tokenizer_is_a_clear_error(hf_dir, tmp_path):
    (hf_dir / "tokenizer.json").unlink()
    assert load_model(hf_dir).tokenizer_path is None
    with pytest.raises(TokenizerNotFound, match="pass tokenizer=PATH"):
        evaluate_checkpoint(hf_dir, tasks=["copa"], limit=1)
    with pytest.raises(TokenizerNotFound, match="no tokenizer at"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ValueError, match="not a valid tokenizers JSON"):
        load_tokenizer(tmp_path / "junk.json")


def test_corrupt_hf_directory(hf_dir):
    (hf_dir / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="unreadable HF model directory"):
        load_model(hf_dir)


def fake_checkpoint(run_dir: Path, step: int = 10, *, config: bool = True) -> Path:
    """A step folder with a valid COMPLETE marker over files DeepSpeed cannot read."""
    path = layout.final_dir(run_dir, step)
    (path / "deepspeed").mkdir(parents=True)
    (path / "deepspeed" / "mp_rank_00_model_states.pt").write_bytes(b"garbage")
    if config:
        config = {"run_name": "t", "model": {"preset": "tiny"}, "data": {"paths": ["data/tokens"]}}
        (path / CONFIG_FILE).write_text(yaml.safe_dump(config))
    layout.write_complete(path, step=step, tokens=1234)
    return path


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("no_complete", "has no COMPLETE marker: it is incomplete or still being written"),
        ("bad_sha", "sha256 of deepspeed/mp_rank_00_model_states.pt does not match COMPLETE"),
        ("missing_file", "config.yaml (listed in COMPLETE) is missing"),
        ("wrong_step", "the COMPLETE marker names step 10, not 11"),
        ("bad_json", "the COMPLETE marker is not a JSON object"),
        ("unreadable", "unreadable DeepSpeed ZeRO-3 files"),
    ],
)
def test_unusable_checkpoints_raise_checkpoint_error(tmp_path, damage, reason):
    path = fake_checkpoint(tmp_path)
    if damage == "no_complete":
        (path / layout.COMPLETE).unlink()
    elif damage == "bad_sha":
        (path / "deepspeed" / "mp_rank_00_model_states.pt").write_bytes(b"garbagE")
    elif damage == "missing_file":
        (path / CONFIG_FILE).unlink()
    elif damage == "wrong_step":
        path = path.rename(path.with_name("step000011"))
    elif damage == "bad_json":
        (path / layout.COMPLETE).write_text("[1, 2]")
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    assert reason in str(error.value)
    assert isinstance(error.value, ValueError)


def test_other_unusable_folders(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is not a directory"):
        load_model(tmp_path / "file")
    temp = tmp_path / "checkpoints" / ".tmp-step000010"
    temp.mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"neither an HF model directory.*\.tmp-\*"):
        load_model(temp)
    # A marker over no config: only checked when the sha256s are not verified.
    path = fake_checkpoint(tmp_path / "run", config=False)
    with pytest.raises(CheckpointError, match=r"has no config\.yaml"):
        load_model(path, verify=False)


def test_find_tokenizer_follows_the_run_config(tmp_path, bpe):
    run = tmp_path / "run"
    path = fake_checkpoint(run)
    assert find_tokenizer(path) is None
    data = run / "data" / "tokens"  # data.paths is relative: tried under the run dir too
    data.mkdir(parents=True)
    bpe.save(str(data / "tokenizer.json"))
    assert find_tokenizer(path) == data / "tokenizer.json"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(data / "tokenizer.json", other / "tokenizer.json")
    config = yaml.safe_load((path / CONFIG_FILE).read_text())
    config["data"]["paths"] = [str(tmp_path / "absent"), str(other / "part-00000.npy")]
    (path / CONFIG_FILE).write_text(yaml.safe_dump(config))
    assert find_tokenizer(path) == other / "tokenizer.json"


@pytest.mark.slow
def test_real_zero3_checkpoint(tmp_path, bpe):
    from olmo.model.hf import load_hf_directory
    from olmo.train.export import export_hf
    from tests.train.conftest import run_trainer, small_config, write_dataset

    data = write_dataset(tmp_path / "data", num_docs=40)
    bpe.save(str(data / "tokenizer.json"))  # as data-prep writes it next to manifest.json
    config = small_config(tmp_path, data, max_steps=2, **{"checkpoint.save_interval": 2})
    run_trainer(config, tmp_path / "run")
    checkpoint = layout.final_dir(tmp_path / "run", 2)

    loaded = load_model(checkpoint)
    assert (loaded.kind, loaded.step, loaded.tokens) == ("zero3", 2, 2 * 8 * 64)
    assert loaded.tokenizer_path == data / "tokenizer.json"
    _, exported = load_hf_directory(export_hf(checkpoint, tmp_path / "hf"))
    for name, tensor in loaded.model.state_dict().items():
        torch.testing.assert_close(tensor, exported[name])

    results = evaluate_checkpoint(checkpoint, tasks=["copa", "winogrande"], limit=4)
    assert (results["kind"], results["step"], results["tokens"]) == ("zero3", 2, 1024)
    assert set(results["tasks"]) == {"copa", "winogrande"}

    (checkpoint / "trainer_state.json").write_text("{}")  # tampered after COMPLETE
    with pytest.raises(CheckpointError, match=r"sha256 of trainer_state\.json does not match"):
        load_model(checkpoint)
