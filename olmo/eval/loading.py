"""Loading what an evaluation needs: a model from a checkpoint or HF directory, and a tokenizer.

Two kinds of model folder are accepted:

- ``zero3``: a trainer checkpoint ``RUN_DIR/checkpoints/stepNNNNNN`` (DESIGN contract 3). It must
  have a valid ``COMPLETE`` marker whose sha256s still match (checked before anything is read),
  the run config and readable DeepSpeed ZeRO-3 files, merged into one fp32 state dict by
  ``olmo.train.export.load_consolidated``. Step and tokens come from the marker.
- ``hf``: a directory with ``config.json`` + safetensors weights (``olmo.model.hf``).

Anything wrong with the folder raises ``CheckpointError`` whose message says what (the eval
worker records it). The model is rebuilt as our OLMo module in fp32, in eval mode.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from olmo.checkpoints import layout
from olmo.checkpoints.paths import CONFIG_FILE
from olmo.model.config import ModelConfig
from olmo.model.transformer import OLMo
from olmo.storage import is_remote

__all__ = [
    "TOKENIZER_FILE",
    "CheckpointError",
    "LoadedModel",
    "TokenizerNotFound",
    "build_model",
    "find_tokenizer",
    "load_model",
    "load_tokenizer",
]

TOKENIZER_FILE = "tokenizer.json"
HF_CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint or model folder that cannot be evaluated; the message says why."""


class TokenizerNotFound(FileNotFoundError):
    """No tokenizer.json where one was expected (the message says where it looked)."""


@dataclass
class LoadedModel:
    """A model ready for evaluation and what is known about where it came from."""

    model: OLMo
    config: ModelConfig
    step: int | None
    tokens: int | None
    tokenizer_path: Path | None
    kind: Literal["zero3", "hf"]
    path: Path | None = None


def build_model(
    config: ModelConfig, state: dict[str, torch.Tensor], device: str | torch.device = "cpu"
) -> OLMo:
    """Our OLMo module with ``state`` loaded (fp32, eval mode, on ``device``)."""
    with torch.device("meta"):
        model = OLMo(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().to(device).eval()


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", *, verify: bool = True
) -> LoadedModel:
    """Load a COMPLETE trainer checkpoint (``kind="zero3"``) or an HF directory (``"hf"``).

    ``verify`` checks every sha256 the checkpoint's ``COMPLETE`` marker lists before loading.
    Raises ``CheckpointError`` for anything missing, partial or corrupt.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory")
    if (path / HF_CONFIG).is_file():
        return _load_hf(path, device)
    return _load_zero3(path, device, verify)


def _load_hf(path: Path, device: str | torch.device) -> LoadedModel:
    from olmo.model.hf import load_hf_directory

    try:
        config, state = load_hf_directory(path)
        model = build_model(config, state, device)
    except Exception as e:  # malformed config, missing/partial safetensors, wrong keys...
        raise CheckpointError(f"{path}: unreadable HF model directory: {_describe(e)}") from e
    tokenizer = path / TOKENIZER_FILE
    return LoadedModel(
        model=model,
        config=config,
        step=None,
        tokens=None,
        tokenizer_path=tokenizer if tokenizer.is_file() else None,
        kind="hf",
        path=path,
    )


def _load_zero3(path: Path, device: str | torch.device, verify: bool) -> LoadedModel:
    from olmo.train.export import load_consolidated

    problem = layout.completeness_problem(path, verify=verify)
    if problem is not None:
        if layout.parse_step(path.name) is None:
            problem = f"{path} is neither an HF model directory (no {HF_CONFIG}) nor a " + (
                "checkpoint folder (expected a name like step000123; temporary .tmp-* folders "
                "are never loaded)"
            )
        raise CheckpointError(problem)
    if not (path / CONFIG_FILE).is_file():
        raise CheckpointError(f"checkpoint {path} has no {CONFIG_FILE} (the run's config)")
    try:
        config, state = load_consolidated(path)
    except Exception as e:  # DeepSpeed's reader raises many kinds of errors on bad files
        raise CheckpointError(
            f"checkpoint {path}: unreadable DeepSpeed ZeRO-3 files: {_describe(e)}"
        ) from e
    try:
        model = build_model(config, state, device)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit the model config: {_describe(e)}"
        ) from e
    marker = layout.read_complete(path) or {}
    tokens = marker.get("tokens")
    return LoadedModel(
        model=model,
        config=config,
        step=marker.get("step"),
        tokens=tokens if isinstance(tokens, int) else None,
        tokenizer_path=find_tokenizer(path),
        kind="zero3",
        path=path,
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def find_tokenizer(checkpoint: str | os.PathLike[str]) -> Path | None:
    """``tokenizer.json`` of a trainer checkpoint's training data: the first of the run config's
    ``data.paths`` whose folder holds one (data-prep writes it next to ``manifest.json``).
    Relative data paths are tried as given and relative to the run directory; data on an object
    store (a URI) has its tokenizer downloaded."""
    import yaml

    checkpoint = Path(checkpoint)
    try:
        config = yaml.safe_load((checkpoint / CONFIG_FILE).read_text()) or {}
        paths = config.get("data", {}).get("paths", []) or []
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    run_dir = checkpoint.parent.parent
    for raw in paths:
        if is_remote(str(raw)):
            if (found := _remote_tokenizer(str(raw))) is not None:
                return found
            continue
        data = Path(str(raw))
        candidates = [data] if data.is_absolute() else [data, run_dir / data]
        for candidate in candidates:
            folder = candidate if candidate.is_dir() else candidate.parent
            if (folder / TOKENIZER_FILE).is_file():
                return folder / TOKENIZER_FILE
    return None


def _remote_tokenizer(uri: str) -> Path | None:
    """The ``tokenizer.json`` beside training data on an object store, downloaded (a small file)
    into ``$OLMO_STAGING_DIR`` (else the temporary folder); None when there is none."""
    from olmo.storage import location

    try:
        data = location(uri)
        remote = (data.parent if data.is_file() else data) / TOKENIZER_FILE
        if not remote.is_file():
            return None
        key = hashlib.sha256(remote.uri.encode()).hexdigest()[:16]
        root = os.environ.get("OLMO_STAGING_DIR") or tempfile.gettempdir()
        return remote.download(Path(root) / "olmo-tokenizers" / key / TOKENIZER_FILE)
    except (OSError, ValueError):
        return None


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` (or a folder holding one)."""
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise TokenizerNotFound(
            f"no tokenizer at {file}: give the path of a tokenizer.json (HF `tokenizers` format)"
        )
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:
        raise ValueError(f"{file} is not a valid tokenizers JSON file: {_describe(e)}") from e
