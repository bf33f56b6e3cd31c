"""Queries on the sender names accounts registered (see services/senders.py)."""

from __future__ import annotations

from ujumbe.store.base import Row, Tx

_COLUMNS = "account_id, name, networks, created_at, status, decided_at, reason"


async def upsert(
    tx: Tx, account_id: str, name: str, networks: str | None, now: int, status: str = "approved",
) -> None:
    """Register a name, or replace the networks (and status) of one already registered."""
    decided = now if status != "pending" else None
    await tx.execute(
        "INSERT INTO senders (account_id, name, networks, created_at, status, decided_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (account_id, name) DO UPDATE SET networks = excluded.networks, status = excluded.status, "
        "decided_at = excluded.decided_at, reason = NULL",
        account_id, name, networks, now, status, decided,
    )


async def set_networks(tx: Tx, account_id: str, name: str, networks: str | None) -> None:
    await tx.execute("UPDATE senders SET networks = ? WHERE account_id = ? AND name = ?", networks, account_id, name)


async def decide(tx: Tx, account_id: str, name: str, status: str, reason: str | None, now: int) -> bool:
    row = await tx.fetchrow(
        "UPDATE senders SET status = ?, reason = ?, decided_at = ? WHERE account_id = ? AND name = ? RETURNING name",
        status, reason, now, account_id, name,
    )
    return row is not None


async def get(tx: Tx, account_id: str, name: str) -> Row | None:
    return await tx.fetchrow(f"SELECT {_COLUMNS} FROM senders WHERE account_id = ? AND name = ?", account_id, name)


async def holders(tx: Tx, name: str) -> list[Row]:
    """Every account's row for ``name``, compared without case (how a subscriber reads it)."""
    return await tx.fetch(f"SELECT {_COLUMNS} FROM senders WHERE lower(name) = lower(?)", name)


async def list_of(tx: Tx, account_id: str) -> list[Row]:
    return await tx.fetch(f"SELECT {_COLUMNS} FROM senders WHERE account_id = ? ORDER BY name", account_id)


async def by_status(tx: Tx, status: str | None) -> list[Row]:
    if status is None:
        return await tx.fetch(f"SELECT {_COLUMNS} FROM senders ORDER BY created_at, account_id, name")
    return await tx.fetch(
        f"SELECT {_COLUMNS} FROM senders WHERE status = ? ORDER BY created_at, account_id, name", status
    )


async def number_owner(tx: Tx, number: str) -> str | None:
    """The account a short code or long number belongs to (the numbers table), if any."""
    return await tx.fetchval("SELECT account_id FROM numbers WHERE number = ?", number)


async def delete(tx: Tx, account_id: str, name: str) -> bool:
    row = await tx.fetchrow("DELETE FROM senders WHERE account_id = ? AND name = ? RETURNING name", account_id, name)
    return row is not None


async def assign_number(tx: Tx, number: str, account_id: str, kind: str, dialect: str, now: int) -> None:
    """Give ``account_id`` a short code or long number (the operator's act)."""
    await tx.execute(
        "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (number) DO UPDATE SET account_id = excluded.account_id, kind = excluded.kind, "
        "dialect = excluded.dialect",
        number, account_id, kind, dialect, now,
    )


async def number_owned(tx: Tx, account_id: str, number: str) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM numbers WHERE number = ? AND account_id = ?", number, account_id))


async def numbers_of(tx: Tx, account_id: str) -> list[str]:
    return [r[0] for r in await tx.fetch("SELECT number FROM numbers WHERE account_id = ? ORDER BY created_at, number", account_id)]
