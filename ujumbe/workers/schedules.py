"""Time-driven work: expiring messages whose receipt never came, and
cleaning up receipts that never found their message."""

from __future__ import annotations

import asyncio
import logging

from ujumbe.core.states import State
from ujumbe.services.lifecycle import transition
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import messages as q

log = logging.getLogger("ujumbe.schedules")

EARLY_RECEIPT_TTL_MS = 7 * 86400 * 1000


class Sweeper:
    def __init__(self, store: Store, *, every_s: float = 5.0, batch: int = 1000) -> None:
        self.store = store
        self.every_s = every_s
        self.batch = batch

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                while await self.store.run(self.expire) == self.batch:
                    pass
                await self.store.run(self.forget_orphans)
            except Exception:
                log.exception("sweep failed")
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
            except asyncio.TimeoutError:
                pass

    async def expire(self, tx: Tx) -> int:
        """No final receipt within the validity period: the message expired."""
        now = now_ms()
        ids = await q.overdue(tx, now, self.batch)
        for msg in await q.messages_by_ids(tx, ids):
            await transition(tx, msg, State.EXPIRED, now, detail="no final receipt within the validity period")
        await q.outbox_done(tx, ids)
        return len(ids)

    async def forget_orphans(self, tx: Tx) -> None:
        await tx.execute("DELETE FROM early_receipts WHERE received_at < ?", now_ms() - EARLY_RECEIPT_TTL_MS)
