"""Dispatch workers' heartbeats, in one process on a real store (SQLite and
PostgreSQL): a worker whose beat stops has its leases taken over by another
within ``dead_s``, each taken message says it may repeat, and a worker that
was only stalled, when it comes back, does not send what it had claimed (the
other worker has it now)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import eventually, make_account, make_settings
from ujumbe.channels.base import Channel, Outbound, Submitted
from ujumbe.runtime import Platform
from ujumbe.services.messaging import SendRequest
from ujumbe.services.routing import Router
from ujumbe.store import messages as q
from ujumbe.store import now_ms
from ujumbe.workers.dispatch import TAKEN_OVER, Dispatcher


class Counting(Channel):
    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    async def _send(self, msg: Outbound) -> Submitted:
        self.sent.append(msg.message_id)
        return Submitted([f"op-{msg.message_id}"])


@pytest.fixture
async def idle(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    """A platform with its store open and no workers running."""
    p = Platform(make_settings(tmp_path, database_url))
    await p.open()
    try:
        yield p
    finally:
        await p.store.close()


async def test_a_silent_worker_is_taken_over_and_a_stalled_one_stands_down(idle: Platform) -> None:
    account = await make_account(idle)
    acc = await idle.accounts.get(account["account_id"])
    sent = await idle.messaging.send(acc, SendRequest(recipients=["0708400100", "0708400200", "0708400300"], text="hi"))
    ids = sorted(r.message_id for r in sent.recipients)
    channel = Counting()
    a = Dispatcher(idle.store, Router({"counting": channel}), heartbeat_s=0.05, dead_s=0.3)
    b = Dispatcher(idle.store, Router({"counting": channel}), heartbeat_s=0.05, dead_s=0.3)
    for worker in (a, b):
        await idle.store.run(lambda tx, w=worker: q.worker_register(tx, w.owner, now_ms()))
    claimed = await idle.store.run(lambda tx: a._claim(tx, 10))  # a leases them, then falls silent
    assert sorted(m["id"] for m, _, _ in claimed) == ids
    a_was = a.owner

    seen: dict[str, tuple[int, float]] = {}

    async def taken_over() -> bool:
        await b._heartbeat(seen)
        return not await idle.store.read(lambda tx: tx.fetchval(
            "SELECT count(*) FROM outbox WHERE lease_owner = ?", a_was))

    started = asyncio.get_running_loop().time()
    await eventually(taken_over, timeout=10, interval=0.05)
    assert asyncio.get_running_loop().time() - started < 3  # dead_s, not the lease (120 s)
    due = await idle.store.read(lambda tx: tx.fetch("SELECT message_id, due_at, lease_owner FROM outbox"))
    assert sorted(r[0] for r in due) == ids and all(r[2] is None and r[1] <= now_ms() for r in due)
    flagged = await idle.store.read(lambda tx: tx.fetch(
        "SELECT message_id FROM message_events WHERE state = 'retry' AND detail LIKE ?", TAKEN_OVER + "%"))
    assert sorted(r[0] for r in flagged) == ids
    assert [w for w, _ in await idle.store.read(q.workers)] == [b.owner]

    # a was only stalled: its next beat finds it taken for dead; it takes a new
    # name and its claimed sends, not yet sent, are not sent by it after all
    epoch = a._epoch
    await a._heartbeat({})
    assert a._epoch == epoch + 1 and a.owner != a_was
    assert a.owner in [w for w, _ in await idle.store.read(q.workers)]
    for msg, attempts, waiting in claimed:
        await a._send(msg, attempts, waiting, epoch)
    assert channel.sent == [] and len(a._outcomes) == 0
