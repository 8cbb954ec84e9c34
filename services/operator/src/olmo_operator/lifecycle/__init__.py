"""The OLMoJob lifecycle: from (job, status, observed children) to the next action.

:func:`next_action` is a pure function. It returns one :class:`Action`: a merge patch for the
status (operator-owned fields only), objects to create, objects to delete, Events to post, and
whether to delete the OLMoJob itself (TTL). The kopf handlers apply it in that order — status
first, so that a decision (a new attempt number, a restart counted) is recorded before it has any
effect, and a restarted operator neither counts a failure twice nor creates duplicates (names are
deterministic per attempt; objects of attempts other than ``status.attempt`` are deleted).

Phases::

    (new) ─▶ PreparingData ─▶ Running ◀──────────────┐
       │         (data-prep Job)  │ attempt ended     │ restartAt reached,
       │                          ▼                   │ old pods gone
       │                     Restarting ──────────────┘
       │                          │ failures > maxFailures
       └──────────────▶ Pending   ▼
     (Kueue suspended)        Failed        Running ─▶ Succeeded (─▶ rotation Job, TTL)
    any ─(spec.suspend)─▶ Suspended ─(suspend false)─▶ next attempt

Failed also when another budget is spent (``maxPreemptions``, ``maxAttemptsWithoutProgress``:
:mod:`.failure_policy`), and at once for a child the API server refuses for good
(:mod:`.refused`) or an invalid spec / policy violation.

One module per policy, each with its test (``tests/operator/test_core_lifecycle_<module>.py``):
:mod:`.observed` (what the operator sees of its children), :mod:`.plan` (the changes of one
reconcile, collected and turned into one Action), :mod:`.decide` (which policy owns the current
phase), :mod:`.startup`, :mod:`.data_prep`, :mod:`.running`, :mod:`.failure_policy`,
:mod:`.suspend`, :mod:`.after_finish` (final rotation and TTL); :mod:`.timing` and
:mod:`.action` are the input and the output. This module re-exports the public names.
"""

from olmo_operator.lifecycle.action import Action, ActionKind, ObjectRef
from olmo_operator.lifecycle.decide import invalid_spec_action, next_action
from olmo_operator.lifecycle.observed import (
    Observed,
    job_failed,
    job_succeeded,
    job_suspended,
    with_kind,
)
from olmo_operator.lifecycle.plan import now_iso, parse_time
from olmo_operator.lifecycle.timing import Timing

__all__ = [
    "Action",
    "ActionKind",
    "ObjectRef",
    "Observed",
    "Timing",
    "invalid_spec_action",
    "job_failed",
    "job_succeeded",
    "job_suspended",
    "next_action",
    "now_iso",
    "parse_time",
    "with_kind",
]
