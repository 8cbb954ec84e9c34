"""The pure lifecycle core driven through whole scenarios, with no API server anywhere.

``World`` plays the API server for :func:`olmo_operator.lifecycle.next_action`: it applies each
Action (status merge patch, deletes, creates) to an in-memory set of objects, and the tests play
the Job controller and the kubelet by editing Job and pod status.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle import Action, Observed, Timing, next_action
from olmo_operator.progress import apply_merge_patch
from olmo_operator.spec import parse_job

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# No failure settle window here (the settle tests set one): a failure counts when first seen.
TIMING = Timing(
    backoff_base_seconds=10,
    backoff_max_seconds=600,
    termination_wait_seconds=30,
    failure_settle_seconds=0,
)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the merge ``patch`` applied, as the API server does (copies: the status never
    shares objects with the Action that patched it)."""
    return apply_merge_patch(copy.deepcopy(base), copy.deepcopy(patch))


class World:
    timing = TIMING

    def __init__(self, name: str = "run", **spec: Any):
        base = {
            "model": {"preset": "tiny"},
            "image": "img",
            "dataset": {"claimName": "data"},
            "checkpoint": {"claimName": "ckpt"},
            "nodes": 2,
            "gpusPerNode": 8,
        }
        base.update(spec)
        self.obj: dict[str, Any] = {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND,
            "metadata": {"name": name, "namespace": "ml", "uid": "u-1", "generation": 1},
            "spec": base,
        }
        self.status: dict[str, Any] = {}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.nodes: dict[str, Any] = {}
        self.now = T0
        self.actions: list[Action] = []
        self.deleted_olmojob = False

    # the API ----------------------------------------------------------------------------------

    def observed(self) -> Observed:
        def of(kind: str) -> tuple[dict[str, Any], ...]:
            return tuple(o for (k, _), o in sorted(self.objects.items()) if k == kind)

        return Observed(
            now=self.now,
            jobs=of("Job"),
            pods=of("Pod"),
            services=of("Service"),
            deployments=of("Deployment"),
            config_maps=of("ConfigMap"),
            nodes=dict(self.nodes),
        )

    def step(self, seconds: float = 0.0) -> Action:
        self.now += dt.timedelta(seconds=seconds)
        action = next_action(parse_job(self.obj), self.status, self.observed(), self.timing)
        self.status = merge(self.status, action.status)
        for ref in action.delete:
            assert (ref.kind, ref.name) in self.objects, f"deleting a missing {ref}"
            del self.objects[(ref.kind, ref.name)]
        for obj in action.create:
            self.objects.setdefault((obj["kind"], obj["metadata"]["name"]), copy.deepcopy(obj))
        if action.delete_job:
            self.deleted_olmojob = True
        self.actions.append(action)
        return action

    def edit(self, **spec: Any) -> None:
        self.obj["spec"].update(spec)
        self.obj["metadata"]["generation"] += 1

    # the job controller and the kubelet -------------------------------------------------------

    def job(self, name: str) -> dict[str, Any]:
        return self.objects[("Job", name)]

    def start_pods(self, job_name: str) -> list[str]:
        job = self.job(job_name)
        names = []
        for index in range(job["spec"]["completions"]):
            name = f"{job_name}-{index}-x{index}"
            meta = {
                "name": name,
                "labels": {
                    **job["spec"]["template"]["metadata"]["labels"],
                    "batch.kubernetes.io/job-completion-index": str(index),
                },
                "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
            }
            self.objects[("Pod", name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {"nodeName": f"node-{index}"},
                "status": {"phase": "Running"},
            }
            names.append(name)
        return names

    def pods_of(self, job_name: str) -> list[str]:
        return sorted(n for (k, n) in self.objects if k == "Pod" and n.startswith(f"{job_name}-"))

    def end_pod(self, name: str, exit_code: int, *, at: float = 0.0, **status: Any) -> None:
        pod = self.objects[("Pod", name)]
        pod["status"] = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "finishedAt": iso(self.now + dt.timedelta(seconds=at)),
                        }
                    },
                }
            ],
            **status,
        }

    def complete_job(self, name: str) -> None:
        for pod in self.pods_of(name):
            self.end_pod(pod, 0)
        job = self.job(name)
        job["status"] = {
            "succeeded": job["spec"]["completions"],
            "conditions": [{"type": "Complete", "status": "True"}],
        }

    def fail_job(self, name: str, reason: str = "BackoffLimitExceeded", message: str = "") -> None:
        self.job(name)["status"] = {
            "failed": 1,
            "conditions": [
                {"type": "Failed", "status": "True", "reason": reason, "message": message}
            ],
        }

    def names(self, kind: str) -> list[str]:
        return sorted(n for (k, n) in self.objects if k == kind)

    # the pods' progress reports ---------------------------------------------------------------

    def report(self, source: str, document: Any) -> None:
        """A pod writes its data key of ``<job>-progress`` (a dict is sent as JSON, anything
        else as is), as ``olmo.progress`` does; the operator created the ConfigMap."""
        name = f"{self.obj['metadata']['name']}-progress"
        config_map = self.objects[("ConfigMap", name)]
        text = json.dumps(document) if isinstance(document, dict) else document
        config_map["data"] = {**(config_map.get("data") or {}), source: text}


def reasons(action: Action) -> list[str]:
    return [e.reason for e in action.events]
