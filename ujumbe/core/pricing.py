"""Money and prices. Amounts are integers in ten-thousandths of a unit, so a
ledger never accumulates float error; prices are per part, by network."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

SCALE = 10_000
DEFAULT_PRICE = SCALE  # 1.0000 per part when no table entry applies


def to_units(amount: str | int | float | Decimal) -> int:
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not an amount") from None
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not an amount")
    return int((value * SCALE).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_units(units: int) -> Decimal:
    return (Decimal(units) / SCALE).quantize(Decimal("0.0001"))


def display(units: int) -> float | int:
    """An amount as clients expect it in JSON: 1 rather than 1.0000."""
    if type(units) is int:
        # Integer arithmetic, the same answer as the Decimal path below at a
        # tenth of its cost (every callback shows a cost): int / int is
        # correctly rounded, as float() of the exact Decimal quotient is.
        whole, rest = divmod(units, SCALE)
        return whole if not rest else units / SCALE
    value = from_units(units).normalize()
    return int(value) if value == value.to_integral_value() else float(value)


class PriceTable:
    """Price per part by (network, channel), falling back to '*' then a default."""

    def __init__(self, prices: Mapping[tuple[str, str], int], default: int = DEFAULT_PRICE,
                 units: Mapping[tuple[str, str], str] | None = None) -> None:
        self._prices = dict(prices)
        self.default = default
        # how a price counts where it is not per part: voice per_minute | per_call
        self._units = dict(units or {})

    def unit(self, network: str | None, channel: str = "sms") -> str:
        """How the price that ``per_part`` gives counts: per_part for SMS and
        email; per_minute (the default) or per_call for voice."""
        key = (network, channel) if network is not None and (network, channel) in self._prices else ("*", channel)
        return self._units.get(key) or ("per_minute" if channel == "voice" else "per_part")

    def per_part(self, network: str | None, channel: str = "sms") -> int:
        if network is not None:
            price = self._prices.get((network, channel))
            if price is not None:
                return price
        return self._prices.get(("*", channel), self.default)

    def items(self) -> list[tuple[tuple[str, str], int]]:
        """Every price set: ((network, channel), price per part)."""
        return list(self._prices.items())

    def cost(self, network: str | None, parts: int, channel: str = "sms") -> int:
        return self.per_part(network, channel) * parts
