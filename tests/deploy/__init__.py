"""Tests of the deployment side (issue 7): images, Makefile workflow, kind configs, the chart.

None of them needs a Docker engine, kind or a cluster: Dockerfiles are parsed, the Makefile is
dry-run (`make -n`) or run where its tool checks fail, templates are rendered offline.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def module_constant(path: Path, name: str) -> Any:
    """The literal value assigned to ``name`` at the top level of the Python file ``path``.

    Read with ``ast`` rather than imported, so that a contract module's value can be checked
    without importing its package (and its dependencies) into the test process.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path} has no top-level literal assignment to {name}")


def operator_presets() -> tuple[str, ...]:
    """The model presets the operator maps to ``/app/configs/<preset>.yaml`` in the trainer image."""
    contract = ROOT / "services/operator/src/olmo_operator/contract.py"
    return tuple(module_constant(contract, "PRESETS"))
