"""The one config system: YAML files, --set overrides, and clear errors."""

from __future__ import annotations

import pytest

from olmo.config import ConfigError, apply_overrides, dump_yaml, load_yaml, validate
from olmo.model.config import PRESETS, ModelConfig
from olmo.train.config import TrainConfig, load_train_config

from .conftest import CONFIGS, top_level_modules_after_import


@pytest.mark.parametrize("name", ["tiny", "1b", "7b", "65b"])
def test_every_shipped_config_loads_with_its_preset(name):
    config = load_train_config(CONFIGS / f"{name}.yaml")
    assert config.model.preset == name
    preset = PRESETS[name]
    for field in ("d_model", "n_layers", "n_heads", "mlp_hidden_size", "weight_tying"):
        assert getattr(config.model, field) == getattr(preset, field)


def test_recipe_values_in_configs():
    c1, c7 = load_train_config(CONFIGS / "1b.yaml"), load_train_config(CONFIGS / "7b.yaml")
    assert (c1.optimizer.lr, c1.scheduler.warmup_steps, c1.scheduler.name) == (4e-4, 2000, "cosine")
    assert (c7.optimizer.lr, c7.scheduler.warmup_steps, c7.scheduler.name) == (3e-4, 5000, "linear")
    assert c7.grad_clip.warmup_factor == 10.0 and c7.scheduler.anneal_steps == 1000
    for c in (c1, c7):
        assert c.optimizer.betas == (0.9, 0.95) and c.optimizer.eps == 1e-5
        assert c.optimizer.weight_decay == 0.1 and c.scheduler.min_lr_factor == 0.1
        assert c.tokens_per_step == 2048 * 2048


def test_overrides_any_field_with_yaml_values():
    c = load_train_config(
        CONFIGS / "tiny.yaml",
        ["model.d_model=256", "optimizer.lr=1e-4", "optimizer.betas=[0.8, 0.9]", "wandb.entity=me"],
    )
    assert c.model.d_model == 256 and c.model.preset == "tiny"
    assert c.optimizer.lr == 1e-4 and c.optimizer.betas == (0.8, 0.9)
    assert c.wandb.entity == "me"


def test_scientific_notation_in_yaml_is_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_name: x\nmax_steps: 5000\nmodel: {preset: tiny}\noptimizer: {lr: 1e-3}\n")
    assert load_train_config(path).optimizer.lr == 1e-3


def test_unknown_key_in_file_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_name: x\nmax_steps: 10\nmodel: {preset: tiny, d_modle: 64}\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    assert "model.d_modle: unknown key" in str(err.value)


def test_unknown_key_in_override_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_train_config(CONFIGS / "tiny.yaml", ["optimizer.learning_rate=1"])
    message = str(err.value)
    assert "unknown key 'learning_rate' in optimizer" in message
    assert "lr" in message and "weight_decay" in message


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError) as err:
        load_train_config(CONFIGS / "tiny.yaml", ["model.n_layers=four"])
    assert "model.n_layers: Input should be a valid integer (got 'four' of type str)" in str(
        err.value
    )
    with pytest.raises(ConfigError, match=r"model.weight_tying: Input should be a valid boolean"):
        load_train_config(CONFIGS / "tiny.yaml", ["model.weight_tying=1"])
    with pytest.raises(ConfigError, match=r"optimizer.lr: Input should be a valid number"):
        load_train_config(CONFIGS / "tiny.yaml", ["optimizer.lr=fast"])
    with pytest.raises(ConfigError, match=r"model.d_model: Input should be a valid integer"):
        load_train_config(CONFIGS / "tiny.yaml", ["model.d_model=128.5"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.n_heads=3", "n_heads (3) must divide d_model (128) evenly"),
        ("model.vocab_size=60000", "embedding_size (50304) must be >= vocab_size (60000)"),
        ("model.eos_token_id=50290", "eos_token_id (50290) must be a token id below vocab_size"),
        ("model.d_model=0", "d_model must be positive"),
        ("batch.micro_batch_size=32", "must not exceed batch.global_batch_size (16)"),
        ("max_steps=10", "must not exceed max_steps (10)"),
        ("batch.warmup_start_size=4", "must be set together"),
        ("scheduler.name=step", "Input should be 'cosine', 'linear', 'inverse_sqrt' or 'constant'"),
        ("optimizer.betas=[0.9]", "optimizer.betas"),
        ("model.preset=3b", "unknown preset '3b'"),
    ],
)
def test_impossible_values_are_rejected(override, message):
    with pytest.raises(ConfigError) as err:
        load_train_config(CONFIGS / "tiny.yaml", [override])
    assert message in str(err.value)


def test_missing_required_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {preset: tiny}\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    assert "run_name: Field required" in str(err.value)
    assert "max_steps: Field required" in str(err.value)


def test_malformed_overrides_and_files(tmp_path):
    with pytest.raises(ConfigError, match=r"must look like section\.key=value"):
        apply_overrides({}, ["model.d_model"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_train_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="is not a section"):
        load_train_config(CONFIGS / "tiny.yaml", ["max_steps.x=1"])


def test_dump_and_reload_is_identical(tmp_path):
    config = load_train_config(CONFIGS / "7b.yaml", ["model.n_layers=2"])
    path = tmp_path / "saved.yaml"
    path.write_text(dump_yaml(config))
    assert load_train_config(path) == config


def test_explicit_values_override_the_preset():
    c = validate(ModelConfig, {"preset": "7b", "n_layers": 2})
    assert (c.d_model, c.n_layers, c.weight_tying) == (4096, 2, False)


def test_config_system_is_torch_free():
    loaded = top_level_modules_after_import("olmo.config", "olmo.model.config", "olmo.train.config")
    assert "pydantic" in loaded and "torch" not in loaded


def test_train_config_is_the_schema_for_overrides():
    assert set(TrainConfig.model_fields) >= {"model", "optimizer", "scheduler", "batch"}
