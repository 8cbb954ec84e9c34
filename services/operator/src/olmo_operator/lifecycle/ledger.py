"""Keeping the goodput ledger (:mod:`olmo_operator.goodput`) at every reconcile.

After the policies decided, :func:`account` charges the time since the previous reconcile to the
state the job was in and records the state it is in now, read from the phase and, while an
attempt runs, from the trainer's own report (``state``): an attempt whose trainer has not
reported a step or a state yet is ``starting``; one that reports ``saving`` or ``evaluating`` is
so; an older trainer that reports steps but no state is ``training``.
"""

from __future__ import annotations

from olmo_operator import contract as c
from olmo_operator.goodput import advance, summarize
from olmo_operator.lifecycle.failure_policy import progress_record
from olmo_operator.lifecycle.plan import Plan

PHASE_STATES = {
    c.PENDING: "pending",
    c.PREPARING_DATA: "preparingData",
    c.RESTARTING: "restarting",
    c.SUSPENDED: "suspended",
}
WRITE_EVERY_SECONDS = 30.0
"""While the state stays the same, the ledger is charged (the status written) this often."""
TRAINER_STATES = {"training": "training", "saving": "saving", "evaluating": "evaluating"}


def ledger_state(plan: Plan) -> str | None:
    """The ledger state after this reconcile (None: the job finished)."""
    phase = plan.phase
    if phase in c.TERMINAL_PHASES:
        return None
    if phase in PHASE_STATES:
        return PHASE_STATES[phase]
    if phase != c.RUNNING:
        return "pending"
    record = progress_record(plan)
    if record.get(c.PROGRESS_ATTEMPT) != plan.get("attempt"):
        return "starting"
    state = record.get(c.PROGRESS_STATE)
    if state in TRAINER_STATES:
        return TRAINER_STATES[state]
    if state is None and record.get(c.PROGRESS_STEP) is not None:
        return "training"
    return "starting"


def account(plan: Plan) -> None:
    """Charge the time since the last reconcile and record the current state."""
    spec = plan.spec
    pool = (plan.get("nodePool") or "") if spec.node_pools else ""
    ledger = advance(
        plan.get("goodput"),
        ledger_state(plan),
        plan.now,
        attempt=int(plan.get("attempt") or 0),
        pool=pool,
        nodes=int(plan.get("nodes") or spec.nodes),
        costs={p.name: p.cost_per_node_hour for p in spec.node_pools},
        min_seconds=WRITE_EVERY_SECONDS,
    )
    throughput = plan.get("throughput") or {}
    ledger = summarize(
        ledger,
        tokens=plan.get("tokens"),
        nominal_tokens_per_second=throughput.get(c.PROGRESS_TOKENS_PER_SECOND),
    )
    # The status is written as a JSON merge patch: a key the ledger dropped (its state once the
    # job finished) must be sent as null, or the stored one would stay.
    before = plan.old.get("goodput") or {}
    plan.set(goodput={**{k: None for k in before if k not in ledger}, **ledger})
