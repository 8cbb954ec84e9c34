"""The OLMoJob's status schema (written by the operator, never parsed; the API server prunes
and type-checks what the operator writes against it): :func:`status_schema`, used by
:mod:`olmo_operator.crd`."""

from __future__ import annotations

from typing import Any

from olmo_operator import contract as c
from olmo_operator.openapi import array, integer, list_map, obj, string, time

# --------------------------------------------------------------------------------------------
# status


def _number(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def _goodput_schema() -> dict[str, Any]:
    seconds = {"type": "object", "additionalProperties": {"type": "number"}}
    pool = obj(
        "Time and cost on one pool ('' when the job has no node pools).",
        {
            "seconds": _number("Wall seconds an attempt held nodes here."),
            "nodeSeconds": _number("Node-seconds held here."),
            "interruptions": integer("Attempts here ended by a preemption or a failure."),
            "cost": _number("nodeSeconds / 3600 × costPerNodeHour."),
        },
    )
    return obj(
        "The goodput ledger (olmo_operator.goodput): where the wall time and the node-hours went.",
        {
            "state": string("The state being charged now."),
            "since": time("When the job entered it."),
            "charged": time("Time is charged up to here."),
            "attempt": integer("The attempt the state is charged to."),
            "pool": string("The pool it is charged to."),
            "nodes": integer("The nodes held."),
            "seconds": {**seconds, "description": "Wall seconds per state."},
            "pools": {
                "type": "object",
                "description": "Per node pool.",
                "additionalProperties": pool,
            },
            "lostSteps": integer("Steps redone after restarts."),
            "lostTokens": integer("Tokens redone after restarts."),
            "restarts": array(
                "The newest restarts and the work each lost.",
                obj(
                    "A restart.",
                    {
                        "attempt": integer("The attempt that ended."),
                        "cause": string("Preemption or Failure."),
                        "reason": string("The deciding signal."),
                        "lostSteps": integer("Steps past the checkpoint resumed from."),
                        "lostTokens": integer("Tokens past that checkpoint."),
                        "fromStep": integer("The checkpoint the next attempt resumes from."),
                        "time": time("When."),
                    },
                ),
            ),
            "timeline": array(
                "The newest segments of time, per attempt and state.",
                obj(
                    "A segment.",
                    {
                        "attempt": integer("The attempt."),
                        "state": string("The state."),
                        "start": time("From."),
                        "end": time("To."),
                    },
                ),
            ),
            "effectiveTokensPerSecond": _number("Tokens kept ÷ wall seconds (not suspended)."),
            "nominalTokensPerSecond": _number("The trainer's tokens/s while training."),
            "ratio": _number("effective ÷ nominal, at most 1: the goodput."),
            "cost": _number("Sum of the pools' cost."),
        },
    )


def status_schema() -> dict[str, Any]:
    checkpoint = obj(
        "A complete checkpoint.",
        {
            "step": integer("Training step."),
            "path": string("Checkpoint folder."),
            "time": time("When it was saved."),
        },
    )
    last_eval = obj(
        "The newest evaluation.",
        {
            "step": integer("Checkpoint step evaluated."),
            "headline": {
                "type": "object",
                "description": "Headline metric per task (accuracy).",
                "additionalProperties": {"type": "number"},
            },
            "time": time("When the evaluation finished."),
        },
    )
    condition = obj(
        "A condition (Kubernetes convention).",
        {
            "type": string("Condition type."),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": string("CamelCase reason."),
            "message": string("Human-readable detail."),
            "lastTransitionTime": time("When status last changed."),
        },
        required=("type", "status"),
    )
    rejection = obj(
        "A rejected report of this source (cleared by its next valid one).",
        {
            "field": string("The field at fault."),
            "reason": string("What is wrong with it."),
            "message": string("The ProgressRejected Event's message."),
            "time": time("When the operator rejected it."),
        },
    )
    properties: dict[str, Any] = {
        "phase": string("Where the job is.", enum=list(c.PHASES)),
        "message": string("Why it is there."),
        "conditions": array(
            "DataPrepared, Running, Suspended, Complete, Failed, CheckpointsRotated.",
            condition,
            **list_map("type"),
        ),
        "observedGeneration": integer("metadata.generation last seen by the operator."),
        "attempt": integer("Current attempt (1-based; a restart starts the next one)."),
        "restarts": obj(
            "Restarts by cause.",
            {
                "failures": integer("Restarts after failures (spend maxFailures)."),
                "preemptions": integer("Restarts after preemptions (spend maxPreemptions)."),
                "hangs": integer("Of the failures, attempts ended for no progress (Hang)."),
                "preflightFailures": integer(
                    "Attempts ended by a failed preflight (no budget spent)."
                ),
            },
        ),
        "nodes": integer("Trainer pods of the current attempt (fewer on a pool with maxNodes)."),
        "excludedNodes": array(
            "Nodes the trainer pods avoid: they failed a preflight (newest last).",
            {"type": "string"},
        ),
        "lastPreflight": obj(
            "The latest preflight the trainer reported.",
            {
                "attempt": integer("The attempt."),
                "passed": {"type": "boolean", "description": "Every check passed."},
                "seconds": _number("How long it took."),
                "time": time("When it ended."),
                "failures": array(
                    "What failed, where.",
                    obj(
                        "A failed check.",
                        {
                            "node": string("The node (empty: unknown)."),
                            "nodeRank": integer("The trainer pod's node rank."),
                            "check": string("device, collective or storage."),
                            "message": string("What went wrong."),
                        },
                    ),
                ),
            },
        ),
        "throughput": obj(
            "The trainer's latest measurements over its recent steps.",
            {
                "stepSeconds": _number("Seconds per optimizer step."),
                "tokensPerSecond": _number("Tokens per second (nominal throughput)."),
                "mfu": _number("Model FLOPs utilisation (on GPUs)."),
            },
        ),
        "lastSaveSeconds": _number("How long the latest save stopped training."),
        "checkpointInterval": obj(
            "The save interval of the current attempt (checkpoint.adaptive).",
            {
                "steps": integer("Save every this many steps."),
                "attempt": integer("The attempt it was chosen for."),
                "reason": string("How it was chosen."),
                "mtbfSeconds": _number("Mean time between interruptions on the pool."),
                "saveSeconds": _number("The save time it used."),
                "stepSeconds": _number("The step time it used."),
            },
        ),
        "goodput": _goodput_schema(),
        "nodePool": string("Node pool of the current attempt."),
        "nodePoolIndex": integer("Index of nodePool in spec.nodePools."),
        "nodePoolPreemptions": integer("Preemptions on the current node pool."),
        "restartAt": time("When the next attempt starts (backoff)."),
        "failureSeenAt": time(
            "When a failed pod of the current attempt was first seen: the attempt ends as a "
            "failure only after the settle window, unless a preemption signal appears."
        ),
        "lastRestart": obj(
            "The latest restart.",
            {
                "cause": string("Preemption or Failure.", enum=["Preemption", "Failure"]),
                "reason": string("The signal that decided the cause."),
                "message": string("Detail."),
                "attempt": integer("The attempt that ended."),
                "time": time("When it ended."),
            },
        ),
        "lastProvisioning": obj(
            "The latest outcome of a ProvisioningRequest (a pool with provisioning).",
            {
                "pool": string("The node pool."),
                "attempt": integer("The attempt that asked."),
                "outcome": string(
                    "Provisioned, or why the job moved on.",
                    enum=["Provisioned", "Failed", "CapacityRevoked", "BookingExpired", "TimedOut"],
                ),
                "message": string("The request's condition message."),
                "time": time("When it was seen."),
            },
        ),
        "step": integer("Latest training step reported by the trainer."),
        "tokens": integer("Tokens trained on so far."),
        "latestCheckpoint": checkpoint,
        "lastEval": last_eval,
        "lastUpload": obj(
            "The latest checkpoint upload to object storage (checkpoint.uri), reported by the "
            "trainer once the checkpoint was complete on the store.",
            {
                "step": integer("Training step of the checkpoint."),
                "seconds": {"type": "number", "description": "Upload time."},
                "bytes": integer("Bytes uploaded."),
                "files": integer("Files uploaded."),
                "time": time("When the upload finished."),
            },
        ),
        "lastSaveBlockedSeconds": {
            "type": "number",
            "description": "How long the latest save stopped training (checkpoint.uri: the local "
            "save plus the wait for the previous upload).",
        },
        "lastRotation": obj(
            "The latest checkpoint rotation reported by the trainer.",
            {
                "deleted": array("Deleted checkpoint folders.", {"type": "string"}),
                "time": time("When."),
            },
        ),
        "noProgress": obj(
            "Attempts since the last one that saved a newer complete checkpoint "
            "(spec.maxAttemptsWithoutProgress).",
            {
                "attempts": integer("Attempts in a row that ended without progress."),
                "preemptions": integer(
                    "Of those, preemptions (the exponent of the preemption backoff)."
                ),
                "baselineStep": integer(
                    "Step of the newest complete checkpoint when progress was last seen."
                ),
            },
        ),
        "finalEval": obj(
            "How the eval worker ended after the trainer succeeded.",
            {
                "phase": string(
                    "Evaluated: the final checkpoint was evaluated; Failed: the eval worker "
                    "gave up on it; TimedOut: eval.finalTimeoutSeconds passed.",
                    enum=["Evaluated", "Failed", "TimedOut"],
                ),
                "message": string("Detail."),
                "time": time("When the eval worker was removed."),
            },
        ),
        "finalRotation": obj(
            "The rotation Job run after the job succeeded.",
            {
                "phase": string("Its state.", enum=["Running", "Succeeded", "Failed"]),
                "message": string("Its summary line."),
                "completionTime": time("When it finished."),
            },
        ),
        "startTime": time("When the first attempt started."),
        "completionTime": time("When the job succeeded or failed."),
        "lastEvalFailure": obj(
            "The newest checkpoint the eval worker gave up on (no attempts left).",
            {
                "step": integer("Checkpoint step."),
                "message": string("The last attempt's error."),
                "time": time("When the worker gave up."),
            },
        ),
        "lastResume": obj(
            "How the trainer of an attempt resumed, when it skipped unreadable checkpoints.",
            {
                "attempt": integer("The attempt."),
                "step": integer("Step of the checkpoint it resumed from."),
                "path": string("That checkpoint's folder."),
                "skipped": array(
                    "Newer checkpoints it could not read.",
                    obj(
                        "A skipped checkpoint.",
                        {"path": string("Its folder."), "reason": string("Why.")},
                    ),
                ),
            },
        ),
        c.STATUS_PROGRESS: obj(
            "The operator's record of the pods' progress reports (the <job>-progress "
            "ConfigMap; the pods cannot write the status). Written by the operator only.",
            {
                "attempt": integer("Attempt of the last accepted trainer report."),
                "step": integer("Its step (never decreases within an attempt)."),
                "updated": time("When the trainer sent it."),
                "state": string("What the trainer reported it is doing."),
                "stateSince": time("Since when (the trainer's clock)."),
                "activityAt": time(
                    "When the operator last saw the step or the state change (the hang check)."
                ),
                "rejected": obj(
                    "The reports ignored, by source; one ProgressRejected Event each.",
                    {"trainer": rejection, "eval": rejection},
                ),
            },
        ),
    }
    return obj("Observed state, written by the operator.", properties)
