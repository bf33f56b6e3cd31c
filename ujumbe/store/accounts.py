"""Queries on accounts, their keys, tokens, templates, numbers and ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ujumbe.store.base import Charge, Row, Tx, now_ms

ACCOUNT_COLUMNS = (
    "id, name, email, username, password_hash, region, instance_id, public_key, key_seed, "
    "balance, dlr_url, inbound_url, subscription_url, max_chars, active, created_at"
)


def as_dict(row: Row | None) -> dict[str, Any] | None:
    return None if row is None else {k: row[k] for k in row.keys()}


async def insert_account(tx: Tx, a: dict[str, Any]) -> None:
    await tx.execute(
        "INSERT INTO accounts (id, name, email, username, password_hash, region, instance_id, "
        "public_key, key_seed, balance, max_chars, active, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 1, ?)",
        a["id"], a["name"], a["email"], a["username"], a["password_hash"], a["region"],
        a["instance_id"], a["public_key"], a["key_seed"], a["max_chars"], a["created_at"],
    )


async def account_by(tx: Tx, column: str, value: Any) -> dict[str, Any] | None:
    assert column in ("id", "email", "username", "instance_id", "public_key")
    return as_dict(await tx.fetchrow(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {column} = ?", value))


async def account_by_login(tx: Tx, login: str) -> dict[str, Any] | None:
    return as_dict(
        await tx.fetchrow(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = ? OR username = ?",
            login.lower(), login,
        )
    )


async def accounts_by_ref(tx: Tx, ref: str) -> list[dict[str, Any]]:
    """Accounts whose id, username or email is ``ref`` (an operator names them any way)."""
    rows = await tx.fetch(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ? OR username = ? OR email = ?", ref, ref, ref.lower()
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def list_accounts(tx: Tx) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        "SELECT id, name, username, email, region, balance, active, created_at FROM accounts ORDER BY created_at, id"
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def api_keys_of(tx: Tx, account_id: str) -> list[dict[str, Any]]:
    """An account's keys as the operator may see them: the prefix, never the hash."""
    rows = await tx.fetch(
        "SELECT prefix, label, created_at, revoked_at FROM api_keys WHERE account_id = ? ORDER BY created_at",
        account_id,
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def numbers_of(tx: Tx, account_id: str) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        "SELECT number, kind, dialect FROM numbers WHERE account_id = ? ORDER BY number", account_id
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def account_by_api_key(tx: Tx, key_hash: str) -> dict[str, Any] | None:
    return as_dict(
        await tx.fetchrow(
            f"SELECT {', '.join('a.' + c.strip() for c in ACCOUNT_COLUMNS.split(','))} "
            "FROM api_keys k JOIN accounts a ON a.id = k.account_id "
            "WHERE k.key_hash = ? AND k.revoked_at IS NULL",
            key_hash,
        )
    )


async def insert_api_key(tx: Tx, account_id: str, key_hash: str, prefix: str, label: str) -> None:
    await tx.execute(
        "INSERT INTO api_keys (key_hash, account_id, prefix, label, created_at) VALUES (?, ?, ?, ?, ?)",
        key_hash, account_id, prefix, label, now_ms(),
    )


async def update_callbacks(tx: Tx, account_id: str, urls: dict[str, str | None]) -> None:
    for column, value in urls.items():
        assert column in ("dlr_url", "inbound_url", "subscription_url")
        await tx.execute(f"UPDATE accounts SET {column} = ? WHERE id = ?", value, account_id)


async def insert_refresh_token(tx: Tx, token_hash: str, account_id: str, expires_at: int) -> None:
    await tx.execute(
        "INSERT INTO refresh_tokens (token_hash, account_id, expires_at) VALUES (?, ?, ?)",
        token_hash, account_id, expires_at,
    )


async def use_refresh_token(tx: Tx, token_hash: str) -> str | None:
    """Spend a refresh token once; the account id, or None if unknown, used or expired."""
    now = now_ms()
    row = await tx.fetchrow(
        "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? "
        "RETURNING account_id",
        now, token_hash, now,
    )
    return None if row is None else row[0]


async def refresh_token_owner(tx: Tx, token_hash: str, now: int) -> str | None:
    """The account of a refresh token not used and not expired, without spending it."""
    return await tx.fetchval(
        "SELECT account_id FROM refresh_tokens WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
        token_hash, now,
    )


# --- credits ---


async def add_ledger(
    tx: Tx, account_id: str, kind: str, amount: int, *, request_id: str | None = None,
    message_id: int | None = None, campaign_id: int | None = None, note: str | None = None,
    covered: bool = False,
) -> int | None:
    """Move ``amount`` (signed) on the balance and record it as one ledger row;
    the new balance. With ``covered``, a debit the balance cannot cover moves
    nothing and gives None (holds, purchases)."""
    if covered:
        balance = await tx.fetchval(
            "UPDATE accounts SET balance = balance + ? WHERE id = ? AND balance + ? >= 0 RETURNING balance",
            amount, account_id, amount,
        )
        if balance is None:
            return None
    else:
        balance = await tx.fetchval(
            "UPDATE accounts SET balance = balance + ? WHERE id = ? RETURNING balance", amount, account_id
        )
        if balance is None:
            raise LookupError(account_id)
    await tx.execute(
        "INSERT INTO ledger (account_id, at, kind, amount, balance_after, request_id, message_id, campaign_id, note) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        account_id, now_ms(), kind, amount, balance, request_id, message_id, campaign_id, note,
    )
    return int(balance)


async def charge(tx: Tx, account_id: str, amount: int, request_id: str) -> int | None:
    """Take ``amount`` if the balance covers it; the new balance, or None."""
    taken = tx.charge_taken(account_id, amount, request_id)
    if taken is not None:  # folded with its group's charges (fold_charges)
        return taken
    if tx.dialect == "postgres":
        # One round trip instead of two: every send charges, inside its transaction.
        return await tx.fetchval(
            "WITH c AS (UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ? RETURNING balance) "
            "INSERT INTO ledger (account_id, at, kind, amount, balance_after, request_id) "
            "SELECT ?, ?, 'charge', ?, balance, ? FROM c RETURNING balance_after",
            amount, account_id, amount, account_id, now_ms(), -amount, request_id,
        )
    balance = await tx.fetchval(
        "UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ? RETURNING balance",
        amount, account_id, amount,
    )
    if balance is None:
        return None
    await tx.execute(
        "INSERT INTO ledger (account_id, at, kind, amount, balance_after, request_id) VALUES (?, ?, 'charge', ?, ?, ?)",
        account_id, now_ms(), -amount, balance, request_id,
    )
    return balance


async def fold_charges(tx: Tx, charges: Sequence[Charge]) -> list[int | None]:
    """Take ``charges`` in their order, each if what the ones before it left
    on its account covers it, as ``charge`` one after another would: the
    balance after each, or None where it was not covered (nothing taken).
    One update per balance row and one ledger row per charge taken, in two
    statements however many charges and accounts. PostgreSQL only.

    The rows are locked in id order first, so two processes folding groups
    that share accounts queue, never deadlock; the new balances are then
    computed here from the locked values, exact whatever else runs.
    """
    ids = sorted({c.account_id for c in charges})
    rows = await tx.fetch(
        "SELECT id, balance FROM accounts WHERE id = ANY(?::text[]) ORDER BY id FOR UPDATE", ids
    )
    balance = {r[0]: int(r[1]) for r in rows}
    after: list[int | None] = []
    taken: list[Charge] = []
    for c in charges:
        have = balance.get(c.account_id)
        if have is None or have < c.amount:
            after.append(None)
            continue
        balance[c.account_id] = have - c.amount
        after.append(have - c.amount)
        taken.append(c)
    if taken:
        moved = sorted({c.account_id for c in taken})
        await tx.execute(
            "WITH moved AS (UPDATE accounts a SET balance = m.balance "
            "FROM unnest(?::text[], ?::bigint[]) AS m(id, balance) WHERE a.id = m.id) "
            "INSERT INTO ledger (account_id, at, kind, amount, balance_after, request_id) "
            "SELECT account_id, ?, 'charge', amount, balance_after, request_id "
            "FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::text[]) AS l(account_id, amount, balance_after, request_id)",
            moved, [balance[a] for a in moved], now_ms(),
            [c.account_id for c in taken], [-c.amount for c in taken],
            [b for b in after if b is not None], [c.request_id for c in taken],
        )
    return after


async def ledger_page(tx: Tx, account_id: str, limit: int, before: int | None) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        "SELECT id, at, kind, amount, balance_after, request_id, message_id, note FROM ledger "
        "WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        account_id, before if before is not None else 2**62, limit,
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def prices(tx: Tx) -> list[Row]:
    """(network, channel, price, unit) rows; unit NULL: per part."""
    return await tx.fetch("SELECT network, channel, price, unit FROM prices")


async def set_price(tx: Tx, network: str, channel: str, price: int, unit: str | None = None) -> None:
    await tx.execute(
        "INSERT INTO prices (network, channel, price, unit) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (network, channel) DO UPDATE SET price = excluded.price, unit = excluded.unit",
        network, channel, price, unit,
    )


async def delete_price(tx: Tx, network: str, channel: str) -> bool:
    row = await tx.fetchrow("DELETE FROM prices WHERE network = ? AND channel = ? RETURNING network", network, channel)
    return row is not None


# --- templates ---


async def put_template(tx: Tx, account_id: str, key: str, channel: str, body: str, subject: str | None) -> None:
    await tx.execute(
        "INSERT INTO templates (account_id, key, channel, body, subject, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (account_id, key, channel) DO UPDATE SET body = excluded.body, "
        "subject = excluded.subject, updated_at = excluded.updated_at",
        account_id, key, channel, body, subject, now_ms(),
    )


async def get_template(tx: Tx, account_id: str, key: str, channel: str) -> dict[str, Any] | None:
    return as_dict(
        await tx.fetchrow(
            "SELECT key, channel, body, subject, updated_at FROM templates "
            "WHERE account_id = ? AND key = ? AND channel = ?",
            account_id, key, channel,
        )
    )


async def list_templates(tx: Tx, account_id: str) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        "SELECT key, channel, body, subject, updated_at FROM templates WHERE account_id = ? ORDER BY key, channel",
        account_id,
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def delete_template(tx: Tx, account_id: str, key: str, channel: str) -> bool:
    row = await tx.fetchrow(
        "DELETE FROM templates WHERE account_id = ? AND key = ? AND channel = ? RETURNING key",
        account_id, key, channel,
    )
    return row is not None


async def account_exists(tx: Tx, account_id: str) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM accounts WHERE id = ?", account_id))


# --- failed authentications (services/accounts.py Throttle) ---


async def count_failure(tx: Tx, key: str, window_ms: int, now: int) -> tuple[int, int]:
    """One more failure on ``key``: (failures in the current window, when it ends).
    A window that has ended starts again at one."""
    row = await tx.fetchrow(
        "INSERT INTO auth_failures (key, failures, expires_at) VALUES (?, 1, ?) "
        "ON CONFLICT (key) DO UPDATE SET "
        "failures = CASE WHEN auth_failures.expires_at <= ? THEN 1 ELSE auth_failures.failures + 1 END, "
        "expires_at = CASE WHEN auth_failures.expires_at <= ? THEN excluded.expires_at "
        "ELSE auth_failures.expires_at END "
        "RETURNING failures, expires_at",
        key, now + window_ms, now, now,
    )
    return int(row[0]), int(row[1])


async def failure_count(tx: Tx, key: str, now: int) -> tuple[int, int] | None:
    row = await tx.fetchrow("SELECT failures, expires_at FROM auth_failures WHERE key = ? AND expires_at > ?", key, now)
    return None if row is None else (int(row[0]), int(row[1]))


async def forget_failure(tx: Tx, key: str, *, one: bool = False) -> None:
    """Clear ``key`` (or, with ``one``, take back one failure counted in advance)."""
    if one:
        await tx.execute("UPDATE auth_failures SET failures = failures - 1 WHERE key = ? AND failures > 0", key)
    else:
        await tx.execute("DELETE FROM auth_failures WHERE key = ?", key)


async def sweep_failures(tx: Tx, now: int) -> None:
    await tx.execute("DELETE FROM auth_failures WHERE expires_at <= ?", now)
