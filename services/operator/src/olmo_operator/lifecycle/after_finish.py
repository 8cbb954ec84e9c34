"""After the run finished (Succeeded or Failed): tidy up, rotate once, honour the TTL.

The last attempt's Service goes. After success the eval worker ends within a bounded time: once
the final checkpoint is evaluated, once the worker reported that it gave up on it
(``lastEvalFailure``), or ``eval.finalTimeoutSeconds`` after ``completionTime``, whichever comes
first — ``status.finalEval`` and an Event say which (it goes at once when the job failed, or
when eval is off). One rotation Job then applies the retention policy a last time — after the
eval worker ended when ``requireEvaluated``, evaluated or not — and its summary (the container's termination message) becomes ``status.finalRotation`` and an
Event. ``ttlSecondsAfterFinished`` after ``completionTime``, and once no rotation is running,
the OLMoJob itself is deleted (its children with it, through their owner references).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from olmo_operator import contract as c
from olmo_operator.lifecycle.action import ActionKind
from olmo_operator.lifecycle.observed import condition_of, deleting, job_failed, job_succeeded
from olmo_operator.lifecycle.plan import Plan, now_iso, parse_time
from olmo_operator.resources import rotation_job
from olmo_operator.retention import requires_evaluated


def after_finish(plan: Plan, attempt: int) -> None:
    """Succeeded/Failed: tidy up, rotate once after success, honour the TTL."""
    spec, kids = plan.spec, plan.kids
    plan.remove(kids.attempt_services(attempt))
    if plan.phase == c.SUCCEEDED and spec.eval.enabled:
        _final_eval(plan)
    if kids.eval is not None and (
        plan.phase == c.FAILED or not spec.eval.enabled or plan.get("finalEval") is not None
    ):
        plan.remove([kids.eval])
    rotation_running = plan.phase == c.SUCCEEDED and _final_rotation(plan)
    _ttl(plan, rotation_running)


def final_checkpoint_evaluated(plan: Plan) -> bool:
    ckpt = plan.get("latestCheckpoint") or {}
    last_eval = plan.get("lastEval") or {}
    if ckpt.get("step") is None:
        return True
    return last_eval.get("step") is not None and last_eval["step"] >= ckpt["step"]


def _final_eval(plan: Plan) -> None:
    """Decide once how the eval worker ends after success (``status.finalEval``): Evaluated,
    Failed (the worker gave up on the final checkpoint) or TimedOut; until then it keeps
    running."""
    if plan.get("finalEval") is not None:
        return
    step = (plan.get("latestCheckpoint") or {}).get("step")
    failed = plan.get("lastEvalFailure") or {}
    finished = parse_time(plan.get("completionTime")) or plan.now
    timeout = plan.spec.eval.final_timeout_seconds
    if final_checkpoint_evaluated(plan):
        phase, type_ = "Evaluated", "Normal"
        message = (
            f"final checkpoint (step {step}) evaluated"
            if step is not None
            else "no checkpoint to evaluate"
        )
    elif isinstance(failed.get("step"), int) and failed["step"] >= step:
        phase, type_ = "Failed", "Warning"
        detail = failed.get("message") or "no detail"
        message = f"the eval worker gave up on the final checkpoint (step {step}): {detail}"
    elif plan.now >= finished + dt.timedelta(seconds=timeout):
        phase, type_ = "TimedOut", "Warning"
        message = (
            f"the final checkpoint (step {step}) was not evaluated within "
            f"eval.finalTimeoutSeconds ({timeout}s) of completion"
        )
    else:
        plan.message = f"waiting for the evaluation of the final checkpoint (step {step})"
        return
    plan.set(finalEval={"phase": phase, "message": message, "time": now_iso(plan.now)})
    plan.event(type_, f"FinalEval{phase}", f"{message}: removing the eval worker")


def final_eval_settled(plan: Plan) -> bool:
    """Whether the final rotation may run: the eval worker ended (evaluated or not) or no
    evaluation is required."""
    return not requires_evaluated(plan.spec) or plan.get("finalEval") is not None


def _final_rotation(plan: Plan) -> bool:
    """Start the rotation Job or read its result; True while it runs."""
    spec, kids = plan.spec, plan.kids
    done = (plan.get("finalRotation") or {}).get("phase") in ("Succeeded", "Failed")
    rj = kids.rotation
    if done:
        return False
    if rj is None:
        if final_eval_settled(plan):
            plan.create.append(rotation_job(plan.job))
            plan.set(finalRotation={"phase": "Running"})
            plan.kind = ActionKind.ROTATE
            plan.message = f"rotating the checkpoints of {spec.run_dir}"
            return True
        plan.message = "waiting for the final checkpoint's evaluation before rotation"
        return False
    if deleting(rj):
        return False
    summary = _rotation_summary(kids.rotation_pods)
    if job_succeeded(rj, kids.rotation_pods):
        _rotation_done(plan, "Succeeded", summary or "rotation Job succeeded")
        plan.condition("CheckpointsRotated", True, "RotationSucceeded", summary)
        plan.event("Normal", "CheckpointsRotated", summary or "final rotation done")
        return False
    if job_failed(rj):
        detail = summary or condition_of(rj, "Failed").get("message") or "rotation failed"
        _rotation_done(plan, "Failed", detail)
        plan.condition("CheckpointsRotated", False, "RotationFailed", detail)
        plan.event("Warning", "RotationFailed", detail)
        return False
    return True


def _rotation_done(plan: Plan, phase: str, message: str) -> None:
    plan.set(
        finalRotation={"phase": phase, "message": message, "completionTime": now_iso(plan.now)}
    )


def _ttl(plan: Plan, rotation_running: bool) -> None:
    ttl = plan.spec.ttl_seconds_after_finished
    finished = parse_time(plan.get("completionTime"))
    if ttl is not None and finished is not None and not rotation_running:
        due = finished + dt.timedelta(seconds=ttl)
        if plan.now >= due:
            plan.delete_job = True
            plan.kind = ActionKind.DELETE
            plan.message = f"ttlSecondsAfterFinished ({ttl}s) passed: deleting the OLMoJob"
            plan.event("Normal", "TTLExpired", plan.message)


def _rotation_summary(pods: list[Mapping[str, Any]]) -> str:
    """The last line of ``olmo-ckpt rotate``'s output (the container's termination message)."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message") or ""
            lines = [line for line in message.strip().splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
    return ""
