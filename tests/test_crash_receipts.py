"""SIGKILL under a stream of receipts: nothing the SMSC was told we have is lost.

``ujumbe serve`` runs as a real process against the node-smpp SMSC
(tests/peers/smsc.js), which journals every deliver_sm_resp it gets (a ``D``
line per receipt answered) and prints each answered mobile-originated message.
The server is killed while receipts and MOs flow, then started again: every
receipt the SMSC saw answered must be recorded (its message final, or, if its
submit never was, the receipt parked), and every answered MO stored.
SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UNDER_LOAD, eventually, free_port, postgres_database
from tests.test_processes import cli, env_for, start_server, stop
from tests.test_smpp_e2e import PEERS, NodeSmsc

pytestmark = [pytest.mark.node, UNDER_LOAD]


def answered_receipts(journal: Path) -> set[str]:
    if not journal.exists():
        return set()
    return {line.split(" ")[1] for line in journal.read_text().splitlines() if line.startswith("D ")}


async def recorded(backend: str, data_dir: Path, database_url: str | None, op_ids: set[str]) -> dict[str, Any]:
    """What the store holds for these operator ids, and the inbound texts."""
    parts = "SELECT p.operator_id, m.state FROM message_parts p JOIN messages m ON m.id = p.message_id"
    parked = "SELECT operator_id FROM early_receipts"
    inbound = "SELECT body FROM inbound"
    if backend == "sqlite":
        conn = sqlite3.connect(data_dir / "ujumbe.db")
        try:
            rows = conn.execute(parts).fetchall()
            park = {r[0] for r in conn.execute(parked)}
            mo = {r[0] for r in conn.execute(inbound)}
        finally:
            conn.close()
    else:
        import asyncpg

        pg = await asyncpg.connect(database_url)
        try:
            rows = [tuple(r) for r in await pg.fetch(parts)]
            park = {r[0] for r in await pg.fetch(parked)}
            mo = {r[0] for r in await pg.fetch(inbound)}
        finally:
            await pg.close()
    state = {op: s for op, s in rows if op in op_ids}
    return {"state": state, "parked": park & op_ids, "inbound": mo}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_every_receipt_answered_before_a_kill_is_recorded(tmp_path: Path, backend: str) -> None:
    if shutil.which("node") is None or not (PEERS / "node_modules" / "smpp").is_dir():
        pytest.skip("node-smpp not installed: run `npm ci --prefix tests/peers`")
    database_url = await postgres_database() if backend == "postgres" else None
    smsc = NodeSmsc(tmp_path, "op", receipt_delay_ms=5)
    await smsc.start()
    data_dir = tmp_path / "data"
    env = env_for(data_dir, database_url)
    env.update(UJUMBE_NO_SIMULATOR="1", UJUMBE_CONNECTOR_PASSWORD="secret")
    proc = None
    try:
        account = cli(env, "accounts", "create", "--name", "Load", "--email", "load@example.com",
                      "--password", "pass-word-1", "--credits", "100000")
        cli(env, "numbers", "add", account["account_id"], "22141")  # the MOs' destination has an owner
        cli(env, "connectors", "add", "op", "--host", "127.0.0.1", "--port", str(smsc.port), "--system-id", "ujumbe")
        headers = {"authorization": f"Bearer {account['api_key']}"}
        port = free_port()
        proc = await start_server(env, port)
        sending = True

        async def sender(client: httpx.AsyncClient, n: int) -> None:
            i = 0
            while sending:
                i += 1
                try:
                    await client.post("/v1/messages", headers=headers,
                                      json={"to": [f"0708{n:02d}{i:03d}{k}" for k in range(5)], "text": "load"})
                except httpx.TransportError:
                    return  # the server is gone

        async def mobiles() -> None:
            i = 0
            while sending:
                i += 1
                await smsc.mo(source_addr="254722000111", destination_addr="22141", short_message=f"mo {i}")
                await asyncio.sleep(0.02)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            tasks = [asyncio.create_task(sender(client, n)) for n in range(8)] + [asyncio.create_task(mobiles())]
            try:
                async def busy() -> bool:
                    return len(answered_receipts(smsc.journal)) >= 400

                await eventually(busy, timeout=40, interval=0.05)
                proc.send_signal(signal.SIGKILL)  # receipts and MOs in flight, some answered, some not
                proc.wait()
            finally:
                sending = False
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
        await asyncio.sleep(0.3)  # let the SMSC read the last answers that were on the wire
        answered = answered_receipts(smsc.journal)
        mo_answered = {m["short_message"] for m in smsc.mo_results if m.get("ok")}

        proc = await start_server(env, port)  # it recovers; nothing it was told may be missing
        got = await recorded(backend, data_dir, database_url, answered)
        lost = [op for op in answered if got["state"].get(op) != "delivered" and op not in got["parked"]]
        assert not lost, f"{len(lost)} of {len(answered)} answered receipts not recorded, e.g. {lost[:5]}"
        assert mo_answered, "no MO was answered before the kill"
        assert mo_answered <= got["inbound"], f"answered MOs not stored: {sorted(mo_answered - got['inbound'])[:5]}"
    finally:
        if proc is not None:
            stop(proc)
        await smsc.stop()
