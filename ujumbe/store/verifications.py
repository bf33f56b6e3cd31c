"""Queries on one-time codes (see services/verifications.py for the rules)."""

from __future__ import annotations

from typing import Any

from ujumbe.store.base import Row, Tx

COLUMNS = (
    "id, account_id, recipient, prefix, channel, code_hash, length, status, attempts, max_attempts, "
    "message_id, dialect, created_at, expires_at, updated_at"
)  # not prefix_seq: the guard's own (count_prefix)


async def insert(tx: Tx, row: dict[str, Any]) -> None:
    names = list(row)
    await tx.execute(
        f"INSERT INTO verifications ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
        *row.values(),
    )


async def get(tx: Tx, account_id: str, verification_id: str) -> Row | None:
    return await tx.fetchrow(
        f"SELECT {COLUMNS} FROM verifications WHERE id = ? AND account_id = ?", verification_id, account_id
    )


async def page(tx: Tx, account_id: str, *, limit: int, before: int | None, to: str | None) -> list[Row]:
    sql = f"SELECT {COLUMNS} FROM verifications WHERE account_id = ?"
    args: list[Any] = [account_id]
    if to is not None:
        sql += " AND recipient = ?"
        args.append(to)
    if before is not None:
        sql += " AND created_at < ?"
        args.append(before)
    return await tx.fetch(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", *args, limit)


async def cancel_pending(tx: Tx, account_id: str, recipient: str, now: int) -> None:
    await tx.execute(
        "UPDATE verifications SET status = 'canceled', updated_at = ? "
        "WHERE account_id = ? AND recipient = ? AND status = 'pending'",
        now, account_id, recipient,
    )


async def set_message(tx: Tx, verification_id: str, message_id: int | None) -> None:
    await tx.execute("UPDATE verifications SET message_id = ? WHERE id = ?", message_id, verification_id)


async def count_to(tx: Tx, account_id: str, recipient: str, since: int) -> int:
    return int(await tx.fetchval(
        "SELECT count(*) FROM verifications WHERE account_id = ? AND recipient = ? AND created_at >= ?",
        account_id, recipient, since,
    ))


async def prefix_sent(tx: Tx, account_id: str, prefix: str) -> int | None:
    """Codes ever sent to this range (its counter), None when it is new to the account."""
    value = await tx.fetchval(
        "SELECT sent FROM verification_prefixes WHERE account_id = ? AND prefix = ?", account_id, prefix
    )
    return None if value is None else int(value)


async def count_prefix(tx: Tx, account_id: str, prefix: str, since: int, sent: int | None) -> int:
    """Codes to this range since ``since``: the range's counter (``sent``,
    from prefix_sent) minus the number of the first code since then, plus one.
    Two index look-ups, however many codes the hour holds (a count(*) of them
    grew with every code). The first code is the earliest by created_at, the
    smallest number among those of that millisecond."""
    if not sent:
        return 0
    first = await tx.fetchval(
        "SELECT min(prefix_seq) FROM verifications WHERE account_id = ? AND prefix = ? AND created_at = ("
        "SELECT min(created_at) FROM verifications WHERE account_id = ? AND prefix = ? AND created_at >= ?)",
        account_id, prefix, account_id, prefix, since,
    )
    return 0 if first is None else max(0, sent - int(first) + 1)


async def new_prefixes_since(tx: Tx, account_id: str, since: int) -> int:
    return int(await tx.fetchval(
        "SELECT count(*) FROM verification_prefixes WHERE account_id = ? AND first_at >= ?", account_id, since
    ))


async def remember_prefix(tx: Tx, account_id: str, prefix: str, now: int) -> int:
    """Counts one more code to this range; its number (the code's prefix_seq)."""
    return int(await tx.fetchval(
        "INSERT INTO verification_prefixes (account_id, prefix, first_at, sent) VALUES (?, ?, ?, 1) "
        "ON CONFLICT (account_id, prefix) DO UPDATE SET sent = verification_prefixes.sent + 1 RETURNING sent",
        account_id, prefix, now,
    ))


async def add_refusal(tx: Tx, account_id: str, recipient: str, prefix: str, reason: str, now: int) -> None:
    await tx.execute(
        "INSERT INTO verification_refusals (account_id, recipient, prefix, reason, at) VALUES (?, ?, ?, ?, ?)",
        account_id, recipient, prefix, reason, now,
    )


async def refusals(tx: Tx, account_id: str, *, limit: int, before: int | None) -> list[Row]:
    sql = "SELECT id, recipient, prefix, reason, at FROM verification_refusals WHERE account_id = ?"
    args: list[Any] = [account_id]
    if before is not None:
        sql += " AND id < ?"
        args.append(before)
    return await tx.fetch(sql + " ORDER BY id DESC LIMIT ?", *args, limit)


async def count_attempt(tx: Tx, verification_id: str, now: int) -> Row | None:
    """Count one check, atomically: None once the checks are used up, so two
    concurrent checks can never make a sixth guess."""
    return await tx.fetchrow(
        "UPDATE verifications SET attempts = attempts + 1, updated_at = ? "
        "WHERE id = ? AND status = 'pending' AND attempts < max_attempts RETURNING attempts, max_attempts",
        now, verification_id,
    )


async def set_status(tx: Tx, verification_id: str, status: str, now: int) -> None:
    await tx.execute(
        "UPDATE verifications SET status = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
        status, now, verification_id,
    )


async def settings(tx: Tx, account_id: str) -> str | None:
    return await tx.fetchval("SELECT settings FROM verification_settings WHERE account_id = ?", account_id)


async def put_settings(tx: Tx, account_id: str, settings_json: str, now: int) -> None:
    await tx.execute(
        "INSERT INTO verification_settings (account_id, settings, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (account_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
        account_id, settings_json, now,
    )


async def lock_destination(tx: Tx, account_id: str, recipient: str) -> None:
    """Serialize new codes to one number, so two at once cannot both pass the
    per-number limit (SQLite has one writer already)."""
    if tx.dialect == "postgres":
        await tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", f"otp:{account_id}:{recipient}")
