"""SIGKILL under load, then count what the operator got.

`ujumbe serve` (one process; and a worker beside an API process) sends to an
SMSC we did not write (node-smpp, tests/peers/smsc.js) that logs every
submit_sm; each message has its own recipient, so the SMSC's log says how
often each one was sent. After the kill and a restart we count: accepted (a
202 came back), stored, final, and sent more than once. The promise
(README, "Delivery promise"): nothing accepted is lost, and only sends in
flight at the crash can repeat, at most the window of each bind. A killed
worker's leases are taken over by another worker within seconds.

The SMSC holds every receipt until the test releases them after the kill, so
none is answered before it: this test is about sends, not receipts.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import UNDER_LOAD, eventually, free_port, postgres_database
from tests.test_processes import cli, env_for, start_server, stop
from tests.test_smpp_e2e import PEERS, NodeSmsc
from ujumbe.workers.dispatch import TAKEN_OVER

pytestmark = [pytest.mark.node, UNDER_LOAD]

WINDOW = 8  # per bind; one bind per worker process
LATENCY_MS = 40  # the SMSC answers each submit after this: sends are in flight when the kill comes
RECEIPT_DELAY_MS = 50  # once released (receipts are held until after the kill)
DEAD_S = 5.0  # the default: a worker silent this long is taken for dead


class Db:
    """Reads the server's database from outside, as an operator would."""

    def __init__(self, env: dict[str, str]) -> None:
        self.url = env.get("UJUMBE_DATABASE_URL")
        self.path = Path(env["UJUMBE_DATA_DIR"]) / "ujumbe.db"

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        if self.url:
            conn = await asyncpg.connect(self.url)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        def run() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def value(self, sql: str) -> Any:
        return (await self.fetch(sql))[0][0]


class Load:
    """A backlog of bulk sends, then single sends from many clients until stopped."""

    def __init__(self, base: str, api_key: str) -> None:
        self.base = base
        self.headers = {"authorization": f"Bearer {api_key}"}
        self.accepted: dict[str, int] = {}  # recipient (international) -> message id
        self.stopped = False
        self._tasks: list[asyncio.Task[None]] = []

    def _took(self, answer: httpx.Response) -> None:
        if answer.status_code == 202:
            for m in answer.json()["messages"]:
                self.accepted[m["to"].lstrip("+")] = m["id"]

    async def start(self, bulk: int, senders: int) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            for b in range(bulk // 100):
                to = [f"0712{b:02d}{i:04d}" for i in range(100)]
                self._took(await client.post("/v1/messages", headers=self.headers,
                                             json={"to": to, "text": "backlog", "sender": "Ujumbe"}))
        self._tasks = [asyncio.create_task(self._sender(n)) for n in range(senders)]

    async def _sender(self, n: int) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            for i in range(10_000):
                if self.stopped:
                    return
                try:
                    answer = await client.post("/v1/messages", headers=self.headers,
                                               json={"to": f"0713{n:02d}{i:04d}", "text": "load", "sender": "Ujumbe"})
                except httpx.TransportError:
                    return  # the server died mid-request: that send was never acknowledged
                self._took(answer)

    async def stop(self) -> None:
        self.stopped = True
        await asyncio.wait_for(asyncio.gather(*self._tasks), 30)


async def _setup(tmp_path: Path, backend: str, smsc: NodeSmsc, dead_s: float = DEAD_S) -> tuple[dict[str, str], str]:
    database_url = await postgres_database() if backend == "postgres" else None
    env = env_for(tmp_path / "data", database_url)
    env.update(UJUMBE_SMPP_PORT="off", UJUMBE_CONNECTOR_PASSWORD="secret", UJUMBE_WORKER_DEAD_S=str(dead_s))
    account = cli(env, "accounts", "create", "--name", "Crash", "--email", "crash@example.com",
                  "--password", "pass-word-1", "--credits", "100000")
    cli(env, "connectors", "add", "op", "--host", "127.0.0.1", "--port", str(smsc.port), "--system-id", "ujumbe",
        "--window", str(WINDOW))
    return env, account["api_key"]


@pytest.fixture
async def smsc(tmp_path: Path) -> Any:
    if shutil.which("node") is None or not (PEERS / "node_modules" / "smpp").is_dir():
        pytest.skip("node-smpp not installed: run `npm ci --prefix tests/peers`")
    peer = NodeSmsc(tmp_path, "smsc", latency_ms=LATENCY_MS, receipt_delay_ms=RECEIPT_DELAY_MS, hold_receipts=True)
    await peer.start()
    yield peer
    await peer.stop()


def _receipts_answered(smsc: NodeSmsc) -> int:
    return sum(1 for line in smsc.journal.read_text().splitlines() if line.startswith("D "))


async def _sent_at_least(smsc: NodeSmsc, n: int) -> bool:
    return len(smsc.submits) >= n


async def _count(db: Db, load: Load, smsc: NodeSmsc, bound: int) -> dict[str, int]:
    """Wait until every accepted message is final, then count and check the promise."""
    ids = ",".join(str(i) for i in load.accepted.values())

    async def all_final() -> bool:
        states = dict(await db.fetch(f"SELECT state, count(*) FROM messages WHERE id IN ({ids}) GROUP BY state"))
        return states.get("delivered", 0) == len(load.accepted)

    await eventually(all_final, timeout=120, interval=0.5)
    sent = Counter(s["destination_addr"] for s in smsc.submits)
    again = {to: n - 1 for to, n in sent.items() if n > 1}
    flagged = {r[0] for r in await db.fetch(
        f"SELECT DISTINCT message_id FROM message_events WHERE state = 'retry' AND detail LIKE '{TAKEN_OVER[:20]}%'")}
    counts = {
        "accepted": len(load.accepted),
        "stored": await db.value(f"SELECT count(*) FROM messages WHERE id IN ({ids})"),
        "final": await db.value(f"SELECT count(*) FROM messages WHERE id IN ({ids}) AND state = 'delivered'"),
        "never sent": sum(1 for to in load.accepted if sent[to] == 0),
        "duplicates": sum(again.values()),
        "bound": bound,
        "flagged": len(flagged),
    }
    print("crash counts:", counts)
    assert counts["stored"] == counts["accepted"] == counts["final"]  # nothing accepted is lost
    assert counts["never sent"] == 0
    assert counts["duplicates"] <= bound, counts  # only sends in flight at the crash repeated
    # every message the operator got twice is marked as possibly sent twice
    assert {load.accepted[to] for to in again if to in load.accepted} <= flagged
    return counts


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_kill_one_process_under_load(tmp_path: Path, backend: str, smsc: NodeSmsc) -> None:
    # The restarted server is the only worker: it takes the killed one's leases
    # over after dead_s, and there is no live worker to mistake for dead.
    env, key = await _setup(tmp_path, backend, smsc, dead_s=2.0)
    port = free_port()
    server = await start_server(env, port)
    load = Load(f"http://127.0.0.1:{port}", key)
    try:
        await load.start(bulk=600, senders=12)
        await eventually(lambda: _sent_at_least(smsc, 100), timeout=30, interval=0.01)
        server.send_signal(signal.SIGKILL)
        server.wait()
        assert _receipts_answered(smsc) == 0  # the kill came before any receipt
        await load.stop()
        assert len(smsc.submits) < len(load.accepted)  # the kill really was mid-flight
        server = await start_server(env, port)
        await smsc.release_receipts()
        await _count(Db(env), load, smsc, bound=WINDOW)
    finally:
        stop(server)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_kill_a_worker_beside_the_api_and_another_takes_over(
    tmp_path: Path, backend: str, smsc: NodeSmsc
) -> None:
    env, key = await _setup(tmp_path, backend, smsc)
    port = free_port()
    api = await start_server(env, port, "api")
    doomed = await start_server(env, 0, "worker")
    survivor = await start_server(env, 0, "worker")
    restarted = None
    db = Db(env)
    load = Load(f"http://127.0.0.1:{port}", key)
    try:
        await load.start(bulk=1000, senders=8)

        async def leases() -> set[tuple[int, str]]:
            return set(await db.fetch("SELECT message_id, lease_owner FROM outbox WHERE lease_owner IS NOT NULL"))

        async def both_hold_leases() -> bool:
            return len({owner for _, owner in await leases()}) == 2

        await eventually(lambda: _sent_at_least(smsc, 100), timeout=30, interval=0.01)
        await eventually(both_hold_leases, timeout=30, interval=0.02)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()
        held_at_kill = await leases()
        assert len({owner for _, owner in held_at_kill}) == 2  # the dead worker's leases are among them
        assert _receipts_answered(smsc) == 0
        await load.stop()

        async def taken_over() -> bool:
            # every lease held at the kill has moved on: sent, or leased by another worker
            return not (held_at_kill & await leases())

        await eventually(taken_over, timeout=60, interval=0.1)
        took = time.monotonic() - killed_at
        print(f"the killed worker's leases were taken over {took:.1f} s after the kill")
        assert took < DEAD_S + 5  # seconds, not the lease (30 s before)
        restarted = await start_server(env, 0, "worker")  # and a worker started again joins in
        await smsc.release_receipts()
        await _count(db, load, smsc, bound=WINDOW)
    finally:
        for proc in (api, doomed, survivor, restarted):
            if proc is not None:
                stop(proc)
