"""Queries on the callbacks table: the queue of HTTP (and smpp:) deliveries
to clients, its leases and its record of each attempt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ujumbe.store.base import Tx
from ujumbe.store.messages import dicts, many, unnest

INSERT = (
    "INSERT INTO callbacks (account_id, message_id, kind, dialect, url, payload, status, attempts, due_at, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"
)
_INSERT_MANY = (
    "INSERT INTO callbacks (account_id, message_id, kind, dialect, url, payload, status, attempts, due_at, "
    "created_at) SELECT a, m, k, d, u, p, 'pending', 0, due, c FROM "
    f"{unnest('text', 'bigint', 'text', 'text', 'text', 'text', 'bigint', 'bigint')} "
    "WITH ORDINALITY AS v(a, m, k, d, u, p, due, c, n) ORDER BY n"
)


async def insert(tx: Tx, rows: Sequence[tuple[Any, ...]]) -> None:
    """(account_id, message_id, kind, dialect, url, payload, due_at, created_at)
    rows, queued in this order."""
    await many(tx, INSERT, rows, _INSERT_MANY)


async def claim(
    tx: Tx, owner: str, now: int, lease_ms: int, schemes: Sequence[str], limit: int,
) -> list[dict[str, Any]]:
    """Lease up to ``limit`` due callbacks whose URL starts with one of
    ``schemes`` (LIKE patterns)."""
    await tx.plan_for_keys()
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
    deliverable = " OR ".join("url LIKE ?" for _ in schemes)
    return dicts(await tx.fetch(
        "UPDATE callbacks SET due_at = ?, lease_owner = ? WHERE id IN (SELECT id FROM callbacks "
        f"WHERE status = 'pending' AND due_at <= ? AND ({deliverable}) ORDER BY due_at LIMIT ?{lock}) "
        "RETURNING id, account_id, message_id, kind, dialect, url, payload, attempts",
        now + lease_ms, owner, now, *schemes, limit,
    ))


async def delivered(tx: Tx, rows: Sequence[tuple[int, int | None, int, int]]) -> None:
    """(attempts, last_status, delivered_at, id) rows."""
    await many(
        tx, "UPDATE callbacks SET status = 'delivered', attempts = ?, last_status = ?, last_error = NULL, "
        "delivered_at = ?, lease_owner = NULL WHERE id = ?", rows,
        "UPDATE callbacks AS c SET status = 'delivered', attempts = v.n, last_status = v.s, last_error = NULL, "
        f"delivered_at = v.at, lease_owner = NULL FROM {unnest('int', 'int', 'bigint', 'bigint')} AS v(n, s, at, id) "
        "WHERE c.id = v.id",
    )


async def failed(tx: Tx, rows: Sequence[tuple[int, int | None, str, int]]) -> None:
    """(attempts, last_status, last_error, id) rows: given up."""
    await many(
        tx, "UPDATE callbacks SET status = 'failed', attempts = ?, last_status = ?, last_error = ?, "
        "lease_owner = NULL WHERE id = ?", rows,
        "UPDATE callbacks AS c SET status = 'failed', attempts = v.n, last_status = v.s, last_error = v.e, "
        f"lease_owner = NULL FROM {unnest('int', 'int', 'text', 'bigint')} AS v(n, s, e, id) WHERE c.id = v.id",
    )


async def retry_later(tx: Tx, rows: Sequence[tuple[int, int | None, str, int, int]]) -> None:
    """(attempts, last_status, last_error, due_at, id) rows: tried again then."""
    await many(
        tx, "UPDATE callbacks SET attempts = ?, last_status = ?, last_error = ?, due_at = ?, "
        "lease_owner = NULL WHERE id = ?", rows,
        "UPDATE callbacks AS c SET attempts = v.n, last_status = v.s, last_error = v.e, due_at = v.due, "
        f"lease_owner = NULL FROM {unnest('int', 'int', 'text', 'bigint', 'bigint')} AS v(n, s, e, due, id) "
        "WHERE c.id = v.id",
    )


async def page(tx: Tx, account_id: str, status: str | None, limit: int, before: int | None) -> list[dict[str, Any]]:
    sql = (
        "SELECT id, kind, url, status, attempts, last_status, last_error, message_id, created_at, payload "
        "FROM callbacks WHERE account_id = ? AND id < ?"
    )
    args: list[Any] = [account_id, before if before is not None else 2**62]
    if status:
        sql += " AND status = ?"
        args.append(status)
    sql += " ORDER BY id DESC LIMIT ?"
    return dicts(await tx.fetch(sql, *args, limit))


async def due_now(tx: Tx, url: str, now: int) -> None:
    """Pending callbacks to ``url`` that no worker holds fall due at ``now``."""
    await tx.execute(
        "UPDATE callbacks SET due_at = ? WHERE url = ? AND status = 'pending' AND lease_owner IS NULL", now, url,
    )


async def send_again(tx: Tx, account_id: str, callback_id: int, now: int) -> bool:
    """Make one of the account's callbacks pending again, from scratch; False when it has none of that id."""
    row = await tx.fetchrow(
        "UPDATE callbacks SET status = 'pending', attempts = 0, due_at = ?, lease_owner = NULL "
        "WHERE id = ? AND account_id = ? RETURNING id",
        now, callback_id, account_id,
    )
    return row is not None
