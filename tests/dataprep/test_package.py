"""The data-prep service stays torch-free: its image has no torch."""

from __future__ import annotations

from ..conftest import top_level_modules_after_import


def test_dataprep_modules_do_not_import_torch():
    loaded = top_level_modules_after_import(
        "olmo_dataprep.quality",
        "olmo_dataprep.content",
        "olmo_dataprep.dedup",
        "olmo_dataprep.readers",
        "olmo_dataprep.corpus",
        "olmo_dataprep.pipeline",
        "olmo.data",
    )
    assert "olmo_dataprep" in loaded and "numpy" in loaded
    assert "torch" not in loaded
