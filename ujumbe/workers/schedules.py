"""Time-driven work: expiring messages whose receipt never came, and
cleaning up receipts that never found their message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ujumbe.core.states import State
from ujumbe.channels.base import Receipt
from ujumbe.services.lifecycle import Writes, transition
from ujumbe.services.reports import apply_receipts, awaits_record, with_call
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import messages as q

log = logging.getLogger("ujumbe.schedules")

EARLY_MATCH_WINDOW_MS = 10 * 60 * 1000
# A parked receipt still unmatched after the match window is dropped (and logged):
# it belongs to nothing we sent, and must never be guessed onto a later namesake.
EARLY_RECEIPT_TTL_MS = EARLY_MATCH_WINDOW_MS + 60 * 1000


class Sweeper:
    def __init__(self, store: Store, *, every_s: float = 1.0, expire_every_s: float = 5.0, batch: int = 1000) -> None:
        self.store = store
        self.every_s = every_s
        self.expire_every_s = expire_every_s
        self.batch = batch
        # as Reports.awaiting_record: a parked receipt whose submit this process
        # sent and has not recorded is left for that record, not matched here
        self.awaiting_record: Callable[[str, str], bool] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        last_expiry = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await self.store.run(self.match_early_receipts)
                if loop.time() - last_expiry >= self.expire_every_s:
                    last_expiry = loop.time()
                    while await self.store.run(self.expire) == self.batch:
                        pass
                    await self.store.run(self.forget_orphans)
            except Exception:
                log.exception("sweep failed")
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
            except asyncio.TimeoutError:
                pass

    async def match_early_receipts(self, tx: Tx) -> None:
        """Receipts parked because their submit was not recorded yet.

        With several workers, a receipt and the record of its submit can commit
        in two transactions that never see each other; this pass catches them.
        """
        # The race it mends lasts milliseconds; a receipt still unmatched after
        # ten minutes belongs to nothing we sent (``forget_orphans`` drops it).
        rows = await q.parked_receipts(tx, now_ms() - EARLY_MATCH_WINDOW_MS, self.batch)
        if not rows:
            return
        pairs = [
            (row, with_call(Receipt(row[1], row[0], State(row[2]), row[3], row[4] or "", row[5] or "",
                                    received_at=row[6]), row[7]))
            for row in rows
        ]
        pairs = [(row, r) for row, r in pairs if not awaits_record(self.awaiting_record, r)]
        rows, receipts = [row for row, _ in pairs], [r for _, r in pairs]
        if not receipts:
            return
        # all at once, in the order they came; those still unmatched stay parked
        unmatched = {id(r) for r in await apply_receipts(tx, receipts)}
        matched = [(row[0], row[1], row[6]) for row, r in zip(rows, receipts) if id(r) not in unmatched]
        await q.unpark_receipts(tx, matched)

    async def expire(self, tx: Tx) -> int:
        """No final receipt within the validity period: the message expired."""
        now = now_ms()
        ids = await q.overdue(tx, now, self.batch)
        writes = Writes()
        for msg in await q.messages_by_ids(tx, ids):
            # never sent (an outage outlasted it): that is what to say, and it is refunded
            detail = ("no final receipt within the validity period" if msg["submitted_at"]
                      else "validity period ended before sending")
            if msg["submitted_at"] and msg.get("channel") == "voice":
                detail = "no outcome of the call within the longest it can last (the process placing it stopped)"
            await transition(tx, msg, State.EXPIRED, now, detail=detail, writes=writes)
        await writes.flush(tx)
        await q.outbox_done(tx, ids)
        return len(ids)

    async def forget_orphans(self, tx: Tx) -> None:
        dropped = await q.forget_parked_receipts(tx, now_ms() - EARLY_RECEIPT_TTL_MS)
        for connector, operator_id, state in dropped[:20]:
            log.warning("receipt %s (%s) on %s matched no message we sent; dropped", operator_id, state, connector)
        if len(dropped) > 20:
            log.warning("%d more unmatched receipts dropped", len(dropped) - 20)
