"""Cluster store: PostgreSQL through asyncpg.

Each unit runs in its own transaction on a pooled connection; PostgreSQL
itself groups concurrent commits into one WAL flush. Wake-ups cross processes
with LISTEN/NOTIFY so an API process on one machine wakes the dispatch workers
on another.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from ujumbe.core.errors import StoreUnavailable
from ujumbe.store import accounts as accounts_q
from ujumbe.store.base import MIGRATIONS_TABLE, Row, Store, T, Unit

log = logging.getLogger("ujumbe.store")

CHANNEL = "ujumbe"
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)
GROUP_MAX = 128  # units per grouped commit
GROUP_FLUSHERS = 4  # grouped commits in flight at once, no key in two of them
ID_BLOCK = 1000  # message ids a process reserves at a time
_LIMIT_FIX = ("raise max_connections in postgresql.conf (or the role's or database's CONNECTION LIMIT) "
              "or run fewer processes")
CONNECT_WAIT = 10.0  # seconds a unit waits for a connection while the server is at its limit
FLUSH_ROWS = 5000  # rows per statement when insert_later's rows are written
_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=1024)
def to_pg(sql: str) -> str:
    """Rewrite ``?`` placeholders as ``$1, $2, ...``."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresTx:
    dialect = "postgres"
    __slots__ = ("_conn", "_store", "topics", "_planned", "_later", "taken")

    def __init__(self, conn: asyncpg.Connection, store: PostgresStore | None = None) -> None:
        self._conn = conn
        self._store = store
        self.topics: set[str] = set()
        self._planned = False
        # insert_later's rows by statement, in the order statements first came
        self._later: dict[str, tuple[str | None, list[Sequence[Any]]]] = {}
        # charges the group took ahead, by request id: (account, amount, balance after)
        self.taken: dict[str, tuple[str, int, int]] = {}

    async def plan_for_keys(self) -> None:
        """Plan the rest of this transaction for keyed batches.

        Each worker statement touches a batch of rows by key, for which an
        index is always the right way in. The planner did not always see it
        so: asyncpg prepares a statement once per connection, and PostgreSQL
        may keep a generic plan made while the table was still small; and with
        the batch a few hundred rows against tables of tens of thousands it
        chose to scan and hash the whole table. Measured in a 60,000-message
        drain: ~1,300 scans of message_parts reading 35 million rows, ~110 of
        outbox reading 5 million, and PostgreSQL's CPU per message doubling at
        random; none with these settings. Merge joins go too: with hash joins
        off the planner walked a whole index in key order instead (300
        receipt ids matched in 14.5 ms by reading all 30,000 parts; 0.7 ms by
        300 index probes). SET LOCAL ends with the transaction.
        """
        if self._planned:
            return
        self._planned = True
        await self._conn.execute(
            "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_seqscan = off; "
            "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
        )

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
        if self._store is not None:
            return await self._store._next_ids(self._conn, n)
        return await _nextvals(self._conn, n)

    def notify(self, topic: str) -> None:
        self.topics.add(topic)

    def charge_taken(self, account_id: str, amount: int, request_id: str) -> int | None:
        held = self.taken.pop(request_id, None)
        if held is None:
            return None
        if held[:2] != (account_id, amount):  # not the charge the unit declared: the group runs again, alone
            raise RuntimeError(f"request {request_id} charges other than it declared")
        return held[2]

    def insert_later(self, sql: str, rows: Sequence[Sequence[Any]], pg: str | None = None) -> None:
        held = self._later.get(sql)
        if held is None:
            self._later[sql] = (pg, list(rows))
        else:
            held[1].extend(rows)

    async def flush(self) -> None:
        # One statement per kind of row however many units held some back:
        # a grouped commit of 128 sends writes its messages in one unnest
        # instead of 128 round trips.
        later, self._later = self._later, {}
        for sql, (pg, rows) in later.items():
            if len(rows) == 1 or pg is None:
                await self._conn.executemany(to_pg(sql), rows)
                continue
            # in slices, so a 100,000-recipient send is not encoded all at once
            for i in range(0, len(rows), FLUSH_ROWS):
                await self._conn.execute(to_pg(pg), *(list(column) for column in zip(*rows[i : i + FLUSH_ROWS])))

    async def finish(self) -> None:
        """The end of a unit or a group: what insert_later holds and the
        wake-up, in one statement when every kind of row has its ``unnest``
        form and fits one slice (a send's request, messages, events and
        outbox rows and its pg_notify: one round trip instead of five).
        Statements joined in one WITH see one snapshot; none reads another's
        rows, and nothing references them by foreign key."""
        later = self._later
        if later and all(pg is not None and len(rows) <= FLUSH_ROWS for pg, rows in later.values()):
            self._later = {}
            parts: list[str] = []
            args: list[Any] = []
            for pg, rows in later.values():
                parts.append(pg)  # type: ignore[arg-type]
                args.extend(list(column) for column in zip(*rows))
            if self.topics:
                last = "SELECT pg_notify(?, ?)"
                args += [CHANNEL, ",".join(sorted(self.topics))]
            else:
                last = parts.pop()
            ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(parts))
            await self._conn.execute(to_pg(f"WITH {ctes} {last}" if ctes else last), *args)
            return
        await self.flush()
        if self.topics:
            # delivered by PostgreSQL at commit, to every process listening
            await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, ",".join(sorted(self.topics)))


async def _nextvals(conn: asyncpg.Connection, n: int) -> list[int]:
    rows = await conn.fetch("SELECT nextval('message_ids') FROM generate_series(1, $1)", n)
    return [r[0] for r in rows]



async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset of a released connection: nothing to undo.

    asyncpg's default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN
    *; RESET ALL`` at every release, one round trip per transaction (a tenth
    of a send's statements). Nothing here leaves session state behind: units
    run in transactions (settings are SET LOCAL), LISTEN is on a connection
    of its own, the migrations' advisory locks are released where taken. An
    open transaction is still rolled back by asyncpg before this is called.
    """
    return None


class StoreUnreachable(RuntimeError):
    """PostgreSQL cannot be reached or refuses us: one line naming where and
    what to check, rather than the driver's traceback."""

    def __init__(self, dsn: str, exc: BaseException, fix: str = "") -> None:
        where = _where(dsn)
        reason = str(exc) or type(exc).__name__
        fix = fix or "check UJUMBE_DATABASE_URL (or --database-url) and that PostgreSQL runs there"
        super().__init__(f"cannot open the database at {where}: {reason}; {fix}")

def _where(dsn: str) -> str:
    """Host, port and database of ``dsn`` for a message: never its user info
    or its query, either of which may carry the password (``?password=``)."""
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError:
        return "the configured URL"
    return f"{parts.hostname or 'localhost'}{f':{port}' if port else ''}{parts.path}"


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 20) -> None:
        super().__init__()
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self._listen_conn: asyncpg.Connection | None = None
        # units marked with a ``group`` key wait here, by key, to be committed several at a time
        self._grouped: dict[str, collections.deque[tuple[Unit[Any], asyncio.Future[Any]]]] = {}
        self._flushing: set[str] = set()  # keys with a group being committed
        self._flushers: set[asyncio.Task[None]] = set()
        # Message ids reserved from the sequence ID_BLOCK at a time, as a
        # sequence's own CACHE would: a send then costs no round trip for its
        # ids. Ids stay unique; across processes they are no longer in the
        # order the messages were accepted, and a stopped process leaves a gap.
        self._ids: collections.deque[int] = collections.deque()
        self._limit_warned = -60.0
        self.folded_charges = 0  # charges taken ahead, folded with their group's (tests look)

    async def open(self) -> None:
        # A server at its connection limit may free some in a moment (another
        # process stopping): starting waits for that up to CONNECT_WAIT.
        deadline = asyncio.get_running_loop().time() + CONNECT_WAIT
        while True:
            try:
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=self.min_size, max_size=self.max_size, statement_cache_size=512,
                    reset=_keep_session,
                )
                try:
                    self._listen_conn = await asyncpg.connect(self.dsn)
                except BaseException:
                    await self._pool.close()
                    raise
                break
            except asyncpg.TooManyConnectionsError as exc:
                if asyncio.get_running_loop().time() >= deadline:
                    raise StoreUnreachable(self.dsn, exc, _LIMIT_FIX) from None
                await asyncio.sleep(0.1 + 0.1 * random.random())
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StoreUnreachable(self.dsn, exc) from None
        await self._listen_conn.add_listener(CHANNEL, self._on_notify)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._wake(payload.split(","))

    async def close(self) -> None:
        if self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)
        if self._listen_conn is not None:
            await self._listen_conn.close()
        await self._pool.close()

    async def _next_ids(self, conn: asyncpg.Connection, n: int) -> list[int]:
        if n > ID_BLOCK:
            return await _nextvals(conn, n)
        if len(self._ids) < n:
            self._ids.extend(await _nextvals(conn, ID_BLOCK))
        return [self._ids.popleft() for _ in range(n)]

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
        key = getattr(unit, "group", None)
        if key is not None:
            return await self._run_grouped(unit, key)
        return await self._run_alone(unit)

    async def _run_alone(self, unit: Unit[T]) -> T:
        async with self._connection() as conn:
            tx = PostgresTx(conn, self)
            async with conn.transaction():
                result = await unit(tx)
                await tx.finish()
        return result

    async def read(self, unit: Unit[T]) -> T:
        async with self._connection() as conn:
            return await unit(PostgresTx(conn))

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; losing the server is StoreUnavailable, which
        every entry point can answer in its own words (e.g. Tilil's 1007)."""
        try:
            conn = await self._acquire()
            try:
                yield conn
            finally:
                await self._pool.release(conn)
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable("The database cannot be reached; try again shortly") from exc

    async def _acquire(self) -> asyncpg.Connection:
        """A connection from the pool. A server at its connection limit
        (``max_connections``, or a role's or database's own) refuses the pool
        a new one; the work then waits for one of the pool's own to come free
        (the pool hands out live ones first) instead of failing, up to
        CONNECT_WAIT, as a cluster of many processes meets it under load."""
        delay, deadline = 0.005, 0.0
        while True:
            try:
                return await self._pool.acquire()
            except asyncpg.TooManyConnectionsError as exc:
                now = asyncio.get_running_loop().time()
                if not deadline:
                    deadline = now + CONNECT_WAIT
                    if now >= self._limit_warned + 60:  # once a minute, not once a request
                        self._limit_warned = now
                        log.warning(
                            "PostgreSQL refuses more connections (%s); waiting for a pooled one: %s "
                            "(each opens up to %d)", exc, _LIMIT_FIX, self.max_size + 1,
                        )
                if now >= deadline:
                    raise StoreUnavailable(
                        "The database refuses more connections; try again shortly") from exc
                await asyncio.sleep(delay * (0.5 + random.random()))  # jittered: waiters do not retry in step
                delay = min(delay * 2, 0.1)

    # -- group commit for short units (sends) --
    #
    # Sends from one account all update its balance row, and PostgreSQL holds
    # that row lock until the commit has flushed the WAL: one transaction per
    # send caps an account at one send per WAL flush. Units marked with a
    # ``group`` key (short, touching only their own rows besides counters
    # such as that balance, and safe to run again) are committed up to
    # GROUP_MAX at a time, on up to GROUP_FLUSHERS connections at once. A
    # group takes the units of several keys (sends of many accounts, a few
    # each, still share one transaction) but a key is in one group at a time:
    # a second would only queue on its balance row. The charges the units
    # declare (``unit.charge``, base.Charge) are taken first, folded: one
    # update per balance row for the whole group instead of a round trip per
    # send waiting its turn at the row; a unit whose charge the balance does
    # not cover leaves the group and runs alone after it. If any unit of a
    # group raises, the group is rolled back and each of its units is run
    # again alone, so every caller gets exactly the outcome it would have had
    # alone.

    async def _run_grouped(self, unit: Unit[T], key: str) -> T:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._grouped.setdefault(key, collections.deque()).append((unit, fut))
        # (a flusher that just returned is done before its discard callback runs)
        if key not in self._flushing and sum(1 for t in self._flushers if not t.done()) < GROUP_FLUSHERS:
            task = asyncio.create_task(self._flush_groups(), name="pg-group-commit")
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await fut

    def _take_group(self) -> tuple[list[str], list[tuple[Unit[Any], asyncio.Future[Any]]]]:
        """Waiting units of keys no other group holds, in order, GROUP_MAX at most."""
        keys: list[str] = []
        group: list[tuple[Unit[Any], asyncio.Future[Any]]] = []
        for key in [k for k in self._grouped if k not in self._flushing]:
            waiting = self._grouped[key]
            while waiting and len(group) < GROUP_MAX:
                group.append(waiting.popleft())
            if not waiting:
                del self._grouped[key]
            keys.append(key)
            if len(group) == GROUP_MAX:
                break
        return keys, group

    async def _flush_groups(self) -> None:
        while True:
            keys, group = self._take_group()
            if not group:
                return
            self._flushing.update(keys)
            try:
                await self._commit_group(group)
            except BaseException as exc:  # the pool or the connection failed: every caller hears of it
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                self._flushing.difference_update(keys)

    async def _commit_group(self, group: list[tuple[Unit[Any], asyncio.Future[Any]]]) -> None:
        if len(group) == 1:
            unit, fut = group[0]
            await self._settle(fut, unit)
            return
        members = group
        refused: list[tuple[Unit[Any], asyncio.Future[Any]]] = []
        results: list[Any] = []
        failed = False
        async with self._connection() as conn:
            tx = PostgresTx(conn, self)
            transaction = conn.transaction()
            await transaction.start()
            try:
                declared = [(m, c) for m in group if (c := getattr(m[0], "charge", None)) is not None]
                if len(declared) > 1:
                    after = await accounts_q.fold_charges(tx, [c for _, c in declared])
                    for (member, c), balance in zip(declared, after):
                        if balance is None:
                            refused.append(member)
                        elif c.request_id in tx.taken:
                            raise RuntimeError(f"two units declare the charge of request {c.request_id}")
                        else:
                            tx.taken[c.request_id] = (c.account_id, c.amount, balance)
                    if refused:
                        members = [m for m in group if not any(m is r for r in refused)]
                for unit, _ in members:
                    results.append(await unit(tx))
                if tx.taken:  # a unit did not take the charge it declared (a duplicate reference)
                    raise RuntimeError("a charge taken ahead was not used")
                await tx.finish()  # a failing row fails the group: each unit then runs alone
            except Exception:  # noqa: BLE001  (any error: each unit is run again alone below)
                failed = True
                await transaction.rollback()
            else:
                # a failure here propagates; the pool rolls the connection back on release
                await transaction.commit()
                self.folded_charges += len(declared) - len(refused) if len(declared) > 1 else 0
        if failed:
            # Somebody's unit raised: run each alone so only that one fails.
            await asyncio.gather(*(self._settle(fut, unit) for unit, fut in group))
            return
        for (_, fut), result in zip(members, results):
            if not fut.done():
                fut.set_result(result)
        if refused:  # alone, each meets the balance as the group left it (or as topped up since)
            await asyncio.gather(*(self._settle(fut, unit) for unit, fut in refused))

    async def _settle(self, fut: asyncio.Future[Any], unit: Unit[Any]) -> None:
        try:
            result = await self._run_alone(unit)
        except Exception as exc:  # noqa: BLE001  (the caller's own error, handed to the caller)
            if not fut.done():
                fut.set_exception(exc)
        else:
            if not fut.done():
                fut.set_result(result)
