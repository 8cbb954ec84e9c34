"""OLMo's own evaluator (PyPI ``ai2-olmo-eval``) as a reference, in a virtualenv of its own.

``ai2-olmo-eval`` pins ``datasets<4``, ``pyarrow<20`` and ``tokenizers<0.23``, which our stack
has outgrown, so it runs in a separate venv built from the hash-pinned ``locks/olmo-eval-ref.txt``
(``make lock``; docker/lock.py): ai2-olmo-eval, its dependencies, transformers to run the model
(``OlmoForCausalLM``) and the pinned CPU torch. Shared by ``tests/eval/test_reference_parity.py``
and ``benchmarks/bench_eval.py``:

- ``ensure_venv(venv=None) -> Path``: the venv's python, building it on first use under
  ``$OLMO_CACHE_DIR`` (else ``~/.cache/olmo-k8s``) in ``olmo-eval-ref-<lock sha256[:16]>/``, so a
  changed lock gets a fresh venv. Build: ``python3.11 -m venv`` then ``pip install
  --require-hashes --no-deps -r locks/olmo-eval-ref.txt`` (torch's ``+cpu`` wheel comes from
  pip's configured find-links, as ``make setup`` installs it, or from ``$TORCH_INDEX_URL``, e.g.
  PyTorch's CPU index, as an extra index). A venv is complete only once its stamp (the lock's sha256) is written; a half-built one
  is rebuilt; concurrent builders wait on a file lock. Failure raises ``ReferenceEnvError`` naming
  the step and the pip output.
- ``write_model(folder, config, tokenizer, seed)``: our OLMo with seeded weights, saved as an HF
  directory (``config.json``, ``model.safetensors``, ``tokenizer.json``) both sides load.
- ``build_fixture(folder, items, preset, vocab_size, seed) -> Fixture``: the fixed model both
  sides score: a byte-level BPE trained on the items' texts by data-prep's trainer (EOS id 0, pad
  id 1) and the ``preset`` OLMo with ``seed`` weights, in one HF directory; ``Fixture.spec(...)``
  is the matching reference spec.
- ``run_reference(python, spec) -> dict``: runs ``reference.py`` (ai2-olmo-eval's own task code,
  collate function and ``ICLMetric``, the model through transformers) on ``spec`` and returns its
  JSON; see that script for the fields.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "locks" / "olmo-eval-ref.txt"
SCRIPT = Path(__file__).resolve().parent / "reference.py"
PYTHON_VERSION = (3, 11)  # what the lock is resolved for
STAMP = ".olmo-k8s-lock-sha256"

# Our task names → ai2-olmo-eval's labels (build_task).
REFERENCE_LABELS = {
    "arc_easy": "arc_easy",
    "arc_challenge": "arc_challenge",
    "boolq": "boolq",
    "copa": "copa",
    "hellaswag": "hellaswag",
    "openbookqa": "openbook_qa",
    "piqa": "piqa",
    "sciq": "sciq",
    "winogrande": "winogrande",
}


class ReferenceEnvError(RuntimeError):
    """The reference venv cannot be built or the reference failed; the message says why."""


def cache_root() -> Path:
    root = os.environ.get("OLMO_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "olmo-k8s"


def lock_sha256(lock: Path = LOCK) -> str:
    try:
        return hashlib.sha256(lock.read_bytes()).hexdigest()
    except OSError as e:
        raise ReferenceEnvError(f"cannot read {lock}: {e} (generate it with `make lock`)") from e


def default_venv(lock: Path = LOCK) -> Path:
    return cache_root() / f"olmo-eval-ref-{lock_sha256(lock)[:16]}"


def _tail(text: str, chars: int = 3000) -> str:
    text = text.strip()
    return text if len(text) <= chars else "..." + text[-chars:]


def _base_python() -> str:
    if sys.version_info[:2] == PYTHON_VERSION:
        return sys.executable
    found = shutil.which("python{}.{}".format(*PYTHON_VERSION))
    if found is None:
        raise ReferenceEnvError(
            "the reference venv needs CPython {}.{} (what {} is resolved for); none found".format(
                *PYTHON_VERSION, LOCK.name
            )
        )
    return found


def _run(step: str, command: list[str]) -> None:
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise ReferenceEnvError(
            f"building the ai2-olmo-eval reference venv failed at {step} "
            f"(exit {out.returncode}): {' '.join(command)}\n{_tail(out.stdout + out.stderr)}"
        )


def ensure_venv(venv: Path | None = None, lock: Path = LOCK) -> Path:
    """The python of the reference venv, built from ``lock`` when missing or incomplete."""
    venv = Path(venv) if venv is not None else default_venv(lock)
    want = lock_sha256(lock)
    python = venv / "bin" / "python"
    stamp = venv / STAMP

    def ready() -> bool:
        return python.is_file() and stamp.is_file() and stamp.read_text().strip() == want

    if ready():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # another process may be building the same venv
        if ready():
            return python
        if venv.exists():
            if not stamp.is_file() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").is_file():
                raise ReferenceEnvError(f"{venv} exists and is not a venv made here; remove it")
            shutil.rmtree(venv)  # half-built or from another lock
        print(f"building the ai2-olmo-eval reference venv {venv} from {lock} ...", file=sys.stderr)
        _run("venv creation", [_base_python(), "-m", "venv", str(venv)])
        # torch's +cpu wheel: pip's configured find-links (as `make setup` installs it), or an
        # extra index named by TORCH_INDEX_URL (PyTorch's CPU index: TORCH_CPU_INDEX).
        index = os.environ.get("TORCH_INDEX_URL")
        _run(
            "pip install of the lock",
            [
                str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--require-hashes", "--no-deps", *(["--extra-index-url", index] if index else []),
                "-r", str(lock),
            ],
        )  # fmt: skip
        _run("the import check", [str(python), "-c", "import olmo_eval, transformers, torch"])
        stamp.write_text(want + "\n")
    return python


def write_model(folder: Path, config: Any, tokenizer: Any, seed: int = 0) -> Path:
    """Our OLMo built from ``config`` with ``torch.manual_seed(seed)`` weights, saved as an HF
    directory with ``tokenizer.json`` beside it; returns ``folder``."""
    import torch

    from olmo.model.hf import save_hf_directory
    from olmo.model.transformer import OLMo

    torch.manual_seed(seed)
    model = OLMo(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    save_hf_directory(model.state_dict(), config, folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


@dataclass(frozen=True)
class Fixture:
    """An HF directory holding the model and its tokenizer, and the ids both sides use."""

    folder: Path
    eos_token_id: int
    pad_token_id: int
    max_sequence_length: int

    def spec(self, tasks: list[str], limit: int | None, batch_size: int, **extra: Any) -> dict:
        """A reference spec for this model. ``bos_token_id`` is our document prefix, the EOS
        (see olmo.eval: the reference adds a BOS only when one is configured)."""
        return {
            "model": str(self.folder),
            "tokenizer": str(self.folder / "tokenizer.json"),
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.eos_token_id,
            "tasks": {t: REFERENCE_LABELS[t] for t in tasks},
            "limit": limit,
            "batch_size": batch_size,
            "model_ctx_len": self.max_sequence_length,
            **extra,
        }


def build_fixture(
    folder: Path, items: list[Any], preset: str = "tiny", vocab_size: int = 1024, seed: int = 0
) -> Fixture:
    """Train the tokenizer on ``items``' texts, build the model, save both into ``folder``."""
    from olmo.model.config import model_preset
    from olmo_dataprep.tokenizer import train_bpe

    texts = [t for item in items for c in item.choices for t in (c.context, c.continuation)]
    tokenizer = train_bpe(texts, vocab_size=vocab_size)
    config = model_preset(preset).model_copy(update={"eos_token_id": 0, "pad_token_id": 1})
    write_model(folder, config, tokenizer, seed)
    return Fixture(folder, 0, 1, config.max_sequence_length)


def run_reference(python: Path, spec: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Run ``reference.py`` in the reference venv on ``spec`` and return its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps({**spec, "output": str(out_file)}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        out = subprocess.run(
            [str(python), str(SCRIPT), str(spec_file)],
            capture_output=True, text=True, timeout=timeout, env=env,
        )  # fmt: skip
        if out.returncode != 0 or not out_file.is_file():
            raise ReferenceEnvError(
                f"the ai2-olmo-eval reference failed (exit {out.returncode}):\n"
                f"{_tail(out.stderr + out.stdout)}"
            )
        return json.loads(out_file.read_text())
