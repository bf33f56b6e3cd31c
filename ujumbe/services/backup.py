"""Backup and restore of the embedded (SQLite) database.

``backup`` uses SQLite's online backup API from its own connection, in a
thread: in WAL mode a reader sees one snapshot, so the copy is consistent
(every transaction committed before it began, none half) while the server
goes on writing; writers are never blocked. The copy is made 0600 beside its
destination and renamed into place, so a half-written file never carries the
name. ``restore`` copies a backup back over the database, and only when no
server holds the data directory (the lock of ``Platform.lock_data_dir``).

PostgreSQL is backed up with its own tools (pg_dump / pg_restore); see
docs/operations.md. Either way the server secret (the data dir's secret.key,
or UJUMBE_SECRET_KEY) must be kept with the backup: the encrypted passwords,
tokens and one-time codes in it cannot be read without it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from pathlib import Path

from ujumbe.core.errors import Invalid


def _copy(source: sqlite3.Connection, target: sqlite3.Connection) -> None:
    # pages=-1: the whole database in one step, from one read snapshot. In
    # steps, every commit by another connection between two steps would start
    # the copy over, and under steady load it might never end.
    source.backup(target, pages=-1)


def backup_file(database: str | Path, dest: str | Path) -> int:
    """Copy ``database`` to ``dest`` consistently; return its size in bytes."""
    database, dest = Path(database), Path(dest)
    if not database.exists():
        raise Invalid(f"there is no database at {database}; check --data-dir or UJUMBE_DATA_DIR", code="usage")
    if dest.is_dir():
        raise Invalid(f"{dest} is a directory; give the backup's file name", code="usage")
    if not dest.parent.is_dir():
        raise Invalid(f"there is no directory {dest.parent} to write the backup in; create it first "
                      f"(mkdir -p {dest.parent}) or give another path", code="usage")
    tmp = dest.with_name(dest.name + ".partial")
    try:
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))  # owner only from the start
    except OSError as exc:
        raise Invalid(f"cannot write the backup in {dest.parent}: {exc.strerror or exc}; give a path this user "
                      "may write", code="usage") from None
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        target = sqlite3.connect(tmp)
        try:
            source.execute("PRAGMA busy_timeout=10000")
            _copy(source, target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            target.close()
            source.close()
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest.stat().st_size


async def backup(database: str | Path, dest: str | Path) -> int:
    """``backup_file`` on a thread, so a server's event loop goes on serving."""
    return await asyncio.to_thread(backup_file, database, dest)


def _check_backup(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise Invalid(f"{path} is not an Ujumbe backup ({exc})", code="usage") from None
    if ok != "ok":
        raise Invalid(f"{path} is damaged: {ok}", code="usage")


def restore_file(source: str | Path, database: str | Path) -> None:
    """Replace ``database`` with the backup ``source``; refuses while a
    server (any role) uses the data directory."""
    source, database = Path(source), Path(database)
    if not source.is_file():
        raise Invalid(f"there is no backup at {source}", code="usage")
    _check_backup(source)
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock_path = database.with_suffix(".lock")  # the one Platform.lock_data_dir takes
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Invalid(
                f"an Ujumbe server is running on {database}; stop it (every process of every role on this "
                "data dir), then run the restore again", code="busy",
            ) from None
        os.close(os.open(database, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(database)
        try:
            dst.execute("PRAGMA journal_mode=WAL")  # as the server keeps it
            _copy(src, dst)
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            dst.close()
            src.close()
    finally:
        os.close(lock)  # releases the lock
