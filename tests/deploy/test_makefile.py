"""`make train SIZE=...` and its helpers (images, kind-up/-load/-down, helm-lint), and the kind
cluster configs they use.

`make -n` prints the whole deployment sequence without running it, so it is checked here
without docker, kind, helm or kubectl (PATH holds none of them); the real `make train` is run
where its tool check must stop it. The GPU cluster template is rendered with Helm's engine, which
is the same Go text/template + sprig that nvkind uses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy import ROOT, operator_presets

MAKE = shutil.which("make") or "/usr/bin/make"
IMAGES = ("trainer", "dataprep", "evalworker", "operator")
DIGEST_PINNED = re.compile(r"^kindest/node:v[\d.]+@sha256:[0-9a-f]{64}$")


def make(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    """Run make in the repo root with a clean environment (no MAKEFLAGS from an outer make)."""
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C"}
    return subprocess.run(
        [MAKE, "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def no_tools(tmp_path) -> str:
    """A PATH with no docker, kind, helm or kubectl (and nothing else)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    return str(empty)


def commands(dry_run_output: str) -> list[str]:
    """`make -n` output as one whitespace-normalised line per recipe command."""
    joined = re.sub(r"\\\n", " ", dry_run_output)
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip()]


def index_of(lines: list[str], *fragments: str) -> int:
    """The first line containing every fragment (as a substring)."""
    for i, line in enumerate(lines):
        if all(f in line for f in fragments):
            return i
    raise AssertionError(f"no command contains {fragments}:\n" + "\n".join(lines))


# ------------------------------------------------------------------------------------------------
# make train


def test_dry_run_shows_the_whole_sequence_without_any_tool_installed(no_tools):
    result = make("-n", "train", "SIZE=1b", path=no_tools)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)

    tool_check = index_of(lines, "command -v", "docker kind helm kubectl")
    create = index_of(lines, "kind get clusters", "grep -qx 'olmo'", "kind create cluster")
    assert "--name olmo --config k8s/kind/cluster.yaml" in lines[create]
    builds = [
        index_of(lines, "IMAGE_REPO=olmo-k8s VERSION=dev", f"docker/build-images.sh {name}")
        for name in IMAGES
    ]
    loads = [
        index_of(lines, f"kind load docker-image olmo-k8s/{name}:dev --name olmo")
        for name in IMAGES
    ]
    helm = index_of(lines, "helm upgrade --install olmo-1b ./helm", "--kube-context kind-olmo")
    wait_job = index_of(lines, "kubectl --context kind-olmo", "wait olmojob/olmo-1b")
    wait_pods = index_of(lines, "kubectl --context kind-olmo", "wait pod", "condition=Ready")
    logs = index_of(lines, "kubectl --context kind-olmo", "logs -f")

    assert len(set(builds)) == len(set(loads)) == 4
    assert tool_check < min(builds) and tool_check < create
    assert max(builds) < min(loads) and create < min(loads)
    assert max(loads) < helm < wait_job < wait_pods < logs
    assert "--set preset=1b --set image.tag=dev" in lines[helm] and "--wait" in lines[helm]
    assert "{.status.phase}'=Running" in lines[wait_job]
    trainer_pods = "-l olmo-k8s.io/component=trainer,olmo-k8s.io/job=olmo-1b"
    assert trainer_pods in lines[wait_pods] and trainer_pods in lines[logs]
    for name in IMAGES:
        assert (ROOT / "docker" / f"{name}.Dockerfile").is_file()


def test_size_version_and_cluster_name_flow_into_every_command(no_tools):
    result = make(
        "-n",
        "train",
        "SIZE=tiny",
        "VERSION=1.2.3",
        "KIND_CLUSTER=ci",
        "NAMESPACE=ml",
        path=no_tools,
    )
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    for name in IMAGES:
        index_of(lines, "IMAGE_REPO=olmo-k8s VERSION=1.2.3", f"docker/build-images.sh {name}")
        index_of(lines, f"kind load docker-image olmo-k8s/{name}:1.2.3 --name ci")
    index_of(lines, "kind get clusters", "grep -qx 'ci'", "kind create cluster --name ci")
    helm = lines[index_of(lines, "helm upgrade --install olmo-tiny ./helm")]
    assert "--kube-context kind-ci --namespace ml" in helm
    assert "--set preset=tiny --set image.tag=1.2.3" in helm
    index_of(lines, "kubectl --context kind-ci --namespace ml wait olmojob/olmo-tiny")


def test_default_size_is_1b(no_tools):
    lines = commands(make("-n", "train", path=no_tools).stdout)
    index_of(lines, "helm upgrade --install olmo-1b ./helm", "--set preset=1b")


@pytest.mark.parametrize("dry_run", [True, False])
def test_unknown_size_fails_before_anything_runs_and_lists_the_sizes(no_tools, dry_run):
    result = make(*(["-n"] if dry_run else []), "train", "SIZE=3b", path=no_tools)
    assert result.returncode != 0
    assert result.stdout == ""  # not even the tool check ran
    message = result.stderr
    assert "SIZE=3b is not a model size" in message
    for size in ("tiny", "1b", "7b", "65b"):
        assert re.search(rf"\b{size}\b", message.split("choose one of:")[1]), message


def test_sizes_are_the_operator_presets_and_each_has_a_trainer_config(no_tools):
    message = make("-n", "train", "SIZE=nope", path=no_tools).stderr
    listed = message.split("choose one of:")[1].split(".")[0].split()
    assert tuple(listed) == operator_presets()
    for size in listed:
        assert (ROOT / "configs" / f"{size}.yaml").is_file()
        assert make("-n", "train", f"SIZE={size}", path=no_tools).returncode == 0


def test_train_without_docker_and_kind_fails_and_points_to_the_local_mode(no_tools):
    result = make("train", "SIZE=1b", path=no_tools)
    assert result.returncode != 0
    assert "not found: docker kind helm kubectl" in result.stderr
    assert "make train-local" in result.stderr
    assert "build-images.sh" not in result.stdout and "kind create" not in result.stdout


def test_a_missing_kind_alone_is_named():
    result = make("train", "KIND=/nonexistent/kind", path=os.environ["PATH"])
    assert result.returncode != 0
    assert re.search(r"not found:.*/nonexistent/kind", result.stderr), result.stderr
    assert "make train-local" in result.stderr


# ------------------------------------------------------------------------------------------------
# The other targets


def test_images_builds_the_four_images_with_the_build_script(no_tools):
    lines = commands(make("-n", "images", "VERSION=v7", "BASE=local", path=no_tools).stdout)
    builds = [line for line in lines if "docker/build-images.sh" in line]
    assert [line.split()[-1] for line in builds] == list(IMAGES)
    for line in builds:
        assert "IMAGE_REPO=olmo-k8s VERSION=v7" in line and "BASE=local" in line
        assert "BASE_IMAGE=olmo-k8s/base:bookworm-py311" in line


def test_test_starts_an_engine_builds_the_base_and_the_images_before_pytest(no_tools):
    """`make test` (what .ci/run calls): lint, engine, offline base, the four images on it,
    then the whole suite with the image tests pointed at those tags."""
    lines = commands(make("-n", "test", path=no_tools).stdout)
    lint = index_of(lines, "ruff check .")
    engine = index_of(lines, "docker/engine.sh ensure")
    base = index_of(lines, "make", "base-image")
    images = index_of(lines, "make", "images BASE=local")
    pytest_ = index_of(lines, "OLMO_IMAGE_REPO=olmo-k8s OLMO_IMAGE_TAG=dev", "-m pytest")
    assert lint < engine < base < images < pytest_
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci and "engine-stop" in ci


def test_the_build_script_fails_clearly_without_an_engine(tmp_path):
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    result = subprocess.run(
        ["docker/build-images.sh", "operator"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "DOCKER": str(fake)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "no container engine answers" in result.stderr and "make engine" in result.stderr
    unknown = subprocess.run(
        ["docker/build-images.sh", "gpu"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "DOCKER": str(fake)},
    )  # fmt: skip
    assert unknown.returncode == 1 and "unknown image 'gpu'" in unknown.stderr


def test_a_local_base_that_does_not_exist_is_named(tmp_path):
    fake = tmp_path / "docker"  # answers `docker info`, knows no image
    fake.write_text('#!/bin/sh\n[ "$1" = info ] && exit 0\nexit 1\n')
    fake.chmod(0o755)
    result = subprocess.run(
        ["docker/build-images.sh", "operator"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "DOCKER": str(fake), "BASE": "local", "BASE_IMAGE": "nope:1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "nope:1 does not exist: make base-image" in result.stderr


def test_kind_down_deletes_the_named_cluster(no_tools):
    lines = commands(make("-n", "kind-down", "KIND_CLUSTER=x", path=no_tools).stdout)
    assert lines[-1] == "kind delete cluster --name x"


def test_kind_up_with_gpus_uses_nvkind_and_installs_the_device_plugin(no_tools):
    lines = commands(make("-n", "kind-up", "KIND_GPU=1", path=no_tools).stdout)
    index_of(lines, "command -v", "nvkind")
    create = lines[index_of(lines, "nvkind cluster create")]
    assert "--name olmo --config-template k8s/kind/cluster-gpu.yaml" in create
    plugin = lines[index_of(lines, "helm upgrade --install nvidia-device-plugin")]
    assert "--version 0.19.0" in plugin and "--kube-context kind-olmo" in plugin


def test_helm_lint_runs_the_chart_tests(no_tools):
    lines = commands(make("-n", "helm-lint", path=no_tools).stdout)
    assert lines[-1] == ".venv/bin/python -m pytest tests/deploy/test_chart.py -q"


# ------------------------------------------------------------------------------------------------
# kind cluster configs


def shared_dir(no_tools: str) -> str:
    lines = commands(make("-n", "kind-up", path=no_tools).stdout)
    return re.search(r"mkdir -p (\S+) && chmod 1777", lines[index_of(lines, "mkdir -p")])[1]


def test_cpu_cluster_is_a_control_plane_and_two_workers_on_one_pinned_node_image(no_tools):
    config = yaml.safe_load((ROOT / "k8s/kind/cluster.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    nodes = config["nodes"]
    assert [n["role"] for n in nodes] == ["control-plane", "worker", "worker"]
    images = {n["image"] for n in nodes}
    assert len(images) == 1 and DIGEST_PINNED.match(images.pop())
    for worker in nodes[1:]:  # the folder every worker shares, created by `make kind-up`
        assert {"hostPath": shared_dir(no_tools), "containerPath": "/var/lib/olmo-shared"} in (
            worker["extraMounts"]
        )


def render_gpu_template(tmp_path, gpus: int) -> dict:
    """k8s/kind/cluster-gpu.yaml rendered for a host with ``gpus`` GPUs.

    nvkind's only extra template function is ``numGPUs``; it is replaced by the number here.
    """
    import helm_python  # helm-python-sdk, pinned in the dev extra

    chart = tmp_path / "kind-gpu"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: kind-gpu\nversion: 0.1.0\n")
    template = (ROOT / "k8s/kind/cluster-gpu.yaml").read_text()
    (chart / "templates/cluster.yaml").write_text(template.replace("numGPUs", str(gpus)))
    rendered = helm_python.Chart.load(str(chart)).render({}, name="kind", namespace="default")
    (text,) = rendered.values()
    return yaml.safe_load(text)


def test_gpu_template_splits_the_gpus_evenly_over_two_workers(tmp_path, no_tools):
    config = render_gpu_template(tmp_path, gpus=4)
    nodes = config["nodes"]
    assert [n["role"] for n in nodes] == ["control-plane", "worker", "worker"]
    cpu_config = yaml.safe_load((ROOT / "k8s/kind/cluster.yaml").read_text())
    assert {n["image"] for n in nodes} == {cpu_config["nodes"][0]["image"]}
    prefix = "/var/run/nvidia-container-devices/cdi/runtime.nvidia.com/gpu/"
    gpus = [
        [
            m["containerPath"].removeprefix(prefix)
            for m in n["extraMounts"]
            if prefix in m["containerPath"]
        ]
        for n in nodes[1:]
    ]
    assert gpus == [["0", "1"], ["2", "3"]]
    for worker in nodes[1:]:
        assert worker["labels"]["nvidia.com/gpu.present"] == "true"
        assert {"hostPath": shared_dir(no_tools), "containerPath": "/var/lib/olmo-shared"} in (
            worker["extraMounts"]
        )


def test_gpu_template_refuses_fewer_gpus_than_workers(tmp_path):
    with pytest.raises(Exception, match="cannot be split over 2 workers"):
        render_gpu_template(tmp_path, gpus=1)


# ------------------------------------------------------------------------------------------------
# make setup, make lock


def test_setup_installs_only_hash_pinned_locks_and_the_local_code_without_dependencies(tmp_path):
    """CI's .venv is what locks/ pins (make lock): every pip install is --require-hashes of a lock,
    except the editable local distributions (--no-deps, no build isolation); pip check ends it."""
    result = make("-n", "setup", f"VENV={tmp_path}/venv", path=os.environ["PATH"])
    assert result.returncode == 0, result.stderr
    installs = [c for c in commands(result.stdout) if "pip install" in c]
    locks = [c.split(" -r ")[1] for c in installs if " -r " in c]
    assert locks == [
        "locks/build.txt",
        "locks/torch-deps.txt",
        "locks/torch-cpu.txt",
        "locks/ci.txt",
        "locks/olmo-eval.txt",
    ]
    for command in installs:
        if " -r " in command:
            assert "--require-hashes" in command and "--no-deps" in command, command
        else:
            assert "--no-deps" in command and "--no-build-isolation" in command, command
            assert all(w.startswith(("-", "/")) or w in ("pip", "install", ".") or w.startswith("services/")
                       for w in command.split()[1:]), command  # fmt: skip
    assert any("pip check" in c for c in commands(result.stdout))


def test_lock_targets_run_the_pinned_resolver(no_tools, tmp_path):
    """uv as locks/tools.txt pins it (with its hashes), in a venv of its own (here a fresh one)."""
    tool = tmp_path / "lock-tool"
    result = make(
        "-n", "lock", "lock-check", "lock-torch", "TORCH_VARIANT=cu130", f"LOCK_TOOL={tool}",
        path=no_tools,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    assert (
        "--require-hashes" in lines[index_of(lines, f"{tool}/bin/pip install", "locks/tools.txt")]
    )
    index_of(lines, f"docker/lock.py --uv {tool}/bin/uv write")
    index_of(lines, f"docker/lock.py --uv {tool}/bin/uv check --regenerate")
    index_of(lines, f"docker/lock.py --uv {tool}/bin/uv torch cu130")
