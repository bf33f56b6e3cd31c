"""Queries on the sender names accounts registered (see services/senders.py)."""

from __future__ import annotations

from ujumbe.store.base import Row, Tx

_COLUMNS = "name, networks, created_at"


async def upsert(tx: Tx, account_id: str, name: str, networks: str | None, now: int) -> None:
    """Register a name, or replace the networks of one already registered."""
    await tx.execute(
        "INSERT INTO senders (account_id, name, networks, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (account_id, name) DO UPDATE SET networks = excluded.networks",
        account_id, name, networks, now,
    )


async def get(tx: Tx, account_id: str, name: str) -> Row | None:
    return await tx.fetchrow(f"SELECT {_COLUMNS} FROM senders WHERE account_id = ? AND name = ?", account_id, name)


async def list_of(tx: Tx, account_id: str) -> list[Row]:
    return await tx.fetch(f"SELECT {_COLUMNS} FROM senders WHERE account_id = ? ORDER BY name", account_id)


async def delete(tx: Tx, account_id: str, name: str) -> bool:
    row = await tx.fetchrow("DELETE FROM senders WHERE account_id = ? AND name = ? RETURNING name", account_id, name)
    return row is not None


async def number_owned(tx: Tx, account_id: str, number: str) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM numbers WHERE number = ? AND account_id = ?", number, account_id))


async def numbers_of(tx: Tx, account_id: str) -> list[str]:
    return [r[0] for r in await tx.fetch("SELECT number FROM numbers WHERE account_id = ? ORDER BY created_at, number", account_id)]
