"""``olmo-operator report``: the goodput ledger as a table and a timeline PNG, from a file, stdin
or the cluster (the API server emulator)."""

from __future__ import annotations

import io
import json
import sys

import pytest
import yaml

from olmo_operator import cli, report
from olmo_operator import contract as c
from olmo_operator.timefmt import parse_time

from .goodput_status import NOW, full_status
from .olmojobs import olmojob

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def whole_object(status: dict) -> dict:
    obj = olmojob("olmo-7b")
    obj["status"] = status
    return obj


def test_the_table_shows_states_throughput_pools_and_restarts():
    text = report.ledger_table(full_status(), "olmo-7b", "ml", NOW)
    lines = text.splitlines()
    assert lines[0] == (
        "OLMoJob ml/olmo-7b: phase Running, attempt 3, now training on pool spot (2 nodes), "
        "step 1,200, 78,643,200 tokens"
    )
    rows = {line.split()[0]: line.split() for line in lines if line and not line[0].isupper()}
    # 737 s of wall: training is 600 charged + 30 open, marked as the current state
    assert lines[lines.index(next(x for x in lines if x.startswith("training")))].split() == [
        "training", "*", "0:10:30", "630.0", "85.5%"
    ]  # fmt: skip
    assert rows["pending"] == ["pending", "0:00:12", "12.0", "1.6%"]
    assert rows["wall"] == ["wall", "0:12:17", "737.0", "100.0%"]
    assert "nominal tokens/s       1,024.0" in text
    assert "effective tokens/s       812.5" in text
    assert "goodput ratio       0.79 (79%)" in text
    assert "lost tokens            458,752" in text
    assert rows["spot"] == ["spot", "650.0", "0.36", "2", "0.36"]
    assert rows["on-demand"] == ["on-demand", "100.0", "0.06", "0", "0.87"]
    assert rows["total"] == ["total", "1.23"]
    restarts = lines[lines.index("Restarts") + 1 :]
    assert restarts[0].split() == [
        "Attempt", "Cause", "Reason", "From", "step", "Lost", "steps", "Lost", "tokens", "Time"
    ]  # fmt: skip
    assert restarts[1].split() == [
        "1", "Preemption", "DisruptionTarget", "3", "2", "131,072", "2026-12-08T09:40:00Z"
    ]  # fmt: skip
    assert restarts[2].split()[:3] == ["2", "Failure", "Hang"]
    assert "Checkpoint interval of attempt 3: 147 steps (Young/Daly: sqrt(2 × 12.0 s" in text


def test_a_finished_or_unstarted_job_reads_sensibly():
    finished = finished_status()
    finished["goodput"]["restarts"] = []
    text = report.ledger_table(finished, "run", "", NOW)
    assert text.startswith("OLMoJob run: phase Succeeded, attempt 3, step 1,200")
    assert "*" not in text and "Restarts: none" in text
    assert "0:10:00    600.0" in text  # nothing counted after the end
    fresh = report.ledger_table({}, "run", "ml", NOW)
    assert fresh == (
        "OLMoJob ml/run: phase unknown, step 0, 0 tokens\n"
        "No goodput ledger in the status yet (status.goodput).\n"
    )


@pytest.mark.parametrize("shape", ["object-yaml", "object-json", "status-yaml"])
def test_the_file_may_hold_the_object_or_its_status(tmp_path, shape):
    doc = full_status() if shape == "status-yaml" else whole_object(full_status())
    path = tmp_path / "job.txt"
    path.write_text(json.dumps(doc) if shape == "object-json" else yaml.safe_dump(doc))
    metadata, status = report.read_file(str(path))
    assert status == full_status()
    assert metadata.get("name") == (None if shape == "status-yaml" else "olmo-7b")


def finished_status() -> dict:
    """The sample once the job ended: nothing is counted after the end (reports at any time
    read the same)."""
    status = full_status()
    status["phase"] = "Succeeded"
    for key in ("state", "since", "charged"):
        del status["goodput"][key]
    return status


def test_the_cli_prints_the_table_and_writes_the_png(tmp_path, capsys, monkeypatch):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(whole_object(finished_status())))
    png = tmp_path / "out" / "timeline.png"
    png.parent.mkdir()
    assert cli.main(["report", "--status-file", str(path), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OLMoJob ml/olmo-7b: phase Succeeded")
    assert f"Timeline written to {png}" in out
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    # the same from stdin, status only, with the name given
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(finished_status())))
    assert cli.main(["report", "olmo-7b", "-n", "ml", "--status-file", "-"]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == out.splitlines()[2:-2]


def test_the_png_has_one_row_per_attempt_and_needs_a_timeline(tmp_path):
    status = full_status()
    segments = report._segments(status["goodput"], NOW)
    # the charged timeline, then the current state from where it was last charged up to now
    assert [(a, s) for a, s, _, _ in segments][-2:] == [(3, "training"), (3, "training")]
    assert (segments[-1][2], segments[-1][3]) == (parse_time(status["goodput"]["charged"]), NOW)
    out = report.write_timeline_png(status, tmp_path / "t.png", "ml/run", NOW)
    assert out.read_bytes().startswith(PNG_MAGIC)
    status["goodput"]["timeline"] = []
    status["goodput"].pop("state")
    with pytest.raises(report.ReportError, match="no timeline to draw"):
        report.write_timeline_png(status, tmp_path / "u.png", "ml/run", NOW)
    assert not (tmp_path / "u.png").exists()


def test_without_matplotlib_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    with pytest.raises(report.ReportError) as error:
        report.write_timeline_png(full_status(), tmp_path / "t.png")
    assert "pip install 'olmo-k8s-operator[report]'" in str(error.value)


@pytest.mark.parametrize(
    ("argv", "content", "code", "message"),
    [
        (["report"], None, 2, "give the OLMoJob's NAME, or --status-file FILE"),
        (["report", "--status-file", "{missing}"], None, 1, "cannot read"),
        (["report", "--status-file", "{file}"], "- a\n- b\n", 1, "holds no object"),
        (["report", "--status-file", "{file}"], "a: [1,\n", 1, "neither YAML nor JSON"),
        (["report", "--status-file", "{file}"], "kind: Pod\nmetadata: {}\nstatus: {}\n", 1,
         "is a Pod, not an OLMoJob"),
    ],
)  # fmt: skip
def test_bad_input_fails_with_a_clear_message(tmp_path, capsys, argv, content, code, message):
    file = tmp_path / "job.yaml"
    if content is not None:
        file.write_text(content)
    argv = [a.format(missing=tmp_path / "nope.yaml", file=file) for a in argv]
    assert cli.main(argv) == code
    assert message in capsys.readouterr().err


def test_the_report_reads_the_job_from_the_cluster(olmojob_resource, k8s, capsys):
    obj = olmojob("run")
    k8s.create_olmojob("run", obj["spec"])
    k8s.patch_olmojob("run", {"status": full_status()}, status=True)
    assert cli.main(["report", "run", "-n", k8s.namespace]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{c.KIND} {k8s.namespace}/run: phase Running, attempt 3")
    assert "goodput ratio       0.79 (79%)" in out
    assert cli.main(["report", "gone", "-n", k8s.namespace]) == 1
    assert f"{c.KIND} {k8s.namespace}/gone not found" in capsys.readouterr().err
