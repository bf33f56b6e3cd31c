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
    ``schemes`` (LIKE patterns).

    A message's callbacks go in order: one is not claimed while an earlier
    one of its message is pending (being sent, or waiting for a retry), so a
    later state never reaches the client before an earlier one. On
    PostgreSQL a row another worker holds is still ``pending``, so its
    successors wait for it too."""
    await tx.plan_for_keys()
    lock = " FOR UPDATE OF c SKIP LOCKED" if tx.dialect == "postgres" else ""
    deliverable = " OR ".join("c.url LIKE ?" for _ in schemes)
    return dicts(await tx.fetch(
        "UPDATE callbacks SET due_at = ?, lease_owner = ? WHERE id IN (SELECT c.id FROM callbacks AS c "
        f"WHERE c.status = 'pending' AND c.due_at <= ? AND ({deliverable}) AND (c.message_id IS NULL OR NOT EXISTS "
        "(SELECT 1 FROM callbacks AS e WHERE e.message_id = c.message_id AND e.status = 'pending' "
        f"AND e.message_id IS NOT NULL AND e.id < c.id)) ORDER BY c.due_at LIMIT ?{lock}) "
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


async def hold_successors(tx: Tx, rows: Sequence[tuple[int, int, int]]) -> None:
    """(due_at, message_id, id) rows: the later pending callbacks of the
    message wait until the retry of callback ``id`` is due, rather than be
    looked at (and passed over) by every claim meanwhile."""
    await many(
        tx, "UPDATE callbacks SET due_at = ? WHERE message_id = ? AND id > ? AND status = 'pending' "
        "AND lease_owner IS NULL AND due_at < ?", [(due, m, i, due) for due, m, i in rows],
        "UPDATE callbacks AS c SET due_at = v.due FROM "
        f"{unnest('bigint', 'bigint', 'bigint', 'bigint')} AS v(due, m, i, d2) WHERE c.message_id = v.m "
        "AND c.id > v.i AND c.status = 'pending' AND c.lease_owner IS NULL AND c.due_at < v.due",
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


_ATTEMPT = (
    "INSERT INTO callback_attempts (callback_id, account_id, message_id, at, http_status, error, latency_ms, "
    "response, url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ATTEMPTS = (
    "INSERT INTO callback_attempts (callback_id, account_id, message_id, at, http_status, error, latency_ms, "
    "response, url) SELECT * FROM "
    f"{unnest('bigint', 'text', 'bigint', 'bigint', 'int', 'text', 'int', 'text', 'text')}"
)


async def record_attempts(tx: Tx, rows: Sequence[tuple[Any, ...]]) -> None:
    """(callback_id, account_id, message_id, at, http_status, error, latency_ms,
    response, url) rows: one per attempt, in one statement on PostgreSQL."""
    await many(tx, _ATTEMPT, rows, _ATTEMPTS)


async def attempts_of(tx: Tx, account_id: str, callback_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The attempts of the account's callbacks ``callback_ids``, oldest first, by callback."""
    out: dict[int, list[dict[str, Any]]] = {int(i): [] for i in callback_ids}
    if not out:
        return out
    ids = sorted(out)
    rows = await tx.fetch(
        "SELECT id, callback_id, at, http_status, error, latency_ms, response, url FROM callback_attempts "
        f"WHERE callback_id IN ({', '.join('?' for _ in ids)}) AND account_id = ? ORDER BY callback_id, id",
        *ids, account_id,
    )
    for r in dicts(rows):
        out[int(r["callback_id"])].append(r)
    return out
