"""Text tables of results: one run, and two runs compared."""

from __future__ import annotations

from olmo.eval import compare, format_table


def task(headline_metric: str, acc: dict[str, float], items: int = 10) -> dict:
    return {"items": items, "headline_metric": headline_metric,
            "headline": acc[headline_metric], "acc": acc}  # fmt: skip


def ppl(perplexity: float, bpb: float) -> dict:
    return {"documents": 3, "tokens": 300, "bytes": 1200, "nll": 1.0,
            "perplexity": perplexity, "bits_per_byte": bpb}  # fmt: skip


A = {
    "checkpoint": "runs/x/checkpoints/step001000",
    "step": 1000,
    "tokens": 4096000,
    "kind": "zero3",
    "tasks": {
        "piqa": task("per_token", {"none": 0.6, "per_token": 0.625, "per_char": 0.61, "pmi": 0.5}),
        "arc_easy": task("pmi", {"none": 0.4, "per_token": 0.41, "per_char": 0.42, "pmi": 0.45}),
    },
    "perplexity": {"sources": {"web": ppl(25.5, 1.2345)}, "aggregate": ppl(25.5, 1.2345)},
}
B = {
    "tasks": {
        "piqa": task("per_token", {"none": 0.7, "per_token": 0.6, "per_char": 0.6, "pmi": 0.5}),
        "boolq": task("none", {"none": 0.65, "per_token": 0.6, "per_char": 0.6, "pmi": 0.6}),
    },
    "perplexity": {"sources": {"web": ppl(20.0, 1.0)}, "aggregate": ppl(20.0, 1.0)},
}


def test_format_table():
    text = format_table(A)
    lines = text.splitlines()
    assert lines[0].startswith("runs/x/checkpoints/step001000 (step 1000), tokens 4096000")
    assert lines[1].split() == ["task", "items", "none", "per_token", "per_char", "pmi",
                                "headline", "metric"]  # fmt: skip
    # Tasks in CORE_TASKS order, accuracies in percent.
    assert lines[2].split() == [
        "arc_easy",
        "10",
        "40.00",
        "41.00",
        "42.00",
        "45.00",
        "45.00",
        "pmi",
    ]
    assert lines[3].split() == ["piqa", "10", "60.00", "62.50", "61.00", "50.00", "62.50",
                                "per_token"]  # fmt: skip
    assert lines[4].split() == ["average", "20", "50.00", "51.75", "51.50", "47.50", "53.75"]
    assert "source" in lines[6] and "bits_per_byte" in lines[6]
    assert lines[7].split() == ["web", "3", "300", "1200", "25.500", "1.2345"]
    assert lines[8].split()[0] == "aggregate"


def test_compare_shows_deltas_and_dashes():
    lines = compare(A, B).splitlines()
    assert lines[0] == "a: runs/x/checkpoints/step001000 (step 1000)" and lines[1] == "b: b"
    rows = [line.split() for line in lines]
    assert ["arc_easy", "headline", "(pmi)", "45.00", "-", "-"] in rows  # only in a
    assert ["boolq", "headline", "(none)", "-", "65.00", "-"] in rows  # only in b
    assert ["piqa", "headline", "(per_token)", "62.50", "60.00", "-2.50"] in rows
    piqa = next(i for i, r in enumerate(rows) if r[:1] == ["piqa"])
    assert rows[piqa + 1] == ["none", "60.00", "70.00", "+10.00"]
    assert rows[piqa + 2] == ["per_token", "62.50", "60.00", "-2.50"]
    assert ["web", "perplexity", "25.500", "20.000", "-5.500"] in rows
    assert ["bits_per_byte", "1.2345", "1.0000", "-0.2345"] in rows
    # Order: core task order, tasks of either side.
    order = [r[0] for r in rows if len(r) == 6 and r[1] == "headline"]
    assert order == ["arc_easy", "boolq", "piqa"]
