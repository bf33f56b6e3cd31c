"""Embedded store: SQLite in WAL mode with one writer and group commit.

SQLite allows one writer at a time, so instead of fighting over the lock we
own it: a single writer task takes every pending unit, runs each inside its
own SAVEPOINT (one failing unit does not undo the others) and commits them all
with one fsync. Statements run inline on the event loop (they touch only the
page cache); the commit runs on a thread. Reads use a second connection, which
WAL lets proceed while a commit is in flight.

The fsync is ours, not SQLite's, so that it overlaps the next batch: SQLite
runs with ``synchronous=NORMAL`` (COMMIT writes the WAL but does not sync it)
and a second thread then fdatasyncs the WAL file; a unit's caller is answered,
and listeners woken, only once a sync that began after its COMMIT has ended.
Meanwhile the writer already runs and commits the next batch, and one sync
covers every commit written before it began. A checkpoint still syncs the WAL
before copying it into the database and the database after, so what was
acknowledged is on disk either way. (Other connections may read a commit a
few milliseconds before it is durable; nothing is acknowledged before.)

Several processes may share the file (API and worker processes, ``serve
--processes N``). Their writers take turns through a kernel lock on a file
beside the database, held from before ``BEGIN IMMEDIATE`` until after
``COMMIT``: the next writer wakes the moment it is released, where SQLite's
own busy handler would poll with sleeps of growing length. The fsync comes
after the lock is released, so writers do not wait on each other's disk.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import logging
import os
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ujumbe.store.base import MIGRATIONS_TABLE, Row, Store, T, Unit

log = logging.getLogger("ujumbe.store")

MAX_BATCH = 1000
WRITER_CACHE_KIB = 16384

Outcome = tuple["asyncio.Future[Any]", Any, "BaseException | None"]  # a unit's future, result, error


class SqliteTx:
    dialect = "sqlite"
    __slots__ = ("_conn", "_store", "topics", "_later")

    def __init__(self, conn: sqlite3.Connection, store: SqliteStore | None) -> None:
        self._conn = conn
        self._store = store
        self.topics: set[str] = set()
        # insert_later's rows by statement, until the unit ends (or flushes)
        self._later: dict[str, list[Sequence[Any]]] = {}

    async def execute(self, sql: str, *args: Any) -> None:
        self._conn.execute(sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._conn.execute(sql, args).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return self._conn.execute(sql, args).fetchone()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = self._conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    async def next_ids(self, table: str, n: int) -> list[int]:
        assert self._store is not None, "ids are allocated only in write units"
        return self._store._allocate(table, n, self._conn)

    def notify(self, topic: str) -> None:
        self.topics.add(topic)

    def insert_later(self, sql: str, rows: Sequence[Sequence[Any]], pg: str | None = None) -> None:
        # Held until the unit ends; the writer then inserts every unit's rows
        # of one statement together, just before the batch commits. One
        # executemany for a batch's sends instead of one per send, and the
        # rows written outside each unit's SAVEPOINT, whose sub-journal would
        # otherwise copy every page they touch: measured ~180 -> ~100 us of
        # SQLite per send (request, message, two events, outbox).
        if self._store is None:  # a read unit cannot insert; let SQLite say so
            self._conn.executemany(sql, rows)
            return
        held = self._later.get(sql)
        if held is None:
            self._later[sql] = list(rows)
        else:
            held.extend(rows)

    async def flush(self) -> None:
        # This unit's rows only, inside its savepoint: those of earlier units
        # wait for the commit (written here, a failure of this unit would
        # roll them back with its own).
        later, self._later = self._later, {}
        for sql, rows in later.items():
            self._conn.executemany(sql, rows)

    async def plan_for_keys(self) -> None:
        return None  # SQLite's planner takes the index for a key lookup

    def charge_taken(self, account_id: str, amount: int, request_id: str) -> int | None:
        return None  # each unit charges in its own savepoint (see SqliteStore)


def _owner_only(path: str) -> None:
    """Make the database and its -wal and -shm files readable by their owner
    only. SQLite would create the database 0644 and gives the -wal and -shm
    files the database's own mode, so creating it 0600 first covers all three;
    files an older version left readable are narrowed."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (path, path + "-wal", path + "-shm"):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except OSError:  # absent, or not ours to change
            pass


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        super().__init__()
        self.path = str(path)
        # FULL: every commit is on disk before its callers are answered (by our
        # own sync of the WAL, see above); anything else is passed to SQLite.
        self.synchronous = synchronous
        self._sync_wal = synchronous.upper() == "FULL" and self.path != ":memory:"
        self._unsynced: list[tuple[list[Outcome], set[str]]] = []  # committed, waiting for the WAL sync
        self._sync_wakeup = asyncio.Event()
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-sync")
        self._sync_task: asyncio.Task[None] | None = None
        self._writer_done = False
        self._wal_inode = -1  # the WAL file whose directory entry was last synced
        self._pending: collections.deque[tuple[Unit[Any], asyncio.Future[Any]]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-commit")
        self._next: dict[str, int] = {}
        self._closing = False
        self._last_batch = 0  # units in the last commit, and how long its fsync took
        self._last_commit_s = 0.0
        self._write_lock: int | None = None  # fd of the lock file writers of every process take turns on

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'NORMAL' if self._sync_wal else self.synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA cache_size=-65536")
        return conn

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _owner_only(self.path)
            self._write_lock = os.open(self.path + "-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._w = self._connect()
        # The writer's cache holds what the open transaction touched: a
        # 100,000-recipient send filled 64 MiB of it (its rows and index
        # pages, ~55 MB of the process's peak). Its hot pages (the ends of the
        # indexes being appended to) fit in far less; the OS's page cache
        # keeps the rest one read away. Reads keep the large cache.
        self._w.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._r = self._connect()
        self._r.execute("PRAGMA query_only=1")
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")
        self._sync_task = asyncio.create_task(self._sync_loop(), name="sqlite-sync")

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._writer_task:
            await self._writer_task
        self._writer_done = True
        self._sync_wakeup.set()
        if self._sync_task:
            await self._sync_task
        self._committer.shutdown(wait=True)
        self._syncer.shutdown(wait=True)
        self._w.close()
        self._r.close()
        if self._write_lock is not None:
            os.close(self._write_lock)
            self._write_lock = None

    async def _ensure_migrations_table(self) -> None:
        self._w.execute(MIGRATIONS_TABLE)

    def _allocate(self, table: str, n: int, conn: sqlite3.Connection) -> list[int]:
        # Read once per batch under the write lock, so an API and a worker
        # process sharing the file never hand out the same id.
        start = self._next.get(table)
        if start is None:
            start = (conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]) + 1
        self._next[table] = start + n
        return list(range(start, start + n))

    async def run(self, unit: Unit[T]) -> T:
        if self._closing:
            raise RuntimeError("store is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((unit, fut))
        self._wakeup.set()
        return await fut

    async def read(self, unit: Unit[T]) -> T:
        # The read connection is used inline: a unit never really suspends, so
        # units do not interleave on it.
        return await unit(SqliteTx(self._r, None))

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Group commit's one trade: when the disk is slow, wait a moment for more.

        The clients answered by the last commit send their next request a
        round trip later; starting the next batch at once would commit only
        the few that were already waiting, and the batches settle into halves.
        So when fewer units wait than the last commit carried, give them at
        most a quarter of the last fsync time (2 ms at most). An idle store
        (nothing pending) never waits, so a lone request is not delayed.
        """
        if not 0 < len(self._pending) < self._last_batch or self._last_commit_s < 0.001:
            return
        expired = False

        def expire() -> None:
            # A flag, not a clock check: uvloop may run a timer a little before
            # loop.time() reaches its deadline, and waiting again then would
            # hang until the next request comes.
            nonlocal expired
            expired = True
            self._wakeup.set()

        timer = loop.call_later(min(0.002, self._last_commit_s / 4), expire)
        try:
            while len(self._pending) < self._last_batch and not self._closing and not expired:
                self._wakeup.clear()
                await self._wakeup.wait()
        finally:
            timer.cancel()

    def _begin(self, conn: sqlite3.Connection) -> None:
        """On the commit thread: wait for our turn, then take SQLite's write lock."""
        if self._write_lock is not None:
            fcntl.flock(self._write_lock, fcntl.LOCK_EX)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._end_turn()
            raise

    def _commit(self, conn: sqlite3.Connection, later: dict[str, list[Sequence[Any]]]) -> None:
        """On the commit thread: the batch's held rows (``insert_later``), then
        commit and give the next writer its turn at once, not when this event
        loop next gets round to it."""
        for sql, rows in later.items():
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
        self._end_turn()

    def _end_turn(self) -> None:
        if self._write_lock is not None:
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        conn = self._w
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather(loop)
            # On a thread: another process may hold the write lock for a moment.
            # The batch is taken once we have it, with whatever came meanwhile.
            try:
                await loop.run_in_executor(self._committer, self._begin, conn)
            except Exception as exc:
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), MAX_BATCH))]
                log.exception("could not start a write transaction; %d units fail", len(batch))
                _fail((fut for _, fut in batch), exc)
                continue
            batch = [self._pending.popleft() for _ in range(min(len(self._pending), MAX_BATCH))]
            outcomes: list[Outcome] = []
            topics: set[str] = set()
            later: dict[str, list[Sequence[Any]]] = {}  # the units' insert_later rows, in the units' order
            self._next = {}
            for unit, fut in batch:
                tx = SqliteTx(conn, self)
                conn.execute("SAVEPOINT unit")
                try:
                    result = await unit(tx)
                except Exception as exc:  # this unit only: the batch goes on
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    outcomes.append((fut, None, exc))
                else:
                    conn.execute("RELEASE unit")
                    outcomes.append((fut, result, None))
                    topics |= tx.topics
                    for sql, rows in tx._later.items():
                        held = later.get(sql)
                        if held is None:
                            later[sql] = rows
                        else:
                            held.extend(rows)
            try:
                started = loop.time()
                await loop.run_in_executor(self._committer, self._commit, conn, later)
                self._last_batch = len(batch)
                if not self._sync_wal:
                    self._last_commit_s = loop.time() - started
            except Exception as exc:
                # (a held row that cannot be inserted fails the batch, as on PostgreSQL)
                log.exception("commit failed; %d units rolled back", len(batch))
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._end_turn()
                _fail((fut for fut, _, _ in outcomes), exc)
                continue
            if self._sync_wal:
                self._unsynced.append((outcomes, topics))
                self._sync_wakeup.set()
            else:
                self._settle(outcomes, topics)

    def _settle(self, outcomes: list[Outcome], topics: set[str]) -> None:
        for fut, result, error in outcomes:
            if fut.done():  # the caller went away; the work is committed regardless
                continue
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)
        self._wake(topics)

    def _fsync_wal(self) -> None:
        # Opened each time: the WAL file is only ever removed by the last
        # connection's closing checkpoint, which leaves everything synced in
        # the database file.
        try:
            fd = os.open(self.path + "-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            os.fdatasync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if inode != self._wal_inode:
            # A new WAL file: its name in the directory must be on disk too,
            # as SQLite syncs the directory at the first sync of a new WAL.
            folder = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
            self._wal_inode = inode

    async def _sync_loop(self) -> None:
        """Answers committed batches once the WAL holding them is on disk; one
        sync covers every batch committed before it starts."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._unsynced:
                if self._writer_done:
                    return
                self._sync_wakeup.clear()
                await self._sync_wakeup.wait()
                continue
            batches, self._unsynced = self._unsynced, []
            started = loop.time()
            try:
                await loop.run_in_executor(self._syncer, self._fsync_wal)
            except Exception as exc:
                log.exception("WAL sync failed; %d batches not acknowledged", len(batches))
                _fail((fut for outcomes, _ in batches for fut, _, _ in outcomes), exc)
                continue
            self._last_commit_s = loop.time() - started
            for outcomes, topics in batches:
                self._settle(outcomes, topics)


def _fail(futures: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(exc)
