"""Print the third-party requirements of local distributions: what a lock is resolved from.

    python3 docker/requirements.py '.[train,hf]' services/dataprep

Each argument is a folder holding a ``pyproject.toml``, optionally with extras in brackets. The
output is every ``project.dependencies`` entry (and those of the extras asked for) of those
distributions, minus the distributions themselves. docker/lock.py resolves these into each
image's hash-pinned lock (locks/<image>.txt), which the image installs before its code; the local
distributions follow with ``--no-deps``.
A local distribution named with extras by another (``olmo-k8s[eval]``) adds those extras' needs.
Standard library only (docker/lock.py runs before anything is installed).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*(.*)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_arg(arg: str) -> tuple[Path, set[str]]:
    match = re.fullmatch(r"(.*?)(?:\[([^\]]*)\])?", arg)
    assert match is not None
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return Path(match.group(1) or "."), extras


def requirements(args: list[str]) -> list[str]:
    projects: dict[str, dict] = {}
    wanted: dict[str, set[str]] = {}
    for arg in args:
        folder, extras = parse_arg(arg)
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            raise SystemExit(f"error: {pyproject} does not exist")
        project = tomllib.loads(pyproject.read_text())["project"]
        name = canonical(project["name"])
        projects[name] = project
        wanted.setdefault(name, set()).update(extras)

    out: list[str] = []
    seen_extras: dict[str, set[str]] = {name: set() for name in projects}
    pending = [(name, None) for name in projects] + [
        (name, extra) for name, extras in wanted.items() for extra in sorted(extras)
    ]
    while pending:
        name, extra = pending.pop(0)
        project = projects[name]
        if extra is None:
            entries = project.get("dependencies", [])
        else:
            if extra in seen_extras[name]:
                continue
            seen_extras[name].add(extra)
            optional = project.get("optional-dependencies", {})
            if extra not in optional:
                raise SystemExit(f"error: {name} has no extra {extra!r}")
            entries = optional[extra]
        for entry in entries:
            match = _NAME.match(entry)
            if match is None:
                raise SystemExit(f"error: cannot read requirement {entry!r} of {name}")
            dep = canonical(match.group(1))
            if dep in projects:  # a local distribution: only its extras matter
                pending += [
                    (dep, e.strip()) for e in (match.group(2) or "").split(",") if e.strip()
                ]
                continue
            if entry not in out:
                out.append(entry)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for line in requirements(argv):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
