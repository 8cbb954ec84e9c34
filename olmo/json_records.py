"""The two things every JSON record the pods write needs: reading one back, and its timestamp.

Checkpoint markers (``olmo.checkpoints.layout``), the eval worker's results and failure records,
and the progress patches sent to the OLMoJob status (``olmo.progress``) all use these, so a
record written by one component reads the same in another.

Standard library only: the torch-free checkpoint layout and the data-prep image import it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["now_iso", "read_json_object"]


def now_iso() -> str:
    """The current UTC time as RFC 3339 with a ``Z`` suffix, to the second
    (``2026-12-01T12:00:00Z``): the form Kubernetes writes its own status times in."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object file's content; None if missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None
