"""Fixtures of the end-to-end tests: the operator tests' API emulator and real kopf operator,
their job controller (without its stand-in kubelet), the Deployment controller, and the test
kubelet that runs every pod as local processes or as containers of its image
(``tests/e2e/kubelet.py``).

The kubelet's runtime is the ``kubelet_runtime`` fixture: ``"process"`` unless a test
parametrizes it (``@pytest.mark.parametrize("kubelet_runtime", ["container"])``; mark those
``images``: container mode needs the engine, and the images the pods name)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import engine
from tests.operator import conftest as operator_tests
from tests.operator.conftest import FakeJobController, K8s
from tests.operator.emulator import ApiServer

from .extensions import image_torch_extensions
from .kubelet import ContainerRuntime, FakeDeploymentController, Kubelet, ProcessRuntime, venv_bin

REPO_ROOT = Path(__file__).resolve().parents[2]

# The operator tests' fixtures, shared: the API emulator (and KUBECONFIG pointing at it), a client,
# the OLMoJob CRD registered in it, and the real kopf operator with short timers.
emulator = operator_tests.emulator
k8s = operator_tests.k8s
olmojob_resource = operator_tests.olmojob_resource
operator = operator_tests.operator


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test item (``item.rep_call``), for the fixtures' teardown."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def job_controller(k8s: K8s) -> Iterator[FakeJobController]:
    """The job controller only: pods are created Pending, the kubelet runs them."""
    controller = FakeJobController(k8s, run_pods=False).start()
    yield controller
    controller.stop()
    real = [e for e in controller.errors if getattr(e, "status", None) not in (404, 409)]
    assert not real, f"the fake job controller failed: {real!r}"


@pytest.fixture
def kubelet_runtime() -> str:
    """``process`` or ``container``: how the ``kubelet`` fixture runs pods (parametrize it)."""
    return "process"


def make_runtime(kind: str) -> ProcessRuntime | ContainerRuntime:
    """The kubelet runtime of the e2e tests: the venv as every image, or the Docker engine."""
    if kind == "process":
        return ProcessRuntime(
            venv_bin=venv_bin(),
            image_paths={"/app/configs": REPO_ROOT / "configs", "/opt/venv": venv_bin().parent},
            override_env=image_torch_extensions(),
        )
    if kind == "container":
        return ContainerRuntime(engine())
    raise ValueError(f"unknown kubelet runtime {kind!r}")


@pytest.fixture
def kubelet(
    request: pytest.FixtureRequest, emulator: ApiServer, tmp_path: Path, kubelet_runtime: str
) -> Iterator[Kubelet]:
    """The test kubelet (and the Deployment controller in its loop), on ``tmp_path/cluster``,
    with the ``kubelet_runtime``. On failure, the tails of every container's log and the
    kubelet's timeline are printed; every container is gone afterwards."""
    client = K8s.from_kubeconfig(emulator.kubeconfig)
    node = Kubelet(
        client,
        tmp_path / "cluster",
        runtime=make_runtime(kubelet_runtime),
        extra_env={
            "DS_ACCELERATOR": "cpu",
            "OMP_NUM_THREADS": "1",
            "OLMO_K8S_API_URL": emulator.url,
        },
    )
    node.controllers.append(FakeDeploymentController(client))
    node.start()
    try:
        yield node
    finally:
        node.stop()
        client.close()
        # (to the real stdout: kopf's test runner swaps sys.stdout while the operator runs)
        out = sys.__stdout__
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(node.log_tails(60), file=out)
        print("===== kubelet timeline =====", file=out)
        start = node.history[0][0] if node.history else 0.0
        for when, pod, what in node.history:
            print(f"{when - start:8.2f}s {pod}: {what}", file=out)
        out.flush()
        errors = [e for e in node.errors if getattr(e, "status", None) not in (404, 409)]
        assert not errors, f"the test kubelet failed: {errors!r}"
