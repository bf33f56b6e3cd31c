"""PostgreSQL at its connection limit: a cluster of many processes meets the
server's ``max_connections`` under load. Work then waits for one of the
pool's own connections instead of failing (before, each send that needed a
new connection answered with the driver's "too many clients" error)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.conftest import PG_URL, make_account, make_settings, postgres_database
from ujumbe.runtime import Platform
from ujumbe.services.messaging import SendRequest, SendResult


async def _execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def _limited_url(limit: int) -> tuple[str, str]:
    """A database whose only user may hold ``limit`` connections at once
    (a role's CONNECTION LIMIT answers as max_connections does: 53300)."""
    url = await postgres_database()
    role = f"ujumbe_lim_{uuid.uuid4().hex[:8]}"
    await _execute(PG_URL, f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT {limit}')
    await _execute(url, f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"',
                   f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"', f'GRANT ALL ON SCHEMA public TO "{role}"')
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}")), role


async def _drop_role(url: str, role: str) -> None:
    await _execute(url.replace(f"{role}@", "postgres@"), f'DROP OWNED BY "{role}"')
    await _execute(PG_URL, f'DROP ROLE IF EXISTS "{role}"')


async def test_sends_wait_for_a_pooled_connection_when_the_server_refuses_more(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, role = await _limited_url(3)  # the pool's 2 at start and its listener: none to grow by
    platform = Platform(make_settings(tmp_path, url))
    await platform.start("api")
    try:
        account = await platform.accounts.get((await make_account(platform, credits="1000"))["account_id"])
        with caplog.at_level(logging.WARNING, logger="ujumbe.store"):
            results = await asyncio.gather(*(
                platform.messaging.send(account, SendRequest(recipients=[f"0711{i:05d}9"], text="hi"))
                for i in range(80)
            ), return_exceptions=True)
        assert [r for r in results if not isinstance(r, SendResult)] == []
        stored = await platform.store.read(lambda tx: tx.fetchval(
            "SELECT count(*) FROM messages WHERE account_id = ?", account.id))
        assert stored == 80
        assert await platform.credits.balance(account.id) == (1000 - 80) * 10_000
        # the operator hears what to change, once, not once per send
        warned = [r.getMessage() for r in caplog.records if "refuses more connections" in r.getMessage()]
        assert len(warned) == 1 and "max_connections" in warned[0]
    finally:
        await platform.stop()
        await _drop_role(url, role)


async def test_a_start_against_a_full_server_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ujumbe.store import postgres

    monkeypatch.setattr(postgres, "CONNECT_WAIT", 0.3)  # the wait itself is not what is tested
    url, role = await _limited_url(1)  # one connection: the pool's two cannot both open
    try:
        store = postgres.PostgresStore(url)
        with pytest.raises(postgres.StoreUnreachable) as caught:
            await store.open()
        assert "too many connections" in str(caught.value) and "raise max_connections" in str(caught.value)
        # and it left nothing open behind it: the one allowed connection is free again
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()
    finally:
        await _drop_role(url, role)
