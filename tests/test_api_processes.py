"""`serve --processes N`: several API processes on one port, beside a worker
process, accept concurrently and every message is delivered exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import eventually, free_port, postgres_database
from tests.test_processes import UJUMBE, cli, env_for, start_server, stop


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


async def send_concurrently(port: int, headers: dict[str, str], senders: int, each: int) -> list[int]:
    ids: list[int] = []

    async def sender(client: httpx.AsyncClient, n: int) -> None:
        for i in range(each):
            r = await client.post("/v1/messages", headers=headers, json={"to": f"0713{n:02d}{i:03d}9", "text": "many"})
            assert r.status_code == 202, r.text
            ids.extend(m["id"] for m in r.json()["messages"])

    # a connection per sender, so the kernel spreads them over the processes
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) for _ in range(senders)]
    try:
        await asyncio.gather(*(sender(c, n) for n, c in enumerate(clients)))
    finally:
        for c in clients:
            await c.aclose()
    return ids


async def all_delivered(port: int, headers: dict[str, str], count: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        async def done() -> bool:
            page = (await client.get("/v1/messages", headers=headers, params={"state": "delivered", "limit": 500})).json()
            return len(page["data"]) == count

        await eventually(done, timeout=90, interval=0.5)


async def counts(backend: str, env: dict[str, str], data_dir: Path) -> dict[str, Any]:
    queries = {
        "messages": "SELECT count(*) FROM messages",
        "submitted_twice": "SELECT count(*) FROM (SELECT message_id FROM message_events WHERE state = 'submitted' "
                           "GROUP BY message_id HAVING count(*) > 1) t",
        "outbox": "SELECT count(*) FROM outbox",
        "ledger_charges": "SELECT count(*) FROM ledger WHERE kind = 'charge'",
    }
    if backend == "postgres":
        conn = await asyncpg.connect(env["UJUMBE_DATABASE_URL"])
        try:
            return {k: await conn.fetchval(q) for k, q in queries.items()}
        finally:
            await conn.close()
    db = sqlite3.connect(data_dir / "ujumbe.db")
    try:
        return {k: db.execute(q).fetchone()[0] for k, q in queries.items()}
    finally:
        db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_api_processes_and_a_worker_deliver_every_message_once(tmp_path: Path, backend: str) -> None:
    database_url = await postgres_database() if backend == "postgres" else None
    env = env_for(tmp_path / "data", database_url)
    env["UJUMBE_SMPP_PORT"] = "off"
    account = cli(env, "accounts", "create", "--name", "Many", "--email", "m@example.com", "--password", "pass-word-1",
                  "--credits", "10000")
    headers = {"authorization": f"Bearer {account['api_key']}"}
    port = free_port()
    api = await start_server(env, port, "api", "--processes", "2")
    worker = await start_server(env, 0, role="worker")
    try:
        assert len(children(api.pid)) == 2
        ids = await send_concurrently(port, headers, senders=24, each=15)
        assert len(ids) == len(set(ids)) == 360

        await all_delivered(port, headers, len(ids))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            balance = (await client.get("/v1/balance", headers=headers)).json()["balance"]
    finally:
        stop(api)
        stop(worker)
    assert children(api.pid) == []  # the API processes went with their parent
    assert await counts(backend, env, tmp_path / "data") == {
        "messages": 360, "submitted_twice": 0, "outbox": 0, "ledger_charges": 360}
    assert balance == 10000 - 360


async def test_role_all_in_two_processes_owns_the_embedded_database(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    env["UJUMBE_SMPP_PORT"] = "off"
    account = cli(env, "accounts", "create", "--name", "All", "--email", "a@example.com", "--password", "pass-word-1",
                  "--credits", "1000")
    headers = {"authorization": f"Bearer {account['api_key']}"}
    port = free_port()
    server = await start_server(env, port, "all", "--processes", "2")
    try:
        # it holds the database as an all-in-one server does: no other server beside it
        other = subprocess.run([*UJUMBE, "serve", "--role", "api", "--port", str(free_port())], env=env,
                               capture_output=True, text=True, timeout=30)
        assert other.returncode != 0 and "Another Ujumbe server is running" in other.stderr
        ids = await send_concurrently(port, headers, senders=8, each=10)
        assert len(set(ids)) == 80
        await all_delivered(port, headers, len(ids))
    finally:
        stop(server)
    assert (await counts("sqlite", env, tmp_path / "data"))["submitted_twice"] == 0


async def test_the_processes_go_when_their_parent_is_killed(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    env["UJUMBE_SMPP_PORT"] = "off"
    server = await start_server(env, free_port(), "api", "--processes", "2")
    kids = children(server.pid)
    assert len(kids) == 2
    server.kill()  # SIGKILL: no chance to stop them itself
    server.wait()

    async def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in kids)

    await eventually(gone, timeout=20, interval=0.2)
