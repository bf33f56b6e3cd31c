"""Sender names: which origination names an account may use, and where.

Operators approve sender names per client and sometimes per network. A name
the operator grants (``add``: CLI, admin API) is approved at once; a tenant's
own registration (``request``: ``POST /v1/senders``) is pending until the
operator approves or rejects it. An approved name belongs to one account
(unique in the store, compared without case), and so does a short code or
long number in the numbers table: no other account may register or send as
it, in any dialect (``check_use``, called by ``Messaging.send``). A dialect
that requires registration (Tilil's 1001 and 1002) asks ``usable`` for the
name and hands the result to ``Messaging.send`` as ``SendRequest.check``, so
the network rule is decided per recipient like every other rejection.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from ujumbe.core.errors import Conflict, Invalid, NotFound, UjumbeError
from ujumbe.core.numbers import PhoneNumber, classify_sender
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import senders as q
from ujumbe.store.accounts import account_exists

_NAME_MAX = 11  # GSM alphanumeric originator limit
STATUSES = ("pending", "approved", "rejected")


class SenderRefused(UjumbeError):
    """The account may not send as this name: another account holds it, or the
    operator has not approved (or has rejected) the account's request for it."""

    code = "sender_not_allowed"
    kind = "forbidden"


@dataclass(frozen=True, slots=True)
class Sender:
    name: str
    networks: tuple[str, ...] | None  # None: any network
    created_at: int
    status: str = "approved"  # pending | approved | rejected
    account_id: str = ""
    decided_at: int | None = None
    reason: str | None = None  # the operator's, on a rejection

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
    return Sender(
        r["name"], tuple(json.loads(r["networks"])) if r["networks"] else None, r["created_at"],
        r["status"], r["account_id"], r["decided_at"], r["reason"],
    )


def _networks(networks: list[str] | None) -> list[str] | None:
    return sorted({n.strip() for n in networks or [] if n.strip()}) or None


def _refusal(account_id: str, name: str, rows: list[Any], owner: str | None) -> SenderRefused | None:
    """Why ``account_id`` may not use ``name`` (None: it may, as far as ownership goes)."""
    if owner is not None and owner != account_id:
        return SenderRefused(f"{name} is a number of another account", code="sender_taken")
    if any(r["status"] == "approved" and r["account_id"] != account_id for r in rows):
        return SenderRefused(f"The sender name {name} belongs to another account", code="sender_taken")
    own = next((r for r in rows if r["account_id"] == account_id and r["name"] == name), None)
    if own is not None and own["status"] == "pending":
        return SenderRefused(f"The sender name {name} is awaiting the operator's approval", code="sender_pending")
    if own is not None and own["status"] == "rejected":
        why = f": {own['reason']}" if own["reason"] else ""
        return SenderRefused(f"The sender name {name} was rejected by the operator{why}", code="sender_rejected")
    return None


class Senders:
    def __init__(self, store: Store) -> None:
        self.store = store
        # Every send with a sender name asks who holds it: a short-lived cache
        # spares the database; another process's approval is seen within the TTL.
        self._claims: dict[str, tuple[float, list[Any], str | None]] = {}
        self.cache_ttl_s = 5.0

    async def _holders(self, tx: Tx, name: str) -> tuple[list[Any], str | None]:
        rows = await q.holders(tx, name)
        owner = await q.number_owner(tx, name) if re.fullmatch(r"\+?[0-9]+", name) else None
        if owner is None and name.startswith("+"):
            owner = await q.number_owner(tx, name[1:])
        return rows, owner

    def _changed(self) -> None:
        self._claims.clear()

    async def add(self, account_id: str, name: str, networks: list[str] | None = None) -> Sender:
        """Grant (or grant again, replacing its networks) a sender name: the
        operator's act, approved at once, unless another account holds it."""
        name = validate_name(name)
        cleaned = _networks(networks)
        now = now_ms()

        async def unit(tx: Tx) -> None:
            if not await account_exists(tx, account_id):
                raise NotFound(f"No account {account_id}")
            refused = _refusal(account_id, name, *await self._holders(tx, name))
            if refused is not None and refused.code == "sender_taken":
                raise Conflict(refused.message, code="sender_taken")
            await q.upsert(tx, account_id, name, json.dumps(cleaned) if cleaned else None, now, "approved")

        await self.store.run(unit)
        self._changed()
        found = await self.get(account_id, name)
        assert found is not None
        return found

    async def request(self, account_id: str, name: str, networks: list[str] | None = None) -> Sender:
        """A tenant asks for a sender name: pending until the operator decides.
        Asking again for an approved name may narrow its networks, not widen
        them (that is the operator's grant); a rejected one is asked for anew."""
        name = validate_name(name)
        cleaned = _networks(networks)
        now = now_ms()

        async def unit(tx: Tx) -> None:
            if not await account_exists(tx, account_id):
                raise NotFound(f"No account {account_id}")
            rows, owner = await self._holders(tx, name)
            refused = _refusal(account_id, name, rows, owner)
            if refused is not None and refused.code == "sender_taken":
                raise Conflict(refused.message, code="sender_taken")
            own = next((r for r in rows if r["account_id"] == account_id and r["name"] == name), None)
            if own is not None and own["status"] == "approved":
                granted = set(json.loads(own["networks"])) if own["networks"] else None
                if cleaned is not None and (granted is None or set(cleaned) <= granted):
                    await q.set_networks(tx, account_id, name, json.dumps(cleaned))
                elif cleaned != (sorted(granted) if granted is not None else None):
                    raise Conflict(
                        f"The sender name {name} is approved for {', '.join(sorted(granted or [])) or 'every network'}; "
                        "ask the operator to widen it", code="sender_approved",
                    )
                return
            await q.upsert(tx, account_id, name, json.dumps(cleaned) if cleaned else None, now, "pending")

        await self.store.run(unit)
        self._changed()
        found = await self.get(account_id, name)
        assert found is not None
        return found

    async def approve(self, account_id: str, name: str) -> Sender:
        """The operator grants a pending (or rejected) request."""

        async def unit(tx: Tx) -> None:
            row = await q.get(tx, account_id, name)
            if row is None:
                raise NotFound(f"No sender name {name} on account {account_id}", code="sender_not_found")
            refused = _refusal(account_id, name, *await self._holders(tx, name))
            if refused is not None and refused.code == "sender_taken":
                raise Conflict(refused.message, code="sender_taken")
            await q.decide(tx, account_id, name, "approved", None, now_ms())

        await self.store.run(unit)
        self._changed()
        found = await self.get(account_id, name)
        assert found is not None
        return found

    async def reject(self, account_id: str, name: str, reason: str | None = None) -> Sender:
        """The operator refuses a request (or withdraws a grant); the account
        can no longer send as the name."""
        reason = (reason or "").strip() or None
        if not await self.store.run(lambda tx: q.decide(tx, account_id, name, "rejected", reason, now_ms())):
            raise NotFound(f"No sender name {name} on account {account_id}", code="sender_not_found")
        self._changed()
        found = await self.get(account_id, name)
        assert found is not None
        return found

    async def get(self, account_id: str, name: str) -> Sender | None:
        """The registered sender, matched exactly (sender names are case-sensitive on handsets)."""
        row = await self.store.read(lambda tx: q.get(tx, account_id, name.strip()))
        return None if row is None else _row(row)

    async def check_use(self, account_id: str, name: str) -> None:
        """Refuse (``SenderRefused``) a name another account holds, or this
        account's own pending or rejected one. Names nobody holds pass: only
        dialects that require registration (Tilil) need more (``usable``)."""
        await self._claimed(account_id, name)

    async def _claimed(self, account_id: str, name: str) -> list[Any]:
        """check_use's work; the name's rows (every account's), as cached."""
        name = name.strip()
        if not name:
            return []
        key = name.lower()
        hit = self._claims.get(key)
        now = time.monotonic()
        if hit is None or now - hit[0] >= self.cache_ttl_s:
            rows, owner = await self.store.read(lambda tx: self._holders(tx, name))
            hit = (now, [dict(r) if not isinstance(r, dict) else r for r in rows], owner)
            if len(self._claims) > 10_000:
                self._claims.clear()
            self._claims[key] = hit
        refused = _refusal(account_id, name, hit[1], hit[2])
        if refused is not None:
            raise refused
        return hit[1]

    async def usable(self, account_id: str, name: str) -> Sender | None:
        """This account's approved sender of that exact name; None when it has
        not registered it; ``SenderRefused`` when it may not use it. From the
        rows check_use cached (they hold this account's too): no read per send."""
        rows = await self._claimed(account_id, name)
        name = name.strip()
        own = next((r for r in rows if r["account_id"] == account_id and r["name"] == name), None)
        return _row(own) if own is not None and own["status"] == "approved" else None

    async def list(self, account_id: str) -> list[Sender]:
        return [_row(r) for r in await self.store.read(lambda tx: q.list_of(tx, account_id))]

    async def all(self, status: str | None = None) -> list[Sender]:
        """Every account's senders (the operator's view), optionally of one status."""
        if status is not None and status not in STATUSES:
            raise Invalid(f"The status must be one of {', '.join(STATUSES)}", code="invalid_status")
        return [_row(r) for r in await self.store.read(lambda tx: q.by_status(tx, status))]

    async def remove(self, account_id: str, name: str) -> None:
        if not await self.store.run(lambda tx: q.delete(tx, account_id, name)):
            raise NotFound(f"No sender name {name}", code="sender_not_found")
        self._changed()

    # Short codes and long numbers the account owns (they receive its inbound
    # messages) may also originate its messages.

    async def assign_number(self, account_id: str, number: str, *, kind: str = "shortcode",
                            dialect: str = "native") -> None:
        """The operator gives an account a short code or long number: it
        receives the account's inbound messages and may carry its services."""
        number = number.strip()
        if not re.fullmatch(r"\+?[0-9]{3,15}", number):
            raise Invalid(f"'{number}' is not a short code or number (3-15 digits)", code="invalid_number")
        await self.store.run(lambda tx: q.assign_number(tx, number, account_id, kind, dialect, now_ms()))
        self._changed()

    async def owns_number(self, account_id: str, number: str) -> bool:
        return await self.store.read(lambda tx: q.number_owned(tx, account_id, number.strip()))

    async def numbers(self, account_id: str) -> list[str]:
        return await self.store.read(lambda tx: q.numbers_of(tx, account_id))
