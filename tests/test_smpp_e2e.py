"""End to end with an operator we did not write: node-smpp (tests/peers/smsc.js).

A send through /v1 goes out over an SMPP connector configured in the database,
the operator's receipts bring it to ``delivered`` and fire the client's
callback, routing picks the operator by prefix and fails over, and killing the
operator with SIGKILL under load loses nothing. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UNDER_LOAD, Receiver, auth, eventually, make_account, client_of, running
from ujumbe.runtime import Platform
from ujumbe.store import now_ms

PEERS = Path(__file__).resolve().parent / "peers"
ADMIN = "e2e-admin-token-0123456789abcdef"
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}
pytestmark = pytest.mark.node


class NodeSmsc:
    """One node-smpp SMSC process that can be SIGKILLed and started again on the
    same port, with its journal, so receipts it owed survive the restart."""

    def __init__(self, workdir: Path, name: str, *, latency_ms: int = 0, receipt_delay_ms: int = 50,
                 hold_receipts: bool = False) -> None:
        self.journal = workdir / f"{name}.journal"
        self.port = 0
        self.latency_ms = latency_ms
        self.receipt_delay_ms = receipt_delay_ms
        self.hold_receipts = hold_receipts  # no receipt goes out until release_receipts()
        self.submits: list[dict[str, Any]] = []
        self.mo_results: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        node = shutil.which("node")
        assert node is not None
        self.proc = await asyncio.create_subprocess_exec(
            node, str(PEERS / "smsc.js"), str(self.port), str(self.latency_ms), str(self.receipt_delay_ms),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(PEERS),
            env={"PATH": "/usr/bin:/bin", "SMSC_STATE_FILE": str(self.journal), "SMSC_LOG": "1", "SMSC_CONTROL": "1",
                 "SMSC_HOLD_RECEIPTS": "1" if self.hold_receipts else "0"},
        )
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 10)).decode()
        assert line.startswith("listening "), line
        self.port = int(line.split()[1])
        self._reader = asyncio.create_task(self._read(self.proc.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        # Keep reading: a full stdout pipe would block the SMSC.
        while line := await stream.readline():
            event = json.loads(line)
            (self.submits if event["event"] == "submit" else self.mo_results).append(event)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no unbind, no goodbye
        await self.proc.wait()
        if self._reader:
            await self._reader

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self._reader:
            await self._reader

    async def _command(self, command: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    async def mo(self, **fields: Any) -> None:
        await self._command({"mo": fields})

    async def release_receipts(self) -> None:
        """Send the receipts held back (``hold_receipts``), and later ones after the usual delay."""
        await self._command({"release_receipts": True})

    def owed_receipts(self) -> int:
        """Receipts the SMSC journaled as accepted but not yet acknowledged."""
        owed: set[str] = set()
        for line in self.journal.read_text().splitlines():
            op, op_id, *_ = line.split(" ")
            (owed.add if op == "S" else owed.discard)(op_id)
        return len(owed)


@pytest.fixture
async def smscs(tmp_path: Path) -> AsyncIterator[list[NodeSmsc]]:
    if shutil.which("node") is None or not (PEERS / "node_modules" / "smpp").is_dir():
        pytest.skip("node-smpp not installed: run `npm ci --prefix tests/peers`")
    made: list[NodeSmsc] = []
    yield made
    for peer in made:
        await peer.stop()


async def peer(smscs: list[NodeSmsc], tmp_path: Path, name: str, **kw: Any) -> NodeSmsc:
    p = NodeSmsc(tmp_path, name, **kw)
    await p.start()
    smscs.append(p)
    return p


@pytest.fixture
async def operator_platform(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    """A platform with no simulator: every message goes to a real SMPP peer."""
    async with running(tmp_path, database_url, simulator=False, admin_token=ADMIN, callback_delay_scale=0.01) as p:
        yield p


@pytest.fixture
async def api(operator_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(operator_platform, timeout=60) as client:
        yield client


async def add_connector(api: httpx.AsyncClient, name: str, port: int, **kw: Any) -> None:
    r = await api.post(
        "/admin/v1/connectors",
        json={"name": name, "host": "127.0.0.1", "port": port, "system_id": "ujumbe", "password": "secret", **kw},
        headers=ADMIN_AUTH,
    )
    assert r.status_code == 201, r.text


async def add_route(api: httpx.AsyncClient, kind: str, value: str, connector: str, priority: int = 100) -> None:
    r = await api.post("/admin/v1/routes", json={"kind": kind, "value": value, "connector": connector,
                                                  "priority": priority}, headers=ADMIN_AUTH)
    assert r.status_code == 201, r.text


async def binds_up(platform: Platform, name: str, want: bool = True) -> bool:
    status = platform.router.status(name)
    return status is not None and bool(status["binds_up"]) == want


async def send(api: httpx.AsyncClient, account: dict[str, Any], to: list[str], text: str, **kw: Any) -> list[int]:
    r = await api.post("/v1/messages", json={"to": to, "text": text, "sender": "Ujumbe", **kw}, headers=auth(account))
    assert r.status_code in (200, 201, 202), r.text
    assert all(m["id"] for m in r.json()["messages"]), r.text
    return [m["id"] for m in r.json()["messages"]]


async def states(platform: Platform, ids: list[int]) -> dict[str, int]:
    marks = ",".join("?" * len(ids))
    rows = await platform.store.read(
        lambda tx: tx.fetch(f"SELECT state, count(*) FROM messages WHERE id IN ({marks}) GROUP BY state", *ids)
    )
    return {r[0]: r[1] for r in rows}


async def all_delivered(platform: Platform, ids: list[int]) -> bool:
    return (await states(platform, ids)).get("delivered") == len(ids)


async def connector_of(platform: Platform, mid: int) -> str:
    return str(await platform.store.read(lambda tx: tx.fetchval("SELECT connector FROM messages WHERE id = ?", mid)))


async def test_send_reaches_node_operator_and_its_receipts_deliver_and_call_back(
    operator_platform: Platform, api: httpx.AsyncClient, smscs: list[NodeSmsc], tmp_path: Path, receiver: Receiver
) -> None:
    smsc = await peer(smscs, tmp_path, "op")
    await add_connector(api, "safaricom-smpp", smsc.port)
    await eventually(lambda: binds_up(operator_platform, "safaricom-smpp"))
    account = await make_account(operator_platform)
    long_text = "Habari ya leo! Karibu Ujumbe. " * 14  # 420 GSM-7 characters: 3 parts
    short, long = await send(api, account, ["0712000111"], "Habari"), await send(
        api, account, ["+254712000222"], long_text, callback_url=f"{receiver.url}/dlr"
    )
    await eventually(lambda: all_delivered(operator_platform, short + long))

    by_dest: dict[str, list[dict[str, Any]]] = {}
    for s in smsc.submits:
        by_dest.setdefault(s["destination_addr"], []).append(s)
    assert [s["message"] for s in by_dest["254712000111"]] == ["Habari"]
    parts = by_dest["254712000222"]
    assert len(parts) == 3 and all(s["esm_class"] & 0x40 for s in parts)  # UDH concatenation
    udh = [bytes.fromhex(s["udh"][0]) for s in parts]  # IEI 0, len 3, ref, total, seq
    assert {u[2] for u in udh} == {udh[0][2]} and [u[3:] for u in udh] == [bytes((3, i)) for i in (1, 2, 3)]
    assert "".join(s["message"] for s in parts) == long_text
    assert all(s["source_addr"] == "Ujumbe" for s in smsc.submits)

    got = await receiver.wait_for(1, path="/dlr")
    await eventually(lambda: _delivered_callback(receiver, long[0]))
    assert all(r.json()["data"]["id"] == long[0] for r in got)
    r = await api.get(f"/v1/messages/{long[0]}", headers=auth(account))
    assert r.json()["state"] == "delivered" and r.json()["parts"] == 3
    assert await connector_of(operator_platform, long[0]) == "safaricom-smpp"


async def _delivered_callback(receiver: Receiver, mid: int) -> bool:
    return any(r.json()["data"]["state"] == "delivered" and r.json()["data"]["id"] == mid for r in receiver.requests)


async def test_routes_by_prefix_to_two_node_operators_and_fails_over(
    operator_platform: Platform, api: httpx.AsyncClient, smscs: list[NodeSmsc], tmp_path: Path
) -> None:
    a, b = await peer(smscs, tmp_path, "a"), await peer(smscs, tmp_path, "b")
    await add_connector(api, "op-a", a.port)
    await add_connector(api, "op-b", b.port, long_messages="payload")
    await add_route(api, "prefix", "2547", "op-a", priority=1)
    await add_route(api, "prefix", "2547", "op-b", priority=2)  # the failover
    await add_route(api, "prefix", "25473", "op-b")
    await eventually(lambda: binds_up(operator_platform, "op-a"))
    await eventually(lambda: binds_up(operator_platform, "op-b"))
    account = await make_account(operator_platform)

    safaricom, airtel = await send(api, account, ["0712000333", "0733000333"], "Habari")
    await eventually(lambda: all_delivered(operator_platform, [safaricom, airtel]))
    assert [s["destination_addr"] for s in a.submits] == ["254712000333"]
    assert [s["destination_addr"] for s in b.submits] == ["254733000333"]

    await a.kill()
    await eventually(lambda: binds_up(operator_platform, "op-a", want=False))
    failover = await send(api, account, ["0712000444"], "Habari")
    await eventually(lambda: all_delivered(operator_platform, failover))
    assert await connector_of(operator_platform, failover[0]) == "op-b"
    assert "254712000444" in [s["destination_addr"] for s in b.submits]


@UNDER_LOAD
async def test_operator_killed_under_load_loses_nothing(
    operator_platform: Platform, api: httpx.AsyncClient, smscs: list[NodeSmsc], tmp_path: Path
) -> None:
    smsc = await peer(smscs, tmp_path, "op", latency_ms=2, receipt_delay_ms=300)
    await add_connector(api, "op", smsc.port, tps=400)
    await eventually(lambda: binds_up(operator_platform, "op"))
    account = await make_account(operator_platform, credits="1000")
    recipients = [f"+2547{20000000 + i:08d}" for i in range(500)]
    ids = await send(api, account, recipients, "Load test: every one of these must arrive")
    assert len(ids) == 500

    await eventually(lambda: _submitted_at_least(smsc, 150), interval=0.005)
    await smsc.kill()
    seen_before_kill = len(smsc.submits)
    owed = smsc.owed_receipts()
    assert seen_before_kill < 500 and owed > 0  # the kill really was mid-flight, with receipts owed
    await asyncio.sleep(0.3)
    await smsc.start()  # same port, same journal: it sends the receipts it owes

    await eventually(lambda: all_delivered(operator_platform, ids), timeout=60, interval=0.2)
    assert await states(operator_platform, ids) == {"delivered": 500}
    delivered_to = {s["destination_addr"] for s in smsc.submits}
    assert delivered_to == {r.lstrip("+") for r in recipients}
    retried = await operator_platform.store.read(
        lambda tx: tx.fetchval(
            "SELECT count(DISTINCT message_id) FROM message_events WHERE state IN ('retry', 'waiting')"
        )
    )
    assert retried > 0  # sends that were cut off went again (after waiting for the bind: not a try)


async def _submitted_at_least(smsc: NodeSmsc, n: int) -> bool:
    return len(smsc.submits) >= n


async def test_mobile_originated_message_reaches_the_owner(
    operator_platform: Platform, api: httpx.AsyncClient, smscs: list[NodeSmsc], tmp_path: Path, receiver: Receiver
) -> None:
    smsc = await peer(smscs, tmp_path, "op")
    await add_connector(api, "op", smsc.port)
    await eventually(lambda: binds_up(operator_platform, "op"))
    owner = await make_account(operator_platform)
    await operator_platform.accounts.set_callbacks(owner["account_id"], {"inbound_url": f"{receiver.url}/mo"})
    await operator_platform.store.run(
        lambda tx: tx.execute(
            "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, 'shortcode', 'native', ?)",
            "22141", owner["account_id"], now_ms(),
        )
    )
    await smsc.mo(source_addr="254712000555", destination_addr="22141", short_message="JOIN Habari")
    got = await receiver.wait_for(1, path="/mo")
    data = got[0].json()["data"]
    assert (data["from"], data["to"], data["text"]) == ("254712000555", "22141", "JOIN Habari")
    channel = await operator_platform.store.read(lambda tx: tx.fetchval("SELECT channel FROM inbound WHERE recipient = '22141'"))
    assert channel == "op"
