"""The names of the checkpoint layout are spelled once (``olmo.checkpoints.paths``) and reach
every caller through ``layout`` unchanged; the file-system helpers likewise."""

from __future__ import annotations

import re
from pathlib import Path

from olmo.checkpoints import folders, layout, paths


def test_layout_re_exports_the_names_and_helpers_it_is_built_on():
    public = [n for n, v in vars(paths).items() if n.isupper() and isinstance(v, str)]
    assert {"COMPLETE", "CONFIG_FILE", "DEEPSPEED_TAG", "TRAINER_STATE"} <= set(public)
    assert set(public) <= set(layout.__all__)
    for name in layout.__all__:
        for module in (paths, folders):
            if hasattr(module, name):
                assert getattr(layout, name) is getattr(module, name), name


def test_the_checkpoint_file_names_are_defined_once_in_the_library():
    root = Path(paths.__file__).parents[1]
    for name in ("CONFIG_FILE", "DEEPSPEED_TAG", "TRAINER_STATE", "RNG_DIR", "UNIVERSAL_CACHE"):
        defining = [
            p.relative_to(root).as_posix()
            for p in root.rglob("*.py")
            if re.search(rf"^{name}\s*[:=]", p.read_text(), re.MULTILINE)
        ]
        assert defining == ["checkpoints/paths.py"], name
