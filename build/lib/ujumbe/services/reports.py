"""What channels tell us after a send: receipts and inbound messages.

Channels call ``receipt`` and ``inbound`` from their own tasks; both are
buffered and applied in batches, so a burst of receipts costs one commit.
A receipt whose submit has not been recorded yet is held for a moment and
tried again, then parked in ``early_receipts`` and applied when the submit
is recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from ujumbe.channels.base import Inbound, Receipt
from ujumbe.core import numbers
from ujumbe.core.errors import Invalid, NotFound, UjumbeError
from ujumbe.core.ids import id_variants
from ujumbe.core.states import State
from ujumbe.services import callbacks
from ujumbe.services.lifecycle import Writes, apply_part_state
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import inbound as inbound_q
from ujumbe.store import messages as q
from ujumbe.store.accounts import as_dict
from ujumbe.aio import wait_any

log = logging.getLogger("ujumbe.reports")


async def apply_receipts(tx: Tx, receipts: list[Receipt]) -> list[Receipt]:
    """Apply receipts in the order they came; returns those that match no
    submitted part (yet). Parts, messages and part states are looked up for
    the whole batch at once rather than receipt by receipt."""
    by_connector: dict[str, list[Receipt]] = {}
    for r in receipts:
        by_connector.setdefault(r.channel, []).append(r)
    hits: dict[int, list[tuple[int, int]]] = {}  # id(receipt) -> its (message, part)s
    for connector, rs in by_connector.items():
        # The id as the receipt spells it first: an SMSC mostly writes receipts
        # the way it answered submit_sm, and one lookup per receipt is cheaper
        # than one per spelling. Only those not found are tried in every spelling.
        found: dict[str, list[tuple[int, int]]] = {}
        exact = sorted({r.operator_id.strip() for r in rs})
        for message_id, part, op_id in await q.parts_by_operator_ids(tx, connector, exact):
            found.setdefault(op_id, []).append((message_id, part))
        rest = [r for r in rs if r.operator_id.strip() not in found]
        variants = sorted({v for r in rest for v in id_variants(r.operator_id)} - set(exact))
        if variants:
            for message_id, part, op_id in await q.parts_by_operator_ids(tx, connector, variants):
                found.setdefault(op_id, []).append((message_id, part))
        for r in rs:
            op_id = r.operator_id.strip()
            spellings = [op_id] if op_id in found else id_variants(op_id)
            matches = {m for v in spellings for m in found.get(v, ())}
            if matches:
                hits[id(r)] = sorted(matches)
    ids = sorted({mid for matches in hits.values() for mid, _ in matches})
    msgs = {m["id"]: m for m in await q.messages_by_ids(tx, ids)}
    states = await q.part_states_of(tx, ids)
    unmatched = []
    writes = Writes()
    for r in receipts:
        matches = hits.get(id(r))
        if not matches:
            unmatched.append(r)
            continue
        detail = f"receipt {r.operator_id}: {r.raw or r.state.value}"[:300]
        for message_id, part in matches:
            msg = msgs.get(message_id)
            if msg is None:
                continue
            await apply_part_state(
                tx, msg, part, r.state, r.at, detail=detail, error_code=r.error_code or None,
                reason=r.reason or None, parts=states.setdefault(message_id, {}), writes=writes,
            )
    await writes.flush(tx)
    return unmatched


async def apply_early_receipts(tx: Tx, connector: str, operator_ids: list[str]) -> None:
    variants = [v for op in operator_ids for v in id_variants(op)]
    early = [
        Receipt(connector, row["operator_id"], State(row["state"]), row["at"], row["error_code"] or "", row["reason"] or "")
        for row in await q.take_early_receipts(tx, connector, variants)
    ]
    if early:
        await apply_receipts(tx, sorted(early, key=lambda r: r.at))


# A receipt usually comes a moment after its submit_sm_resp, often before the
# dispatcher's batch has recorded that submit. Such a receipt is held this long
# and tried once more before it is parked in ``early_receipts``: parking and
# taking it back costs two writes and a second round of lookups per message.
# The dispatcher lets up to MAX_UNRECORDED outcomes wait to be recorded, about
# half a second at full speed: held 0.25 s, two busy workers on PostgreSQL
# parked over half their receipts and its CPU per message doubled.
HOLD_S = 1.0


class Reports:
    def __init__(self, store: Store, *, batch: int = 500, hold_s: float = HOLD_S) -> None:
        self.store = store
        self.batch = batch
        self.hold_s = hold_s
        self._receipts: list[Receipt] = []
        self._inbound: list[Inbound] = []
        self._held: list[tuple[float, Receipt]] = []  # (when to try again, receipt), oldest first
        self._wake = asyncio.Event()

    # ChannelEvents
    async def receipt(self, receipt: Receipt) -> None:
        self._receipts.append(receipt)
        self._wake.set()

    async def inbound(self, message: Inbound) -> None:
        self._inbound.append(message)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not (stop.is_set() and not self._receipts and not self._inbound and not self._held):
            now = loop.time()
            due = 0
            while due < len(self._held) and (self._held[due][0] <= now or stop.is_set()):
                due += 1
            if not self._receipts and not self._inbound and not due:
                self._wake.clear()
                timeout = min(1.0, self._held[0][0] - now) if self._held else 1.0
                await wait_any(self._wake, stop, timeout=timeout)
                continue
            # held receipts first: they came before anything still waiting
            retry = [r for _, r in self._held[:due]]
            del self._held[:due]
            fresh, self._receipts = self._receipts[: self.batch], self._receipts[self.batch :]
            inbound, self._inbound = self._inbound[: self.batch], self._inbound[self.batch :]
            receipts = retry + fresh
            holdable = set() if stop.is_set() else {id(r) for r in fresh}
            try:
                hold = await self.store.run(lambda tx: self._apply(tx, receipts, inbound, holdable))
            except Exception:
                log.exception("applying %d receipts and %d inbound failed; one at a time", len(receipts), len(inbound))
                await self._apply_singly(receipts, inbound)
            else:
                again = loop.time() + self.hold_s
                self._held.extend((again, r) for r in hold)

    async def _apply_singly(self, receipts: list[Receipt], inbound: list[Inbound]) -> None:
        """One bad item must not hold up the others, and nothing is dropped: a
        receipt that cannot be applied is parked, an inbound message whose
        hooks fail is stored and forwarded without them."""
        for r in receipts:
            try:
                await self.store.run(lambda tx, r=r: self._apply(tx, [r], []))
            except Exception:
                log.exception("receipt %s on %s failed; parked", r.operator_id, r.channel)
                await self._retry_later(lambda tx, r=r: q.insert_early_receipts(
                    tx, [(r.operator_id, r.channel, r.state.value, r.at, r.error_code, r.reason, now_ms())]
                ))
        for m in inbound:
            try:
                await self.store.run(lambda tx, m=m: record_inbound(tx, m))
            except Exception:
                log.exception("inbound from %s to %s failed in its hooks; kept without them", m.sender, m.recipient)
                await self._retry_later(lambda tx, m=m: record_inbound(tx, m, hooks=False))

    async def _retry_later(self, unit: Any) -> None:
        # only the store itself failing lands here: keep trying, never drop
        while True:
            try:
                await self.store.run(unit)
                return
            except Exception:
                log.exception("store unavailable; retrying in 1 s")
                await asyncio.sleep(1)

    async def _apply(
        self, tx: Tx, receipts: list[Receipt], inbound: list[Inbound], holdable: set[int] | None = None,
    ) -> list[Receipt]:
        """Apply receipts and store inbound messages. Receipts that match no
        part yet are parked, except those in ``holdable`` (by id()), which are
        returned for the caller to hold and try once more."""
        now = now_ms()
        hold: list[Receipt] = []
        park: list[tuple[str, str, str, int, str, str, int]] = []
        for r in await apply_receipts(tx, receipts):
            if holdable and id(r) in holdable:
                hold.append(r)
            else:
                park.append((r.operator_id, r.channel, r.state.value, r.at, r.error_code, r.reason, now))
        await q.insert_early_receipts(tx, park)
        for m in inbound:
            await record_inbound(tx, m)
        return hold


# Services that act on inbound messages (premium keywords and subscriptions)
# register here. Each runs in the inbound's transaction, may add fields to the
# record for the forwarded payload, and returns True when it consumed the
# message (e.g. a subscription keyword), which then is not forwarded as inbound.
INBOUND_HOOKS: list[Callable[[Tx, dict[str, Any]], Awaitable[bool]]] = []


async def record_inbound(tx: Tx, m: Inbound, *, hooks: bool = True) -> dict[str, Any]:
    """Store an inbound message for the account that owns its destination,
    and forward it to that account's inbound URL in the number's dialect."""
    owner = await inbound_q.destination(tx, m.recipient)
    account_id = owner["account_id"] if owner else None
    sender, network = normalize_sender(m.sender, owner["region"] if owner else _region_of(m.recipient))
    record = {
        "id": 0, "account_id": account_id, "channel": m.channel, "sender": sender,
        "recipient": m.recipient, "body": m.body, "network": m.network or network, "link_id": m.link_id,
        "meta": m.meta, "received_at": m.at,
    }
    record["id"] = await inbound_q.insert(
        tx, account_id, m.channel, sender, m.recipient, m.body, record["network"], m.link_id, m.meta or None, m.at,
    )
    if account_id is not None and hooks:
        consumed = False
        for hook in INBOUND_HOOKS:
            consumed = await hook(tx, record) or consumed
        if consumed:
            return record
    target = owner["inbound_url"] if owner else None
    if owner and owner["dialect"] == "smpp":
        target = f"smpp:{account_id}"  # SMPP customers get inbound as deliver_sm on their binds
    if owner and target:
        fmt = callbacks.FORMATS.get(owner["dialect"]) or callbacks.FORMATS.get("native")
        if fmt is not None and fmt.inbound is not None:
            await callbacks.enqueue(
                tx, account_id=account_id, kind="inbound", dialect=owner["dialect"],  # type: ignore[arg-type]
                url=target, payload=fmt.inbound(record),
            )
    elif owner is None:
        # Kept (account_id NULL) for the operator: GET /admin/v1/inbound/unassigned.
        log.warning("inbound message %s to %s, which no account owns; kept unassigned", record["id"], m.recipient)
    return record


def normalize_sender(sender: str, region: str) -> tuple[str, str | None]:
    """A subscriber's number as recipients are kept (E.164 digits) and its
    network; a sender that is no number (e.g. alphanumeric) stays as it came."""
    try:
        number = numbers.normalize(sender, region)
    except numbers.InvalidNumber:
        return sender, None
    return number.e164, number.network


def _region_of(recipient: str) -> str:
    """The country of a destination no account owns, when it is a full
    international number; "ZZ" (none) otherwise, which reads only senders
    written internationally."""
    if len(recipient.lstrip("+")) <= 8:  # a short code has no country
        return "ZZ"
    try:
        return numbers.normalize(recipient, "ZZ").region
    except numbers.InvalidNumber:
        return "ZZ"


async def find_destination(tx: Tx, to: str) -> dict[str, Any] | None:
    """The owner of ``to`` as written or as digits (``+254 722 000 100``)."""
    text = to.strip()
    candidates = [text, text.lstrip("+")]
    try:
        candidates.append(numbers.normalize(text, "ZZ").e164)
    except numbers.InvalidNumber:
        pass
    for number in dict.fromkeys(c for c in candidates if c):
        found = await inbound_q.destination(tx, number)
        if found is not None:
            return found
    return None


def _unknown_destination(to: str) -> NotFound:
    return NotFound(
        f"No account owns {to!r} (or it is not one of yours): assign a number with `ujumbe numbers add ACCOUNT "
        "NUMBER`, or claim a short code by registering a premium service on it (`ujumbe services add` or "
        "POST /v1/premium-services)",
        code="unknown_destination",
    )


async def inject_inbound(
    store: Store, *, sender: str, to: str, text: str, account_id: str | None = None, link_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store an inbound message as if a subscriber (or, with ``meta``, the
    network) had sent it through the simulator, and forward it as one from a
    connector would be. It is written to the store directly, so any process
    role can do it; the workers deliver what it queues.

    ``account_id`` limits the destination to that account's own numbers and
    short codes (a tenant injecting); none: any owned destination (the operator).
    NotFound(unknown_destination) when no account (or not that one) owns it.
    """
    owner = await store.read(lambda tx: find_destination(tx, to))
    if owner is None or (account_id is not None and owner["account_id"] != account_id):
        raise _unknown_destination(to)
    try:
        number = numbers.normalize(sender, owner["region"])
    except numbers.InvalidNumber as exc:
        raise Invalid(f"Not a subscriber's number: {exc.reason}", code="invalid_sender") from None
    m = Inbound(
        "simulator", number.e164, owner["number"], text, now_ms(), network=number.network,
        # as a network would give one, so a reply can prove what it answers
        link_id=link_id or str(random.randrange(10**17, 10**18)), meta=meta or {},
    )
    try:
        return await store.run(lambda tx: record_inbound(tx, m))
    except UjumbeError:
        raise
    except Exception:
        # as Reports does: a failing hook must not lose the message
        log.exception("inbound from %s to %s failed in its hooks; kept without them", m.sender, m.recipient)
        return await store.run(lambda tx: record_inbound(tx, m, hooks=False))
