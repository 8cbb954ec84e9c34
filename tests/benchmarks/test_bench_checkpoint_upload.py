"""The checkpoint-upload benchmark runs (its own S3 server on 127.0.0.1) and reports, per preset,
the seconds a save blocks training for a local run directory and for an asynchronous s3 one."""

from __future__ import annotations

import json

from . import run_benchmark, summary_rows


def test_bench_checkpoint_upload_reports_blocked_seconds_and_their_ratio(tmp_path):
    lines = run_benchmark(
        "bench_checkpoint_upload.py", "--presets", "tiny", "--seq-len", "32", "--batch", "2",
        "--rounds", "1", "--steps-between", "1", timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert len(lines) == 1, lines  # stdout holds the JSON line only
    report = json.loads(lines[0])
    (result,) = report["results"]
    assert result["preset"] == "tiny"
    assert len(result["local_round_blocked_s"]) == len(result["s3_round_blocked_s"]) == 1
    assert result["local_blocked_s"] > 0 and result["s3_blocked_s"] > 0
    assert result["upload_seconds"] > 0  # the upload really happened, in the background
    ratio = result["s3_blocked_s"] / result["local_blocked_s"]
    assert abs(result["ratio"] - ratio) <= 1e-3 * ratio + 1e-3
    assert report["ratio"] == result["ratio"]
    summary_rows("checkpoint_upload", report)  # make bench's table reads it
