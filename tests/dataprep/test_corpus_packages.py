"""The embedded corpus's pinned package table (``olmo_dataprep.corpus.packages``): the shipped
``packages.toml`` loads, is installed with the wheel, and a bad table fails naming the field."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from olmo_dataprep.corpus import CORPUS_PACKAGES, SOURCES, CorpusBuildError
from olmo_dataprep.corpus.documents import CONVERTERS
from olmo_dataprep.corpus.packages import PACKAGES_FILE, parse_packages, source_packages

from ..conftest import REPO_ROOT

GOOD: dict[str, Any] = {
    "source": "code",
    "kind": "wheel",
    "name": "attrs",
    "version": "24.2.0",
    "filename": "attrs-24.2.0-py3-none-any.whl",
    "sha256": "81921eb96de3191c8258c199618104dd27ac608d9366f5e35d011eae1867ede2",
    "license": "MIT",
    "license_file": "attrs-24.2.0.dist-info/licenses/LICENSE",
    "license_phrases": ["The MIT License"],
    "created": "2024-08-06T00:00:00.000Z",
    "members": ["*.py"],
}


def table(*entries: dict[str, Any]) -> str:
    """A ``packages.toml`` text of ``entries`` (one package per non-code source added)."""
    others = [{**GOOD, "source": s, "name": s, "filename": f"{s}.deb"} for s in ("books", "docs")]
    lines = []
    for entry in [*others, *entries]:
        lines.append("[[package]]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in entry.items())
    return "\n".join(lines) + "\n"


def test_the_shipped_table_loads_once_with_every_source() -> None:
    assert all(source_packages(source) for source in SOURCES)
    assert set(CONVERTERS) == set(SOURCES)
    assert len({p.name for p in CORPUS_PACKAGES}) == len(CORPUS_PACKAGES)
    # Sources in build order, so that corpus.json lists the packages as they are built.
    order = [SOURCES.index(p.source) for p in CORPUS_PACKAGES]
    assert order == sorted(order)
    networkx = next(p for p in CORPUS_PACKAGES if p.name == "networkx")
    assert networkx.max_files == 100 and networkx.members == ("*.py",)
    assert networkx.describe()["max_files"] == 100


def test_a_good_table_parses_to_packages() -> None:
    (_, _, attrs) = parse_packages(table({**GOOD, "max_files": 3}))
    assert attrs.license_phrases == ("The MIT License",) and attrs.max_files == 3
    assert attrs.describe()["sha256"] == GOOD["sha256"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"licence": "MIT"}, r"unknown fields \['licence'\]"),
        ({"sha256": None}, r"missing fields \['sha256'\]"),
        ({"kind": "rpm"}, "kind must be one of"),
        ({"source": "novels"}, "source must be one of"),
        ({"sha256": "ABC"}, "sha256 must be 64 lower-case hex digits"),
        ({"created": "2024-08-06"}, "created must look like"),
        ({"members": []}, "members must be a non-empty list"),
        ({"license_phrases": [""]}, "license_phrases must hold non-empty strings"),
        ({"version": 24}, "version must be a non-empty string"),
        ({"max_files": True}, "max_files must be a positive integer"),
        ({"max_files": 0}, "max_files must be a positive integer"),
        ({"name": "books"}, "two packages have the same name"),
    ],
)
def test_a_bad_package_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    entry = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(CorpusBuildError, match=rf"{PACKAGES_FILE}: .*{message}"):
        parse_packages(table(entry))


def test_a_bad_table_is_refused() -> None:
    with pytest.raises(CorpusBuildError, match="not valid TOML"):
        parse_packages("[[package]\n")
    with pytest.raises(CorpusBuildError, match=r"only \[\[package\]\] tables"):
        parse_packages("format = 1\n" + table(GOOD))
    with pytest.raises(CorpusBuildError, match=r"no packages for sources \['code'\]"):
        parse_packages(table())
    with pytest.raises(CorpusBuildError, match="max_files is for code packages only"):
        parse_packages(table({**GOOD, "source": "docs", "name": "x", "max_files": 2}))


def test_the_table_is_in_the_wheel(tmp_path: Path) -> None:
    """The data-prep image installs a wheel of services/dataprep: the table must be in it."""
    source = tmp_path / "dataprep"  # a copy: building in place would leave build/ in the tree
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    shutil.copytree(REPO_ROOT / "services" / "dataprep", source, ignore=ignore)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "wheels").glob("olmo_dataprep-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(f"olmo_dataprep/corpus/{PACKAGES_FILE}").decode("utf-8")
    assert parse_packages(data) == CORPUS_PACKAGES
