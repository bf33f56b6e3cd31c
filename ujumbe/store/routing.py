"""Queries on operator connectors and routes (see services/routing.py for the rules)."""

from __future__ import annotations

import json
from typing import Any

from ujumbe.store.accounts import as_dict
from ujumbe.store.base import Tx

CONNECTOR_COLUMNS = (
    "name", "kind", "host", "port", "system_id", "password_enc", "system_type", "bind_mode", "binds",
    "window_size", "tps", "tls", "data_coding", "long_messages", "enabled", "created_at", "updated_at", "options",
)
_SELECT_CONNECTORS = f"SELECT {', '.join(CONNECTOR_COLUMNS)} FROM connectors"
ROUTE_COLUMNS = ("id", "account_id", "kind", "value", "connector", "priority", "created_at")
_SELECT_ROUTES = f"SELECT {', '.join(ROUTE_COLUMNS)} FROM routes"


def _connector(row: Any) -> dict[str, Any]:
    d = as_dict(row)
    assert d is not None
    d["enabled"] = bool(d["enabled"])
    d["tls"] = bool(d["tls"])
    d["options"] = json.loads(d["options"]) if d.get("options") else {}
    return d


async def list_connectors(tx: Tx) -> list[dict[str, Any]]:
    return [_connector(r) for r in await tx.fetch(_SELECT_CONNECTORS + " ORDER BY name")]


async def get_connector(tx: Tx, name: str) -> dict[str, Any] | None:
    row = await tx.fetchrow(_SELECT_CONNECTORS + " WHERE name = ?", name)
    return None if row is None else _connector(row)


async def insert_connector(tx: Tx, c: dict[str, Any]) -> None:
    cols = [k for k in CONNECTOR_COLUMNS if k in c]
    await tx.execute(
        f"INSERT INTO connectors ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        *(_db_value(c[k]) for k in cols),
    )


async def update_connector(tx: Tx, name: str, fields: dict[str, Any]) -> None:
    cols = [k for k in CONNECTOR_COLUMNS if k in fields and k not in ("name", "created_at")]
    if not cols:
        return
    await tx.execute(
        f"UPDATE connectors SET {', '.join(f'{k} = ?' for k in cols)} WHERE name = ?",
        *(_db_value(fields[k]) for k in cols), name,
    )


async def delete_connector(tx: Tx, name: str) -> bool:
    row = await tx.fetchrow("DELETE FROM connectors WHERE name = ? RETURNING name", name)
    return row is not None


def _db_value(v: Any) -> Any:
    if isinstance(v, dict):
        return json.dumps(v) if v else None
    return int(v) if isinstance(v, bool) else v


async def list_routes(tx: Tx, account_id: str | None = None, *, everyone: bool = True) -> list[dict[str, Any]]:
    """Routes in the order they are tried: per-account first, then global;
    ``account_id`` with ``everyone=False`` gives one account's own routes only."""
    order = " ORDER BY CASE WHEN account_id IS NULL THEN 1 ELSE 0 END, priority, id"
    if account_id is None:
        rows = await tx.fetch(_SELECT_ROUTES + order)
    elif everyone:
        rows = await tx.fetch(_SELECT_ROUTES + " WHERE account_id = ? OR account_id IS NULL" + order, account_id)
    else:
        rows = await tx.fetch(_SELECT_ROUTES + " WHERE account_id = ?" + order, account_id)
    return [d for r in rows if (d := as_dict(r)) is not None]


async def insert_route(tx: Tx, r: dict[str, Any]) -> int:
    return int(
        await tx.fetchval(
            "INSERT INTO routes (account_id, kind, value, connector, priority, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            r["account_id"], r["kind"], r["value"], r["connector"], r["priority"], r["created_at"],
        )
    )


async def get_route(tx: Tx, route_id: int) -> dict[str, Any] | None:
    return as_dict(await tx.fetchrow(_SELECT_ROUTES + " WHERE id = ?", route_id))


async def update_route(tx: Tx, route_id: int, r: dict[str, Any]) -> None:
    await tx.execute("UPDATE routes SET kind = ?, value = ?, connector = ?, priority = ? WHERE id = ?",
                     r["kind"], r["value"], r["connector"], r["priority"], route_id)


async def delete_route(tx: Tx, route_id: int) -> None:
    await tx.execute("DELETE FROM routes WHERE id = ?", route_id)


async def routes_using(tx: Tx, connector: str) -> list[int]:
    return [r[0] for r in await tx.fetch("SELECT id FROM routes WHERE connector = ? ORDER BY id", connector)]


async def bump_version(tx: Tx) -> None:
    """Every change calls this, in its transaction: workers compare the number."""
    await tx.execute("UPDATE routing_version SET version = version + 1 WHERE id = 1")
    tx.notify("routing")


async def version(tx: Tx) -> int:
    return int(await tx.fetchval("SELECT version FROM routing_version WHERE id = 1") or 0)
