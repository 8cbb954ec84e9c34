"""next_action(): the OLMoJob lifecycle as a pure function, driven through whole scenarios.

``World`` plays the API server for the pure core: it applies each Action (status merge patch,
deletes, creates) to an in-memory set of objects, and the tests play the Job controller and the
kubelet by editing Job and pod status — no API server anywhere.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from olmo_operator import contract as c
from olmo_operator.failures import Cause
from olmo_operator.lifecycle import (
    Action,
    ActionKind,
    ObjectRef,
    Observed,
    Timing,
    invalid_spec_action,
    next_action,
)
from olmo_operator.spec import SpecError, parse_job

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
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


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


def reasons(action: Action) -> list[str]:
    return [e.reason for e in action.events]


# --------------------------------------------------------------------------------------------
# Starting


def test_a_new_job_starts_attempt_1() -> None:
    w = World()
    action = w.step()
    assert action.kind is ActionKind.START_ATTEMPT and action.new_attempt == 1
    assert w.status["phase"] == c.RUNNING and w.status["attempt"] == 1
    assert w.status["startTime"] == iso(T0) and w.status["observedGeneration"] == 1
    assert w.names("Job") == ["run-a1"] and w.names("Service") == ["run-a1"]
    assert w.names("ServiceAccount") == ["run-progress"]
    assert reasons(action)[0] == "Running"  # every phase change is an Event
    # Nothing new happens while it runs.
    w.start_pods("run-a1")
    action = w.step(10)
    assert action.kind is ActionKind.WAIT and action.status == {} and action.events == ()


def test_node_pool_is_recorded_when_pools_are_given() -> None:
    w = World(nodePools=[{"name": "spot", "preemptible": True}, {"name": "od"}])
    w.step()
    assert w.status["nodePool"] == "spot" and w.status["nodePoolIndex"] == 0
    assert w.job("run-a1")["metadata"]["annotations"][c.ANNOTATION_NODE_POOL] == "spot"


def test_success_then_final_rotation_then_ttl() -> None:
    w = World(ttlSecondsAfterFinished=60)
    w.step()
    w.start_pods("run-a1")
    w.complete_job("run-a1")
    action = w.step(5)
    assert action.kind is ActionKind.SUCCEED
    assert w.status["phase"] == c.SUCCEEDED and w.status["completionTime"] == iso(w.now)
    assert "Service" not in {k for k, _ in w.objects}  # the rendezvous Service goes
    assert w.names("Job") == ["run-a1"]  # the Job (and its logs) stay

    action = w.step(1)
    assert action.kind is ActionKind.ROTATE
    assert w.names("Job") == ["run-a1", "run-rotate"]
    assert w.status["finalRotation"] == {"phase": "Running"}
    # The TTL waits for the running rotation.
    action = w.step(120)
    assert action.kind is ActionKind.WAIT and not w.deleted_olmojob

    w.objects[("Pod", "run-rotate-x")] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "run-rotate-x",
            "labels": {c.LABEL_JOB: "run", c.LABEL_COMPONENT: "rotation"},
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "rotation",
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "message": "delete /c/step1\ndeleted 1 checkpoint folder and 0 "
                            "temporary folders, kept 3\n",
                        }
                    },
                }
            ],
        },
    }
    w.job("run-rotate")["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    action = w.step(1)
    assert w.status["finalRotation"]["phase"] == "Succeeded"
    assert w.status["finalRotation"]["message"].startswith("deleted 1 checkpoint folder")
    assert "CheckpointsRotated" in reasons(action)
    # TTL already passed: the OLMoJob is deleted in the same reconcile.
    assert action.kind is ActionKind.DELETE and w.deleted_olmojob


def test_final_rotation_waits_for_the_final_evaluation_when_required() -> None:
    w = World(
        eval={"enabled": True},
        checkpoint={"claimName": "ckpt", "requireEvaluated": True},
    )
    w.step()
    assert w.names("Deployment") == ["run-eval"]
    w.status[c.STATUS_PROGRESS] = {
        "latestCheckpoint": {"step": 300, "path": "/checkpoints/run/checkpoints/step000300"}
    }
    w.start_pods("run-a1")
    w.complete_job("run-a1")
    w.step()
    action = w.step()
    assert action.kind is ActionKind.WAIT and "evaluation" in action.message
    assert w.names("Deployment") == ["run-eval"]  # still evaluating
    w.status[c.STATUS_PROGRESS]["lastEval"] = {"step": 300, "headline": {"piqa": 0.6}}
    action = w.step()
    assert action.kind is ActionKind.ROTATE
    assert w.names("Deployment") == []  # the final checkpoint is evaluated: the worker goes
    args = w.job("run-rotate")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--require-evaluated" in args


# --------------------------------------------------------------------------------------------
# Failures and preemptions


def test_failure_restarts_the_gang_after_backoff() -> None:
    w = World(maxFailures=3)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[1], 1)
    action = w.step(30)
    assert action.kind is ActionKind.RESTART
    assert action.failure is not None and action.failure.cause is Cause.FAILURE
    assert w.status["phase"] == c.RESTARTING and w.status["attempt"] == 2
    assert w.status["restarts"] == {"failures": 1, "preemptions": 0}
    assert w.status["restartAt"] == iso(w.now + dt.timedelta(seconds=10))
    assert w.status["lastRestart"]["cause"] == "Failure"
    assert w.status["lastRestart"]["attempt"] == 1
    # The whole attempt goes: Job, Service and every pod (the running one too).
    assert set(action.delete) >= {
        ObjectRef("batch/v1", "Job", "run-a1"),
        ObjectRef("v1", "Service", "run-a1"),
        ObjectRef("v1", "Pod", pods[0]),
        ObjectRef("v1", "Pod", pods[1]),
    }
    assert "AttemptFailed" in reasons(action) and "Restarting" in reasons(action)

    assert w.step(5).kind is ActionKind.WAIT  # backoff
    action = w.step(5)
    assert action.kind is ActionKind.START_ATTEMPT and action.new_attempt == 2
    assert w.status["phase"] == c.RUNNING and "restartAt" not in w.status
    assert w.names("Job") == ["run-a2"]
    args = w.job("run-a2")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--resume") + 1] == "latest"


def _settling_world() -> tuple[World, list[str]]:
    w = World(maxFailures=3)
    w.timing = Timing(failure_settle_seconds=60)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[0], 1)  # the survivor of a reclaimed node: lost its peer, exits 1 first
    action = w.step(1)
    assert action.kind is ActionKind.WAIT and action.failure is None
    assert w.status["failureSeenAt"] == iso(w.now)
    assert "waiting until" in action.message and w.names("Job") == ["run-a1"]
    return w, pods


def test_a_failure_settles_before_it_is_counted() -> None:
    w, _pods = _settling_world()
    assert w.step(30).kind is ActionKind.WAIT  # still inside the window: nothing counted
    action = w.step(31)
    assert action.kind is ActionKind.RESTART and action.failure.cause is Cause.FAILURE
    assert w.status["restarts"] == {"failures": 1, "preemptions": 0}
    assert "failureSeenAt" not in w.status


def test_a_preemption_signal_inside_the_settle_window_makes_it_a_preemption() -> None:
    w, pods = _settling_world()
    # The reclaimed node's pod gets its DisruptionTarget condition (or its node goes) later.
    w.objects[("Pod", pods[1])]["status"]["conditions"] = [
        {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}
    ]
    action = w.step(20)
    assert action.kind is ActionKind.RESTART and action.failure.cause is Cause.PREEMPTION
    assert w.status["restarts"] == {"failures": 0, "preemptions": 1}
    assert "failureSeenAt" not in w.status
    assert w.step(0).kind is ActionKind.START_ATTEMPT and "failureSeenAt" not in w.status


def test_backoff_doubles_and_is_capped() -> None:
    assert [TIMING.backoff(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]
    assert Timing(backoff_base_seconds=0.1, backoff_max_seconds=1).backoff(5) == 1


def test_too_many_failures_fail_the_job_and_keep_its_pods() -> None:
    w = World(maxFailures=1)
    for attempt in (1, 2):
        w.step(60)
        (pod, _) = w.start_pods(f"run-a{attempt}")
        w.end_pod(pod, 1)
        action = w.step(1)
    assert action.kind is ActionKind.FAIL
    assert w.status["phase"] == c.FAILED and w.status["restarts"]["failures"] == 2
    assert "exceed maxFailures 1" in w.status["message"]
    assert w.status["completionTime"] == iso(w.now)
    assert w.names("Job") == ["run-a2"]  # kept for its logs
    assert "Service" not in {k for k, _ in w.objects}
    assert action.events[0].type == "Warning" and action.events[0].reason == "Failed"
    assert w.step(600).kind is ActionKind.WAIT  # terminal


def test_preemption_restarts_at_once_without_spending_failures() -> None:
    w = World(maxFailures=0)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(
        pods[0],
        143,
        conditions=[
            {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
        ],
    )
    action = w.step(1)
    assert action.kind is ActionKind.RESTART and action.failure.cause is Cause.PREEMPTION
    assert w.status["restarts"] == {"failures": 0, "preemptions": 1}
    assert w.status["restartAt"] == iso(w.now)
    assert "Preempted" in reasons(action)
    action = w.step(0)
    assert action.kind is ActionKind.START_ATTEMPT and w.status["attempt"] == 2


def test_node_gone_is_a_preemption() -> None:
    w = World()
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[1], 1)
    w.nodes = {"node-0": {"metadata": {"name": "node-0"}}, "node-1": None}
    action = w.step(1)
    assert action.failure.cause is Cause.PREEMPTION and action.failure.reason == "NodeGone"


def test_spot_pool_falls_back_to_on_demand_and_stays_on_the_last_pool() -> None:
    w = World(
        nodePools=[
            {"name": "spot", "preemptible": True, "maxPreemptions": 2, "nodeSelector": {"s": "1"}},
            {"name": "on-demand", "nodeSelector": {"s": "0"}},
        ]
    )
    w.step()
    pools = []
    for _ in range(4):
        attempt = w.status["attempt"]
        (pod, _) = w.start_pods(f"run-a{attempt}")
        w.end_pod(pod, 75)
        action = w.step(1)
        assert action.kind is ActionKind.RESTART
        pools.append((w.status["nodePool"], w.status["nodePoolPreemptions"], reasons(action)))
        w.step(0)
    assert [p[:2] for p in pools] == [
        ("spot", 1),
        ("on-demand", 0),
        ("on-demand", 1),
        ("on-demand", 2),
    ]
    assert "NodePoolFallback" in pools[1][2] and all(
        "NodePoolFallback" not in p[2] for p in pools[2:]
    )
    job = w.job(f"run-a{w.status['attempt']}")
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"s": "0"}
    assert w.status["restarts"]["preemptions"] == 4


def test_on_demand_pools_do_not_fall_back() -> None:
    w = World(nodePools=[{"name": "a", "maxPreemptions": 1}, {"name": "b"}])
    w.step()
    (pod, _) = w.start_pods("run-a1")
    w.end_pod(pod, 75)
    w.step(1)
    assert w.status["nodePool"] == "a"


def test_a_new_attempt_waits_for_the_old_pods_to_stop() -> None:
    w = World(terminationGracePeriodSeconds=60)
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[0], 75)
    action = w.step(1)
    # Pretend the delete is slow: the other rank keeps running for a while.
    w.objects[("Pod", pods[1])] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pods[1],
            "labels": {c.LABEL_JOB: "run", c.LABEL_COMPONENT: "trainer", c.LABEL_ATTEMPT: "1"},
            "deletionTimestamp": iso(w.now),
        },
        "status": {"phase": "Running"},
    }
    assert ObjectRef("v1", "Pod", pods[1]) in action.delete
    action = w.step(5)
    assert action.kind is ActionKind.WAIT and "previous attempt" in action.message
    action = w.step(60 + 30)  # grace period + termination wait: go anyway
    assert action.kind is ActionKind.START_ATTEMPT


def test_job_failed_by_pod_failure_policy_with_pods_gone() -> None:
    w = World()
    w.step()
    w.fail_job(
        "run-a1",
        "PodFailurePolicy",
        "Pod ml/run-a1-0 has condition DisruptionTarget matching FailJob rule at index 0",
    )
    action = w.step(1)
    assert action.failure.cause is Cause.PREEMPTION


# --------------------------------------------------------------------------------------------
# Restart safety


def test_restarted_operator_recreates_a_missing_attempt_without_counting_it() -> None:
    w = World()
    w.step()
    del w.objects[("Job", "run-a1")]  # e.g. the operator died between status patch and create
    action = w.step(1)
    assert action.kind is ActionKind.START_ATTEMPT and action.new_attempt is None
    assert w.status["attempt"] == 1 and w.names("Job") == ["run-a1"]


def test_a_failure_is_counted_once() -> None:
    """Reconciling the same observed state twice (a retry, a second trigger) counts nothing
    twice: the first decision moved status.attempt on, so the old attempt is just deleted."""
    w = World()
    w.step()
    pods = w.start_pods("run-a1")
    w.end_pod(pods[0], 1)
    status_before, objects_before = copy.deepcopy(w.status), copy.deepcopy(w.objects)
    first = w.step(1)
    # Replay the same children against the new status (the deletes "did not happen yet").
    w.objects = objects_before
    second = next_action(parse_job(w.obj), w.status, w.observed(), TIMING)
    assert first.kind is ActionKind.RESTART and second.kind is ActionKind.WAIT
    assert "restarts" not in second.status
    assert {r.name for r in second.delete} >= {"run-a1", *pods}
    assert status_before["attempt"] == 1 and w.status["attempt"] == 2


def test_objects_of_other_attempts_are_removed() -> None:
    w = World()
    w.step()
    w.objects[("Job", "run-a0")] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "run-a0",
            "labels": {c.LABEL_JOB: "run", c.LABEL_COMPONENT: "trainer", c.LABEL_ATTEMPT: "0"},
        },
    }
    w.objects[("Job", "other-a1")] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "other-a1",
            "labels": {c.LABEL_JOB: "other", c.LABEL_COMPONENT: "trainer", c.LABEL_ATTEMPT: "0"},
        },
    }
    action = w.step(1)
    assert [r.name for r in action.delete] == ["run-a0"]  # never another OLMoJob's children


# --------------------------------------------------------------------------------------------
# Suspend, Kueue, data prep


def test_suspend_deletes_the_attempt_and_resume_starts_the_next_one() -> None:
    w = World(eval={"enabled": True})
    w.step()
    w.start_pods("run-a1")
    w.edit(suspend=True)
    action = w.step(5)
    assert action.kind is ActionKind.SUSPEND and w.status["phase"] == c.SUSPENDED
    assert w.names("Job") == [] and w.names("Pod") == [] and w.names("Service") == []
    assert w.names("Deployment") == []
    assert w.names("ServiceAccount") == ["run-progress"]  # (PVCs are never touched)
    assert w.step(5).kind is ActionKind.WAIT
    w.edit(suspend=False)
    action = w.step(5)
    assert action.kind is ActionKind.START_ATTEMPT and action.new_attempt == 2
    assert w.status["phase"] == c.RUNNING and w.names("Job") == ["run-a2"]
    assert w.status.get("restarts") is None  # suspending is neither failure nor preemption


def test_kueue_suspended_job_waits_and_counts_nothing() -> None:
    w = World(queueName="team-a")
    action = w.step()
    assert w.status["phase"] == c.PENDING
    job = w.job("run-a1")
    assert job["spec"]["suspend"] is True
    assert w.step(10).kind is ActionKind.WAIT
    # Kueue admits it.
    job["spec"]["suspend"] = False
    w.step(1)
    assert w.status["phase"] == c.RUNNING
    # Kueue preempts the workload: the Job is suspended again and its pods stop with 75/143.
    pods = w.start_pods("run-a1")
    job["spec"]["suspend"] = True
    w.end_pod(pods[0], 75)
    action = w.step(1)
    assert action.kind is ActionKind.WAIT and w.status["phase"] == c.PENDING
    assert "restarts" not in w.status and w.status["attempt"] == 1


def test_data_prep_runs_before_training() -> None:
    w = World(
        dataset={"claimName": "data", "prepare": {"pipelineConfigMap": {"name": "p"}, "workers": 3}}
    )
    action = w.step()
    assert action.kind is ActionKind.PREPARE_DATA and w.status["phase"] == c.PREPARING_DATA
    assert w.names("Job") == ["run-dataprep"]
    assert w.step(30).kind is ActionKind.WAIT
    w.job("run-dataprep")["status"] = {
        "succeeded": 3,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    action = w.step(30)
    assert action.kind is ActionKind.START_ATTEMPT and w.status["attempt"] == 1
    assert "DataPrepared" in reasons(action)
    assert {x["type"]: x["status"] for x in w.status["conditions"]}["DataPrepared"] == "True"
    # Data prep never runs again, even when its Job is gone.
    del w.objects[("Job", "run-dataprep")]
    w.start_pods("run-a1")
    assert w.step(10).kind is ActionKind.WAIT


def test_failed_data_prep_fails_the_job() -> None:
    w = World(dataset={"claimName": "data", "prepare": {"pipelineConfigMap": {"name": "p"}}})
    w.step()
    w.fail_job("run-dataprep", message="Job has reached the specified backoff limit")
    action = w.step(1)
    assert action.kind is ActionKind.FAIL and w.status["phase"] == c.FAILED
    assert "data preparation failed" in w.status["message"]


def test_ttl_deletes_a_failed_job() -> None:
    w = World(maxFailures=0, ttlSecondsAfterFinished=100)
    w.step()
    (pod, _) = w.start_pods("run-a1")
    w.end_pod(pod, 1)
    w.step(1)
    assert w.status["phase"] == c.FAILED
    assert w.step(50).kind is ActionKind.WAIT
    action = w.step(50)
    assert action.delete_job and "TTLExpired" in reasons(action)


# --------------------------------------------------------------------------------------------
# Progress and bad input


def test_progress_is_mirrored_during_any_phase() -> None:
    w = World()
    w.step()
    w.status[c.STATUS_PROGRESS] = {"step": 42, "tokens": 1000}
    action = w.step(1)
    assert action.status == {"step": 42, "tokens": 1000}
    assert w.status["step"] == 42


def test_invalid_spec_fails_with_its_reason_once() -> None:
    obj = World().obj
    error = SpecError("spec.checkpoint.path must be a relative path")
    observed = Observed(now=T0)
    first = invalid_spec_action({}, error, observed)
    assert first.kind is ActionKind.FAIL and first.status["phase"] == c.FAILED
    assert first.events[0].reason == "InvalidSpec"
    again = invalid_spec_action(first.status, error, observed)
    assert again.kind is ActionKind.WAIT and again.events == ()
    assert parse_job(obj).name == "run"


def test_timing_from_the_environment() -> None:
    timing = Timing.from_env(
        {"OLMO_OPERATOR_BACKOFF_BASE_SECONDS": "0.1", "OLMO_OPERATOR_BACKOFF_MAX_SECONDS": "1"}
    )
    assert timing.backoff_base_seconds == 0.1 and timing.backoff_max_seconds == 1
    assert Timing.from_env({}) == Timing()
    assert Timing().failure_settle_seconds == 60
    assert (
        Timing.from_env({"OLMO_OPERATOR_FAILURE_SETTLE_SECONDS": "0"}).failure_settle_seconds == 0
    )
    with pytest.raises(ValueError, match="OLMO_OPERATOR_BACKOFF_BASE_SECONDS"):
        Timing.from_env({"OLMO_OPERATOR_BACKOFF_BASE_SECONDS": "soon"})
