"""The Docker engine and the project's images, for the tests that run containers.

Tests marked ``images`` (tests/images, the test kubelet's container mode) need a container
engine and the four images of docker/, built by ``make images`` (``make test`` builds them
first). A missing engine or image fails those tests with what to run; it never skips them.
``pytest -m "not images"`` deselects them for a quick run on a machine without an engine.
"""

from __future__ import annotations

import os
from functools import cache

import pytest

IMAGE_NAMES = ("trainer", "dataprep", "evalworker", "operator")
IMAGE_REPO = os.environ.get("OLMO_IMAGE_REPO", "olmo-k8s")
IMAGE_TAG = os.environ.get("OLMO_IMAGE_TAG", "dev")
IMAGE_UID = 10001
"""The images' user (USER 10001:10001 in every Dockerfile)."""


def image(name: str) -> str:
    """The tag ``make images`` gives image ``name`` (OLMO_IMAGE_REPO / OLMO_IMAGE_TAG)."""
    if name not in IMAGE_NAMES:
        raise ValueError(f"unknown image {name!r}")
    return f"{IMAGE_REPO}/{name}:{IMAGE_TAG}"


@cache
def _client():
    import docker

    return docker.from_env(timeout=300)


def engine():
    """A docker-py client of a running engine, or the test fails saying how to get one."""
    import docker

    try:
        client = _client()
        client.ping()
    except docker.errors.DockerException as e:
        pytest.fail(
            f"no container engine answers ({e}). Start one with `make engine` (as root: it "
            "installs Debian's docker.io when missing), then `make images BASE=local`; or "
            "deselect these tests with -m 'not images'.",
            pytrace=False,
        )
    return client


def require_image(name: str) -> str:
    """The tag of image ``name``, which must exist in the engine (else the test fails)."""
    import docker

    tag = image(name)
    try:
        engine().images.get(tag)
    except docker.errors.ImageNotFound:
        pytest.fail(
            f"image {tag} does not exist: build it with `make images` (`make images BASE=local` "
            "on a machine with no registry; OLMO_IMAGE_REPO/OLMO_IMAGE_TAG name other tags).",
            pytrace=False,
        )
    return tag
