"""Outcomes of sends in flight, written to the store in batches.

The dispatcher and the callback sender both send many things at once and
record what happened in batches: one transaction per batch rather than one per
send. ``Recorder`` is that half of both: senders ``add`` outcomes, ``run``
writes them until the worker stops and nothing is in flight or waiting. A
batch that fails to write is tried again: an outcome is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ujumbe.store import Store, Tx

T = TypeVar("T")
log = logging.getLogger("ujumbe.workers")


class Recorder(Generic[T]):
    def __init__(
        self, store: Store, record: Callable[[Tx, list[T]], Awaitable[Any]], *, batch: int, what: str,
        recorded: Callable[[], None] | None = None, done: Callable[[list[T]], None] | None = None,
        parallel: int = 1,
    ) -> None:
        self.store = store
        self.record = record
        self.batch = batch
        self.what = what  # for the log: "send outcomes", "callback results"
        self.recorded = recorded  # called after each batch is written
        self.done = done  # called with each batch once it is written (durable)
        # Batches written at once: a second one need not wait for the first's
        # commit (on SQLite it joins the next group commit).
        self.parallel = parallel
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
        writing: set[asyncio.Task[None]] = set()
        while True:
            if self.pending and len(writing) < self.parallel:
                batch, self.pending = self.pending[: self.batch], self.pending[self.batch :]
                task = asyncio.create_task(self._write(batch))
                writing.add(task)
                task.add_done_callback(writing.discard)
                continue
            if not self.pending and not writing and stop.is_set() and not in_flight():
                return
            self._ready.clear()
            waiters = [asyncio.ensure_future(self._ready.wait())]
            if not stop.is_set():
                # (Stopping with sends still out, stop in the wait would return
                # at once, never yielding, and the sends could never finish.)
                waiters.append(asyncio.ensure_future(stop.wait()))
            try:
                await asyncio.wait([*waiters, *writing], timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    async def _write(self, batch: list[T]) -> None:
        while True:
            try:
                await self.store.run(lambda tx: self.record(tx, batch))
                break
            except Exception:
                log.exception("recording %d %s failed; retrying", len(batch), self.what)
                await asyncio.sleep(0.5)
        if self.done is not None:
            self.done(batch)
        if self.recorded is not None:
            self.recorded()
