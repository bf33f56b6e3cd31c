"""Queries on customers' SMPP credentials (see services/smpp_credentials.py)."""

from __future__ import annotations

from typing import Any

from ujumbe.store.base import Row, Tx


async def owner_of(tx: Tx, system_id: str) -> str | None:
    return await tx.fetchval("SELECT account_id FROM smpp_credentials WHERE system_id = ?", system_id)


async def of_account(tx: Tx, account_id: str) -> Row | None:
    return await tx.fetchrow(
        "SELECT account_id, system_id, max_binds, tps, created_at, updated_at FROM smpp_credentials "
        "WHERE account_id = ?", account_id,
    )


async def replace(tx: Tx, row: dict[str, Any]) -> None:
    """An account has one set: the new one takes the old one's place."""
    await tx.execute("DELETE FROM smpp_credentials WHERE account_id = ?", row["account_id"])
    await tx.execute(
        "INSERT INTO smpp_credentials (account_id, system_id, password_hash, max_binds, tps, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        row["account_id"], row["system_id"], row["password_hash"], row["max_binds"], row["tps"],
        row["created_at"], row["updated_at"],
    )


async def for_bind(tx: Tx, system_id: str) -> Row | None:
    """The credentials a bind names, if their account is active."""
    return await tx.fetchrow(
        "SELECT c.account_id, c.password_hash, c.max_binds, c.tps FROM smpp_credentials c "
        "JOIN accounts a ON a.id = c.account_id WHERE c.system_id = ? AND a.active = 1",
        system_id,
    )
