"""Persistence: one interface (``Store``), two backends, shared queries."""

from __future__ import annotations

from pathlib import Path

from ujumbe.store.base import Charge, Store, Tx, now_ms


def create_store(database_url: str | None, data_dir: str | Path) -> Store:
    """PostgreSQL when a ``postgresql://`` URL is given, else SQLite in ``data_dir``."""
    if database_url and database_url.startswith(("postgres://", "postgresql://")):
        from ujumbe.store.postgres import PostgresStore

        return PostgresStore(database_url)
    if database_url and database_url.startswith("sqlite:///"):
        from ujumbe.store.sqlite import SqliteStore

        return SqliteStore(database_url.removeprefix("sqlite:///"))
    if database_url:
        raise ValueError(f"unsupported database URL {database_url.split(':', 1)[0]}://…")
    from ujumbe.store.sqlite import SqliteStore

    return SqliteStore(Path(data_dir) / "ujumbe.db")


__all__ = ["Charge", "Store", "Tx", "create_store", "now_ms"]
