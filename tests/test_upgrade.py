"""Upgrades: a database made by the previous release's migrations (0001-0006),
with messages in flight, is migrated by the current code, which finishes them."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

import ujumbe.store.base as store_base
from tests.conftest import PG_URL, _db_url, _pg_state, eventually, make_settings
from ujumbe.runtime import Platform
from ujumbe.store import create_store, now_ms

PREVIOUS_RELEASE = 6  # the last migration of the previous release


async def _empty_database(backend: str) -> str | None:
    if backend == "sqlite":
        return None
    try:
        admin = await asyncpg.connect(PG_URL, timeout=5)
    except OSError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL} ({exc})")
    name = f"ujumbe_up_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        _pg_state.setdefault("created", []).append(name)  # dropped at the end of the session
    finally:
        await admin.close()
    return _db_url(name)


async def test_the_current_code_migrates_an_old_database_and_finishes_its_messages(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = await _empty_database(backend)
    settings = make_settings(tmp_path, url)
    everything = store_base.load_migrations()
    # the previous release: only its migrations exist
    monkeypatch.setattr(store_base, "load_migrations", lambda: [m for m in everything if m[0] <= PREVIOUS_RELEASE])
    old = create_store(settings.database_url, settings.data_dir)
    await old.open()
    assert await old.migrate() == [1, 2, 3, 4, 5, 6]
    now = now_ms()

    async def in_flight(tx):  # type: ignore[no-untyped-def]
        # rows as that release wrote them: an account, a request, three queued
        # messages in the outbox, one submitted and awaiting its receipt
        await tx.execute(
            "INSERT INTO accounts (id, name, email, username, password_hash, instance_id, public_key, key_seed, "
            "balance, created_at) VALUES ('acc_old', 'Old', 'old@example.com', 'old', 'x', 'inst_old', 'pk_old', "
            "'seed', 1000000, ?)", now)
        await tx.execute(
            "INSERT INTO requests (id, account_id, dialect, channel, recipients, accepted, cost, created_at) "
            "VALUES ('req_old', 'acc_old', 'native', 'sms', 4, 4, 4, ?)", now)
        for i in range(1, 5):
            state = "submitted" if i == 4 else "queued"
            await tx.execute(
                "INSERT INTO messages (id, request_id, account_id, channel, dialect, recipient, network, body, "
                "encoding, parts, cost, charge, state, connector, created_at, submitted_at, updated_at, expires_at) "
                "VALUES (?, 'req_old', 'acc_old', 'sms', 'native', ?, 'Safaricom', 'hello', 'gsm7', 1, 1, "
                "'reserved', ?, ?, ?, ?, ?, ?)",
                i, f"+25470812{i:02d}99", state, "simulator" if i == 4 else None, now, now if i == 4 else None, now,
                now + 86_400_000)
            if i < 4:
                await tx.execute("INSERT INTO outbox (message_id, due_at, attempts) VALUES (?, ?, 0)", i, now)
        await tx.execute(
            "INSERT INTO message_parts (message_id, part, operator_id, connector, state, updated_at) "
            "VALUES (4, 1, 'op-old-4', 'simulator', 'submitted', ?)", now)

    await old.run(in_flight)
    await old.close()
    monkeypatch.setattr(store_base, "load_migrations", lambda: everything)

    platform = Platform(settings)
    await platform.start("all")  # migrates, then its workers take over the messages
    try:
        applied = await platform.store.read(lambda tx: tx.fetch("SELECT version FROM schema_migrations"))
        assert {r[0] for r in applied} == {v for v, _, _ in everything}

        async def finished() -> bool:
            rows = await platform.store.read(lambda tx: tx.fetch("SELECT id, state FROM messages ORDER BY id"))
            return [r["state"] for r in rows] == ["delivered"] * 4

        await eventually(finished, timeout=30)
        assert await platform.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM outbox")) == 0
        msg = await platform.messaging.message("acc_old", 4)
        assert msg["state"] == "delivered" and msg["charge"] == "settled"
    finally:
        await platform.stop()
