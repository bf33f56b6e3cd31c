"""Retention: purge what is older than UJUMBE_RETENTION_DAYS, in batches.

Only final messages go (delivered, undelivered, failed, rejected, expired),
with their events, parts and any outbox row left behind; finished callback
attempts go by their own age. Each batch is one short transaction of at most
``batch`` rows per table, so a purge never holds the store for long and sends
go on between batches. What is purged is added to ``message_daily`` (per UTC
day, account, channel, network and state) in the same transaction, so
reports over all time still add up. Off unless UJUMBE_RETENTION_DAYS is set.
"""

from __future__ import annotations

import asyncio
import logging

from ujumbe.store import Store, now_ms
from ujumbe.store import retention as retention_q

log = logging.getLogger("ujumbe.retention")

DAY_MS = 86_400_000


class Retention:
    def __init__(self, store: Store, days: float, *, batch: int = 500, every_s: float = 300.0) -> None:
        self.store = store
        self.days = days
        self.batch = batch
        self.every_s = every_s

    async def purge(self, cutoff_ms: int | None = None) -> dict[str, int]:
        """One pass over everything older than the cutoff (default: now minus
        the retention); returns how many messages and callbacks went."""
        cutoff = now_ms() - int(self.days * DAY_MS) if cutoff_ms is None else cutoff_ms
        purged = {"messages": 0, "callbacks": 0}
        for what, query in (("messages", retention_q.purge_messages), ("callbacks", retention_q.purge_callbacks)):
            after, more = 0, True
            while more:
                n, after, more = await self.store.run(
                    lambda tx, after=after, query=query: query(tx, after, cutoff, self.batch)
                )
                purged[what] += n
                await asyncio.sleep(0)  # let the sends between two batches
        if purged["messages"] or purged["callbacks"]:
            log.info("MessagePurged: %d messages and %d callback attempts older than %g days",
                     purged["messages"], purged["callbacks"], self.days)
        return purged

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.purge()
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
            except TimeoutError:
                pass
