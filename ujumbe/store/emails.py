"""Queries on sending domains (services/emails.py)."""

from __future__ import annotations

from typing import Any

from ujumbe.store.accounts import as_dict
from ujumbe.store.base import Tx

_COLUMNS = "domain, account_id, selector, private_key_enc, public_key, created_at"


async def insert_domain(tx: Tx, row: dict[str, Any]) -> None:
    await tx.execute(
        f"INSERT INTO sending_domains ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        row["domain"], row["account_id"], row["selector"], row["private_key_enc"], row["public_key"],
        row["created_at"],
    )


async def get_domain(tx: Tx, domain: str) -> dict[str, Any] | None:
    return as_dict(await tx.fetchrow(f"SELECT {_COLUMNS} FROM sending_domains WHERE domain = ?", domain))


async def domains_of(tx: Tx, account_id: str) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        f"SELECT {_COLUMNS} FROM sending_domains WHERE account_id = ? ORDER BY created_at, domain", account_id
    )
    return [d for r in rows if (d := as_dict(r)) is not None]


async def delete_domain(tx: Tx, domain: str) -> bool:
    return await tx.fetchrow("DELETE FROM sending_domains WHERE domain = ? RETURNING domain", domain) is not None


async def connector_of(tx: Tx, operator_id: str) -> str | None:
    """The connector an email (by Message-ID) went out on: a bounce names only the message."""
    return await tx.fetchval("SELECT connector FROM message_parts WHERE operator_id = ? LIMIT 1", operator_id)
