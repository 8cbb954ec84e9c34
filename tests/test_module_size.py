"""No module in ``olmo/`` or a service's ``src/`` grows past 500 lines unless its docstring says
why in one line starting ``Over 500 lines:`` (issue 14: hubs stay split by concern)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 500
REASON = "Over 500 lines:"


def _modules() -> list[Path]:
    found = list((ROOT / "olmo").rglob("*.py"))
    for src in (ROOT / "services").glob("*/src"):
        found += src.rglob("*.py")
    return sorted(p for p in found if ".egg-info" not in p.parts)


def test_modules_stay_under_500_lines_or_say_why():
    too_long = []
    for path in _modules():
        text = path.read_text()
        lines = text.count("\n")
        if lines <= LIMIT:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.startswith(REASON) for line in docstring.splitlines()):
            too_long.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not too_long, (
        f"modules over {LIMIT} lines without a '{REASON} ...' line in their docstring: "
        + ", ".join(too_long)
    )


def test_the_walk_sees_the_packages():
    names = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert "olmo/storage.py" in names
    assert "services/operator/src/olmo_operator/spec.py" in names
