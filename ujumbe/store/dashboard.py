"""Queries behind the web dashboard: its sessions, an account's figures over
a window, API keys, and the operator's list of accounts. Every one reads
through an index bounded by the account and the window or page it shows."""

from __future__ import annotations

from typing import Any

from ujumbe.store.accounts import ACCOUNT_COLUMNS
from ujumbe.store.base import Tx
from ujumbe.store.messages import dicts

# --- sessions ---


async def insert_session(tx: Tx, token_hash: str, account_id: str | None, admin: bool, now: int, expires_at: int) -> None:
    await tx.execute(
        "INSERT INTO dashboard_sessions (token_hash, account_id, admin, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        token_hash, account_id, 1 if admin else 0, now, expires_at,
    )


async def session(tx: Tx, token_hash: str, now: int) -> dict[str, Any] | None:
    row = await tx.fetchrow(
        "SELECT token_hash, account_id, admin, created_at, expires_at FROM dashboard_sessions "
        "WHERE token_hash = ? AND expires_at > ?", token_hash, now,
    )
    return None if row is None else dict(zip(("token_hash", "account_id", "admin", "created_at", "expires_at"), row))


async def delete_session(tx: Tx, token_hash: str) -> None:
    await tx.execute("DELETE FROM dashboard_sessions WHERE token_hash = ?", token_hash)


async def delete_sessions_of(tx: Tx, account_id: str) -> None:
    await tx.execute("DELETE FROM dashboard_sessions WHERE account_id = ?", account_id)


async def forget_expired_sessions(tx: Tx, now: int) -> None:
    await tx.execute("DELETE FROM dashboard_sessions WHERE expires_at <= ?", now)


# --- an account's figures over a window, read incrementally ---

TALLY_COLUMNS = "id, created_at, channel, state, network, error_code, error_reason, done_at"


async def created_after(
    tx: Tx, account_id: str, after: tuple[int, int], until: int, limit: int,
) -> list[tuple[Any, ...]]:
    """The account's messages created after ``after`` (created_at, id) and at
    or before ``until``, oldest first: a range of messages_account_created."""
    rows = await tx.fetch(
        f"SELECT {TALLY_COLUMNS} FROM messages WHERE account_id = ? AND created_at <= ? "
        "AND (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?",
        account_id, until, after[0], after[1], limit,
    )
    return [tuple(r) for r in rows]


async def created_since(tx: Tx, account_id: str, since: int) -> list[tuple[Any, ...]]:
    """The account's messages created since ``since`` (the last seconds only)."""
    rows = await tx.fetch(
        f"SELECT {TALLY_COLUMNS} FROM messages WHERE account_id = ? AND created_at > ?", account_id, since,
    )
    return [tuple(r) for r in rows]


async def tally_rows(tx: Tx, ids: list[int]) -> list[tuple[Any, ...]]:
    """These messages' current state, by primary key."""
    from ujumbe.store.messages import chunks, is_in

    await tx.plan_for_keys()
    out: list[tuple[Any, ...]] = []
    for chunk in chunks(tx, ids, 500):
        where, args = is_in(tx, "id", chunk, "bigint")
        out.extend(tuple(r) for r in await tx.fetch(f"SELECT {TALLY_COLUMNS} FROM messages WHERE {where}", *args))
    return out


# --- messages by time (the search's bounds) ---


async def search_messages(
    tx: Tx, account_id: str, *, limit: int, before: int | None, state: str | None, recipient: str | None,
    request_id: str | None, since: int | None, until: int | None, before_time: tuple[int, int] | None = None,
    channel: str | None = None,
) -> list[dict[str, Any]]:
    """The account's messages, newest first. Searched by time alone, they are
    read through messages_account_created in (created_at, id) order, paged by
    ``before_time``; otherwise by id (messages_account, or the recipient's or
    request's index), paged by ``before``."""
    from ujumbe.store.messages import MESSAGE_COLUMNS, MESSAGE_FROM

    by_time = (since is not None or until is not None) and recipient is None and request_id is None
    where = ["m.account_id = ?"]
    args: list[Any] = [account_id]
    if by_time:
        if before_time is not None:
            where.append("(m.created_at, m.id) < (?, ?)")
            args.extend(before_time)
    else:
        where.append("m.id < ?")
        args.append(before if before is not None else 2**62)
    for column, value in (("m.state", state), ("m.channel", channel), ("m.recipient", recipient), ("m.request_id", request_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if since is not None:
        where.append("m.created_at >= ?")
        args.append(since)
    if until is not None:
        where.append("m.created_at < ?")
        args.append(until)
    order = "m.created_at DESC, m.id DESC" if by_time else "m.id DESC"
    rows = await tx.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
        *args, limit,
    )
    return dicts(rows)


async def parts_of(tx: Tx, message_id: int) -> list[dict[str, Any]]:
    return dicts(await tx.fetch(
        "SELECT part, operator_id, connector, state, updated_at, error_code, error_reason FROM message_parts "
        "WHERE message_id = ? ORDER BY part", message_id,
    ))


async def callbacks_of_message(tx: Tx, account_id: str, message_id: int) -> list[dict[str, Any]]:
    return dicts(await tx.fetch(
        "SELECT id, kind, url, status, attempts, last_status, last_error, created_at, delivered_at, due_at "
        "FROM callbacks WHERE account_id = ? AND message_id = ? ORDER BY id", account_id, message_id,
    ))


async def ledger_of_message(tx: Tx, account_id: str, request_id: str, message_id: int) -> list[dict[str, Any]]:
    return dicts(await tx.fetch(
        "SELECT id, at, kind, amount, balance_after, request_id, message_id, note FROM ledger "
        "WHERE account_id = ? AND (message_id = ? OR (request_id = ? AND message_id IS NULL)) ORDER BY id",
        account_id, message_id, request_id,
    ))


# --- API keys ---


async def api_keys(tx: Tx, account_id: str) -> list[dict[str, Any]]:
    return dicts(await tx.fetch(
        "SELECT key_hash, prefix, label, created_at, revoked_at FROM api_keys WHERE account_id = ? "
        "ORDER BY created_at DESC", account_id,
    ))


async def revoke_api_key(tx: Tx, account_id: str, key_hash: str, now: int) -> bool:
    row = await tx.fetchrow(
        "UPDATE api_keys SET revoked_at = ? WHERE account_id = ? AND key_hash = ? AND revoked_at IS NULL "
        "RETURNING key_hash", now, account_id, key_hash,
    )
    return row is not None


# --- the operator's accounts ---


async def accounts_page(tx: Tx, limit: int, after: str | None) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > ? ORDER BY id LIMIT ?", after or "", limit,
    )
    out = dicts(rows)
    for r in out:
        r.pop("password_hash", None)
        r.pop("key_seed", None)
    return out


async def set_active(tx: Tx, account_id: str, active: bool) -> bool:
    row = await tx.fetchrow("UPDATE accounts SET active = ? WHERE id = ? RETURNING id", 1 if active else 0, account_id)
    return row is not None
