"""Queries on inbound messages and the numbers they arrive at (see
services/reports.py for storing and forwarding them)."""

from __future__ import annotations

import json
from typing import Any

from ujumbe.store.accounts import as_dict
from ujumbe.store.base import Tx


async def destination(tx: Tx, number: str) -> dict[str, Any] | None:
    """The account that owns a number or short code, with what forwarding
    and normalizing its inbound messages needs; None when no account does."""
    return as_dict(await tx.fetchrow(
        "SELECT n.number, n.account_id, n.dialect, a.inbound_url, a.region FROM numbers n "
        "JOIN accounts a ON a.id = n.account_id WHERE n.number = ?",
        number,
    ))


async def insert(
    tx: Tx, account_id: str | None, channel: str, sender: str, recipient: str, body: str, network: str | None,
    link_id: str | None, meta: dict[str, Any] | None, received_at: int,
) -> int:
    row = await tx.fetchrow(
        "INSERT INTO inbound (account_id, channel, sender, recipient, body, network, link_id, meta, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        account_id, channel, sender, recipient, body, network, link_id, json.dumps(meta) if meta else None,
        received_at,
    )
    return int(row[0])  # type: ignore[index]


async def unassigned_page(tx: Tx, *, limit: int, before: int | None = None) -> list[dict[str, Any]]:
    """Inbound messages to numbers no account owned when they came, newest first."""
    rows = await tx.fetch(
        "SELECT id, channel, sender, recipient, body, network, link_id, received_at FROM inbound "
        "WHERE account_id IS NULL AND id < ? ORDER BY id DESC LIMIT ?",
        before if before is not None else 2**62, limit,
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]
