"""/healthz and /readyz: what a load balancer and an orchestrator check."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import PG_URL, client_of, eventually, postgres_database, running
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
