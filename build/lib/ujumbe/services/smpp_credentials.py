"""SMPP credentials of customer accounts: the system_id and password an
account binds to Ujumbe with, and its bind limit and throughput."""

from __future__ import annotations

import asyncio
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ujumbe.core.errors import Conflict, Invalid, NotFound
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import smpp_credentials as q
from ujumbe.store.accounts import account_exists

_hasher = PasswordHasher()

# SMPP 3.4 C-strings: system_id 16 octets, password 9, each with its NUL.
MAX_SYSTEM_ID = 15
MAX_PASSWORD = 8


def _check_credentials(system_id: str, password: str) -> None:
    if not system_id or len(system_id) > MAX_SYSTEM_ID or not system_id.isprintable() or " " in system_id:
        raise Invalid(
            f"The system_id must be 1-{MAX_SYSTEM_ID} printable characters without spaces", code="invalid_system_id"
        )
    if not password or len(password) > MAX_PASSWORD or not password.isascii():
        # The bind PDU itself has room for no more (SMPP 3.4, 5.2.1).
        raise Invalid(f"The SMPP password must be 1-{MAX_PASSWORD} ASCII characters", code="invalid_password")


async def set_credentials(
    store: Store, account_id: str, system_id: str, password: str, *,
    max_binds: int | None = None, tps: float | None = None, limits: bool = False,
) -> dict[str, Any]:
    """Create or replace an account's SMPP credentials. With ``limits`` the bind
    limit and throughput are set too (operator only); otherwise an existing
    account keeps its limits and a new one gets the defaults."""
    _check_credentials(system_id, password)
    if max_binds is not None and not 1 <= max_binds <= 100:
        raise Invalid("max_binds must be between 1 and 100", code="invalid_max_binds")
    if tps is not None and not tps > 0:
        raise Invalid("tps must be a positive number (leave it out for unlimited)", code="invalid_tps")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    now = now_ms()

    async def unit(tx: Tx) -> dict[str, Any]:
        if not await account_exists(tx, account_id):
            raise NotFound(f"No account {account_id}")
        owner = await q.owner_of(tx, system_id)
        if owner is not None and owner != account_id:
            raise Conflict("Another account uses this system_id", code="system_id_taken")
        current = await q.of_account(tx, account_id)
        row = {
            "account_id": account_id, "system_id": system_id,
            "max_binds": max_binds if (limits and max_binds is not None) else (current["max_binds"] if current else 2),
            "tps": tps if limits else (current["tps"] if current else None),
            "created_at": current["created_at"] if current else now, "updated_at": now,
        }
        await q.replace(tx, {**row, "password_hash": password_hash})
        return row

    return await store.run(unit)


async def get_credentials(store: Store, account_id: str) -> dict[str, Any]:
    row = await store.read(lambda tx: q.of_account(tx, account_id))
    if row is None:
        raise NotFound("This account has no SMPP credentials; PUT /v1/smpp/credentials sets them", code="no_smpp_credentials")
    return {k: row[k] for k in row.keys()}


async def verify(store: Store, system_id: str, password: str) -> dict[str, Any] | None:
    """The active account's credentials row if the password is right, else None."""
    row = await store.read(lambda tx: q.for_bind(tx, system_id))
    if row is None:
        # the same time for an unknown system_id, so timing does not reveal which exist
        await asyncio.to_thread(_hasher.hash, password or "-")
        return None
    try:
        ok = await asyncio.to_thread(_hasher.verify, row["password_hash"], password)
    except (VerificationError, InvalidHashError):
        ok = False
    return {k: row[k] for k in row.keys() if k != "password_hash"} if ok else None
