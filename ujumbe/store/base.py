"""The store port: one async interface over SQLite and PostgreSQL.

Queries are written once, with ``?`` placeholders, against ``Tx``. Work is a
*unit*: an ``async def unit(tx)`` that ``Store.run`` executes inside a
transaction and returns from only once the transaction is durable. How units
are committed is the backend's business: SQLite folds many units into one
commit (group commit), PostgreSQL runs each on a pooled connection.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Row = Any  # sqlite3.Row or asyncpg.Record: both index by column name and position


class Tx(Protocol):
    dialect: str  # "sqlite" | "postgres"

    async def execute(self, sql: str, *args: Any) -> None: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def next_ids(self, table: str, n: int) -> list[int]:
        """Reserve ``n`` ids for rows of ``table`` (messages) inserted in bulk."""
        ...

    def notify(self, topic: str) -> None:
        """Wake listeners on ``topic`` once this transaction commits."""
        ...

    def insert_later(self, sql: str, rows: Sequence[Sequence[Any]], pg: str | None = None) -> None:
        """Insert ``rows`` with ``sql`` at the latest when this transaction
        commits; ``pg`` is the same insert over ``unnest`` of one array per
        column, for PostgreSQL. Rows inserted with the same ``sql`` keep their
        order, also across the units of one grouped commit (SQLite: of one
        batch), and are written in one statement. Only for rows this
        transaction, and the other units of its commit, do not read back
        before ``flush()``; a flush writes (SQLite: this unit's) held rows
        then and there."""
        ...

    async def flush(self) -> None:
        """Write what ``insert_later`` holds back, before reading it."""
        ...

    async def plan_for_keys(self) -> None:
        """The rest of this transaction touches batches of rows by key: plan
        for index lookups (PostgreSQL; SQLite needs nothing). Once per
        transaction however often it is asked."""
        ...

    def charge_taken(self, account_id: str, amount: int, request_id: str) -> int | None:
        """The balance after this charge when the store already took it,
        folded with its group's (``Charge``); None: the unit takes it now."""
        ...


Unit = Callable[[Tx], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class Charge:
    """The charge a grouped unit will take (``accounts.charge`` with these
    arguments), declared as ``unit.charge`` beside ``unit.group``.

    A store may take the charges of a whole group ahead, in one update of
    each balance row, each charge taken if what the charges before it left
    covers it, exactly as one charge after another would be; the unit's own
    ``charge`` then answers with that balance (``Tx.charge_taken``). A unit
    whose charge was not covered is not run in the group but alone, after it,
    where it meets the balance as it then is. A unit may still decline to
    charge (a duplicate reference): the store then runs the group's units
    again, each alone. Only for a charge that nothing in the unit must
    precede (a campaign's ``prepay`` gives back a hold first: not declared).
    """

    account_id: str
    amount: int
    request_id: str


def now_ms() -> int:
    return int(time.time() * 1000)


class Store(ABC):
    dialect: str

    def __init__(self) -> None:
        self._listeners: dict[str, list[asyncio.Event]] = {}

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def run(self, unit: Unit[T]) -> T:
        """Run ``unit`` in a transaction; return after it is durably committed."""

    @abstractmethod
    async def read(self, unit: Unit[T]) -> T:
        """Run a read-only ``unit``; it may see data up to the last commit."""

    # -- wake-ups: in-process events, plus the backend's own (PG LISTEN) --

    def listener(self, topic: str) -> asyncio.Event:
        event = asyncio.Event()
        self._listeners.setdefault(topic, []).append(event)
        return event

    def _wake(self, topics: Iterable[str]) -> None:
        for topic in topics:
            for event in self._listeners.get(topic, ()):
                event.set()

    # -- migrations, shared by both backends --

    async def migrate(self) -> list[int]:
        """Apply every migration not yet applied; return the versions applied."""
        await self._ensure_migrations_table()
        applied = {
            r[0] for r in await self.read(lambda tx: tx.fetch("SELECT version FROM schema_migrations"))
        }
        done = []
        for version, name, sql in load_migrations():
            if version in applied:
                continue
            script = render_ddl(sql, self.dialect)

            async def apply(tx: Tx, script: str = script, version: int = version, name: str = name) -> None:
                for statement in split_sql(script):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    version,
                    name,
                    now_ms(),
                )

            await self.run(apply)
            done.append(version)
        return done

    @abstractmethod
    async def _ensure_migrations_table(self) -> None: ...


_MIGRATION = re.compile(r"^(\d{4})_(\w+)\.sql$")


def load_migrations() -> list[tuple[int, str, str]]:
    folder = importlib.resources.files("ujumbe.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


_DDL = {
    "sqlite": {"{{autoid}}": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgres": {"{{autoid}}": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"},
}


def render_ddl(sql: str, dialect: str) -> str:
    """Fill in the backend's types; a line starting ``--pg:`` or ``--sqlite:``
    is a statement for that backend only."""
    for token, value in _DDL[dialect].items():
        sql = sql.replace(token, value)
    prefix = "--pg:" if dialect == "postgres" else "--sqlite:"
    return "\n".join(
        line.strip()[len(prefix) :] if line.strip().startswith(prefix) else line
        for line in sql.splitlines()
    )


def split_sql(script: str) -> list[str]:
    """Statements of a migration. Comments go first, so a ';' in a comment is
    harmless; migrations hold no string literal with '--' or ';' in it."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
)
