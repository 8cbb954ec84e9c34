"""A full OLMoJob status with every field the metrics, the report and the dashboard read
(design sections E and F of issue 20): three attempts on two pools, two restarts, an evaluation."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

NOW = dt.datetime(2026, 12, 8, 10, 10, 30, tzinfo=dt.UTC)
"""30 s after the ledger was last charged."""

_STATUS: dict[str, Any] = {
    "phase": "Running",
    "attempt": 3,
    "step": 1200,
    "tokens": 78_643_200,
    "restarts": {"failures": 1, "preemptions": 1, "hangs": 1, "preflightFailures": 2},
    "latestCheckpoint": {
        "step": 1100,
        "path": "/checkpoints/run/step001100",
        "time": "2026-12-08T10:05:00Z",
    },
    "lastUpload": {
        "step": 1100,
        "seconds": 42.5,
        "bytes": 1000,
        "files": 3,
        "time": "2026-12-08T10:06:00Z",
    },
    "lastSaveSeconds": 12.0,
    "lastSaveBlockedSeconds": 12.0,
    "checkpointInterval": {
        "steps": 147,
        "attempt": 3,
        "reason": "Young/Daly: sqrt(2 × 12.0 s × 3600 s) = 294 s = 147 steps",
        "mtbfSeconds": 3600.0,
        "saveSeconds": 12.0,
        "stepSeconds": 2.0,
    },
    "throughput": {"stepSeconds": 2.0, "tokensPerSecond": 1024.0, "mfu": 0.41},
    "lastEval": {
        "step": 1000,
        "headline": {"piqa": 0.61, "hellaswag": 0.35},
        "time": "2026-12-08T10:07:00Z",
    },
    "goodput": {
        "state": "training",
        "since": "2026-12-08T10:00:00Z",
        "charged": "2026-12-08T10:10:00Z",
        "attempt": 3,
        "pool": "spot",
        "nodes": 2,
        "seconds": {
            "pending": 12,
            "preparingData": 40,
            "starting": 30,
            "training": 600,
            "saving": 20,
            "evaluating": 0,
            "restarting": 5,
            "suspended": 0,
        },
        "pools": {
            "spot": {"seconds": 650, "nodeSeconds": 1300, "interruptions": 2, "cost": 0.36},
            "on-demand": {"seconds": 100, "nodeSeconds": 200, "interruptions": 0, "cost": 0.87},
        },
        "lostSteps": 7,
        "lostTokens": 458_752,
        "restarts": [
            {
                "attempt": 1,
                "cause": "Preemption",
                "reason": "DisruptionTarget",
                "lostSteps": 2,
                "lostTokens": 131_072,
                "fromStep": 3,
                "time": "2026-12-08T09:40:00Z",
            },
            {
                "attempt": 2,
                "cause": "Failure",
                "reason": "Hang",
                "lostSteps": 5,
                "lostTokens": 327_680,
                "fromStep": 10,
                "time": "2026-12-08T09:55:00Z",
            },
        ],
        "timeline": [
            {
                "attempt": 0,
                "state": "pending",
                "start": "2026-12-08T09:30:00Z",
                "end": "2026-12-08T09:30:12Z",
            },
            {
                "attempt": 1,
                "state": "starting",
                "start": "2026-12-08T09:30:12Z",
                "end": "2026-12-08T09:31:00Z",
            },
            {
                "attempt": 1,
                "state": "training",
                "start": "2026-12-08T09:31:00Z",
                "end": "2026-12-08T09:40:00Z",
            },
            {
                "attempt": 1,
                "state": "restarting",
                "start": "2026-12-08T09:40:00Z",
                "end": "2026-12-08T09:41:00Z",
            },
            {
                "attempt": 2,
                "state": "starting",
                "start": "2026-12-08T09:41:00Z",
                "end": "2026-12-08T09:42:00Z",
            },
            {
                "attempt": 2,
                "state": "training",
                "start": "2026-12-08T09:42:00Z",
                "end": "2026-12-08T09:50:00Z",
            },
            {
                "attempt": 2,
                "state": "saving",
                "start": "2026-12-08T09:50:00Z",
                "end": "2026-12-08T09:50:20Z",
            },
            {
                "attempt": 2,
                "state": "training",
                "start": "2026-12-08T09:50:20Z",
                "end": "2026-12-08T09:55:00Z",
            },
            {
                "attempt": 3,
                "state": "starting",
                "start": "2026-12-08T09:55:00Z",
                "end": "2026-12-08T10:00:00Z",
            },
            {
                "attempt": 3,
                "state": "training",
                "start": "2026-12-08T10:00:00Z",
                "end": "2026-12-08T10:10:00Z",
            },
        ],
        "effectiveTokensPerSecond": 812.5,
        "nominalTokensPerSecond": 1024.0,
        "ratio": 0.79,
        "cost": 1.23,
    },
}


def full_status() -> dict[str, Any]:
    """A fresh copy of the sample status (tests may change it)."""
    return copy.deepcopy(_STATUS)
