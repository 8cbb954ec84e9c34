"""DeepSpeed's JIT-built CPU communication op for the e2e tests' process-mode pods.

The trainer image ships ``deepspeed_shm_comm`` prebuilt. Process mode stands in for the image
with the venv, and gives every pod a fresh ``HOME``: without help each pod would build the op
again (a minute of g++). The kubelet's ``override_env`` sets :func:`image_torch_extensions` over
the pods' own ``TORCH_EXTENSIONS_DIR`` instead: one folder per machine, built with the venv's
``ninja`` (the pods' ``PATH`` has the venv first; torch rebuilds an extension whenever another
ninja wrote its build log, so it is not the host's own cache, which other runs build with the
system's). ``python -m tests.e2e.extensions`` (``make setup``) builds it there, so the first
process-mode test does not pay the build inside the suite.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def torch_extensions_dir() -> str:
    """Where torch keeps JIT-built extensions for this Python and torch build (its rule)."""
    import torch
    from torch.utils.cpp_extension import get_default_build_root

    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return os.environ["TORCH_EXTENSIONS_DIR"]
    flavour = "cpu" if torch.version.cuda is None else f"cu{torch.version.cuda.replace('.', '')}"
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return str(Path(get_default_build_root()) / f"{python}_{flavour}")


def image_torch_extensions() -> dict[str, str]:
    """The environment under which process-mode pods find the prebuilt op."""
    return {"TORCH_EXTENSIONS_DIR": torch_extensions_dir() + "-e2e-image"}


def main() -> None:
    """Build the op where the pods look for it, with the venv's toolchain first on ``PATH``."""
    venv_bin = str(Path(sys.executable).parent)
    os.environ.update(image_torch_extensions())
    os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.accelerator import get_accelerator

    get_accelerator().create_op_builder("ShareMemCommBuilder").load(verbose=False)
    print(f"deepspeed_shm_comm ready in {os.environ['TORCH_EXTENSIONS_DIR']}")


if __name__ == "__main__":
    main()
