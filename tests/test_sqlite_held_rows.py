"""SQLite holds ``insert_later`` rows until a unit ends and writes a batch's
rows together at its commit: a failed unit's rows never land, a unit that
flushes reads its own, and every succeeded unit's rows are committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ujumbe.store import Tx
from ujumbe.store.sqlite import SqliteStore

INSERT = "INSERT INTO held (unit, n) VALUES (?, ?)"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "held.db")
    await s.open()
    try:
        await s.run(lambda tx: tx.execute("CREATE TABLE held (unit TEXT NOT NULL, n INTEGER NOT NULL)"))
        yield s
    finally:
        await s.close()


async def test_held_rows_of_one_batch(store: SqliteStore) -> None:
    async def ok(tx: Tx) -> None:
        tx.insert_later(INSERT, [("ok", 1), ("ok", 2)])

    async def fails(tx: Tx) -> None:
        tx.insert_later(INSERT, [("fails", 1)])
        await tx.execute(INSERT, "fails", 2)
        raise RuntimeError("this unit fails")

    async def flushes(tx: Tx) -> int:
        tx.insert_later(INSERT, [("flushes", 1)])
        await tx.flush()
        return int(await tx.fetchval("SELECT count(*) FROM held WHERE unit = 'flushes'"))

    async def not_yet(tx: Tx) -> int:
        # another unit's held rows wait for the commit
        return int(await tx.fetchval("SELECT count(*) FROM held WHERE unit = 'ok'"))

    # pending together, so the writer takes them as one batch
    results = await asyncio.gather(store.run(ok), store.run(fails), store.run(flushes), store.run(not_yet),
                                   store.run(ok), return_exceptions=True)
    assert results[0] is None and results[4] is None
    assert isinstance(results[1], RuntimeError)
    assert results[2] == 1
    assert results[3] == 0
    rows = await store.read(lambda tx: tx.fetch("SELECT unit, n FROM held ORDER BY rowid"))
    assert [tuple(r) for r in rows] == [("flushes", 1), ("ok", 1), ("ok", 2), ("ok", 1), ("ok", 2)]


async def test_a_held_row_that_cannot_be_inserted_fails_its_batch(store: SqliteStore) -> None:
    async def bad(tx: Tx) -> None:
        tx.insert_later(INSERT, [("bad", None)])  # NOT NULL

    async def direct(tx: Tx) -> None:
        await tx.execute(INSERT, "direct", 1)

    results = await asyncio.gather(store.run(direct), store.run(bad), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)  # nothing is acknowledged that is not committed
    assert await store.read(lambda tx: tx.fetchval("SELECT count(*) FROM held")) == 0
    await store.run(direct)  # the store goes on
    assert await store.read(lambda tx: tx.fetchval("SELECT count(*) FROM held")) == 1
