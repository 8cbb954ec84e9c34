"""The operator distribution: small (no torch, no olmo-k8s), importable, in agreement with the
trainer about the contracts it restates."""

from __future__ import annotations

import importlib.metadata
import pkgutil
import re
import subprocess
import sys

import olmo_operator
from olmo_operator import contract as c
from olmo_operator import progress_validation
from tests.conftest import top_level_modules_after_import

MODULES = sorted(f"olmo_operator.{m.name}" for m in pkgutil.iter_modules(olmo_operator.__path__))


def _requirement_names(extra: str | None = None) -> set[str]:
    """The distribution's requirements (``extra``: those of that extra only)."""
    requires = importlib.metadata.requires("olmo-k8s-operator") or []
    marker = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
    names = set()
    for requirement in requires:
        found = marker.search(requirement)
        if (found.group(1) if found else None) == extra:
            names.add(re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0].lower())
    return names


def test_dependencies_are_kopf_kubernetes_pyyaml_prometheus_only() -> None:
    names = _requirement_names()
    assert names == {"kopf", "kubernetes", "pyyaml", "prometheus-client"}
    assert _requirement_names("report") == {"matplotlib"}  # only for `report --png`
    assert "torch" not in names and "olmo-k8s" not in names
    requires = importlib.metadata.requires("olmo-k8s-operator") or []
    assert "kopf==1.45.2" in requires and "kubernetes==37.0.2" in requires


def test_importing_every_module_loads_neither_torch_nor_olmo() -> None:
    assert {"cli", "crd", "handlers", "lifecycle", "resources"} <= {
        m.split(".")[1] for m in MODULES
    }
    loaded = top_level_modules_after_import(*MODULES)
    assert "olmo_operator" in loaded and "kopf" in loaded
    assert "torch" not in loaded and "olmo" not in loaded and "numpy" not in loaded


def test_console_script() -> None:
    scripts = {
        ep.name: ep.value
        for ep in importlib.metadata.distribution("olmo-k8s-operator").entry_points
        if ep.group == "console_scripts"
    }
    assert scripts == {"olmo-operator": "olmo_operator.cli:main"}
    out = subprocess.run(
        [sys.executable, "-m", "olmo_operator.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--namespace", "--all-namespaces", "--liveness-port", "--metrics-port"):
        assert flag in out
    assert "--peering" in out and "--standalone" in out


def test_contract_agrees_with_the_trainer() -> None:
    """The operator restates the trainer's exit code and the progress report's address; the
    trainer side is torch-free, so this check needs no GPU stack."""
    from olmo import progress
    from olmo.train import exit_codes
    from olmo_operator.resources import progress_config_map_name

    assert c.EXIT_PREEMPTED == exit_codes.PREEMPTED
    assert (c.PROGRESS_TRAINER, c.PROGRESS_EVAL) == (progress.TRAINER, progress.EVAL)
    assert c.PROGRESS_SOURCES == progress.SOURCES
    assert progress.config_map_name("run") == progress_config_map_name("run")


def test_the_resilience_contract_agrees_with_the_trainer() -> None:
    """Issue 20's names, restated by the operator: the preflight's exit code, environment, checks
    and limits, the collective timeout's variable, the states the trainer reports."""
    from olmo.train import distributed, exit_codes, preflight
    from olmo.train.callbacks import progress

    assert (c.ENV_PREFLIGHT_TIMEOUT, c.ENV_NODE_NAME) == (
        preflight.TIMEOUT_ENV,
        preflight.NODE_NAME_ENV,
    )
    assert c.ENV_COLLECTIVE_TIMEOUT == distributed.COLLECTIVE_TIMEOUT_ENV
    assert set(c.PREFLIGHT_CHECKS) == set(preflight.CHECKS)
    assert preflight.MAX_FAILURES <= progress_validation.MAX_PREFLIGHT_FAILURES
    assert preflight.MAX_MESSAGE <= progress_validation.MAX_TEXT
    assert c.TRAINER_STATES == progress.STATES
    assert exit_codes.PREFLIGHT_FAILED == 77 and exit_codes.PREFLIGHT_FAILED != c.EXIT_PREEMPTED


def test_trainer_reads_the_environment_the_operator_sets() -> None:
    from olmo import progress

    reporter = progress.ProgressReporter.from_env(
        {
            c.ENV_JOB_NAME: "run",
            c.ENV_JOB_NAMESPACE: "ml",
            c.ENV_ATTEMPT: "3",
            "OLMO_K8S_API_URL": "http://127.0.0.1:9",
        }
    )
    assert reporter is not None
    try:
        assert reporter.url.endswith("/api/v1/namespaces/ml/configmaps/run-progress")
        assert reporter.attempt == 3
    finally:
        reporter.close(timeout=1)
