"""OLMoJob objects for the builder tests, and readers of what the builders make."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c

UID = "0b7a3a43-2f7e-4c1e-9d0a-6d1f7f1e0c11"


def olmojob(name: str = "run", **spec: Any) -> dict[str, Any]:
    """An OLMoJob as the API server stores it: 2 nodes × 8 GPUs, a preset, ``spec`` on top."""
    base: dict[str, Any] = {
        "model": {"preset": "tiny"},
        "image": "olmo-trainer:dev",
        "dataset": {"claimName": "data"},
        "checkpoint": {"claimName": "ckpt"},
        "nodes": 2,
        "gpusPerNode": 8,
    }
    base.update(spec)
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name, "namespace": "ml", "uid": UID, "generation": 1},
        "spec": base,
    }


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def trainer_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = by_kind(objects)["Job"]
    return job


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def sets_of(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]
