"""Times as people and clients read them: ISO 8601 in UTC, from epoch ms."""

from __future__ import annotations

import time


def iso(ms: int | None) -> str | None:
    """Epoch ms as e.g. 2026-11-22T20:45:01.123Z (what datetime's isoformat
    gives, at half its cost: every answer carries one)."""
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
