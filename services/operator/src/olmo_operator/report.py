"""``olmo-operator report``: an OLMoJob's goodput ledger as a table, and its timeline as a PNG.

    olmo-operator report NAME [-n NAMESPACE]          # read the OLMoJob from the cluster
    olmo-operator report [NAME] --status-file FILE    # or from a file (``-``: stdin)
    olmo-operator report NAME --png timeline.png      # also draw the timeline (matplotlib)

The file is YAML or JSON: the whole object (``kubectl get olmojob NAME -o yaml``) or only its
``status``. The table shows, from ``status.goodput`` (the ledger the operator keeps, see
``olmo_operator.goodput``): wall time per state with its share of the wall time, nominal and
effective tokens/s and their ratio (goodput), the steps and tokens redone after restarts, per
node pool the seconds, node-hours, interruptions and cost, and one row per restart. The state
the job is in now is counted up to the time of the report. Everything here but the cluster read
and the PNG is pure: :func:`ledger_table` takes a status dict and returns text.

The PNG has one row per attempt, a colored bar per state segment (``goodput.timeline``) and a
dashed line at each restart, labelled with its cause and reason. matplotlib is an optional
dependency of the operator package (extra ``report``); it is imported only here, with the Agg
backend.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from olmo_operator import contract as c
from olmo_operator.goodput import STATES
from olmo_operator.metrics import state_seconds
from olmo_operator.timefmt import now_iso as iso
from olmo_operator.timefmt import parse_time

STATE_COLORS = {
    "pending": "#b0b0b0",
    "preparingData": "#9467bd",
    "starting": "#ff7f0e",
    "training": "#2ca02c",
    "saving": "#1f77b4",
    "evaluating": "#17becf",
    "restarting": "#d62728",
    "suspended": "#e0e0e0",
}
INSTALL_HINT = "pip install 'olmo-k8s-operator[report]'"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ReportError(Exception):
    """The job cannot be read or drawn (the CLI prints it and exits 1)."""


# --------------------------------------------------------------------------------------------
# Reading the job


def load_document(text: str, source: str = "input") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metadata, status)`` from the YAML/JSON text of a whole OLMoJob or of its status."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ReportError(f"{source} is neither YAML nor JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{source} holds no object (an OLMoJob or its status)")
    if doc.get("kind") == "List":
        raise ReportError(f"{source} is a list: give one OLMoJob (kubectl get olmojob NAME)")
    if "status" in doc and ("kind" in doc or "metadata" in doc or "spec" in doc):
        if doc.get("kind") not in (None, c.KIND):
            raise ReportError(f"{source} is a {doc.get('kind')}, not an {c.KIND}")
        status = doc.get("status") or {}
        return dict(doc.get("metadata") or {}), status if isinstance(status, dict) else {}
    if "kind" in doc or "spec" in doc:
        return dict(doc.get("metadata") or {}), {}  # an object the operator has not seen yet
    return {}, doc


def read_file(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``load_document`` of a file, ``-`` for stdin."""
    if path == "-":
        return load_document(sys.stdin.read(), "stdin")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ReportError(f"cannot read {path}: {e.strerror or e}") from None
    return load_document(text, path)


def default_namespace() -> str:
    """The pod's namespace in a cluster, else the kubeconfig context's, else ``default``."""
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    import kubernetes

    try:
        _, active = kubernetes.config.list_kube_config_contexts(
            config_file=os.environ.get("KUBECONFIG") or None
        )
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    return (active or {}).get("context", {}).get("namespace") or "default"


def read_cluster(name: str, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metadata, status)`` of the OLMoJob, read with the operator's own client code."""
    import kopf
    import kubernetes

    from olmo_operator import kube

    try:
        kube.load_config()
        obj = kube.Kube().get_olmojob(namespace, name)
    except kubernetes.config.ConfigException as e:
        raise ReportError(f"no cluster to read from ({e}); or pass --status-file") from None
    except (kube.ApiError, kopf.TemporaryError) as e:
        raise ReportError(str(e)) from None
    if obj is None:
        raise ReportError(f"{c.KIND} {namespace}/{name} not found")
    return dict(obj.get("metadata") or {}), dict(obj.get("status") or {})


# --------------------------------------------------------------------------------------------
# The table


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _fmt(value: Any, digits: int = 1) -> str:
    number = _num(value)
    if number is None:
        return "-" if value in (None, "") else str(value)
    if number.is_integer() and digits == 0:
        return f"{int(number):,}"
    return f"{number:,.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A plain-text table: the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def ledger_table(
    status: Mapping[str, Any], name: str = "", namespace: str = "", now: dt.datetime | None = None
) -> str:
    """The goodput ledger of ``status`` as text (see the module docstring)."""
    goodput = status.get("goodput") if isinstance(status.get("goodput"), Mapping) else {}
    title = f"{c.KIND} {namespace + '/' if namespace else ''}{name or '?'}"
    facts = [f"phase {status.get('phase') or 'unknown'}"]
    if status.get("attempt"):
        facts.append(f"attempt {status['attempt']}")
    if goodput.get("state"):
        pool = goodput.get("pool")
        where = f" on pool {pool}" if pool else ""
        nodes = f" ({goodput['nodes']} nodes)" if goodput.get("nodes") else ""
        facts.append(f"now {goodput['state']}{where}{nodes}")
    facts.append(f"step {_fmt(status.get('step', 0), 0)}")
    facts.append(f"{_fmt(status.get('tokens', 0), 0)} tokens")
    out = [f"{title}: {', '.join(facts)}"]
    if not goodput:
        out.append("No goodput ledger in the status yet (status.goodput).")
        return "\n".join(out) + "\n"

    seconds = state_seconds(goodput, now)
    wall = sum(seconds.values())
    order = [s for s in STATES if s in seconds] + sorted(set(seconds) - set(STATES))
    rows = [
        [
            state + (" *" if state == goodput.get("state") else ""),
            _duration(seconds[state]),
            _fmt(seconds[state]),
            f"{100 * seconds[state] / wall:.1f}%" if wall else "-",
        ]
        for state in order
    ]
    rows.append(["wall", _duration(wall), _fmt(wall), "100.0%" if wall else "-"])
    out += ["", table(["State", "Time", "Seconds", "% of wall"], rows)]
    if goodput.get("state"):
        out.append("(* the current state, counted up to now)")

    ratio = _num(goodput.get("ratio"))
    out += [
        "",
        table(
            ["Throughput", "Value"],
            [
                ["nominal tokens/s", _fmt(goodput.get("nominalTokensPerSecond"))],
                ["effective tokens/s", _fmt(goodput.get("effectiveTokensPerSecond"))],
                ["goodput ratio", "-" if ratio is None else f"{ratio:.2f} ({100 * ratio:.0f}%)"],
                ["lost steps", _fmt(goodput.get("lostSteps", 0), 0)],
                ["lost tokens", _fmt(goodput.get("lostTokens", 0), 0)],
            ],
        ),
    ]

    pools = goodput.get("pools") if isinstance(goodput.get("pools"), Mapping) else {}
    if pools:
        pool_rows = []
        for pool, ledger in sorted(pools.items()):
            ledger = ledger if isinstance(ledger, Mapping) else {}
            node_seconds = _num(ledger.get("nodeSeconds"))
            pool_rows.append(
                [
                    pool or "(no pool)",
                    _fmt(ledger.get("seconds")),
                    "-" if node_seconds is None else f"{node_seconds / 3600:,.2f}",
                    _fmt(ledger.get("interruptions", 0), 0),
                    _fmt(ledger.get("cost"), 2),
                ]
            )
        if _num(goodput.get("cost")) is not None:
            pool_rows.append(["total", "", "", "", _fmt(goodput.get("cost"), 2)])
        headers = ["Pool", "Seconds", "Node-hours", "Interruptions", "Cost"]
        out += ["", table(headers, pool_rows)]

    restarts = [r for r in goodput.get("restarts") or [] if isinstance(r, Mapping)]
    if restarts:
        restart_rows = [
            [
                _fmt(r.get("attempt"), 0),
                str(r.get("cause") or "-"),
                str(r.get("reason") or "-"),
                _fmt(r.get("fromStep"), 0),
                _fmt(r.get("lostSteps", 0), 0),
                _fmt(r.get("lostTokens", 0), 0),
                str(r.get("time") or "-"),
            ]
            for r in restarts
        ]
        headers = ["Attempt", "Cause", "Reason", "From step", "Lost steps", "Lost tokens", "Time"]
        out += ["", "Restarts", table(headers, restart_rows, left=3)]
    else:
        out += ["", "Restarts: none"]

    interval = status.get("checkpointInterval")
    if isinstance(interval, Mapping) and interval.get("steps"):
        which = f" of attempt {interval['attempt']}" if interval.get("attempt") else ""
        reason = f" ({interval['reason']})" if interval.get("reason") else ""
        out += ["", f"Checkpoint interval{which}: {interval['steps']} steps{reason}"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# The timeline figure


def _segments(goodput: Mapping[str, Any], now: dt.datetime) -> list[tuple[int, str, Any, Any]]:
    """``(attempt, state, start, end)`` of the timeline, then the current state's open segment
    (from ``charged``, where the ledger last charged it, up to ``now``)."""
    rows = [s for s in goodput.get("timeline") or [] if isinstance(s, Mapping)]
    if goodput.get("state") and goodput.get("charged"):
        rows.append(
            {
                "attempt": goodput.get("attempt"),
                "state": goodput["state"],
                "start": goodput["charged"],
                "end": iso(now),
            }
        )
    out = []
    for segment in rows:
        start, end = parse_time(segment.get("start")), parse_time(segment.get("end"))
        if start is None or end is None or end < start:
            continue
        attempt = segment.get("attempt")
        out.append(
            (attempt if isinstance(attempt, int) else 0, str(segment.get("state")), start, end)
        )
    return out


def write_timeline_png(
    status: Mapping[str, Any],
    path: str | Path,
    title: str = "",
    now: dt.datetime | None = None,
) -> Path:
    """Draw ``status.goodput.timeline`` into the PNG ``path``: one row per attempt."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError(f"--png needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    goodput = status.get("goodput") if isinstance(status.get("goodput"), Mapping) else {}
    segments = _segments(goodput, now or dt.datetime.now(dt.UTC))
    if not segments:
        raise ReportError("no timeline to draw: status.goodput.timeline is empty")
    attempts = sorted({s[0] for s in segments})
    row = {attempt: i for i, attempt in enumerate(attempts)}
    figure = Figure(figsize=(11, 1.2 + 0.55 * len(attempts)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    seen: list[str] = []
    for attempt, state, start, end in segments:
        begin = mdates.date2num(start)
        axes.broken_barh(
            [(begin, mdates.date2num(end) - begin)],
            (row[attempt] - 0.4, 0.8),
            facecolors=STATE_COLORS.get(state, "#8c564b"),
            edgecolors="white",
            linewidth=0.5,
        )
        if state not in seen:
            seen.append(state)
    for restart in goodput.get("restarts") or []:
        when = parse_time(restart.get("time")) if isinstance(restart, Mapping) else None
        if when is None:
            continue
        axes.axvline(mdates.date2num(when), color="black", linestyle="--", linewidth=1)
        cause, reason = restart.get("cause"), restart.get("reason")
        label = f"{cause}: {reason}" if cause and reason else str(cause or reason or "restart")
        axes.annotate(
            label,
            (mdates.date2num(when), 0.98),
            xycoords=axes.get_xaxis_transform(),
            xytext=(3, 0),
            textcoords="offset points",
            fontsize=8,
            rotation=90,
            va="top",
        )
    axes.set_yticks(range(len(attempts)), [f"attempt {a}" if a else "before" for a in attempts])
    axes.set_ylim(-0.6, len(attempts) - 0.4)
    axes.invert_yaxis()
    axes.xaxis_date()
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(axes.xaxis.get_major_locator()))
    order = [s for s in STATES if s in seen] + [s for s in seen if s not in STATES]
    axes.legend(
        handles=[Patch(color=STATE_COLORS.get(s, "#8c564b"), label=s) for s in order],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
    )
    ratio = _num(goodput.get("ratio"))
    suffix = "" if ratio is None else f" (goodput {ratio:.2f})"
    axes.set_title(f"{title or 'OLMoJob'}: timeline per attempt{suffix}")
    out = Path(path)
    figure.savefig(out, format="png", dpi=120)
    return out


# --------------------------------------------------------------------------------------------
# The command


def run(
    name: str | None,
    namespace: str | None,
    status_file: str | None,
    png: str | None,
    now: dt.datetime | None = None,
) -> str:
    """What ``olmo-operator report`` prints (writing the PNG when asked)."""
    if status_file is not None:
        metadata, status = read_file(status_file)
        name = name or metadata.get("name") or ""
        namespace = namespace or metadata.get("namespace") or ""
    elif not name:
        raise ReportError("give the OLMoJob's NAME, or --status-file")
    else:
        namespace = namespace or default_namespace()
        metadata, status = read_cluster(name, namespace)
    now = now or dt.datetime.now(dt.UTC)
    text = ledger_table(status, name or "", namespace or "", now)
    if png:
        title = f"{namespace}/{name}" if namespace else (name or "")
        written = write_timeline_png(status, png, title, now)
        text += f"\nTimeline written to {written}\n"
    return text
