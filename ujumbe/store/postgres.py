"""Cluster store: PostgreSQL through asyncpg.

Each unit runs in its own transaction on a pooled connection; PostgreSQL
itself groups concurrent commits into one WAL flush. Wake-ups cross processes
with LISTEN/NOTIFY so an API process on one machine wakes the dispatch workers
on another.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import asyncpg

from ujumbe.store.base import MIGRATIONS_TABLE, Row, Store, T, Unit

log = logging.getLogger("ujumbe.store")

CHANNEL = "ujumbe"
_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=1024)
def to_pg(sql: str) -> str:
    """Rewrite ``?`` placeholders as ``$1, $2, ...``."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresTx:
    dialect = "postgres"
    __slots__ = ("_conn", "topics")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.topics: set[str] = set()

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(to_pg(sql), *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(to_pg(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._conn.fetch(to_pg(sql), *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._conn.fetchrow(to_pg(sql), *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(to_pg(sql), *args)

    async def next_ids(self, table: str, n: int) -> list[int]:
        rows = await self._conn.fetch(
            "SELECT nextval('message_ids') FROM generate_series(1, $1)", n
        )
        return [r[0] for r in rows]

    def notify(self, topic: str) -> None:
        self.topics.add(topic)


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 20) -> None:
        super().__init__()
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self._listen_conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=self.min_size, max_size=self.max_size, statement_cache_size=512
        )
        self._listen_conn = await asyncpg.connect(self.dsn)
        await self._listen_conn.add_listener(CHANNEL, self._on_notify)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._wake(payload.split(","))

    async def close(self) -> None:
        if self._listen_conn is not None:
            await self._listen_conn.close()
        await self._pool.close()

    async def _ensure_migrations_table(self) -> None:
        async with self._pool.acquire() as conn:
            # Two processes starting together must not both migrate.
            await conn.execute("SELECT pg_advisory_lock(7262835)")
            try:
                await conn.execute(MIGRATIONS_TABLE)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(7262835)")

    async def migrate(self) -> list[int]:
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(7262836)")
            try:
                return await super().migrate()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(7262836)")

    async def run(self, unit: Unit[T]) -> T:
        async with self._pool.acquire() as conn:
            tx = PostgresTx(conn)
            async with conn.transaction():
                result = await unit(tx)
                if tx.topics:
                    # delivered by PostgreSQL at commit, to every process listening
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, ",".join(sorted(tx.topics)))
        return result

    async def read(self, unit: Unit[T]) -> T:
        async with self._pool.acquire() as conn:
            return await unit(PostgresTx(conn))
