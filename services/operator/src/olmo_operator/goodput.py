"""The goodput ledger: where an OLMoJob's wall time and node-hours went (``status.goodput``).

The operator charges the wall time between two reconciles to the state the job was in
(:func:`advance`), so the ledger lives in the status alone and a restarted operator goes on
where the last one stopped:

======================  ================================================================
``pending``             waiting for Kueue admission or for capacity (a ProvisioningRequest)
``preparingData``       the data-prep Job runs
``starting``            an attempt holds its pods but trains no step yet: scheduling, image
                        pull, process start, the preflight, loading the checkpoint
``training``            the trainer takes steps (its own report, ``state``)
``saving``              a save stops training (the blocking part; an upload runs alongside)
``evaluating``          in-loop evaluation stops training
``restarting``          between two attempts: the backoff, and the old gang stopping
``suspended``           ``spec.suspend`` (not paid: nothing runs)
======================  ================================================================

The states in :data:`HOLDING` hold the attempt's nodes: their wall time × the attempt's node
count is the pool's node-seconds, priced by the pool's ``costPerNodeHour``. A restart adds the
work it threw away (:func:`record_restart`): the steps and tokens trained since the checkpoint
the next attempt resumes from. :func:`summarize` turns it into the headline figures:

- ``effectiveTokensPerSecond`` = the tokens the run has kept (``status.tokens``) ÷ the wall time
  since the job started, suspensions excluded;
- ``nominalTokensPerSecond`` = what the trainer measures while it trains
  (``status.throughput.tokensPerSecond``);
- ``ratio`` = effective ÷ nominal (capped at 1): the share of the time that became kept
  training — the ``Goodput`` column of ``kubectl get olmojobs -o wide``.

Times are charged in whole seconds (the status's timestamps have second resolution), so each
reconcile's patch stays small. The timeline keeps the newest :data:`MAX_TIMELINE` segments and
the restarts the newest :data:`MAX_RESTARTS`; the totals keep everything.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

from olmo_operator.timefmt import now_iso, parse_time

STATES = (
    "pending",
    "preparingData",
    "starting",
    "training",
    "saving",
    "evaluating",
    "restarting",
    "suspended",
)
HOLDING = frozenset({"starting", "training", "saving", "evaluating"})
"""States in which the current attempt holds its nodes (and is paid for)."""
INTERRUPTIONS = frozenset({"Preemption", "Failure"})
"""Causes of a restart that interrupted training on the pool (its MTBF counts them)."""
MAX_TIMELINE = 100
MAX_RESTARTS = 20


def _round(value: float) -> float:
    return round(value, 3)


def advance(
    ledger: Mapping[str, Any] | None,
    state: str | None,
    now: dt.datetime,
    *,
    attempt: int,
    pool: str,
    nodes: int,
    costs: Mapping[str, float | None],
    min_seconds: float = 0.0,
) -> dict[str, Any]:
    """The ledger with the time since it was last charged added to the state it was in, now in
    ``state`` (None: the job finished; nothing more is charged) for ``attempt`` on ``pool``
    (``""``: no node pools) with ``nodes`` pods. ``costs``: ``costPerNodeHour`` by pool.

    ``min_seconds``: while nothing changes (same state, attempt, pool and nodes), time is
    charged only once this much has gathered, so that the status is not rewritten at every
    reconcile; a change is always charged at once."""
    if state is not None and state not in STATES:
        raise ValueError(f"unknown ledger state {state!r}; one of {', '.join(STATES)}")
    out: dict[str, Any] = copy.deepcopy(dict(ledger or {}))
    now_text = now_iso(now)
    charged = parse_time(out.get("charged"))
    previous = out.get("state")
    same = (previous, out.get("attempt"), out.get("pool"), out.get("nodes")) == (
        state,
        attempt,
        pool,
        nodes,
    )
    if same and charged is not None and (now - charged).total_seconds() < min_seconds:
        return out
    if previous in STATES and charged is not None:
        elapsed = max(0.0, (parse_time(now_text) - charged).total_seconds())  # type: ignore[operator]
        _charge(out, previous, charged, elapsed, costs)
    if state is None:
        for key in ("state", "since", "charged", "attempt", "pool", "nodes"):
            out.pop(key, None)
        return out
    if state != previous or out.get("attempt") != attempt:
        out["since"] = now_text
    out.update(state=state, charged=now_text, attempt=attempt, pool=pool, nodes=nodes)
    out.setdefault("seconds", {})
    return out


def _charge(
    out: dict[str, Any],
    state: str,
    start: dt.datetime,
    elapsed: float,
    costs: Mapping[str, float | None],
) -> None:
    seconds = out.setdefault("seconds", {})
    seconds[state] = _round(float(seconds.get(state, 0.0)) + elapsed)
    attempt = int(out.get("attempt") or 0)
    if state in HOLDING:
        pool_name = str(out.get("pool") or "")
        pools = out.setdefault("pools", {})
        pool = pools.setdefault(pool_name, {"seconds": 0.0, "nodeSeconds": 0.0, "interruptions": 0})
        pool["seconds"] = _round(float(pool.get("seconds", 0.0)) + elapsed)
        node_seconds = float(pool.get("nodeSeconds", 0.0)) + elapsed * int(out.get("nodes") or 0)
        pool["nodeSeconds"] = _round(node_seconds)
        price = costs.get(pool_name)
        if price is not None:
            pool["cost"] = _round(node_seconds / 3600.0 * price)
    if elapsed <= 0:
        return
    end = now_iso(start + dt.timedelta(seconds=elapsed))
    timeline = out.setdefault("timeline", [])
    last = timeline[-1] if timeline else None
    if (
        last is not None
        and last.get("attempt") == attempt
        and last.get("state") == state
        and last.get("end") == now_iso(start)
    ):
        last["end"] = end
    else:
        timeline.append({"attempt": attempt, "state": state, "start": now_iso(start), "end": end})
        del timeline[:-MAX_TIMELINE]


def lost_work(
    last_step: int | None,
    last_tokens: int | None,
    from_step: int | None,
    from_tokens: int | None,
) -> tuple[int, int]:
    """(steps, tokens) trained by an ended attempt past the checkpoint the next one resumes from
    (``from_*``; None: no checkpoint, the next attempt starts from step 0). Without the
    checkpoint's token count the tokens are prorated by step (exact after a batch warmup)."""
    if last_step is None or last_step <= (from_step or 0):
        return 0, 0
    steps = last_step - (from_step or 0)
    if last_tokens is None:
        return steps, 0
    if from_tokens is None:
        from_tokens = 0 if not from_step else round(last_tokens * from_step / last_step)
    return steps, max(0, last_tokens - from_tokens)


def record_restart(
    ledger: Mapping[str, Any] | None,
    *,
    attempt: int,
    cause: str,
    reason: str,
    pool: str,
    lost_steps: int,
    lost_tokens: int,
    from_step: int | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """The ledger with the end of ``attempt`` recorded: the work it lost, and one interruption
    of ``pool`` when the cause interrupted training (:data:`INTERRUPTIONS`)."""
    out: dict[str, Any] = copy.deepcopy(dict(ledger or {}))
    out["lostSteps"] = int(out.get("lostSteps", 0)) + lost_steps
    out["lostTokens"] = int(out.get("lostTokens", 0)) + lost_tokens
    if cause in INTERRUPTIONS:
        pools = out.setdefault("pools", {})
        entry = pools.setdefault(pool, {"seconds": 0.0, "nodeSeconds": 0.0, "interruptions": 0})
        entry["interruptions"] = int(entry.get("interruptions", 0)) + 1
    restart: dict[str, Any] = {
        "attempt": attempt,
        "cause": cause,
        "reason": reason,
        "lostSteps": lost_steps,
        "lostTokens": lost_tokens,
        "time": now_iso(now),
    }
    if from_step is not None:
        restart["fromStep"] = from_step
    restarts = out.setdefault("restarts", [])
    restarts.append(restart)
    del restarts[:-MAX_RESTARTS]
    return out


def summarize(
    ledger: Mapping[str, Any], *, tokens: int | None, nominal_tokens_per_second: float | None
) -> dict[str, Any]:
    """The ledger with its headline figures (effective and nominal tokens/s, ratio, cost)."""
    out: dict[str, Any] = copy.deepcopy(dict(ledger))
    seconds = out.get("seconds") or {}
    wall = sum(float(v) for k, v in seconds.items() if k != "suspended")
    for key in ("effectiveTokensPerSecond", "nominalTokensPerSecond", "ratio", "cost"):
        out.pop(key, None)
    if wall > 0 and tokens is not None:
        out["effectiveTokensPerSecond"] = _round(tokens / wall)
    if nominal_tokens_per_second:
        out["nominalTokensPerSecond"] = _round(nominal_tokens_per_second)
        if "effectiveTokensPerSecond" in out:
            ratio = out["effectiveTokensPerSecond"] / nominal_tokens_per_second
            out["ratio"] = round(min(1.0, ratio), 4)
    costs = [p["cost"] for p in (out.get("pools") or {}).values() if "cost" in p]
    if costs:
        out["cost"] = _round(sum(costs))
    return out
