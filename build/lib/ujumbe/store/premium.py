"""Queries on premium services, their subscribers and the link ids inbound
messages carry (see services/premium.py for the rules)."""

from __future__ import annotations

import json
from typing import Any

from ujumbe.store.base import Row, Tx

# api_token_enc is the sealed api_token (services/premium.py seals and opens it);
# the plaintext api_token column is only read to seal rows from before 0011.
SERVICE_COLUMNS = "id, account_id, shortcode, name, kind, keywords, api_token_enc, created_at"
SUBSCRIPTION_COLUMNS = "id, service_id, mobile, active, keyword, source, created_at, updated_at"


async def number_owner(tx: Tx, number: str) -> str | None:
    return await tx.fetchval("SELECT account_id FROM numbers WHERE number = ?", number)


async def keywords_on(tx: Tx, shortcode: str, *, except_id: int | None = None) -> set[str]:
    """Every keyword the short code's services use (but ``except_id``'s)."""
    rows = await tx.fetch(
        "SELECT keywords FROM premium_services WHERE shortcode = ? AND id <> ?", shortcode,
        -1 if except_id is None else except_id,
    )
    return {w for r in rows for w in json.loads(r["keywords"])}


async def next_service_id(tx: Tx) -> int:
    return int(await tx.fetchval("SELECT COALESCE(MAX(id), 0) + 1 FROM premium_services"))


async def service_id_taken(tx: Tx, service_id: int) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM premium_services WHERE id = ?", service_id))


async def insert_service(tx: Tx, row: tuple[Any, ...]) -> None:
    await tx.execute(f"INSERT INTO premium_services ({SERVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", *row)


async def claim_shortcode(tx: Tx, shortcode: str, account_id: str, dialect: str, now: int) -> None:
    await tx.execute(
        "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, 'shortcode', ?, ?)",
        shortcode, account_id, dialect, now,
    )


async def service(tx: Tx, account_id: str, service_id: int) -> Row | None:
    return await tx.fetchrow(
        f"SELECT {SERVICE_COLUMNS} FROM premium_services WHERE id = ? AND account_id = ?", service_id, account_id
    )


async def services_by_id(tx: Tx, service_id: int) -> list[Row]:
    """The service with this id, whichever account has it (for the operator)."""
    return await tx.fetch(f"SELECT {SERVICE_COLUMNS} FROM premium_services WHERE id = ?", service_id)


async def services_on(tx: Tx, shortcode: str) -> list[Row]:
    """Every service on a short code, whichever account has them (for the operator)."""
    return await tx.fetch(f"SELECT {SERVICE_COLUMNS} FROM premium_services WHERE shortcode = ? ORDER BY id", shortcode)


async def services(tx: Tx, account_id: str, shortcode: str | None = None) -> list[Row]:
    if shortcode is None:
        return await tx.fetch(f"SELECT {SERVICE_COLUMNS} FROM premium_services WHERE account_id = ? ORDER BY id", account_id)
    return await tx.fetch(
        f"SELECT {SERVICE_COLUMNS} FROM premium_services WHERE shortcode = ? AND account_id = ? ORDER BY id",
        shortcode, account_id,
    )


async def update_service(
    tx: Tx, account_id: str, service_id: int, keywords: list[str], name: str, api_token_enc: str | None,
) -> None:
    await tx.execute(
        "UPDATE premium_services SET keywords = ?, name = ?, api_token_enc = ?, api_token = NULL "
        "WHERE id = ? AND account_id = ?",
        json.dumps(keywords), name, api_token_enc, service_id, account_id,
    )


async def plaintext_tokens(tx: Tx, limit: int) -> list[Row]:
    """Services whose api_token is still in clear (written before migration 0011)."""
    return await tx.fetch(
        "SELECT id, api_token FROM premium_services WHERE api_token IS NOT NULL ORDER BY id LIMIT ?", limit
    )


async def callbacks_with_tokens(tx: Tx, after_id: int, limit: int) -> list[Row]:
    """Tilil pushes queued before migration 0011, which carried the api_token
    in their stored payload (now it is added only when sent). By id, so a
    batch that finds nothing to change still moves on."""
    return await tx.fetch(
        "SELECT id, payload FROM callbacks WHERE id > ? AND dialect = 'tilil' AND kind IN ('inbound', 'subscription') "
        "ORDER BY id LIMIT ?",
        after_id, limit,
    )


async def set_callback_payload(tx: Tx, callback_id: int, payload: str) -> None:
    await tx.execute("UPDATE callbacks SET payload = ? WHERE id = ?", payload, callback_id)


async def seal_token(tx: Tx, service_id: int, plaintext: str, sealed: str) -> None:
    # only if still the same plaintext: another process may have sealed it, or
    # the account may have changed it, meanwhile
    await tx.execute(
        "UPDATE premium_services SET api_token_enc = ?, api_token = NULL WHERE id = ? AND api_token = ?",
        sealed, service_id, plaintext,
    )


# --- subscriptions ---


async def subscription(tx: Tx, service_id: int, mobile: str) -> Row | None:
    return await tx.fetchrow(
        f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE service_id = ? AND mobile = ?", service_id, mobile
    )


async def subscriptions(tx: Tx, account_id: str, service_id: int, *, active_only: bool) -> list[Row]:
    sql = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE service_id = ? AND account_id = ?"
    if active_only:
        sql += " AND active = 1"
    return await tx.fetch(sql + " ORDER BY id", service_id, account_id)


async def insert_subscription(
    tx: Tx, service_id: int, account_id: str, mobile: str, keyword: str | None, source: str, now: int,
) -> None:
    await tx.execute(
        "INSERT INTO subscriptions (service_id, account_id, mobile, active, keyword, source, created_at, updated_at) "
        "VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
        service_id, account_id, mobile, keyword, source, now, now,
    )


async def set_subscription_active(
    tx: Tx, service_id: int, mobile: str, active: bool, keyword: str | None, source: str, now: int,
) -> None:
    # An activation records the keyword it was made with (none through the API);
    # a deactivation keeps it: Tilil's unsubscribe notice names the keyword the
    # subscriber joined with, not STOP.
    if active:
        await tx.execute(
            "UPDATE subscriptions SET active = 1, keyword = ?, source = ?, updated_at = ? "
            "WHERE service_id = ? AND mobile = ?",
            keyword, source, now, service_id, mobile,
        )
    else:
        await tx.execute(
            "UPDATE subscriptions SET active = 0, source = ?, updated_at = ? WHERE service_id = ? AND mobile = ?",
            source, now, service_id, mobile,
        )


async def is_active(tx: Tx, service_id: int, mobile: str) -> bool:
    return bool(await tx.fetchval(
        "SELECT active FROM subscriptions WHERE service_id = ? AND mobile = ?", service_id, mobile
    ))


# --- link ids ---


async def remember_link(tx: Tx, service_id: int, link_id: str, mobile: str, issued_at: int) -> None:
    await tx.execute(
        "INSERT INTO premium_links (service_id, link_id, mobile, issued_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (service_id, link_id) DO NOTHING",
        service_id, link_id, mobile, issued_at,
    )


async def link_issued(tx: Tx, service_id: int, link_id: str, mobile: str, since: int) -> bool:
    return bool(await tx.fetchval(
        "SELECT 1 FROM premium_links WHERE service_id = ? AND link_id = ? AND mobile = ? AND issued_at >= ?",
        service_id, link_id, mobile, since,
    ))


async def subscription_target(tx: Tx, account_id: str, shortcode: str) -> Row | None:
    """The account's subscription URL and the dialect its short code speaks."""
    return await tx.fetchrow(
        "SELECT a.subscription_url, n.dialect FROM accounts a LEFT JOIN numbers n ON n.number = ? WHERE a.id = ?",
        shortcode, account_id,
    )
