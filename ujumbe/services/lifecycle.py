"""Moving a message through its life: one function, used by every worker.

``transition`` is the only code that changes a message's state. In the same
transaction it records the event, settles or refunds the charge when the
message ends, and queues the client's delivery report.

Loops that move many messages at once (the dispatcher recording a batch of
sends, a batch of receipts) pass a ``Writes`` to ``transition`` and
``apply_part_state`` and flush it once: the decisions stay here, message by
message, while the rows they write go to the database a few statements per
batch instead of three round trips per message.
"""

from __future__ import annotations

import json
from typing import Any

from ujumbe import metrics
from ujumbe.core import calls
from ujumbe.core.pricing import display
from ujumbe.core.states import State, fold_parts, may_follow
from ujumbe.services.callbacks import Event, dlr_row, insert_callbacks
from ujumbe.store import Tx
from ujumbe.store import accounts as accounts_q
from ujumbe.store import messages as q


class Writes:
    """Life-cycle writes held back until ``flush``.

    Per message one UPDATE with its fields merged in the order they were set
    (a later change of a field wins, as it would have row by row); part
    states likewise per part; events and callbacks in the order they
    happened. Ledger moves (refunds) are not held back: they are rare and
    return the new balance.
    """

    __slots__ = ("updates", "parts", "events", "callbacks")

    def __init__(self) -> None:
        self.updates: dict[int, dict[str, Any]] = {}
        self.parts: dict[tuple[int, int], tuple[str, int, str | None, str | None]] = {}
        self.events: list[tuple[int, int, str, str | None]] = []
        self.callbacks: list[tuple[Any, ...]] = []

    def __bool__(self) -> bool:
        return bool(self.updates or self.parts or self.events or self.callbacks)

    def update(self, message_id: int, fields: dict[str, Any]) -> None:
        held = self.updates.get(message_id)
        if held is None:
            self.updates[message_id] = dict(fields)
        else:
            held.update(fields)

    def event(self, message_id: int, at: int, state: str, detail: str | None) -> None:
        self.events.append((message_id, at, state, detail))

    async def flush(self, tx: Tx) -> None:
        updates, parts, events, callbacks = self.updates, self.parts, self.events, self.callbacks
        self.updates, self.parts, self.events, self.callbacks = {}, {}, [], []
        if updates:
            await q.update_messages(tx, updates)
        if parts:
            await q.set_part_states(tx, [(s, at, c, r, mid, part) for (mid, part), (s, at, c, r) in parts.items()])
        if events:
            await q.insert_events(tx, events)
        if callbacks:
            await insert_callbacks(tx, callbacks)


async def transition(
    tx: Tx, msg: dict[str, Any], new: State, at: int, *, detail: str | None = None,
    error_code: str | None = None, reason: str | None = None, extra: dict[str, Any] | None = None,
    writes: Writes | None = None,
) -> bool:
    """Move ``msg`` to ``new`` if the life cycle allows it; True when it moved.

    ``msg`` is updated in place so a caller holding it sees the new state.
    With ``writes`` the rows are held there for the caller to flush; without,
    they are written before this returns.
    """
    w = Writes() if writes is None else writes
    current = State(msg["state"])
    if not may_follow(current, new):
        # Still worth keeping: a late or duplicate receipt is part of the story.
        w.event(msg["id"], at, new.value, f"ignored after {current.value}: {detail or ''}".strip())
        moved = False
    else:
        fields: dict[str, Any] = {"state": new.value, "updated_at": at, **(extra or {})}
        if new == State.SUBMITTED and not msg.get("submitted_at"):
            fields["submitted_at"] = at
        if new.final:
            fields["done_at"] = at
            metrics.final(msg, new.value, at)
            if new != State.DELIVERED:
                if error_code:
                    fields["error_code"] = error_code
                if reason:
                    fields["error_reason"] = reason
            if msg["charge"] == "reserved":
                fields["charge"], cost = await _settle(tx, msg, new)
                if cost != msg["cost"]:
                    fields["cost"] = cost
        w.update(msg["id"], fields)
        w.event(msg["id"], at, new.value, detail)
        msg.update(fields)
        row = dlr_row(msg, Event(new.value, at, error_code, reason))
        if row is not None:
            w.callbacks.append(row)
        moved = True
    if writes is None:
        await w.flush(tx)
    return moved


async def _settle(tx: Tx, msg: dict[str, Any], final: State) -> tuple[str, int]:
    """What the operator took we pay for; what never reached it is refunded
    (also a message that expired before it could be sent: an outage).
    Returns the charge state and the message's new cost: what it finally cost
    the account (the price stays in the ledger's charge row), so every answer
    and callback that shows a message's cost shows what was charged."""
    if msg.get("channel") == "voice":
        return await _settle_call(tx, msg, final)
    if msg.get("submitted_at") or (final.reached_operator and final != State.EXPIRED):
        return "settled", msg["cost"]
    if msg["cost"]:
        await accounts_q.add_ledger(
            tx, msg["account_id"], "refund", msg["cost"], request_id=msg["request_id"],
            message_id=msg["id"], note=f"message {final.value}",
        )
    return "refunded", 0


async def _settle_call(tx: Tx, msg: dict[str, Any], final: State) -> tuple[str, int]:
    """A call costs what its answered duration does (per started minute, or
    once per answered call), capped at the hold taken at accept; the rest of
    the hold, all of it for a call never answered, goes back as one refund."""
    meta = msg.get("meta") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    voice = meta.get("voice") or {}
    held = msg["cost"]
    cost = calls.call_cost(voice.get("unit", "per_minute"), int(voice.get("price", held)), msg.get("call_result"), held)
    if held - cost:
        await accounts_q.add_ledger(
            tx, msg["account_id"], "refund", held - cost, request_id=msg["request_id"], message_id=msg["id"],
            note=f"call {final.value}: {display(cost)} of the {display(held)} held charged",
        )
    return ("settled" if cost else "refunded"), cost


async def apply_part_state(
    tx: Tx, msg: dict[str, Any], part: int, state: State, at: int, *, detail: str | None,
    error_code: str | None = None, reason: str | None = None, parts: dict[int, str] | None = None,
    writes: Writes | None = None,
) -> bool:
    """Record one part's receipt and fold all parts into the message's state.

    ``parts`` (part -> state), when the caller loaded them, is kept up to date
    in place, so several receipts of one message can be applied in a row.
    ``writes`` as for ``transition``.
    """
    w = Writes() if writes is None else writes
    if parts is None:
        if w:
            await w.flush(tx)  # the read below must see what is held
        parts = dict(await q.part_states(tx, msg["id"]))
    old = State(parts.get(part, State.SUBMITTED.value))
    if may_follow(old, state):
        w.parts[(msg["id"], part)] = (state.value, at, error_code, reason)
        parts[part] = state.value
    # Fold over the parts the channel reported: one message_payload PDU is one
    # tracked part even when the text counts as several.
    folded = fold_parts([State(s) for s in parts.values()])
    if folded is None or folded.value == msg["state"]:
        w.event(msg["id"], at, state.value, f"part {part}: {detail or ''}".strip())
        moved = False
    else:
        label = detail if msg["parts"] == 1 else f"part {part}: {detail or state.value}"
        if folded.final and folded != state:
            # The message ends as a worse part did, not as this receipt says
            # (a last DELIVRD must not leave an undelivered message without
            # its error): the error and the story are that part's.
            failing = min(n for n, s in parts.items() if s == folded.value)
            held = w.parts.get((msg["id"], failing))
            error_code, reason = held[2:] if held is not None else await q.part_error(tx, msg["id"], failing)
            why = reason or error_code
            label = f"part {failing} {folded.value}{': ' + why if why else ''}; last receipt {label}"
        moved = await transition(tx, msg, folded, at, detail=label, error_code=error_code, reason=reason, writes=w)
    if writes is None:
        await w.flush(tx)
    return moved
