"""Queries on voice calls: one row per voice message whose call ended."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ujumbe.store.base import Tx
from ujumbe.store.messages import chunks, dicts, is_in

_COLUMNS = (
    "message_id", "account_id", "connector", "call_id", "outcome", "reason", "sip_status", "sip_phrase", "q850",
    "started_at", "ringing_at", "answered_at", "ended_at", "ring_ms", "duration_ms", "playback_ms", "audio_ms",
    "dtmf", "sip_log", "created_at",
)


async def insert_call(tx: Tx, row: dict[str, Any]) -> None:
    """The call's row; a second final receipt of the same call changes nothing."""
    values = [row.get(c) for c in _COLUMNS]
    if values[_COLUMNS.index("sip_log")] is not None:
        values[_COLUMNS.index("sip_log")] = json.dumps(row["sip_log"], ensure_ascii=False)
    await tx.execute(
        f"INSERT INTO calls ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
        "ON CONFLICT (message_id) DO NOTHING", *values,
    )


async def calls_of(tx: Tx, message_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The calls of these messages, by message id (messages without one are absent)."""
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunks(tx, list(message_ids), 500):
        if not chunk:
            continue
        where, args = is_in(tx, "message_id", chunk, "bigint")
        for r in dicts(await tx.fetch(f"SELECT * FROM calls WHERE {where}", *args)):
            r["sip_log"] = json.loads(r["sip_log"]) if r.get("sip_log") else []
            out[r["message_id"]] = r
    return out
