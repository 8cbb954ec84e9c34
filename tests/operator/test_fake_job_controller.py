"""The operator tests' fake Job controller tolerates objects that vanish under it, as a real
controller does: the operator deletes a failed attempt's Job (and garbage collection its pods)
at any moment, also between the controller's read and its write. Without this, bench-operator
and the integration tests crashed now and then on a loaded machine (a 404 on a Job's status
patch, or on a new pod's)."""

from __future__ import annotations

from tests.operator.conftest import FakeJobController, K8s
from tests.operator.emulator import ApiServer


def indexed_job(name: str, completions: int = 2) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": completions,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                },
            },
        },
    }


def test_a_job_deleted_before_its_status_patch_is_not_an_error(
    emulator: ApiServer, k8s: K8s
) -> None:
    k8s.batch.create_namespaced_job(k8s.namespace, indexed_job("gone"))
    fault = emulator.call(emulator.emulator.inject_fault, "PATCH", r"/jobs/gone/status$", code=404)
    controller = FakeJobController(k8s)
    pods = controller.sync("gone")  # reads the Job, makes its pods, then its status patch: 404
    assert len(fault.hits) == 1
    assert len(pods) == 2


def test_a_pod_collected_before_it_is_reported_running_is_not_an_error(
    emulator: ApiServer, k8s: K8s
) -> None:
    k8s.batch.create_namespaced_job(k8s.namespace, indexed_job("collected", completions=1))
    fault = emulator.call(
        emulator.emulator.inject_fault, "PATCH", r"/pods/collected-0-[a-z0-9]+/status$", code=404
    )
    controller = FakeJobController(k8s)
    controller.sync("collected")
    assert len(fault.hits) == 1
    controller.sync("collected")  # and the next pass goes on as usual
