"""Shared fixtures: real SQLite and real PostgreSQL, real sockets.

Every test that takes ``platform`` runs once per backend. PostgreSQL tests
get a fresh database cloned from a migrated template; when no server can be
reached they are skipped with the reason, never passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ujumbe.config import Settings
from ujumbe.http.app import create_app
from ujumbe.runtime import Platform

PG_URL = os.environ.get("UJUMBE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_pg_state: dict[str, Any] = {}


# Tests that put a server under load and kill it, then count what was lost or
# sent twice: under ``--dist loadgroup`` (scripts/test) they run one after
# another on one worker, not two load generators at once on a small machine.
UNDER_LOAD = pytest.mark.xdist_group("under_load")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _db_url(name: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{name}"


async def _pg_admin() -> asyncpg.Connection:
    # Four workers' platforms may hold the server's connections for a moment:
    # that is a server at its limit, not one that is missing.
    for _ in range(100):
        try:
            return await asyncpg.connect(PG_URL, timeout=5)
        except asyncpg.TooManyConnectionsError:
            await asyncio.sleep(0.1)
    return await asyncpg.connect(PG_URL, timeout=5)


async def postgres_database() -> str:
    """A new, migrated PostgreSQL database for one test."""
    if "error" in _pg_state:
        pytest.skip(_pg_state["error"])
    try:
        admin = await _pg_admin()
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
        _pg_state["error"] = (
            f"PostgreSQL is not reachable at {PG_URL} ({exc}); `.ci/run` starts it, "
            "or set UJUMBE_TEST_POSTGRES_URL"
        )
        pytest.skip(_pg_state["error"])
    try:
        template = _pg_state.get("template")
        if template is None:
            template = f"ujumbe_tpl_{os.getpid()}"
            await admin.execute(f'DROP DATABASE IF EXISTS "{template}"')
            await admin.execute(f'CREATE DATABASE "{template}"')
            from ujumbe.store.postgres import PostgresStore

            store = PostgresStore(_db_url(template), min_size=1, max_size=2)
            await store.open()
            await store.migrate()
            await store.close()
            _pg_state["template"] = template
        name = f"ujumbe_t_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        _pg_state.setdefault("created", []).append(name)
        return _db_url(name)
    finally:
        await admin.close()


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    names = _pg_state.get("created", []) + ([_pg_state["template"]] if "template" in _pg_state else [])
    if not names:
        return

    async def drop() -> None:
        admin = await _pg_admin()
        try:
            for name in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    with contextlib.suppress(Exception):
        asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> str | None:
    if backend == "postgres":
        return await postgres_database()
    return None


def make_settings(tmp_path: Path, database_url: str | None, **overrides: Any) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        allow_private_callbacks=True,
        simulator=True,
        sim_receipt_delay_ms=(20, 80),
        secret_key="test-secret-" + uuid.uuid4().hex,
    )
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


@contextlib.asynccontextmanager
async def running(tmp_path: Path, database_url: str | None, **overrides: Any) -> AsyncIterator[Platform]:
    """A started platform (API services and every worker) for one test."""
    p = Platform(make_settings(tmp_path, database_url, **overrides))
    await p.start("all")
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
async def platform(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    async with running(tmp_path, database_url) as p:
        yield p


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on a real socket in this event loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def client_of(platform: Platform, timeout: float = 30) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to ``platform``'s app served on a real socket."""
    async with serving(create_app(platform, manage_platform=False)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
            yield client


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(platform) as client:
        yield client


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A client's callback endpoint: records requests and answers as told."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    fail_first: int = 0
    status: int = 200
    answer: str | Callable[[Received], str] = "OK"

    async def wait_for(self, count: int, timeout: float = 15.0, path: str | None = None) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            got = [r for r in self.requests if path is None or r.path == path]
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} callbacks, got {len(got)}: {[r.body[:200] for r in got]}")
            await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    calls = {"n": 0}

    async def endpoint(request: Request) -> Response:
        item = Received(request.url.path, dict(request.headers), await request.body())
        calls["n"] += 1
        if calls["n"] <= rec.fail_first:
            return Response("FAILED", status_code=500)
        rec.requests.append(item)
        body = rec.answer(item) if callable(rec.answer) else rec.answer
        return Response(body, status_code=rec.status)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST", "GET", "PUT"])])
    async with serving(app) as base:
        rec.url = base
        yield rec


async def make_account(platform: Platform, credits: str | None = "100", **kw: Any) -> dict[str, Any]:
    n = uuid.uuid4().hex[:8]
    return await platform.accounts.create(
        name=kw.pop("name", f"Test {n}"), email=kw.pop("email", f"user{n}@example.com"),
        password=kw.pop("password", "correct horse battery"), username=kw.pop("username", f"user{n}"),
        credits=credits, **kw,
    )


def auth(account: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {account['api_key']}"}


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")
