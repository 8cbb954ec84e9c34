"""The names of an OLMoJob's children: deterministic, so that creating them again after an
operator restart is a harmless 409, and per attempt, so that attempt N+1 never waits for the
deletion of attempt N's objects."""

from __future__ import annotations


def attempt_name(job: str, attempt: int) -> str:
    """The trainer Job, its headless Service and (prefix of) its pods: ``<job>-a<attempt>``."""
    return f"{job}-a{attempt}"


def config_map_name(job: str, attempt: int) -> str:
    return f"{attempt_name(job, attempt)}-config"


def progress_account_name(job: str) -> str:
    """ServiceAccount, Role and RoleBinding of the pods that report progress."""
    return f"{job}-progress"


def dataprep_name(job: str) -> str:
    return f"{job}-dataprep"


def eval_name(job: str) -> str:
    return f"{job}-eval"


def rotation_name(job: str) -> str:
    return f"{job}-rotate"


def master_address(job: str, attempt: int) -> str:
    """Pod 0's DNS name: Indexed Job pods are ``<job name>-<index>`` under the subdomain."""
    name = attempt_name(job, attempt)
    return f"{name}-0.{name}"
