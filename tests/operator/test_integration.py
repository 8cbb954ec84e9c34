"""The real kopf operator (``olmo_operator.handlers``) against the API emulator.

The emulator runs no pods: the ``job_controller`` fixture plays the job controller and the
kubelet (pods of each Job, Running on a Node matching their nodeSelector), and the tests play
the scheduler and the trainer (``preempt_pod``, ``fail_pod``, ``succeed_pod``, progress
patches), all through the API.
"""

from __future__ import annotations

import time

import pytest
from kubernetes.client.exceptions import ApiException

from olmo_operator import contract as c

from .conftest import (
    ON_DEMAND_POOL,
    SPOT_POOL,
    K8s,
    fail_pod,
    preempt_pod,
    succeed_pod,
    wait_for,
)

TIMEOUT = 15.0  # generous: 2 shared CPU cores; the operator reconciles every 0.2 s here


def status(k8s: K8s, name: str) -> dict:
    return k8s.olmojob(name).get("status") or {}


def wait_status(k8s: K8s, name: str, timeout: float = TIMEOUT, **expected) -> dict:
    def check():
        st = status(k8s, name)
        return st if all(st.get(k) == v for k, v in expected.items()) else None

    return wait_for(check, timeout, message=f"{name} status {expected}")


def trainer_jobs(k8s: K8s, name: str) -> list[dict]:
    return k8s.jobs(f"{c.LABEL_JOB}={name},{c.LABEL_COMPONENT}={c.TRAINER}")


def attempt_pods(k8s: K8s, name: str, attempt: int) -> list[dict]:
    pods = k8s.pods(f"{c.LABEL_JOB}={name},{c.LABEL_ATTEMPT}={attempt}")
    return sorted(
        pods, key=lambda p: int(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"])
    )


def wait_running(k8s: K8s, name: str, attempt: int, nodes: int = 2) -> list[dict]:
    """The attempt's pods all Running (the fake kubelet) and the OLMoJob in phase Running."""

    def running():
        pods = attempt_pods(k8s, name, attempt)
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        return pods if phases == ["Running"] * nodes else None

    pods = wait_for(running, TIMEOUT, message=f"{nodes} running pods of {name} attempt {attempt}")
    wait_status(k8s, name, phase=c.RUNNING, attempt=attempt)
    return pods


def gone(fn, *args) -> bool:
    try:
        fn(*args)
    except ApiException as e:
        return e.status == 404
    return False


def container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def env_of(job: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(job).get("env") or []}


def after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def events(k8s: K8s, name: str, reason: str) -> list[dict]:
    return [e for e in k8s.events(name) if e.get("reason") == reason]


# --------------------------------------------------------------------------------------------


def test_new_olmojob_gets_a_headless_service_and_an_indexed_job(
    k8s, make_olmojob, operator, job_controller
):
    created = make_olmojob("llm")
    job = wait_for(lambda: k8s.job("llm-a1"), TIMEOUT)
    service = k8s.to_dict(k8s.core.read_namespaced_service("llm-a1", k8s.namespace))

    labels = job["metadata"]["labels"]
    assert (labels[c.LABEL_JOB], labels[c.LABEL_ATTEMPT], labels[c.LABEL_COMPONENT]) == (
        "llm",
        "1",
        c.TRAINER,
    )
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "OLMoJob",
        created["metadata"]["uid"],
        True,
    )

    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    assert spec["backoffLimit"] == 0
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never" and pod_spec["subdomain"] == "llm-a1"
    rules = spec["podFailurePolicy"]["rules"]
    assert {
        "action": "FailJob",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    } in rules
    assert pod_spec["nodeSelector"] == SPOT_POOL["nodeSelector"]
    assert pod_spec["tolerations"] == SPOT_POOL["tolerations"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims["checkpoints"] == "olmo-checkpoints"
    mounts = container(job)["volumeMounts"]
    assert {"name": "checkpoints", "mountPath": c.CHECKPOINTS_MOUNT} in mounts

    env = env_of(job)
    assert env[c.ENV_JOB_NAME] == "llm" and env["MASTER_ADDR"] == "llm-a1-0.llm-a1"
    args = container(job)["args"]
    assert after(args, "--node-rank") == "$(JOB_COMPLETION_INDEX)"
    assert after(args, "--resume") == "latest"
    assert after(args, "--nnodes") == "2"

    assert service["spec"]["clusterIP"] == "None"
    template_labels = spec["template"]["metadata"]["labels"]
    assert all(template_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert k8s.core.read_namespaced_service_account("llm-progress", k8s.namespace)
    assert k8s.rbac.read_namespaced_role_binding("llm-progress", k8s.namespace)

    # The pods the job controller makes from it: pod 0 is where MASTER_ADDR points.
    pods = wait_running(k8s, "llm", 1)
    first = pods[0]["spec"]
    assert f"{first['hostname']}.{first['subdomain']}" == env["MASTER_ADDR"]
    st = wait_status(k8s, "llm", phase=c.RUNNING, attempt=1, nodePool="spot")
    assert st["nodePoolIndex"] == 0 and st["observedGeneration"] == 1


@pytest.mark.parametrize("how", ["disruption", "exit-75"])
def test_preempted_pod_restarts_the_gang_as_the_next_attempt(
    k8s, make_olmojob, operator, job_controller, how
):
    make_olmojob("llm", maxFailures=0)
    pods = wait_running(k8s, "llm", 1)
    victim = pods[1]["metadata"]["name"]
    if how == "disruption":
        preempt_pod(k8s, victim, "PreemptionByScheduler", controller=job_controller)
    else:  # the trainer saved on SIGTERM and said "preempted, resumable"
        fail_pod(k8s, victim, exit_code=c.EXIT_PREEMPTED, controller=job_controller)

    wait_running(k8s, "llm", 2)
    st = status(k8s, "llm")
    assert st["restarts"] == {"failures": 0, "preemptions": 1}
    assert st["lastRestart"]["cause"] == "Preemption" and st["lastRestart"]["attempt"] == 1
    assert env_of(k8s.job("llm-a2"))["MASTER_ADDR"] == "llm-a2-0.llm-a2"
    assert k8s.core.read_namespaced_service("llm-a2", k8s.namespace)
    wait_for(lambda: gone(k8s.batch.read_namespaced_job, "llm-a1", k8s.namespace), TIMEOUT)
    wait_for(lambda: gone(k8s.core.read_namespaced_service, "llm-a1", k8s.namespace), TIMEOUT)
    wait_for(lambda: not attempt_pods(k8s, "llm", 1), TIMEOUT, message="attempt 1's pods deleted")
    (event,) = events(k8s, "llm", "Preempted")
    assert event["type"] == "Warning" and victim in event["message"]
    if how == "disruption":
        assert st["lastRestart"]["reason"] == "DisruptionTarget"
        # Seen on the pod first, the Event quotes its reason; seen on the Job's Failed
        # condition first (the job controller's verdict), it quotes that condition.
        assert any(s in event["message"] for s in ("PreemptionByScheduler", "DisruptionTarget"))
    else:
        assert st["lastRestart"]["reason"] == f"ExitCode{c.EXIT_PREEMPTED}"
        assert f"exited {c.EXIT_PREEMPTED}" in event["message"]


def test_repeated_preemptions_fall_back_to_the_next_node_pool(
    k8s, make_olmojob, operator, job_controller
):
    make_olmojob("llm")  # the spot pool allows 2 preemptions
    for attempt in (1, 2):
        pods = wait_running(k8s, "llm", attempt)
        assert (
            k8s.job(f"llm-a{attempt}")["spec"]["template"]["spec"]["nodeSelector"]
            == (SPOT_POOL["nodeSelector"])
        )
        preempt_pod(
            k8s, pods[0]["metadata"]["name"], "DeletionByTaintManager", controller=job_controller
        )
    wait_running(k8s, "llm", 3)
    pod_spec = k8s.job("llm-a3")["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == ON_DEMAND_POOL["nodeSelector"]
    assert not pod_spec.get("tolerations")
    st = status(k8s, "llm")
    assert (st["nodePool"], st["nodePoolIndex"]) == ("on-demand", 1)
    assert st["restarts"] == {"failures": 0, "preemptions": 2}
    assert events(k8s, "llm", "NodePoolFallback")


def test_failures_beyond_max_failures_fail_the_job(k8s, make_olmojob, operator, job_controller):
    make_olmojob("llm", maxFailures=1)
    pods = wait_running(k8s, "llm", 1)
    fail_pod(k8s, pods[0]["metadata"]["name"], exit_code=1, controller=job_controller)
    pods = wait_running(k8s, "llm", 2)  # backoff 0.1 s in these tests
    st = status(k8s, "llm")
    assert st["restarts"] == {"failures": 1, "preemptions": 0}
    assert (st["lastRestart"]["cause"], st["lastRestart"]["reason"]) == ("Failure", "ExitCode1")

    fail_pod(k8s, pods[1]["metadata"]["name"], exit_code=1, controller=job_controller)
    st = wait_status(k8s, "llm", phase=c.FAILED)
    assert st["restarts"]["failures"] == 2 and st["completionTime"]
    time.sleep(1.0)  # five reconciles: still no new attempt
    assert [j["metadata"]["name"] for j in trainer_jobs(k8s, "llm")] == ["llm-a2"]
    assert status(k8s, "llm")["attempt"] == 2
    assert events(k8s, "llm", "AttemptFailed")


def test_completed_training_succeeds_and_rotates_checkpoints(
    k8s, make_olmojob, operator, job_controller
):
    make_olmojob("llm", eval={"enabled": True})
    pods = wait_running(k8s, "llm", 1)
    wait_for(lambda: k8s.apps.read_namespaced_deployment("llm-eval", k8s.namespace), TIMEOUT)
    for pod in pods:
        succeed_pod(k8s, pod["metadata"]["name"], controller=job_controller)
    st = wait_status(k8s, "llm", phase=c.SUCCEEDED)
    assert st["completionTime"] and st["attempt"] == 1

    rotation = wait_for(lambda: k8s.job("llm-rotate"), TIMEOUT)
    assert rotation["metadata"]["labels"][c.LABEL_COMPONENT] == c.ROTATION
    (pod,) = wait_for(lambda: k8s.pods(f"{c.LABEL_COMPONENT}={c.ROTATION}"), TIMEOUT)
    succeed_pod(k8s, pod["metadata"]["name"], controller=job_controller)
    wait_for(
        lambda: (status(k8s, "llm").get("finalRotation") or {}).get("phase") == "Succeeded", TIMEOUT
    )
    wait_for(lambda: gone(k8s.core.read_namespaced_service, "llm-a1", k8s.namespace), TIMEOUT)
    wait_for(lambda: gone(k8s.apps.read_namespaced_deployment, "llm-eval", k8s.namespace), TIMEOUT)


def test_suspend_deletes_the_attempt_and_resume_starts_the_next(
    k8s, make_olmojob, operator, job_controller
):
    make_olmojob("llm")
    wait_running(k8s, "llm", 1)
    k8s.patch_olmojob("llm", {"spec": {"suspend": True}})
    wait_status(k8s, "llm", phase=c.SUSPENDED)
    wait_for(lambda: not trainer_jobs(k8s, "llm"), TIMEOUT, message="attempt 1's Job deleted")
    wait_for(lambda: gone(k8s.core.read_namespaced_service, "llm-a1", k8s.namespace), TIMEOUT)
    wait_for(lambda: not attempt_pods(k8s, "llm", 1), TIMEOUT, message="attempt 1's pods deleted")

    k8s.patch_olmojob("llm", {"spec": {"suspend": False}})
    wait_running(k8s, "llm", 2)
    assert [j["metadata"]["name"] for j in trainer_jobs(k8s, "llm")] == ["llm-a2"]
    restarts = status(k8s, "llm").get("restarts") or {}
    assert restarts.get("failures", 0) == 0  # a suspension is not a failure


def test_restarted_operator_creates_no_duplicates(
    emulator, k8s, make_olmojob, operator, job_controller
):
    make_olmojob("llm")
    wait_running(k8s, "llm", 1)
    operator.restart()
    time.sleep(1.5)  # the new operator resumes the object and reconciles several times
    wait_status(k8s, "llm", phase=c.RUNNING, attempt=1)
    selector = f"{c.LABEL_JOB}=llm"
    assert [j["metadata"]["name"] for j in k8s.jobs(selector)] == ["llm-a1"]
    assert [s["metadata"]["name"] for s in k8s.services(selector)] == ["llm-a1"]
    assert len(attempt_pods(k8s, "llm", 1)) == 2
    assert emulator.emulator.count("POST", "jobs", code=201) == 1
    assert emulator.emulator.count("POST", "services", code=201) == 1


@pytest.mark.parametrize(("code", "times"), [(409, 1), (500, 5)])
def test_api_errors_on_job_creation_are_retried(emulator, k8s, make_olmojob, operator, code, times):
    # 500 five times outlasts the client's own retries (4 tries), so kopf retries the reconcile;
    # a 409 on create reads as "exists" and only the next reconcile finds the Job missing.
    fault = emulator.emulator.inject_fault("POST", r"/namespaces/default/jobs$", code, times)
    make_olmojob("llm")
    wait_for(lambda: k8s.job("llm-a1"), TIMEOUT)
    assert fault.remaining == 0
    time.sleep(0.6)  # a few more reconciles
    assert [j["metadata"]["name"] for j in trainer_jobs(k8s, "llm")] == ["llm-a1"]
    assert emulator.emulator.count("POST", "jobs", code=201) == 1
    assert status(k8s, "llm")["attempt"] == 1


def test_trainer_progress_is_mirrored_into_status(
    emulator, k8s, make_olmojob, operator, job_controller
):
    """The real reporter (``olmo.progress``) writes the job's progress ConfigMap; the operator
    validates it and mirrors it into the status. The OLMoJob itself is never written by the
    pods: every status write comes from the operator."""
    from olmo.progress import ProgressReporter

    make_olmojob("llm")
    wait_running(k8s, "llm", 1)
    checkpoint = {
        "step": 10,
        "path": "/checkpoints/llm/checkpoints/step000010",
        "time": "2025-01-01T00:00:00Z",
    }
    reporter = ProgressReporter("llm", k8s.namespace, api_url=emulator.url, attempt=1)
    reporter.report({"step": 10, "tokens": 40960, "latestCheckpoint": checkpoint}, urgent=True)
    reporter.report({"restarts": {"failures": 0}, "phase": "Succeeded"}, urgent=True)
    reporter.close()
    assert reporter.failed == 0 and reporter.sent >= 1
    st = wait_status(k8s, "llm", step=10, tokens=40960)
    assert st["latestCheckpoint"] == checkpoint
    assert st["phase"] == c.RUNNING
    assert wait_for(lambda: events(k8s, "llm", "CheckpointSaved"), TIMEOUT)
    cm = k8s.core.read_namespaced_config_map("llm-progress", k8s.namespace)
    assert set(cm.data) == {"trainer"}
    assert emulator.emulator.count("PATCH", "configmaps", code=200) >= 1


def test_lost_node_counts_as_preemption(k8s, make_olmojob, operator, job_controller):
    make_olmojob("llm", maxFailures=0)
    pods = wait_running(k8s, "llm", 1)
    k8s.core.delete_node(pods[0]["spec"]["nodeName"])
    fail_pod(k8s, pods[0]["metadata"]["name"], exit_code=1, controller=job_controller)
    wait_running(k8s, "llm", 2)
    st = status(k8s, "llm")
    assert st["restarts"] == {"failures": 0, "preemptions": 1}
    assert st["lastRestart"]["reason"] == "NodeGone"


def test_deleting_the_olmojob_collects_its_children(k8s, make_olmojob, operator, job_controller):
    make_olmojob("llm")
    wait_running(k8s, "llm", 1)
    k8s.delete_olmojob("llm")
    wait_for(lambda: gone(k8s.olmojob, "llm"), TIMEOUT, message="the finalizer released")
    selector = f"{c.LABEL_JOB}=llm"
    wait_for(
        lambda: not k8s.jobs(selector) and not k8s.services(selector) and not k8s.pods(selector),
        TIMEOUT,
        message="children garbage-collected",
    )
    assert gone(k8s.core.read_namespaced_service_account, "llm-progress", k8s.namespace)


# --------------------------------------------------------------------------------------------
# API refusals and names taken (issue 15, items 2 and 5)


def test_a_child_the_api_server_refuses_fails_the_olmojob(k8s, make_olmojob, operator):
    """The CRD lets any node selector value through; the API server refuses a Job whose pods
    select a value that is no label value (422). That is final: phase Failed with the server's
    message, not Running forever."""
    pool = {"name": "gpu", "nodeSelector": {"pool": "gpu pool"}}
    make_olmojob("llm", nodePools=[pool])
    st = wait_status(k8s, "llm", phase=c.FAILED)
    assert "the API server refused to create Job default/llm-a1" in st["message"]
    assert "nodeSelector" in st["message"] and "gpu pool" in st["message"]
    assert st["completionTime"]
    conditions = {x["type"]: x["status"] for x in st["conditions"]}
    assert conditions["Failed"] == "True"
    assert wait_for(lambda: events(k8s, "llm", "CreateRefused"), TIMEOUT)
    assert trainer_jobs(k8s, "llm") == []


def _stale_failed_dataprep_job(k8s, job: str) -> dict:
    """The failed data-prep Job of a deleted OLMoJob of the same name, its garbage collection
    not finished (it is owned by an OLMoJob UID that no longer exists)."""
    labels = {c.LABEL_JOB: job, c.LABEL_COMPONENT: c.DATAPREP}
    body = {
        "metadata": {
            "name": f"{job}-dataprep",
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": c.API_VERSION,
                    "kind": c.KIND,
                    "name": job,
                    "uid": "00000000-0000-0000-0000-00000000dead",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "suspend": True,  # the fake job controller leaves it alone
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "dataprep", "image": "old"}],
                },
            },
        },
    }
    name = body["metadata"]["name"]
    created = k8s.to_dict(k8s.batch.create_namespaced_job(k8s.namespace, body))
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    k8s.batch.patch_namespaced_job_status(
        name, k8s.namespace, {"status": {"failed": 1, "conditions": [failed]}}
    )
    return created


def test_a_stale_child_of_a_deleted_namesake_is_replaced_not_adopted(
    k8s, make_olmojob, operator, job_controller
):
    """Adopting the old run's failed data-prep Job would fail the new run at once."""
    stale = _stale_failed_dataprep_job(k8s, "llm")
    prepare = {"pipelineConfigMap": {"name": "pipeline"}, "workers": 1}
    created = make_olmojob("llm", dataset={"claimName": "olmo-tokens", "prepare": prepare})
    uid = created["metadata"]["uid"]

    def replaced():
        job = k8s.job("llm-dataprep")
        owners = [r["uid"] for r in job["metadata"].get("ownerReferences") or []]
        return job if owners == [uid] else None

    job = wait_for(replaced, TIMEOUT, message="llm-dataprep owned by the new OLMoJob")
    assert job["metadata"]["uid"] != stale["metadata"]["uid"]
    assert not (job.get("status") or {}).get("conditions")  # a fresh Job, not the old one
    st = wait_status(k8s, "llm", phase=c.PREPARING_DATA)
    assert "DataPrepared" not in {x["type"] for x in st.get("conditions") or []}


def test_a_name_taken_by_someone_elses_object_fails_and_leaves_it_alone(
    k8s, make_olmojob, operator
):
    theirs = {"metadata": {"name": "llm-a1"}, "spec": {"ports": [{"port": 80}]}}
    k8s.core.create_namespaced_service(k8s.namespace, theirs)
    make_olmojob("llm")
    st = wait_status(k8s, "llm", phase=c.FAILED)
    assert "name conflict: Service default/llm-a1" in st["message"]
    assert wait_for(lambda: events(k8s, "llm", "CreateRefused"), TIMEOUT)
    service = k8s.to_dict(k8s.core.read_namespaced_service("llm-a1", k8s.namespace))
    assert not service["metadata"].get("ownerReferences")  # neither deleted nor adopted
