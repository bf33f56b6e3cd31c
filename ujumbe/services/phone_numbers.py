"""The phone-number inventory: the operator stocks numbers (rate,
capabilities, SID); an account lists the available ones, buys one by SID
(charged its rate from its credits, a ledger row), lists its own, and
releases one. A bought number routes its inbound messages to its owner."""

from __future__ import annotations

import secrets
from typing import Any

from ujumbe.core.errors import Conflict, InsufficientCredit, Invalid, NotFound
from ujumbe.core.pricing import display, to_units
from ujumbe.services.accounts import Account
from ujumbe.store import Store, Tx
from ujumbe.store import phone_numbers as q


class PhoneNumbers:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def stock(self, number: str, rate: str, capabilities: str = "Voice, SMS", sid: str | None = None,
                    friendly_name: str = "") -> dict[str, Any]:
        number = number.strip().lstrip("+")
        if not number.isdigit():
            raise Invalid(f"'{number}' is not a phone number (digits only)", code="invalid_number")
        try:
            units = to_units(rate)
        except ValueError as exc:
            raise Invalid(str(exc), code="invalid_amount") from None
        if units < 0:
            raise Invalid("A rate cannot be negative", code="invalid_amount")
        sid = sid or secrets.token_hex(16)
        if not await self.store.run(lambda tx: q.stock(tx, sid, number, units, capabilities, friendly_name)):
            raise Conflict(f"{number} or SID {sid} is already stocked", code="number_exists")
        return await self._one(sid)

    async def _one(self, sid: str) -> dict[str, Any]:
        found = await self.store.read(lambda tx: q.by_sid(tx, sid))
        assert found is not None
        return found

    async def all(self) -> list[dict[str, Any]]:
        return await self.store.read(q.all_numbers)

    async def available(self) -> list[dict[str, Any]]:
        return await self.store.read(lambda tx: q.listing(tx, None))

    async def owned(self, account: Account) -> list[dict[str, Any]]:
        return await self.store.read(lambda tx: q.listing(tx, account.id))

    async def buy(self, account: Account, sid: str) -> dict[str, Any]:
        if not sid:
            raise Invalid("Give the number's phone_sid", code="missing_sid")

        async def unit(tx: Tx) -> dict[str, Any]:
            n = await q.by_sid(tx, sid, lock=True)
            if n is None:
                raise NotFound(f"No number with SID {sid}", code="number_not_found")
            if n["account_id"] == account.id:
                raise Conflict(f"{n['number']} is already yours", code="number_owned")
            if n["account_id"] is not None:
                raise NotFound(f"No number with SID {sid} is available", code="number_not_available")
            owner = await q.inbound_owner(tx, n["number"])
            if owner is not None and owner != account.id:
                raise Conflict(f"{n['number']} receives another account's messages", code="number_taken")
            if n["rate"]:
                if await q.charge(tx, account.id, n["rate"], f"phone number {n['number']} bought") is None:
                    have = await tx.fetchval("SELECT balance FROM accounts WHERE id = ?", account.id)
                    raise InsufficientCredit(
                        f"Insufficient credit: {n['number']} costs {display(n['rate'])} and the balance is "
                        f"{display(have)}", cost=display(n["rate"]), balance=display(have))
            await q.set_owner(tx, sid, account.id)
            await q.route_inbound(tx, n["number"], account.id)
            return {**n, "account_id": account.id}

        return await self.store.run(unit)

    async def release(self, account: Account, sid: str) -> dict[str, Any]:
        if not sid:
            raise Invalid("Give the number's phone_sid", code="missing_sid")

        async def unit(tx: Tx) -> dict[str, Any]:
            n = await q.by_sid(tx, sid, lock=True)
            if n is None or n["account_id"] != account.id:
                raise NotFound(f"You own no number with SID {sid}", code="number_not_found")
            await q.set_owner(tx, sid, None)
            await q.unroute_inbound(tx, n["number"], account.id)
            return n

        return await self.store.run(unit)
