"""Sender names: which origination names an account may use, and where.

Operators approve sender names per client and sometimes per network. A
dialect that enforces them (Tilil's 1001 and 1002) asks ``policy`` for the
name and hands the result to ``Messaging.send`` as ``SendRequest.check``, so
the network rule is decided per recipient like every other rejection.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ujumbe.core.errors import Invalid, NotFound
from ujumbe.core.numbers import PhoneNumber, classify_sender
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import senders as q
from ujumbe.store.accounts import account_exists

_NAME_MAX = 11  # GSM alphanumeric originator limit


@dataclass(frozen=True, slots=True)
class Sender:
    name: str
    networks: tuple[str, ...] | None  # None: any network
    created_at: int

    async def check(self, number: PhoneNumber) -> tuple[str, str] | None:
        """Per-recipient rule for ``SendRequest.check``: (error_code, reason) or None."""
        if self.networks is None:
            return None
        allowed = {n.lower() for n in self.networks}
        if (number.network or "").lower() in allowed:
            return None
        return (
            "network_not_allowed",
            f"Sender {self.name} may not send to {number.network or 'unknown'} numbers "
            f"(allowed: {', '.join(self.networks)})",
        )


def validate_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise Invalid("The sender name is empty", code="invalid_sender")
    try:
        kind = classify_sender(name)
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_sender") from None
    if kind == "alphanumeric" and (len(name) > _NAME_MAX or not re.fullmatch(r"[A-Za-z0-9 .\-_&']+", name)):
        raise Invalid(
            f"'{name}' is not a valid sender name: at most {_NAME_MAX} letters, digits, spaces and . - _ & '",
            code="invalid_sender",
        )
    return name


def _row(r: Any) -> Sender:
    return Sender(r["name"], tuple(json.loads(r["networks"])) if r["networks"] else None, r["created_at"])


class Senders:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, account_id: str, name: str, networks: list[str] | None = None) -> Sender:
        """Register (or re-register, replacing its networks) a sender name."""
        name = validate_name(name)
        cleaned = sorted({n.strip() for n in networks or [] if n.strip()}) or None
        now = now_ms()

        async def unit(tx: Tx) -> None:
            if not await account_exists(tx, account_id):
                raise NotFound(f"No account {account_id}")
            await q.upsert(tx, account_id, name, json.dumps(cleaned) if cleaned else None, now)

        await self.store.run(unit)
        found = await self.get(account_id, name)
        assert found is not None
        return found

    async def get(self, account_id: str, name: str) -> Sender | None:
        """The registered sender, matched exactly (sender names are case-sensitive on handsets)."""
        row = await self.store.read(lambda tx: q.get(tx, account_id, name.strip()))
        return None if row is None else _row(row)

    async def list(self, account_id: str) -> list[Sender]:
        return [_row(r) for r in await self.store.read(lambda tx: q.list_of(tx, account_id))]

    async def remove(self, account_id: str, name: str) -> None:
        if not await self.store.run(lambda tx: q.delete(tx, account_id, name)):
            raise NotFound(f"No sender name {name}", code="sender_not_found")


    # Short codes and long numbers the account owns (they receive its inbound
    # messages) may also originate its messages.

    async def owns_number(self, account_id: str, number: str) -> bool:
        return await self.store.read(lambda tx: q.number_owned(tx, account_id, number.strip()))

    async def numbers(self, account_id: str) -> list[str]:
        return await self.store.read(lambda tx: q.numbers_of(tx, account_id))
