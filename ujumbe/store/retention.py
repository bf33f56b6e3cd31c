"""Queries of the retention worker: purge final messages (and what hangs off
them, their callbacks' attempts among it) and old callbacks with their
attempts in bounded batches, keeping daily totals.

Messages are walked in primary-key order, which follows acceptance time, so
no index is added to the send path: a batch reads at most ``limit`` rows by
key and deletes them by key in each table."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from ujumbe.core.states import FINAL
from ujumbe.store.base import Tx

_FINAL = tuple(sorted(s.value for s in FINAL))


def _day(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def _marks(n: int) -> str:
    return ",".join("?" * n)


async def purge_messages(tx: Tx, after_id: int, cutoff_ms: int, limit: int) -> tuple[int, int, bool]:
    """Purge final messages accepted before ``cutoff_ms`` among the ``limit``
    messages after ``after_id``. Returns (messages purged, last id looked at,
    whether older messages may follow)."""
    rows = await tx.fetch(
        "SELECT id, account_id, channel, network, state, parts, cost, created_at FROM messages "
        "WHERE id > ? ORDER BY id LIMIT ?", after_id, limit,
    )
    if not rows:
        return 0, after_id, False
    old = [r for r in rows if r["created_at"] < cutoff_ms]
    more = bool(old) and len(rows) == limit
    candidates = [r["id"] for r in old if r["state"] in _FINAL]
    purge: list[Any] = []
    if candidates:
        # The totals are made from what this statement deleted, not from what
        # was read: two workers purging the same batch (a cluster) each count
        # only the rows they removed (the second finds them gone).
        purge = await tx.fetch(
            f"DELETE FROM messages WHERE id IN ({_marks(len(candidates))}) AND state IN ({_marks(len(_FINAL))}) "
            "RETURNING id, account_id, channel, network, state, parts, cost, created_at", *candidates, *_FINAL,
        )
    if purge:
        totals: dict[tuple[str, str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for r in purge:
            t = totals[(_day(r["created_at"]), r["account_id"], r["channel"], r["network"] or "", r["state"])]
            t[0] += 1
            t[1] += r["parts"]
            t[2] += r["cost"]
        await tx.executemany(
            "INSERT INTO message_daily (day, account_id, channel, network, state, messages, parts, cost) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, account_id, channel, network, state) DO UPDATE SET "
            "messages = message_daily.messages + excluded.messages, parts = message_daily.parts + excluded.parts, "
            "cost = message_daily.cost + excluded.cost",
            [(*key, *t) for key, t in sorted(totals.items())],
        )
        ids = [r["id"] for r in purge]
        marks = _marks(len(ids))
        for table in ("message_events", "message_parts", "outbox", "calls"):
            await tx.execute(f"DELETE FROM {table} WHERE message_id IN ({marks})", *ids)
        # found through the message's callbacks: attempts have no index by message (one less per attempt)
        await tx.execute(
            f"DELETE FROM callback_attempts WHERE callback_id IN (SELECT id FROM callbacks WHERE message_id IN ({marks}))",
            *ids,
        )
    return len(purge), rows[-1]["id"], more


async def purge_callbacks(tx: Tx, after_id: int, cutoff_ms: int, limit: int) -> tuple[int, int, bool]:
    """Delete finished callback attempts created before ``cutoff_ms`` among
    the ``limit`` after ``after_id`` (pending ones stay: still to be sent)."""
    rows = await tx.fetch(
        "SELECT id, status, created_at FROM callbacks WHERE id > ? ORDER BY id LIMIT ?", after_id, limit,
    )
    if not rows:
        return 0, after_id, False
    old = [r for r in rows if r["created_at"] < cutoff_ms]
    ids = [r["id"] for r in old if r["status"] != "pending"]
    if ids:
        await tx.execute(f"DELETE FROM callbacks WHERE id IN ({_marks(len(ids))})", *ids)
        await tx.execute(f"DELETE FROM callback_attempts WHERE callback_id IN ({_marks(len(ids))})", *ids)
    return len(ids), rows[-1]["id"], bool(old) and len(rows) == limit


async def daily_totals(tx: Tx, account_id: str | None = None) -> list[dict[str, Any]]:
    where, args = ("WHERE account_id = ?", (account_id,)) if account_id else ("", ())
    rows = await tx.fetch(
        "SELECT day, account_id, channel, network, state, messages, parts, cost FROM message_daily "
        f"{where} ORDER BY day, account_id, channel, network, state", *args,
    )
    return [dict(r) for r in rows]
