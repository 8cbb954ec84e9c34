"""The shared JSON-record helpers (olmo/json_records.py): one timestamp form, one reader."""

from __future__ import annotations

import datetime as dt
import re

from olmo.json_records import now_iso, read_json_object

from .conftest import top_level_modules_after_import


def test_now_iso_is_rfc3339_utc_with_a_z_as_kubernetes_writes_it():
    text = now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - parsed).total_seconds()) < 5


def test_read_json_object_returns_none_for_anything_but_an_object_file(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"step": 10}')
    assert read_json_object(good) == {"step": 10}
    assert read_json_object(str(good)) == {"step": 10}
    for name, content in [("list.json", b"[1]"), ("torn.json", b'{"st'), ("bin.json", b"\xff")]:
        (tmp_path / name).write_bytes(content)
        assert read_json_object(tmp_path / name) is None
    assert read_json_object(tmp_path / "missing.json") is None
    assert read_json_object(tmp_path) is None  # a folder


def test_the_module_imports_nothing_heavy():
    loaded = top_level_modules_after_import("olmo.json_records")
    assert not loaded & {"torch", "numpy", "deepspeed", "yaml"}
