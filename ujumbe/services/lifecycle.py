"""Moving a message through its life: one function, used by every worker.

``transition`` is the only code that changes a message's state. In the same
transaction it records the event, settles or refunds the charge when the
message ends, and queues the client's delivery report.
"""

from __future__ import annotations

from typing import Any

from ujumbe.core.states import State, fold_parts, may_follow
from ujumbe.services.callbacks import Event, enqueue_dlr
from ujumbe.store import Tx
from ujumbe.store import accounts as accounts_q
from ujumbe.store import messages as q


async def transition(
    tx: Tx, msg: dict[str, Any], new: State, at: int, *, detail: str | None = None,
    error_code: str | None = None, reason: str | None = None, extra: dict[str, Any] | None = None,
) -> bool:
    """Move ``msg`` to ``new`` if the life cycle allows it; True when it moved.

    ``msg`` is updated in place so a caller holding it sees the new state.
    """
    current = State(msg["state"])
    if not may_follow(current, new):
        # Still worth keeping: a late or duplicate receipt is part of the story.
        await tx.execute(q.INSERT_EVENT, msg["id"], at, new.value, f"ignored after {current.value}: {detail or ''}".strip())
        return False
    fields: dict[str, Any] = {"state": new.value, "updated_at": at, **(extra or {})}
    if new == State.SUBMITTED and not msg.get("submitted_at"):
        fields["submitted_at"] = at
    if new.final:
        fields["done_at"] = at
        if new != State.DELIVERED:
            if error_code:
                fields["error_code"] = error_code
            if reason:
                fields["error_reason"] = reason
        if msg["charge"] == "reserved":
            fields["charge"] = await _settle(tx, msg, new)
    await q.update_message(tx, msg["id"], fields)
    await tx.execute(q.INSERT_EVENT, msg["id"], at, new.value, detail)
    msg.update(fields)
    await enqueue_dlr(tx, msg, Event(new.value, at, error_code, reason))
    return True


async def _settle(tx: Tx, msg: dict[str, Any], final: State) -> str:
    """What the operator took we pay for; what never reached it is refunded."""
    if final.reached_operator or msg.get("submitted_at"):
        return "settled"
    if msg["cost"]:
        await accounts_q.add_ledger(
            tx, msg["account_id"], "refund", msg["cost"], request_id=msg["request_id"],
            message_id=msg["id"], note=f"message {final.value}",
        )
    return "refunded"


async def apply_part_state(
    tx: Tx, msg: dict[str, Any], part: int, state: State, at: int, *, detail: str | None,
    error_code: str | None = None, reason: str | None = None, parts: dict[int, str] | None = None,
) -> bool:
    """Record one part's receipt and fold all parts into the message's state.

    ``parts`` (part -> state), when the caller loaded them, is kept up to date
    in place, so several receipts of one message can be applied in a row.
    """
    if parts is None:
        parts = dict(await q.part_states(tx, msg["id"]))
    old = State(parts.get(part, State.SUBMITTED.value))
    if may_follow(old, state):
        await q.set_part_state(tx, msg["id"], part, state.value, at)
        parts[part] = state.value
    # Fold over the parts the channel reported: one message_payload PDU is one
    # tracked part even when the text counts as several.
    folded = fold_parts([State(s) for s in parts.values()])
    if folded is None or folded.value == msg["state"]:
        await tx.execute(q.INSERT_EVENT, msg["id"], at, state.value, f"part {part}: {detail or ''}".strip())
        return False
    label = detail if msg["parts"] == 1 else f"part {part}: {detail or state.value}"
    return await transition(tx, msg, folded, at, detail=label, error_code=error_code, reason=reason)
