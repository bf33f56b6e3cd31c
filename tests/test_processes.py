"""The real command, in real processes: the CLI, SIGKILL under load, and a
cluster of API and worker processes sharing PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UNDER_LOAD, eventually, free_port, postgres_database

UJUMBE = [sys.executable, "-m", "ujumbe"]


def env_for(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UJUMBE_")}
    env.update(
        UJUMBE_DATA_DIR=str(data_dir),
        UJUMBE_SIM_RECEIPT_DELAY_MS="50-200",
        UJUMBE_ALLOW_PRIVATE_CALLBACKS="1",
        UJUMBE_SECRET_KEY="processes-test-secret",
        UJUMBE_LOG_LEVEL="WARNING",
        # A server refuses to start on a taken port: tests that want the SMPP
        # server give it a free one (2775 may be any other run's).
        UJUMBE_SMPP_PORT="off",
    )
    if database_url:
        env["UJUMBE_DATABASE_URL"] = database_url
    return env


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([*UJUMBE, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


async def start_server(env: dict[str, str], port: int, role: str = "all", *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*UJUMBE, "serve", "--port", str(port), "--role", role, *extra], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    if role == "worker":
        return proc
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "server exited")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return proc
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cli_creates_accounts_with_every_credential(tmp_path: Path) -> None:
    env = env_for(tmp_path, None)
    account = cli(env, "accounts", "create", "--name", "Duka", "--email", "ops@duka.co.ke", "--password", "pass-word-1",
                  "--username", "duka", "--region", "KE", "--credits", "50")
    for key in ("account_id", "username", "email", "api_key", "instance_id", "public_key", "private_key"):
        assert account[key], key
    assert account["username"] == "duka"
    assert cli(env, "credits", "add", account["account_id"], "25.5") == {"account_id": account["account_id"], "balance": 50 + 25.5}
    urls = cli(env, "callbacks", "set", account["account_id"], "--dlr-url", "http://127.0.0.1:9999/dlr")
    assert urls["dlr_url"] == "http://127.0.0.1:9999/dlr"
    assert cli(env, "migrate") == {"migrations": "up to date"}
    bad = subprocess.run([*UJUMBE, "credits", "add", "acc_nobody", "5"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "No account" in bad.stderr


@UNDER_LOAD
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_sigkill_under_load_loses_no_accepted_message(tmp_path: Path, backend: str) -> None:
    database_url = await postgres_database() if backend == "postgres" else None
    env = env_for(tmp_path / "data", database_url)
    # the restarted server, the only worker, takes the killed one's leases over
    # after this (5 s by default); no live worker is there to mistake for dead
    env["UJUMBE_WORKER_DEAD_S"] = "2"
    account = cli(env, "accounts", "create", "--name", "Load", "--email", "load@example.com", "--password", "pass-word-1", "--credits", "100000")
    headers = {"authorization": f"Bearer {account['api_key']}"}
    port = free_port()
    proc = await start_server(env, port)
    accepted: list[int] = []
    base = f"http://127.0.0.1:{port}"

    async def sender(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while True:
            i += 1
            try:
                r = await client.post("/v1/messages", headers=headers, json={"to": f"0708{n:02d}{i:03d}9", "text": "load"})
            except httpx.TransportError:
                return  # the server died mid-request: that send was never acknowledged
            if r.status_code == 202:
                accepted.extend(m["id"] for m in r.json()["messages"])

    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        senders = [asyncio.create_task(sender(client, n)) for n in range(20)]
        await eventually(lambda: asyncio.sleep(0, len(accepted) >= 300), timeout=30)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        await asyncio.wait_for(asyncio.gather(*senders), 20)
    assert len(accepted) >= 300

    proc = await start_server(env, port)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            async def all_delivered() -> bool:
                missing, pending = 0, []
                for mid in accepted:
                    r = await client.get(f"/v1/messages/{mid}", headers=headers)
                    if r.status_code == 404:
                        missing += 1
                    elif r.json()["state"] != "delivered":
                        pending.append((mid, r.json()["state"]))
                assert missing == 0, f"{missing} accepted messages were lost"
                return not pending

            await eventually(all_delivered, timeout=60, interval=1)
    finally:
        stop(proc)


async def test_api_and_two_workers_share_postgres_without_double_sends(tmp_path: Path) -> None:
    database_url = await postgres_database()
    env = env_for(tmp_path / "data", database_url)
    account = cli(env, "accounts", "create", "--name", "Cluster", "--email", "c@example.com", "--password", "pass-word-1", "--credits", "10000")
    headers = {"authorization": f"Bearer {account['api_key']}"}
    port = free_port()
    api = await start_server(env, port, role="api")
    workers = [await start_server(env, 0, role="worker") for _ in range(2)]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            health = (await client.get("/health")).json()
            assert health == {"status": "ok", "role": "api", "database": "postgres"}
            ids = []
            for batch in range(6):
                r = await client.post(
                    "/v1/messages", headers=headers,
                    json={"to": [f"0711{batch:02d}{i:03d}9" for i in range(50)], "text": "cluster"},
                )
                assert r.status_code == 202, r.text
                ids.extend(m["id"] for m in r.json()["messages"])

            async def done() -> bool:
                page = (await client.get("/v1/messages", headers=headers, params={"state": "delivered", "limit": 500})).json()
                return len(page["data"]) == len(ids)

            await eventually(done, timeout=60, interval=0.5)
            for mid in ids[::25]:
                events = (await client.get(f"/v1/messages/{mid}", headers=headers)).json()["events"]
                assert [e["state"] for e in events].count("submitted") == 1
    finally:
        for proc in (api, *workers):
            stop(proc)
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        twice = await conn.fetchval(
            "SELECT count(*) FROM (SELECT message_id FROM message_events WHERE state = 'submitted' "
            "GROUP BY message_id HAVING count(*) > 1) t"
        )
        assert twice == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await conn.close()


async def test_a_second_server_on_the_same_embedded_database_is_refused(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    first = await start_server(env, free_port())
    try:
        second = subprocess.run([*UJUMBE, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=30)
        assert second.returncode != 0
        assert "Another Ujumbe server is running" in second.stderr
    finally:
        stop(first)
    again = await start_server(env, free_port())  # the lock went with the first server
    stop(again)


async def test_api_and_worker_processes_share_the_embedded_database(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    env["UJUMBE_SMPP_PORT"] = "off"
    account = cli(env, "accounts", "create", "--name", "Split", "--email", "s@example.com", "--password", "pass-word-1", "--credits", "1000")
    headers = {"authorization": f"Bearer {account['api_key']}"}
    port = free_port()
    api = await start_server(env, port, role="api")
    worker = await start_server(env, 0, role="worker")
    try:
        # an all-in-one server would take back the others' leases: refused
        alone = subprocess.run([*UJUMBE, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=30)
        assert alone.returncode != 0 and "--role all uses the embedded database alone" in alone.stderr
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            ids = []
            for batch in range(4):
                r = await client.post("/v1/messages", headers=headers, json={"to": [f"0712{batch:02d}{i:03d}9" for i in range(25)], "text": "split"})
                assert r.status_code == 202, r.text
                ids.extend(m["id"] for m in r.json()["messages"])
            assert len(set(ids)) == 100

            async def done() -> bool:
                page = (await client.get("/v1/messages", headers=headers, params={"state": "delivered", "limit": 500})).json()
                return len(page["data"]) == len(ids)

            await eventually(done, timeout=60, interval=0.5)
    finally:
        stop(api)
        stop(worker)
