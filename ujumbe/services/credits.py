"""Prepaid credit: a balance kept as a ledger, and the price table."""

from __future__ import annotations

from typing import Any

from ujumbe.core.errors import Invalid, NotFound
from ujumbe.core.pricing import to_units
from ujumbe.store import Store
from ujumbe.store import accounts as q


class Credits:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, account_id: str, amount: str, note: str = "top-up") -> int:
        try:
            units = to_units(amount)
        except ValueError as exc:
            raise Invalid(str(exc), code="invalid_amount") from None
        if units == 0:
            raise Invalid("The amount is zero", code="invalid_amount")
        try:
            return await self.store.run(
                lambda tx: q.add_ledger(tx, account_id, "topup" if units > 0 else "adjust", units, note=note)
            )
        except LookupError:
            raise NotFound(f"No account {account_id}") from None

    async def balance(self, account_id: str) -> int:
        value = await self.store.read(lambda tx: tx.fetchval("SELECT balance FROM accounts WHERE id = ?", account_id))
        if value is None:
            raise NotFound(f"No account {account_id}")
        return value

    async def transactions(self, account_id: str, limit: int, before: int | None) -> list[dict[str, Any]]:
        return await self.store.read(lambda tx: q.ledger_page(tx, account_id, limit, before))

    async def set_price(self, network: str, amount: str, channel: str = "sms") -> int:
        """Set the price per part; the price as stored (in ledger units)."""
        try:
            units = to_units(amount)
        except ValueError as exc:
            raise Invalid(str(exc), code="invalid_amount") from None
        if units < 0:
            raise Invalid("A price cannot be negative", code="invalid_amount")
        await self.store.run(lambda tx: q.set_price(tx, network, channel, units))
        return units

    async def remove_price(self, network: str, channel: str = "sms") -> None:
        """Forget a network's price: its parts cost the '*' price, else the default."""
        if not await self.store.run(lambda tx: q.delete_price(tx, network, channel)):
            raise NotFound(f"No price for {network} ({channel})", code="price_not_found")
