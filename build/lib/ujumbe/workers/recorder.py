"""Outcomes of sends in flight, written to the store in batches.

The dispatcher and the callback sender both send many things at once and
record what happened in batches: one transaction per batch rather than one per
send. ``Recorder`` is that half of both: senders ``add`` outcomes, ``run``
writes them until the worker stops and nothing is in flight or waiting. A
batch that fails to write is tried again: an outcome is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ujumbe.aio import wait_any
from ujumbe.store import Store, Tx

T = TypeVar("T")
log = logging.getLogger("ujumbe.workers")


class Recorder(Generic[T]):
    def __init__(
        self, store: Store, record: Callable[[Tx, list[T]], Awaitable[Any]], *, batch: int, what: str,
        recorded: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.record = record
        self.batch = batch
        self.what = what  # for the log: "send outcomes", "callback results"
        self.recorded = recorded  # called after each batch is written
        self.pending: list[T] = []
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, item: T) -> None:
        self.pending.append(item)
        self._ready.set()

    def wake(self) -> None:
        self._ready.set()

    async def run(self, stop: asyncio.Event, in_flight: Callable[[], bool]) -> None:
        while True:
            if not self.pending:
                if stop.is_set() and not in_flight():
                    return
                self._ready.clear()
                if stop.is_set():
                    # Stopping with sends still out: wait for their outcomes only.
                    # (With stop in the wait it would return at once, never
                    # yielding, and the sends could never finish.)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._ready.wait(), 0.5)
                else:
                    await wait_any(self._ready, stop, 0.5)
                continue
            batch, self.pending = self.pending[: self.batch], self.pending[self.batch :]
            try:
                await self.store.run(lambda tx: self.record(tx, batch))
            except Exception:
                log.exception("recording %d %s failed; retrying", len(batch), self.what)
                self.pending[:0] = batch
                await asyncio.sleep(0.5)
                continue
            if self.recorded is not None:
                self.recorded()
