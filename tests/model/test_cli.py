"""``olmo-model info``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from olmo.model.cli import main

from ..conftest import CONFIGS


def test_info_7b(capsys):
    assert main(["info", "7b"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_params"] == 6_888_095_744
    assert info["num_non_embedding_params"] == 6_888_095_744 - 50304 * 4096
    matmul = 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 50304 * 4096
    assert info["flops_per_token"] == 6 * matmul + 12 * 32 * 4096 * 2048
    assert info["config"]["preset"] == "7b" and info["config"]["weight_tying"] is False


def test_info_from_config_with_override(capsys):
    assert main(["info", "--config", str(CONFIGS / "1b.yaml"), "--set", "n_layers=8"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["n_layers"] == 8
    assert info["num_params"] == 8 * (4 * 2048**2 + 3 * 2048 * 8192) + 50304 * 2048


def test_info_bad_override_exits_2(capsys):
    assert main(["info", "tiny", "--set", "n_heads=3"]) == 2
    assert "n_heads (3) must divide d_model (128)" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = shutil.which(
        "olmo-model", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    )
    assert exe is not None
    out = subprocess.run([exe, "info", "65b"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["num_params"] == 65_584_234_496
