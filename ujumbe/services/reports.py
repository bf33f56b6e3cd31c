"""What channels tell us after a send: receipts and inbound messages.

Channels call ``receipt`` and ``inbound`` from their own tasks; both are
buffered and applied in batches, so a burst of receipts costs one commit, and
each call returns only once what it handed over is committed: a channel
acknowledges to the operator after that (an SMSC resends what we did not
acknowledge, so a crash loses nothing it was told we have).

A receipt moves exactly one part: the newest part with its operator id on its
connector that was sent before the receipt came and whose validity has not
long ended (SMSCs that restart count their ids from 1 again, so older parts
may share the id). When that part is already final the receipt is a duplicate
and only kept as an event. A receipt whose submit has not been recorded yet
(its id is among this process's unrecorded sends, or it matches nothing) is
held for a moment and tried again, then parked in ``early_receipts`` and
applied when the submit is recorded; one that never matches is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from ujumbe import logs
from ujumbe import metrics
from ujumbe.channels.base import Inbound, Receipt
from ujumbe.core import calls, numbers
from ujumbe.core.errors import Invalid, NotFound, UjumbeError
from ujumbe.core.ids import id_variants
from ujumbe.core.states import State
from ujumbe.core.timefmt import iso
from ujumbe.services import callbacks
from ujumbe.services.lifecycle import Writes, apply_part_state
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import calls as calls_q
from ujumbe.store import inbound as inbound_q
from ujumbe.store import messages as q
from ujumbe.store.accounts import as_dict
from ujumbe.aio import wait_any

log = logging.getLogger("ujumbe.reports")

# A receipt is a part's only if it came after the part was sent; the host that
# sent and the one that received may disagree on the time by this much.
CLOCK_SLACK_MS = 2_000
# An SMSC expires a message on its own clock and reports it; a receipt this
# long after its message's validity ended is still its (kept as an event).
LATE_GRACE_MS = 3_600_000


def receipt_detail(r: Receipt) -> str:
    """The event detail: the receipt as the operator wrote it, with the
    operator's own time for the outcome when it differs from when it came."""
    when = f" (operator's time {iso(r.at)})" if abs(r.at - r.received_at) >= 1000 else ""
    return f"receipt {r.operator_id}{when}: {r.raw or r.state.value}"[:300]


async def apply_receipts(tx: Tx, receipts: list[Receipt]) -> list[Receipt]:
    """Apply receipts in the order they came; returns those that match no
    submitted part (yet). Parts, messages and part states are looked up for
    the whole batch at once rather than receipt by receipt."""
    now = now_ms()
    by_connector: dict[str, list[Receipt]] = {}
    for r in receipts:
        by_connector.setdefault(r.channel, []).append(r)
    hits: dict[int, tuple[int, int]] = {}  # id(receipt) -> its (message, part)
    for connector, rs in by_connector.items():
        valid_after = min(r.received_at for r in rs) - LATE_GRACE_MS
        # The id as the receipt spells it first: an SMSC mostly writes receipts
        # the way it answered submit_sm, and one lookup per receipt is cheaper
        # than one per spelling. Only those not found are tried in every spelling.
        found: dict[str, list[tuple[int, int, int, int]]] = {}  # id -> (sent_at, message, part, expires_at)
        exact = sorted({r.operator_id.strip() for r in rs})
        for message_id, part, op_id, sent, expires in await q.parts_by_operator_ids(tx, connector, exact, valid_after):
            found.setdefault(op_id, []).append((sent, message_id, part, expires))
        rest = [r for r in rs if r.operator_id.strip() not in found]
        variants = sorted({v for r in rest for v in id_variants(r.operator_id)} - set(exact))
        if variants:
            for message_id, part, op_id, sent, expires in await q.parts_by_operator_ids(tx, connector, variants, valid_after):
                found.setdefault(op_id, []).append((sent, message_id, part, expires))
        for r in rs:
            op_id = r.operator_id.strip()
            spellings = [op_id] if op_id in found else id_variants(op_id)
            best: tuple[int, int, int, int] | None = None
            for v in spellings:
                for c in found.get(v, ()):
                    sent, _, _, expires = c
                    if sent > r.received_at + CLOCK_SLACK_MS or expires + LATE_GRACE_MS < r.received_at:
                        continue  # sent after this receipt came, or long out of its validity: not its
                    if best is None or c[:3] > best[:3]:
                        best = c
            if best is not None:
                hits[id(r)] = (best[1], best[2])
    ids = sorted({mid for mid, _ in hits.values()})
    msgs = {m["id"]: m for m in await q.messages_by_ids(tx, ids)}
    states = await q.part_states_of(tx, ids)
    unmatched = []
    writes = Writes()
    tracing = logs.tracing()
    call_rows: list[dict[str, Any]] = []
    for r in receipts:
        hit = hits.get(id(r))
        if hit is None:
            unmatched.append(r)
            continue
        message_id, part = hit
        msg = msgs.get(message_id)
        if msg is None:
            continue
        # Timed by when we record it, never before what we recorded last: an
        # SMSC's clock may put its done date before our submit.
        at = max(now, msg["updated_at"] or 0)
        if r.call is not None and not State(msg["state"]).final:
            _apply_call(writes, call_rows, msg, r, now)
        await apply_part_state(
            tx, msg, part, r.state, at, detail=receipt_detail(r), error_code=r.error_code or None,
            reason=r.reason or None, parts=states.setdefault(message_id, {}), writes=writes,
        )
        if tracing:
            log_receipt(r, message_id, part)
    await writes.flush(tx)
    for row in call_rows:
        await calls_q.insert_call(tx, row)
    return unmatched


def log_receipt(r: Receipt, message_id: int | None = None, part: int | None = None) -> None:
    """A receipt's line (ujumbe.logs.message_event): matched to a message's
    part, or parked (``message_id`` None) until its submit is recorded. Never
    the receipt's raw text: an SMPP receipt quotes the start of the message."""
    fields = {"connector": r.channel, "operator_id": r.operator_id, "state": r.state.value,
              "error_code": r.error_code or None, "reason": r.reason or None}
    if message_id is None:
        logs.message_event(None, "receipt_parked",
                           f"receipt {r.operator_id} on {r.channel} ({r.state.value}) matches no submit yet; parked",
                           **fields)
    else:
        logs.message_event(message_id, "receipt", f"part {part} {r.state.value} on {r.channel} (receipt {r.operator_id})",
                           part=part, **fields)


def awaits_record(check: Callable[[str, str], bool] | None, r: Receipt) -> bool:
    """Whether ``check`` (a dispatcher's ``awaiting_record``) says this
    receipt's submit is sent here and not recorded yet, in any spelling."""
    if check is None:
        return False
    op_id = r.operator_id.strip()
    return check(r.channel, op_id) or any(check(r.channel, v) for v in id_variants(op_id)[1:])


def park_rows(receipts: list[Receipt]) -> list[tuple[str, str, str, int, str, str, int, str | None]]:
    return [(r.operator_id, r.channel, r.state.value, r.at, r.error_code, r.reason, r.received_at, _call_json(r))
            for r in receipts]


def _call_json(r: Receipt) -> str | None:
    """A voice receipt's call, parked with it: a fast call's outcome may come
    before its submit is recorded, and must not lose its facts."""
    if r.call is None:
        return None
    return json.dumps({"result": calls.as_record(r.call), "sip_log": r.sip_log or [], "raw": r.raw},
                      ensure_ascii=False)


def with_call(r: Receipt, parked: str | None) -> Receipt:
    """``r`` with the call parked beside it (see ``_call_json``)."""
    if parked:
        d = json.loads(parked)
        r.call, r.sip_log, r.raw = calls.result_from_dict(d["result"]), d.get("sip_log") or [], d.get("raw") or r.raw
    return r


def _apply_call(writes: Writes, tx_rows: list[dict[str, Any]], msg: dict[str, Any], r: Receipt, now: int) -> None:
    """A voice receipt: keep the call's row, and tell its story as events
    (ringing, answered) before the final one; the message carries the call
    into the settlement and the callback (``msg["call"]``)."""
    result: calls.CallResult = r.call
    row = calls.call_row(result, message_id=msg["id"], account_id=msg["account_id"], connector=r.channel, now=now,
                         sip_log=r.sip_log)
    tx_rows.append(row)
    floor = msg.get("submitted_at") or 0  # told after the call was placed (the submit), never before it
    if row["ringing_at"]:
        writes.event(msg["id"], max(int(row["ringing_at"]), floor), "ringing",  # type: ignore[call-overload]
                     result.detail.get("ringing", "ringing")[:300])
    if result.answered_at is not None:
        writes.event(msg["id"], max(result.answered_at, floor), "answered",
                     f"{result.sip_status or 200} {result.sip_phrase or 'OK'} after {result.ring_ms / 1000:.1f} s"
                     f"{', ' + result.detail['codec'] if result.detail.get('codec') else ''}"[:300])
    metrics.call_ended(r.channel, result.outcome.value, result.reason)
    msg["call"] = calls.call_view(row)
    msg["call_result"] = result


async def apply_early_receipts(tx: Tx, connector: str, operator_ids: list[str], sent_since: int = 0) -> None:
    """Apply parked receipts for parts just recorded, sent since ``sent_since``:
    a receipt parked before that belongs to something else (an older namesake
    we never recorded) and stays parked."""
    variants = [v for op in operator_ids for v in id_variants(op)]
    early = [
        with_call(Receipt(row["connector"], row["operator_id"], State(row["state"]), row["at"], row["error_code"] or "",
                          row["reason"] or "", received_at=row["received_at"]), row.get("call"))
        for row in await q.take_early_receipts(tx, connector, variants, sent_since - CLOCK_SLACK_MS)
    ]
    if early:
        unmatched = await apply_receipts(tx, sorted(early, key=lambda r: r.received_at))
        await q.insert_early_receipts(tx, park_rows(unmatched))


# A receipt usually comes a moment after its submit_sm_resp, often before the
# dispatcher's batch has recorded that submit. One whose id this process sent
# and has not recorded is held until that record commits; one that matches
# nothing at all (its submit may be another worker's) is held this long. Then
# it is parked in ``early_receipts``: parking and taking it back costs two
# writes and a second round of lookups per message. Held receipts are not yet
# acknowledged to the operator, so the hold is short.
HOLD_S = 1.0


class _Pending:
    """A receipt or inbound message waiting to be committed, and its caller."""

    __slots__ = ("item", "done", "until")

    def __init__(self, item: Any, done: asyncio.Future[None] | None, until: float) -> None:
        self.item = item
        self.done = done
        self.until = until  # loop time after which a receipt is parked rather than held

    def resolve(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


class Reports:
    def __init__(self, store: Store, *, batch: int = 500, hold_s: float = HOLD_S) -> None:
        self.store = store
        self.batch = batch
        self.hold_s = hold_s
        self._receipts: list[_Pending] = []
        self._inbound: list[_Pending] = []
        self._held: list[_Pending] = []
        self._wake = asyncio.Event()
        self._recorded = False
        self._closed = False
        self._waiting: set[int] = set()  # id() of held receipts whose submit is not recorded here yet
        # Set by the process that also sends (runtime): whether a submit with
        # this id on this connector was sent here and is not recorded yet. Such
        # a receipt is never matched before the record: an older part with
        # the same id (an SMSC that restarted its ids) would take it.
        self.awaiting_record: Callable[[str, str], bool] | None = None

    def submits_recorded(self) -> None:
        """The dispatcher committed a batch of submits: held receipts may match now."""
        self._recorded = True
        self._wake.set()

    # ChannelEvents: each returns once its item is committed (applied or parked)
    async def receipt(self, receipt: Receipt) -> None:
        await self._add(self._receipts, receipt)

    async def inbound(self, message: Inbound) -> None:
        await self._add(self._inbound, message)

    async def _add(self, queue: list[_Pending], item: Any) -> None:
        if self._closed:
            # Stopped: the caller must not acknowledge what was not stored.
            raise RuntimeError("receipts and inbound messages are no longer recorded here")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        queue.append(_Pending(item, done, loop.time() + self.hold_s))
        self._wake.set()
        # Not shielded: a caller cancelled meanwhile cancels only its own
        # future, which ``resolve`` then passes over; the item is still
        # applied. (A shield costs a second future and a loop turn a receipt.)
        await done

    def _awaited(self, r: Receipt) -> bool:
        return awaits_record(self.awaiting_record, r)

    async def run(self, stop: asyncio.Event) -> None:
        self._closed = False
        await self._run(stop, asyncio.get_running_loop())
        # stopped with nothing left: from now on nothing is taken (a crash
        # instead is restarted by the supervisor, its queue intact)
        self._closed = True

    async def _run(self, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        while not (stop.is_set() and not self._receipts and not self._inbound and not self._held):
            now = loop.time()
            recorded, self._recorded = self._recorded, False
            retry: list[_Pending] = []
            if self._held:
                keep = []
                for h in self._held:
                    # one that waits for this process's record is tried when a
                    # record commits; one that matched nothing, when its hold ends
                    if stop.is_set() or h.until <= now or (
                        recorded and id(h.item) in self._waiting and not self._awaited(h.item)
                    ):
                        retry.append(h)
                        self._waiting.discard(id(h.item))
                    else:
                        keep.append(h)
                self._held = keep
            if not self._receipts and not self._inbound and not retry:
                self._wake.clear()
                timeout = min(1.0, max(0.0, min(h.until for h in self._held) - now)) if self._held else 1.0
                await wait_any(self._wake, stop, timeout=timeout)
                continue
            # held receipts first: they came before anything still waiting
            fresh, self._receipts = self._receipts[: self.batch], self._receipts[self.batch :]
            inbound, self._inbound = self._inbound[: self.batch], self._inbound[self.batch :]
            receipts = retry + fresh
            holdable = set() if stop.is_set() else {id(p) for p in receipts if p.until > now}
            try:
                hold = await self.store.run(lambda tx: self._apply_pending(tx, receipts, inbound, holdable))
            except Exception:
                log.exception("applying %d receipts and %d inbound failed; one at a time", len(receipts), len(inbound))
                await self._apply_singly(receipts, inbound)
                continue
            held = {id(p) for p in hold}
            for p in receipts:
                if id(p) not in held:
                    p.resolve()
            for p in inbound:
                p.resolve()
            self._held.extend(hold)

    async def _apply_pending(
        self, tx: Tx, receipts: list[_Pending], inbound: list[_Pending], holdable: set[int],
    ) -> list[_Pending]:
        by_receipt = {id(p.item): p for p in receipts}
        hold = await self._apply(
            tx, [p.item for p in receipts], [p.item for p in inbound],
            {id(p.item) for p in receipts if id(p) in holdable},
        )
        return [by_receipt[id(r)] for r in hold]

    async def _apply_singly(self, receipts: list[_Pending], inbound: list[_Pending]) -> None:
        """One bad item must not hold up the others, and nothing is dropped: a
        receipt that cannot be applied is parked, an inbound message whose
        hooks fail is stored and forwarded without them."""
        for p in receipts:
            r = p.item
            try:
                await self.store.run(lambda tx, r=r: self._apply(tx, [r], []))
            except Exception:
                log.exception("receipt %s on %s failed; parked", r.operator_id, r.channel)
                log_receipt(r)
                await self._retry_later(lambda tx, r=r: q.insert_early_receipts(tx, park_rows([r])))
            p.resolve()
        for p in inbound:
            m = p.item
            try:
                await self.store.run(lambda tx, m=m: record_inbound(tx, m))
            except Exception:
                log.exception("inbound from %s to %s failed in its hooks; kept without them", m.sender, m.recipient)
                await self._retry_later(lambda tx, m=m: record_inbound(tx, m, hooks=False))
            p.resolve()

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
        returned for the caller to hold and try once more. A receipt whose
        submit this process has sent but not recorded is not matched at all."""
        hold: list[Receipt] = []
        park: list[Receipt] = []
        ready: list[Receipt] = []
        for r in receipts:
            if self._awaited(r):
                if holdable and id(r) in holdable:
                    hold.append(r)
                    self._waiting.add(id(r))
                else:
                    park.append(r)
            else:
                ready.append(r)
        for r in await apply_receipts(tx, ready) if ready else []:
            (hold if holdable and id(r) in holdable else park).append(r)
        await q.insert_early_receipts(tx, park_rows(park))
        if park and logs.tracing():
            for r in park:
                log_receipt(r)
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
