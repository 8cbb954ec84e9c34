"""The shape of a new attempt besides its pool: how many nodes, which save interval, which
nodes to avoid.

- **Nodes** (elastic fallback): ``spec.nodes``, or on a pool whose ``maxNodes`` is smaller the
  largest divisor of ``spec.nodes`` that fits (:func:`~olmo_operator.pool_spec.workable_nodes`):
  the trainer keeps the global batch (more gradient accumulation per step) and the data order
  (a permutation of the instances that does not depend on the world size), and the checkpoint
  converts across world sizes. ``status.nodes`` says how many; an ``ElasticResize`` Event says
  when it changes.
- **Save interval** (``checkpoint.adaptive``): by Young/Daly from the interruptions seen on the
  current pool (``status.goodput.pools``), the latest measured save time (``lastSaveSeconds``)
  and step time (``throughput.stepSeconds``), clamped to the spec's bounds
  (:func:`olmo_operator.interval.choose_interval`); recorded in ``status.checkpointInterval``
  with its reason, and a ``CheckpointInterval`` Event when it changes. The trainer gets it as
  ``--set checkpoint.save_interval=N``.
- **Excluded nodes**: ``status.excludedNodes`` (failed preflights), as node anti-affinity.

A missing Job re-created for the same attempt gets the same shape (read back from the status).
"""

from __future__ import annotations

from typing import Any

from olmo_operator.interval import choose_interval
from olmo_operator.lifecycle.plan import Plan
from olmo_operator.resources import AttemptState


def attempt_state(plan: Plan, attempt: int, pool_index: int) -> AttemptState:
    """The objects' inputs for attempt ``attempt`` on the pool at ``pool_index``; records the
    choices in the plan's status."""
    spec = plan.spec
    nodes = spec.nodes_on(pool_index)
    previous = plan.get("nodes")
    if nodes != (previous if previous is not None else spec.nodes):
        pool = spec.node_pool(pool_index)
        where = f"node pool {pool.name} (maxNodes {pool.max_nodes})" if pool else "this pool"
        plan.event(
            "Normal" if nodes == spec.nodes else "Warning",
            "ElasticResize",
            f"attempt {attempt} runs on {nodes} of {spec.nodes} node(s) on {where}: same global "
            f"batch with {spec.nodes // nodes}× the gradient accumulation, same data order"
            if nodes < spec.nodes
            else f"attempt {attempt} runs on all {nodes} node(s) again",
        )
    plan.set(nodes=nodes)
    return AttemptState(
        attempt=attempt,
        node_pool_index=pool_index,
        nodes=nodes,
        save_interval=save_interval(plan, attempt),
        excluded_nodes=tuple(plan.get("excludedNodes") or ()),
    )


def _measured(value: Any, *, zero: bool) -> float | None:
    """A trainer figure the interval choice can use (the reports are validated as finite and
    not negative; a step time of 0 is no measurement)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value < 0 or (value == 0 and not zero):
        return None
    return float(value)


def save_interval(plan: Plan, attempt: int) -> int | None:
    """The save interval of attempt ``attempt`` (None: the spec's, ``checkpoint.adaptive`` off)."""
    spec = plan.spec
    adaptive = spec.checkpoint.adaptive
    if adaptive is None:
        if plan.get("checkpointInterval") is not None:
            plan.set(checkpointInterval=None)
        return None
    old = plan.get("checkpointInterval") or {}
    if old.get("attempt") == attempt:  # the same attempt's objects again
        return int(old["steps"])
    pool = (plan.get("nodePool") or "") if spec.node_pools else ""
    seen = ((plan.get("goodput") or {}).get("pools") or {}).get(pool) or {}
    throughput = plan.get("throughput") or {}
    choice = choose_interval(
        default_steps=spec.checkpoint.interval,
        min_steps=adaptive.min_interval,
        max_steps=adaptive.max_interval,
        save_seconds=_measured(plan.get("lastSaveSeconds"), zero=True),
        step_seconds=_measured(throughput.get("stepSeconds"), zero=False),
        run_seconds=float(seen.get("seconds") or 0.0),
        interruptions=int(seen.get("interruptions") or 0),
        pool=pool or None,
    )
    value: dict[str, Any] = {"steps": choice.steps, "attempt": attempt, "reason": choice.reason}
    for key, number in (
        ("mtbfSeconds", choice.mtbf_seconds),
        ("saveSeconds", choice.save_seconds),
        ("stepSeconds", choice.step_seconds),
    ):
        if number is not None:
            value[key] = round(float(number), 3)
    plan.set(checkpointInterval=value)
    if choice.steps != old.get("steps"):
        plan.event(
            "Normal",
            "CheckpointInterval",
            f"attempt {attempt} saves a checkpoint every {choice.steps} steps: {choice.reason}",
        )
    return choice.steps
