"""Queries on the phone-number inventory (see services/phone_numbers.py)."""

from __future__ import annotations

from typing import Any

from ujumbe.store import accounts as accounts_q
from ujumbe.store.base import Tx, now_ms

COLUMNS = "sid, number, rate, capabilities, friendly_name, account_id, bought_at, created_at"


async def stock(tx: Tx, sid: str, number: str, rate: int, capabilities: str, friendly_name: str) -> bool:
    row = await tx.fetchrow(
        "INSERT INTO phone_numbers (sid, number, rate, capabilities, friendly_name, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING sid",
        sid, number, rate, capabilities, friendly_name, now_ms(),
    )
    return row is not None


async def listing(tx: Tx, account_id: str | None) -> list[dict[str, Any]]:
    if account_id is None:
        rows = await tx.fetch(f"SELECT {COLUMNS} FROM phone_numbers WHERE account_id IS NULL ORDER BY number")
    else:
        rows = await tx.fetch(f"SELECT {COLUMNS} FROM phone_numbers WHERE account_id = ? ORDER BY number", account_id)
    return [dict(r) for r in rows]


async def all_numbers(tx: Tx) -> list[dict[str, Any]]:
    return [dict(r) for r in await tx.fetch(f"SELECT {COLUMNS} FROM phone_numbers ORDER BY number")]


async def by_sid(tx: Tx, sid: str, *, lock: bool = False) -> dict[str, Any] | None:
    sql = f"SELECT {COLUMNS} FROM phone_numbers WHERE sid = ?"
    if lock and tx.dialect == "postgres":
        sql += " FOR UPDATE"
    row = await tx.fetchrow(sql, sid)
    return None if row is None else dict(row)


async def set_owner(tx: Tx, sid: str, account_id: str | None) -> None:
    await tx.execute("UPDATE phone_numbers SET account_id = ?, bought_at = ? WHERE sid = ?",
                     account_id, now_ms() if account_id else None, sid)


async def inbound_owner(tx: Tx, number: str) -> str | None:
    return await tx.fetchval("SELECT account_id FROM numbers WHERE number = ?", number)


async def route_inbound(tx: Tx, number: str, account_id: str) -> None:
    await tx.execute(
        "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, 'longcode', 'native', ?) "
        "ON CONFLICT (number) DO UPDATE SET account_id = excluded.account_id",
        number, account_id, now_ms(),
    )


async def unroute_inbound(tx: Tx, number: str, account_id: str) -> None:
    await tx.execute("DELETE FROM numbers WHERE number = ? AND account_id = ?", number, account_id)


async def charge(tx: Tx, account_id: str, amount: int, note: str) -> int | None:
    """Take ``amount`` if the balance covers it (a ledger 'charge' row); the new balance, or None."""
    return await accounts_q.add_ledger(tx, account_id, "charge", -amount, note=note, covered=True)
