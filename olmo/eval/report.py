"""Plain-text views of evaluation results: one run as a table, two runs side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from olmo.eval.tasks import CORE_TASKS, NORMALIZATIONS

__all__ = ["compare", "format_table"]

_DASH = "-"


def _pct(value: float | None) -> str:
    return _DASH if value is None else f"{100 * value:.2f}"


def _num(value: float | None, digits: int = 4) -> str:
    return _DASH if value is None else f"{value:.{digits}f}"


def _delta(a: float | None, b: float | None, scale: float = 100.0, digits: int = 2) -> str:
    if a is None or b is None:
        return _DASH
    return f"{scale * (b - a):+.{digits}f}"


def _ordered_tasks(*results: Mapping[str, Any]) -> list[str]:
    names = {t for r in results for t in r.get("tasks", {})}
    return [t for t in CORE_TASKS if t in names] + sorted(names - set(CORE_TASKS))


def _label(results: Mapping[str, Any], fallback: str) -> str:
    if results.get("checkpoint"):
        step = results.get("step")
        return f"{results['checkpoint']}" + (f" (step {step})" if step is not None else "")
    return fallback


def _render(rows: list[list[str]], left: tuple[int, ...] = (0,)) -> list[str]:
    """Columns padded to their widest cell; columns in ``left`` left-aligned, others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def format_table(results: Mapping[str, Any]) -> str:
    """Tasks × accuracy (percent) under every normalization plus the headline, an average row,
    and perplexity / bits per byte per source."""
    lines = []
    if results.get("checkpoint"):
        lines.append(
            f"{_label(results, '')}, tokens {results.get('tokens')}, kind {results.get('kind')}"
        )
    tasks = results.get("tasks", {})
    if tasks:
        header = ["task", "items", *NORMALIZATIONS, "headline", "metric"]
        rows = [header]
        for name in _ordered_tasks(results):
            t = tasks[name]
            rows.append(
                [
                    name,
                    str(t["items"]),
                    *(_pct(t["acc"][n]) for n in NORMALIZATIONS),
                    _pct(t["headline"]),
                    t["headline_metric"],
                ]
            )
        if len(tasks) > 1:
            mean = lambda values: sum(values) / len(values)  # noqa: E731
            rows.append(
                [
                    "average",
                    str(sum(t["items"] for t in tasks.values())),
                    *(_pct(mean([t["acc"][n] for t in tasks.values()])) for n in NORMALIZATIONS),
                    _pct(mean([t["headline"] for t in tasks.values()])),
                    "",
                ]
            )
        lines += _render(rows, left=(0, len(header) - 1))
    ppl = results.get("perplexity")
    if ppl:
        if lines:
            lines.append("")
        rows = [["source", "documents", "tokens", "bytes", "perplexity", "bits_per_byte"]]
        entries = [*ppl["sources"].items(), ("aggregate", ppl["aggregate"])]
        for name, m in entries:
            rows.append(
                [
                    name,
                    str(m["documents"]),
                    str(m["tokens"]),
                    str(m["bytes"]),
                    _num(m["perplexity"], 3),
                    _num(m["bits_per_byte"]),
                ]
            )
        lines += _render(rows)
    return "\n".join(lines)


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """Two results side by side: per task the headline then every normalization (percent), and
    perplexity / bits per byte per source, with deltas b − a; "-" where one side lacks it."""
    lines = [f"a: {_label(a, 'a')}", f"b: {_label(b, 'b')}"]
    rows = [["task", "metric", "a", "b", "b-a"]]
    for name in _ordered_tasks(a, b):
        ta, tb = a.get("tasks", {}).get(name), b.get("tasks", {}).get(name)
        metric = (ta or tb)["headline_metric"]
        va = ta["headline"] if ta else None
        vb = tb["headline"] if tb else None
        rows.append([name, f"headline ({metric})", _pct(va), _pct(vb), _delta(va, vb)])
        for norm in NORMALIZATIONS:
            va = ta["acc"][norm] if ta else None
            vb = tb["acc"][norm] if tb else None
            rows.append(["", norm, _pct(va), _pct(vb), _delta(va, vb)])
    if len(rows) > 1:
        lines += _render(rows, left=(0, 1))
    pa, pb = a.get("perplexity") or {}, b.get("perplexity") or {}
    if pa or pb:
        sources_a, sources_b = pa.get("sources", {}), pb.get("sources", {})
        names = list(dict.fromkeys([*sources_a, *sources_b]))
        rows = [["source", "metric", "a", "b", "b-a"]]
        for name in [*names, "aggregate"]:
            ma = pa.get("aggregate") if name == "aggregate" else sources_a.get(name)
            mb = pb.get("aggregate") if name == "aggregate" else sources_b.get(name)
            for i, (key, digits) in enumerate((("perplexity", 3), ("bits_per_byte", 4))):
                va = ma[key] if ma else None
                vb = mb[key] if mb else None
                rows.append(
                    [
                        name if i == 0 else "",
                        key,
                        _num(va, digits),
                        _num(vb, digits),
                        _delta(va, vb, 1.0, digits),
                    ]
                )
        lines.append("")
        lines += _render(rows, left=(0, 1))
    return "\n".join(lines)
