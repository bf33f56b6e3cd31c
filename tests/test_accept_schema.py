"""Migration 0006 (accept indexes) on a database that already holds messages:
every message, its queue entry and its lease survive, on both backends."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import _db_url, _pg_admin, _pg_state, postgres_database
from ujumbe.store import create_store, now_ms
from ujumbe.store.base import Store, load_migrations, render_ddl, split_sql


async def empty_store(backend: str, tmp_path: Path) -> Store:
    if backend == "postgres":
        await postgres_database()  # skips when no server
        name = f"ujumbe_t_{uuid.uuid4().hex[:12]}"
        admin = await _pg_admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        _pg_state.setdefault("created", []).append(name)
        store = create_store(_db_url(name), tmp_path)
    else:
        store = create_store(None, tmp_path)
    await store.open()
    return store


async def migrate_to(store: Store, last: int) -> None:
    await store._ensure_migrations_table()
    for version, name, sql in load_migrations():
        if version > last:
            break

        async def apply(tx, sql=sql, version=version, name=name):  # type: ignore[no-untyped-def]
            for statement in split_sql(render_ddl(sql, store.dialect)):
                await tx.execute(statement)
            await tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                             version, name, now_ms())

        await store.run(apply)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_0006_keeps_messages_outbox_and_leases(backend: str, tmp_path: Path) -> None:
    store = await empty_store(backend, tmp_path)
    try:
        await migrate_to(store, 5)
        now = now_ms()
        big = 2**40 + 7  # ids are 64-bit on both backends

        async def seed(tx):  # type: ignore[no-untyped-def]
            for mid in (1, 2, big):
                await tx.execute(
                    "INSERT INTO messages (id, request_id, account_id, channel, dialect, sender, recipient, network, "
                    "body, encoding, parts, cost, charge, state, error_code, error_reason, connector, callback_url, "
                    "meta, created_at, submitted_at, done_at, updated_at, expires_at) "
                    "VALUES (?, 'r1', 'acc', 'sms', 'native', 'DUKA', ?, 'Safaricom', 'hello', 'gsm7', 1, 10000, "
                    "'reserved', 'queued', NULL, NULL, NULL, NULL, '{\"a\": 1}', ?, NULL, NULL, ?, ?)",
                    mid, f"2547084000{mid % 100:02d}", now, now, now + 1000,
                )
            await tx.execute("INSERT INTO outbox (message_id, due_at) VALUES (1, ?)", now)
            await tx.execute("INSERT INTO outbox (message_id, due_at, attempts, lease_owner) VALUES (?, ?, 2, 'w1')",
                             big, now + 5)

        await store.run(seed)
        assert await store.migrate() == [v for v, _, _ in load_migrations() if v > 5]

        rows = await store.read(lambda tx: tx.fetch(
            "SELECT id, recipient, meta, state, expires_at FROM messages ORDER BY id"))
        assert [tuple(r) for r in rows] == [
            (1, "254708400001", '{"a": 1}', "queued", now + 1000),
            (2, "254708400002", '{"a": 1}', "queued", now + 1000),
            (big, f"2547084000{big % 100:02d}", '{"a": 1}', "queued", now + 1000),
        ]
        outbox = await store.read(lambda tx: tx.fetch(
            "SELECT message_id, due_at, attempts, lease_owner FROM outbox ORDER BY message_id"))
        assert [tuple(r) for r in outbox] == [(1, now, 0, None), (big, now + 5, 2, "w1")]
        leased = await store.read(lambda tx: tx.fetch("SELECT message_id FROM outbox WHERE lease_owner = ?", "w1"))
        assert [r[0] for r in leased] == [big]
        if backend == "sqlite":  # the ids are the rowids now: no second B-tree per insert
            for table in ("messages", "outbox"):
                sql = await store.read(lambda tx, t=table: tx.fetchval("SELECT sql FROM sqlite_master WHERE name = ?", t))
                assert "INTEGER PRIMARY KEY" in sql
        # the primary keys still refuse a second row with the same id
        with pytest.raises(Exception):
            await store.run(lambda tx: tx.execute("INSERT INTO outbox (message_id, due_at) VALUES (1, 0)"))
    finally:
        await store.close()
