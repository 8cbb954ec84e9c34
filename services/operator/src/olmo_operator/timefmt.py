"""The status's timestamps: RFC 3339 in UTC with second resolution, as Kubernetes writes them."""

from __future__ import annotations

import datetime as dt
from typing import Any


def now_iso(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> dt.datetime | None:
    """An RFC 3339 time (``...Z`` or with an offset; naive: UTC), None when absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
