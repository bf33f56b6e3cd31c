"""/healthz and /readyz: what a load balancer and an orchestrator check."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import PG_URL, client_of, eventually, free_port, postgres_database, running
from tests.test_api_processes import children
from tests.test_processes import env_for, start_server, stop
from ujumbe.runtime import Platform


async def test_a_healthy_server_is_alive_and_ready(platform: Platform, api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "role": "all"}
    assert (await api.get("/health")).status_code == 200  # the old check stays


async def test_a_stopped_worker_makes_the_server_not_ready(platform: Platform, api: httpx.AsyncClient) -> None:
    assert (await api.get("/readyz")).status_code == 200
    task = next(t for t in platform._tasks if t.get_name() == "sweeper")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["problems"] == ["worker sweeper: stopped"]
    assert (await api.get("/healthz")).status_code == 200  # alive, only not ready


async def test_a_crashed_worker_is_reported_until_it_runs_again(platform: Platform, api: httpx.AsyncClient) -> None:
    sweeper = next(t for t in platform._tasks if t.get_name() == "sweeper")
    sweeper.cancel()
    await asyncio.gather(sweeper, return_exceptions=True)
    platform._tasks.remove(sweeper)

    class Flaky:
        calls = 0

        async def run(self, stop: asyncio.Event) -> None:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("boom")
            await stop.wait()

    platform._tasks.append(asyncio.create_task(platform._supervise("sweeper", Flaky()), name="sweeper"))

    async def crashed() -> bool:
        return (await api.get("/readyz")).json().get("problems") == ["worker sweeper: crashed (RuntimeError); restarting"]

    await eventually(crashed, interval=0.01)
    # the supervisor starts it again a second later: ready again
    await eventually(lambda: _ready(api), timeout=10)
    assert Flaky.calls == 2


async def _ready(api: httpx.AsyncClient) -> bool:
    return (await api.get("/readyz")).status_code == 200


async def test_an_api_process_has_no_workers_to_check(tmp_path: Path) -> None:
    platform = Platform(__import__("tests.conftest", fromlist=["make_settings"]).make_settings(tmp_path, None))
    await platform.start("api")
    try:
        async with client_of(platform) as api:
            ready = await api.get("/readyz")
            assert ready.status_code == 200 and ready.json()["role"] == "api"
    finally:
        await platform.stop()


async def test_missing_migrations_make_the_server_not_ready(platform: Platform, api: httpx.AsyncClient) -> None:
    await platform.store.run(lambda tx: tx.execute("DELETE FROM schema_migrations WHERE version = 6"))
    ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["problems"] == ["migrations not applied: 0006"]


async def test_a_dropped_postgres_database_makes_the_server_not_ready(tmp_path: Path) -> None:
    url = await postgres_database()
    async with running(tmp_path, url) as platform:
        async with client_of(platform) as api:
            assert (await api.get("/readyz")).status_code == 200
            admin = await asyncpg.connect(PG_URL)
            try:
                await admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            finally:
                await admin.close()
            ready = await api.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["problems"][0].startswith("store: unreachable"), ready.json()
            assert (await api.get("/healthz")).status_code == 200


# --- several processes: an API process tells a stopped worker process from a healthy one ---


async def _status(client: httpx.AsyncClient, url: str) -> tuple[int, dict[str, Any]]:
    try:
        r = await client.get(url)
    except httpx.TransportError:
        return 0, {}
    return r.status_code, r.json()


def _dispatch_owners(data_dir: Path) -> list[str]:
    db = sqlite3.connect(data_dir / "ujumbe.db")
    try:
        return [row[0] for row in db.execute("SELECT owner FROM dispatch_workers")]
    finally:
        db.close()


async def test_api_processes_are_not_ready_while_the_worker_process_is_dead(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    env["UJUMBE_READY_WORKERS"] = "1"  # this deployment runs workers elsewhere
    port, metrics_port = free_port(), free_port()
    api = await start_server(env, port, "api", "--processes", "2")
    worker = await start_server(env, 0, "worker", "--metrics-listen", f"127.0.0.1:{metrics_port}")
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            readyz = f"http://127.0.0.1:{port}/readyz"

            async def status_is(code: int) -> Any:
                status, body = await _status(client, readyz)
                return body if status == code else None

            await eventually(lambda: status_is(200), timeout=30, interval=0.2)
            # the worker process answers its own checks on its metrics address
            body = await eventually(lambda: _ok(client, f"http://127.0.0.1:{metrics_port}/readyz"), timeout=30)
            assert body == {"status": "ready", "role": "worker"}
            (owner,) = _dispatch_owners(tmp_path / "data")
            assert owner.startswith(f"w-{worker.pid}-")

            worker.kill()  # SIGKILL: no goodbye in the store
            worker.wait()
            body = await eventually(lambda: status_is(503), timeout=20, interval=0.2)
            assert body["status"] == "not ready" and body["role"] == "api"
            (problem,) = body["problems"]
            assert problem.startswith("workers: 0 dispatch worker(s) beating in the last 5 s, 1 expected"), problem
            assert owner in problem  # names the worker that stopped
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200  # alive, not ready

            worker = await start_server(env, 0, "worker")
            await eventually(lambda: status_is(200), timeout=30, interval=0.2)
    finally:
        stop(api)
        stop(worker)


async def _ok(client: httpx.AsyncClient, url: str) -> Any:
    status, body = await _status(client, url)
    return body if status == 200 else None


async def test_role_all_in_processes_checks_its_worker_process_which_comes_back(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    port = free_port()
    server = await start_server(env, port, "all", "--processes", "2")
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            readyz = f"http://127.0.0.1:{port}/readyz"
            assert await eventually(lambda: _ok(client, readyz), timeout=30, interval=0.2) == {
                "status": "ready", "role": "api"}
            (owner,) = _dispatch_owners(tmp_path / "data")
            pid = int(owner.split("-")[1])
            assert pid in children(server.pid)
            os.kill(pid, signal.SIGKILL)

            async def replaced() -> Any:
                # the parent starts the worker process again; it takes over the dead one's row
                owners = _dispatch_owners(tmp_path / "data")
                return owners if owners and not any(o.startswith(f"w-{pid}-") for o in owners) else None

            await eventually(replaced, timeout=30, interval=0.2)
            await eventually(lambda: _ok(client, readyz), timeout=30, interval=0.2)
    finally:
        stop(server)

