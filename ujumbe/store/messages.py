"""Queries on requests, messages, their parts and events, and the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ujumbe.store.accounts import as_dict
from ujumbe.store.base import Tx

MESSAGE_COLUMNS = (
    "m.id, m.request_id, m.account_id, m.channel, m.dialect, m.sender, m.recipient, m.network, "
    "m.body, m.encoding, m.parts, m.cost, m.charge, m.state, m.error_code, m.error_reason, "
    "m.connector, m.callback_url, m.meta, m.created_at, m.submitted_at, m.done_at, m.updated_at, "
    "m.expires_at, r.reference, r.meta AS request_meta, a.dlr_url"
)
MESSAGE_FROM = "messages m JOIN requests r ON r.id = m.request_id JOIN accounts a ON a.id = m.account_id"

_NEW_MESSAGE = {  # the columns a new message is inserted with, and their PostgreSQL types
    "id": "bigint", "request_id": "text", "account_id": "text", "channel": "text", "dialect": "text",
    "sender": "text", "recipient": "text", "network": "text", "body": "text", "encoding": "text", "parts": "int",
    "cost": "bigint", "charge": "text", "state": "text", "error_code": "text", "error_reason": "text",
    "callback_url": "text", "meta": "text", "created_at": "bigint", "updated_at": "bigint", "done_at": "bigint",
    "expires_at": "bigint",
}
_NEW_REQUEST = {
    "id": "text", "account_id": "text", "reference": "text", "dialect": "text", "channel": "text", "sender": "text",
    "template_key": "text", "callback_url": "text", "recipients": "int", "accepted": "int", "cost": "bigint",
    "meta": "text", "created_at": "bigint",
}


def unnest(*types: str) -> str:
    return "unnest(" + ", ".join(f"?::{t}[]" for t in types) + ")"


def _insert(table: str, columns: dict[str, str]) -> tuple[str, str]:
    """INSERT of one row, and the same over unnest of one array per column."""
    names = ", ".join(columns)
    return (
        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})",
        f"INSERT INTO {table} ({names}) SELECT * FROM {unnest(*columns.values())}",
    )


INSERT_EVENT = "INSERT INTO message_events (message_id, at, state, detail) VALUES (?, ?, ?, ?)"
INSERT_MESSAGE, _INSERT_MESSAGES = _insert("messages", _NEW_MESSAGE)
INSERT_REQUEST, _INSERT_REQUESTS = _insert("requests", _NEW_REQUEST)
_QUEUE, _QUEUE_MANY = _insert("outbox", {"message_id": "bigint", "due_at": "bigint"})
# events keep their order: a message's 'accepted' comes before its 'queued'
_INSERT_EVENTS = (
    "INSERT INTO message_events (message_id, at, state, detail) SELECT m, a, s, d FROM "
    "unnest(?::bigint[], ?::bigint[], ?::text[], ?::text[]) WITH ORDINALITY AS v(m, a, s, d, n) ORDER BY n"
)

# Column types of the columns the workers write in bulk, for PostgreSQL's unnest.
PG_TYPES = {
    "state": "text", "updated_at": "bigint", "submitted_at": "bigint", "done_at": "bigint", "error_code": "text",
    "error_reason": "text", "charge": "text", "connector": "text", "cost": "bigint",
}


async def many(tx: Tx, sql: str, rows: Sequence[Sequence[Any]], pg: str | None = None) -> None:
    """Run ``sql`` once per row. On PostgreSQL, ``pg`` (the same statement over
    ``unnest`` of one array per column, each ``?`` an array) does it in one
    statement: one plan and one executor run for the batch instead of one per
    row, which is most of what PostgreSQL spends on a worker's writes."""
    if not rows:
        return
    if len(rows) == 1:
        await tx.execute(sql, *rows[0])
    elif pg is not None and tx.dialect == "postgres":
        await tx.execute(pg, *(list(column) for column in zip(*rows)))
    else:
        await tx.executemany(sql, rows)


def chunks(tx: Tx, values: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """SQLite caps bound parameters, so long IN lists go in pieces; PostgreSQL
    takes one array whatever its length (see ``is_in``)."""
    if tx.dialect == "postgres":
        return [values] if values else []
    return [values[i : i + size] for i in range(0, len(values), size)]


def is_in(tx: Tx, column: str, values: Sequence[Any], pg_type: str, *, joined: bool = False) -> tuple[str, list[Any]]:
    """``column IN (...)`` and its arguments. On PostgreSQL one array, so one
    statement text whatever the count (asyncpg prepares it once instead of
    once per distinct list length), after ``Tx.plan_for_keys``:

    * a statement on one table: ``column = ANY(array)``, an index scan over
      the array's keys whatever the statistics say. A join to ``unnest``
      instead leaves the planner the order, and with a table's statistics
      behind its growth (message_parts during a drain, analyzed at 0 rows)
      it put the table outside and the keys inside: 300 receipt ids against
      9,000 parts took 550 ms a batch walking the whole index for each id,
      10 ms as ``= ANY``;
    * ``joined`` (the statement joins other tables on this one's rows): ``IN
      (SELECT unnest(array))``, which the planner drives from the keys.
    """
    if tx.dialect == "postgres":
        if joined:
            return f"{column} IN (SELECT unnest(?::{pg_type}[]))", [list(values)]
        return f"{column} = ANY(?::{pg_type}[])", [list(values)]
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


async def insert_events(tx: Tx, rows: Sequence[tuple[int, int, str, str | None]]) -> None:
    """(message_id, at, state, detail) rows, inserted in this order."""
    await many(tx, INSERT_EVENT, rows, _INSERT_EVENTS)


async def insert_request(tx: Tx, r: dict[str, Any]) -> bool:
    """Insert a request; False when the account already used its reference.
    Without a reference there is nothing to clash with: the row is left to
    ``insert_later``, so a grouped commit writes all its requests at once."""
    row = tuple(r[c] for c in _NEW_REQUEST)
    if r["reference"] is None:
        tx.insert_later(INSERT_REQUEST, [row], _INSERT_REQUESTS)
        return True
    found = await tx.fetchrow(INSERT_REQUEST + " ON CONFLICT (account_id, reference) DO NOTHING RETURNING id", *row)
    return found is not None


def add_messages(tx: Tx, rows: Sequence[Sequence[Any]], events: Sequence[tuple[int, int, str, str | None]],
                 queue: Sequence[tuple[int, int]]) -> None:
    """New messages (columns as ``_NEW_MESSAGE``), their first events and
    their (message_id, due_at) outbox entries, written by ``insert_later``:
    none is read back before the send commits."""
    tx.insert_later(INSERT_MESSAGE, rows, _INSERT_MESSAGES)
    tx.insert_later(INSERT_EVENT, events, _INSERT_EVENTS)
    if queue:
        tx.insert_later(_QUEUE, queue, _QUEUE_MANY)


async def request_by_reference(tx: Tx, account_id: str, reference: str) -> dict[str, Any] | None:
    return as_dict(
        await tx.fetchrow("SELECT * FROM requests WHERE account_id = ? AND reference = ?", account_id, reference)
    )


async def request_by_id(tx: Tx, account_id: str, request_id: str) -> dict[str, Any] | None:
    return as_dict(await tx.fetchrow("SELECT * FROM requests WHERE account_id = ? AND id = ?", account_id, request_id))


async def messages_of_request(tx: Tx, request_id: str) -> list[dict[str, Any]]:
    rows = await tx.fetch(f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE m.request_id = ? ORDER BY m.id", request_id)
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def message(tx: Tx, message_id: int, account_id: str | None = None) -> dict[str, Any] | None:
    if account_id is None:
        row = await tx.fetchrow(f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE m.id = ?", message_id)
    else:
        row = await tx.fetchrow(
            f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE m.id = ? AND m.account_id = ?", message_id, account_id
        )
    return as_dict(row)


async def messages_by_ids(tx: Tx, ids: Sequence[int]) -> list[dict[str, Any]]:
    await tx.plan_for_keys()
    out: list[dict[str, Any]] = []
    for chunk in chunks(tx, ids, 500):
        where, args = is_in(tx, "m.id", chunk, "bigint", joined=True)
        out.extend(dicts(await tx.fetch(f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE {where}", *args)))
    return out


def dicts(rows: list[Any]) -> list[dict[str, Any]]:
    """Rows as dicts, the column names read once rather than per row (the
    workers convert hundreds of 27-column rows per batch)."""
    if not rows:
        return []
    keys = tuple(rows[0].keys())
    return [dict(zip(keys, r)) for r in rows]


async def events(tx: Tx, message_id: int) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        "SELECT at, state, detail FROM message_events WHERE message_id = ? ORDER BY at, rowid"
        if tx.dialect == "sqlite"
        else "SELECT at, state, detail FROM message_events WHERE message_id = ? ORDER BY at, ctid",
        message_id,
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def list_messages(
    tx: Tx, account_id: str, *, limit: int, before: int | None = None, state: str | None = None,
    recipient: str | None = None, request_id: str | None = None, since: int | None = None,
) -> list[dict[str, Any]]:
    where = ["m.account_id = ?", "m.id < ?"]
    args: list[Any] = [account_id, before if before is not None else 2**62]
    for column, value in (("m.state", state), ("m.recipient", recipient), ("m.request_id", request_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if since is not None:
        where.append("m.created_at >= ?")
        args.append(since)
    rows = await tx.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE {' AND '.join(where)} ORDER BY m.id DESC LIMIT ?",
        *args, limit,
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def inbound_page(tx: Tx, account_id: str, *, limit: int, before: int | None = None) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        "SELECT id, sender, recipient, body, network, link_id, channel, received_at FROM inbound "
        "WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        account_id, before if before is not None else 2**62, limit,
    )
    return [as_dict(r) for r in rows]  # type: ignore[misc]


async def update_messages(tx: Tx, updates: dict[int, dict[str, Any]]) -> None:
    """Several messages' updates (message id -> fields), one statement per set
    of columns; each message appears once, so no two of its updates can swap."""
    by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for message_id, fields in updates.items():
        columns = tuple(sorted(fields))
        by_columns.setdefault(columns, []).append((*(fields[c] for c in columns), message_id))
    for columns, rows in by_columns.items():
        sets = ", ".join(f"{c} = ?" for c in columns)
        pg = None
        if all(c in PG_TYPES for c in columns):
            pg = (f"UPDATE messages AS m SET {', '.join(f'{c} = v.{c}' for c in columns)} "
                  f"FROM {unnest(*(PG_TYPES[c] for c in columns), 'bigint')} AS v({', '.join(columns)}, id) "
                  "WHERE m.id = v.id")
        await many(tx, f"UPDATE messages SET {sets} WHERE id = ?", rows, pg)


# --- outbox ---


async def claim(tx: Tx, owner: str, now: int, lease_ms: int, limit: int) -> list[tuple[int, int, int | None]]:
    """Lease up to ``limit`` due messages; (message_id, attempts, waiting_since) rows.
    The committed lease is the durable record that these may be in flight."""
    await tx.plan_for_keys()
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
    rows = await tx.fetch(
        "UPDATE outbox SET due_at = ?, lease_owner = ?, attempts = attempts + 1 WHERE message_id IN "
        f"(SELECT message_id FROM outbox WHERE due_at <= ? ORDER BY due_at LIMIT ?{lock}) "
        "RETURNING message_id, attempts, waiting_since",
        now + lease_ms, owner, now, limit,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def outbox_done(tx: Tx, message_ids: Sequence[int]) -> None:
    await many(tx, "DELETE FROM outbox WHERE message_id = ?", [(i,) for i in message_ids],
               "DELETE FROM outbox WHERE message_id = ANY(?::bigint[])")


async def outbox_retries(tx: Tx, rows: list[tuple[int, int]]) -> None:
    """(due_at, message_id) rows: try these again later, by any worker."""
    await many(tx, "UPDATE outbox SET due_at = ?, lease_owner = NULL, waiting_since = NULL WHERE message_id = ?", rows,
               "UPDATE outbox AS o SET due_at = v.d, lease_owner = NULL, waiting_since = NULL "
               f"FROM {unnest('bigint', 'bigint')} AS v(d, m) WHERE o.message_id = v.m")


async def outbox_waits(tx: Tx, rows: list[tuple[int, int | None, int]]) -> None:
    """(due_at, waiting_since, message_id) rows: sends that found no bind up.
    Not a try: the claim's count is given back."""
    await many(
        tx, "UPDATE outbox SET due_at = ?, waiting_since = ?, lease_owner = NULL, attempts = attempts - 1 "
        "WHERE message_id = ?", rows,
        "UPDATE outbox AS o SET due_at = v.d, waiting_since = v.w, lease_owner = NULL, attempts = o.attempts - 1 "
        f"FROM {unnest('bigint', 'bigint', 'bigint')} AS v(d, w, m) WHERE o.message_id = v.m",
    )


async def outbox_wake_waiting(tx: Tx, now: int) -> None:
    """A bind came up: every message waiting for one is due now."""
    await tx.execute(
        "UPDATE outbox SET due_at = ? WHERE waiting_since IS NOT NULL AND due_at > ? AND lease_owner IS NULL", now, now
    )
    tx.notify("outbox")


async def outbox_extend(tx: Tx, owner: str, until: int, before: int) -> None:
    """Push ``owner``'s leases that run out before ``before`` to ``until``: a
    live worker's send may wait longer than a lease (a call waits for a free
    line), and must not be claimed a second time meanwhile."""
    await tx.execute("UPDATE outbox SET due_at = ? WHERE lease_owner = ? AND due_at < ?", until, owner, before)


async def outbox_release(tx: Tx, owner: str) -> None:
    """Give back every lease ``owner`` holds (a clean shutdown)."""
    await tx.execute("UPDATE outbox SET due_at = 0, lease_owner = NULL WHERE lease_owner = ?", owner)


async def outbox_take_back(tx: Tx, now: int, owner: str | None = None) -> list[int]:
    """Leases of a worker that died (``owner``; None: of every worker), due
    now for another; the ids of their messages."""
    if owner is None:
        rows = await tx.fetch(
            "UPDATE outbox SET due_at = ?, lease_owner = NULL WHERE lease_owner IS NOT NULL RETURNING message_id", now
        )
    else:
        rows = await tx.fetch(
            "UPDATE outbox SET due_at = ?, lease_owner = NULL WHERE lease_owner = ? RETURNING message_id", now, owner
        )
    if rows:
        tx.notify("outbox")
    return [r[0] for r in rows]


# --- dispatch workers' heartbeats ---


async def worker_register(tx: Tx, owner: str, now: int) -> None:
    await tx.execute("INSERT INTO dispatch_workers (owner, started_at, beat_at) VALUES (?, ?, ?)", owner, now, now)


async def worker_beat(tx: Tx, owner: str, beat: int) -> bool:
    """Say ``owner`` is alive; False when another worker already took it for dead."""
    row = await tx.fetchrow("UPDATE dispatch_workers SET beat_at = ? WHERE owner = ? RETURNING owner", beat, owner)
    return row is not None


async def workers(tx: Tx) -> list[tuple[str, int]]:
    """(owner, beat_at) of every registered dispatch worker."""
    return [(r[0], r[1]) for r in await tx.fetch("SELECT owner, beat_at FROM dispatch_workers")]


async def worker_declare_dead(tx: Tx, owner: str, beat: int) -> bool:
    """Remove ``owner`` if its beat is still ``beat`` (it did not come back meanwhile)."""
    row = await tx.fetchrow(
        "DELETE FROM dispatch_workers WHERE owner = ? AND beat_at = ? RETURNING owner", owner, beat
    )
    return row is not None


async def worker_unregister(tx: Tx, owner: str | None = None) -> None:
    """Remove one worker (a clean stop), or (None) all: only the embedded
    store's sole server, which knows every other worker is gone."""
    if owner is None:
        await tx.execute("DELETE FROM dispatch_workers")
    else:
        await tx.execute("DELETE FROM dispatch_workers WHERE owner = ?", owner)


# --- parts and receipts ---


async def insert_parts(tx: Tx, rows: Sequence[Sequence[Any]]) -> None:
    """(message_id, part, operator_id, connector, state, updated_at, sent_at,
    expires_at) rows (without the last two, sent_at is updated_at and expires_at
    unknown); the last one of a part wins (one statement may not touch a row twice)."""
    full = [tuple(r) if len(r) == 8 else (*r, r[5], None) for r in rows]
    last = list({(r[0], r[1]): r for r in full}.values())
    upsert = (" ON CONFLICT (message_id, part) DO UPDATE SET operator_id = excluded.operator_id, "
              "connector = excluded.connector, state = excluded.state, updated_at = excluded.updated_at, "
              "sent_at = excluded.sent_at, expires_at = excluded.expires_at")
    columns = "INSERT INTO message_parts (message_id, part, operator_id, connector, state, updated_at, sent_at, expires_at) "
    await many(
        tx, columns + "VALUES (?, ?, ?, ?, ?, ?, ?, ?)" + upsert, last,
        columns + f"SELECT * FROM {unnest('bigint', 'int', 'text', 'text', 'text', 'bigint', 'bigint', 'bigint')}" + upsert,
    )


# Parts written before migration 0007 have no sent_at/expires_at: read them as
# sent when last updated, valid for the default 48 h after.
_SENT = "COALESCE(sent_at, updated_at)"
_EXPIRES = "COALESCE(expires_at, updated_at + 172800000)"


async def parts_by_operator_ids(
    tx: Tx, connector: str, operator_ids: Sequence[str], valid_after: int = 0,
) -> list[tuple[int, int, str, int, int]]:
    """(message_id, part, operator_id, sent_at, expires_at) for every part on
    ``connector`` with one of these ids whose validity ends after ``valid_after``:
    an SMSC that restarts reuses ids, and the namesakes of older runs whose
    validity is long over are not candidates (nor read)."""
    await tx.plan_for_keys()
    out: list[tuple[int, int, str, int, int]] = []
    for chunk in chunks(tx, operator_ids, 400):
        where, args = is_in(tx, "operator_id", chunk, "text")
        rows = await tx.fetch(
            f"SELECT message_id, part, operator_id, {_SENT}, {_EXPIRES} FROM message_parts "
            f"WHERE {where} AND connector = ? AND {_EXPIRES} >= ?", *args, connector, valid_after,
        )
        out.extend((r[0], r[1], r[2], r[3], r[4]) for r in rows)
    return out


async def part_states_of(tx: Tx, message_ids: Sequence[int]) -> dict[int, dict[int, str]]:
    """Every part's state, by message."""
    await tx.plan_for_keys()
    out: dict[int, dict[int, str]] = {}
    for chunk in chunks(tx, message_ids, 400):
        where, args = is_in(tx, "message_id", chunk, "bigint")
        for r in await tx.fetch(f"SELECT message_id, part, state FROM message_parts WHERE {where}", *args):
            out.setdefault(r[0], {})[r[1]] = r[2]
    return out


async def part_states(tx: Tx, message_id: int) -> list[tuple[int, str]]:
    rows = await tx.fetch("SELECT part, state FROM message_parts WHERE message_id = ? ORDER BY part", message_id)
    return [(r[0], r[1]) for r in rows]


async def set_part_states(tx: Tx, rows: list[tuple[str, int, str | None, str | None, int, int]]) -> None:
    """(state, at, error_code, error_reason, message_id, part) rows, at most one per part."""
    await many(
        tx, "UPDATE message_parts SET state = ?, updated_at = ?, error_code = ?, error_reason = ? "
        "WHERE message_id = ? AND part = ?", rows,
        "UPDATE message_parts AS p SET state = v.s, updated_at = v.a, error_code = v.c, error_reason = v.r "
        f"FROM {unnest('text', 'bigint', 'text', 'text', 'bigint', 'int')} "
        "AS v(s, a, c, r, m, n) WHERE p.message_id = v.m AND p.part = v.n",
    )


async def part_error(tx: Tx, message_id: int, part: int) -> tuple[str | None, str | None]:
    """The (error_code, error_reason) of one part's receipt."""
    row = await tx.fetchrow(
        "SELECT error_code, error_reason FROM message_parts WHERE message_id = ? AND part = ?", message_id, part
    )
    return (row[0], row[1]) if row is not None else (None, None)


async def insert_early_receipts(tx: Tx, rows: Sequence[tuple[str, str, str, int, str, str, int, str | None]]) -> None:
    """(operator_id, connector, state, at, error_code, reason, received_at, call) rows."""
    columns = "INSERT INTO early_receipts (operator_id, connector, state, at, error_code, reason, received_at, call) "
    await many(tx, columns + "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows,
               columns + f"SELECT * FROM {unnest('text', 'text', 'text', 'bigint', 'text', 'text', 'bigint', 'text')}")


async def parked_receipts(tx: Tx, since: int, limit: int) -> list[Any]:
    """Parked receipts received after ``since``, oldest first, locked for this
    transaction on PostgreSQL (another worker skips them): (operator_id,
    connector, state, at, error_code, reason, received_at, call) rows."""
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
    return await tx.fetch(
        "SELECT operator_id, connector, state, at, error_code, reason, received_at, call FROM early_receipts "
        f"WHERE received_at > ? ORDER BY received_at LIMIT ?{lock}",
        since, limit,
    )


async def unpark_receipts(tx: Tx, keys: Sequence[tuple[str, str, int]]) -> None:
    """Drop parked receipts by (operator_id, connector, received_at)."""
    if keys:
        await tx.executemany(
            "DELETE FROM early_receipts WHERE operator_id = ? AND connector = ? AND received_at = ?", keys
        )


async def forget_parked_receipts(tx: Tx, before: int) -> list[Any]:
    """Drop parked receipts received before ``before``; (connector, operator_id,
    state) of each, for the log."""
    return await tx.fetch(
        "DELETE FROM early_receipts WHERE received_at < ? RETURNING connector, operator_id, state", before
    )


async def take_early_receipts(
    tx: Tx, connector: str, operator_ids: Sequence[str], received_since: int = 0,
) -> list[dict[str, Any]]:
    """Take (delete and return) parked receipts with these ids received since
    ``received_since``: one received before its namesake was sent is not its.

    On PostgreSQL a parked receipt another transaction holds is skipped, not
    waited for: that is a worker's sweep (``Sweeper.match_early_receipts``,
    which locks every parked receipt it reads), and a dispatcher recording
    its submits waited for it with the batch's channel slots held (4
    workers: a lock wait in 10 of 61 samples of a drain). The sweep either
    matches the receipt or leaves it parked, and then the next sweep, which
    sees this record, does."""
    await tx.plan_for_keys()
    out: list[dict[str, Any]] = []
    for chunk in chunks(tx, operator_ids, 900):
        where, args = is_in(tx, "operator_id", chunk, "text")
        match = f"connector = ? AND {where} AND received_at >= ?"
        if tx.dialect == "postgres":
            match = f"ctid = ANY(ARRAY(SELECT ctid FROM early_receipts WHERE {match} FOR UPDATE SKIP LOCKED))"
        rows = await tx.fetch(
            f"DELETE FROM early_receipts WHERE {match} "
            "RETURNING operator_id, connector, state, at, error_code, reason, received_at, call",
            connector, *args, received_since,
        )
        out.extend(dicts(rows))
    return out


async def overdue(tx: Tx, now: int, limit: int) -> list[int]:
    rows = await tx.fetch(
        "SELECT id FROM messages WHERE done_at IS NULL AND expires_at < ? LIMIT ?",  # messages_open: not final
        now, limit,
    )
    return [r[0] for r in rows]


async def inbound_search(
    tx: Tx, account_id: str, *, offset: int, limit: int, sender: str | None = None, keyword: str | None = None,
    network: str | None = None, since: int | None = None, until: int | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """A page of the account's inbound messages, oldest first, and how many match."""
    where, args = ["account_id = ?"], [account_id]
    if sender is not None:
        where.append("sender = ?")
        args.append(sender)
    if keyword is not None:
        where.append("upper(body) LIKE ?")
        args.append(keyword.upper().replace("%", "").replace("_", "") + "%")
    if network is not None:
        where.append("lower(network) = ?")
        args.append(network.lower())
    if since is not None:
        where.append("received_at >= ?")
        args.append(since)
    if until is not None:
        where.append("received_at <= ?")
        args.append(until)
    sql = " AND ".join(where)
    total = await tx.fetchval(f"SELECT count(*) FROM inbound WHERE {sql}", *args)
    rows = await tx.fetch(
        f"SELECT id, sender, recipient, body, network, link_id, channel, received_at FROM inbound WHERE {sql} "
        "ORDER BY id LIMIT ? OFFSET ?", *args, limit, offset,
    )
    return int(total), [as_dict(r) for r in rows]  # type: ignore[misc]


async def exchanges(tx: Tx, account_id: str, message_id: int) -> dict[str, Any] | None:
    """A message's events, parts and callbacks: what passed with the carrier and the client."""
    msg = await tx.fetchrow(
        "SELECT id, state, connector, created_at, submitted_at, done_at FROM messages WHERE id = ? AND account_id = ?",
        message_id, account_id,
    )
    if msg is None:
        return None
    events = await tx.fetch("SELECT at, state, detail FROM message_events WHERE message_id = ? ORDER BY at", message_id)
    parts = await tx.fetch(
        "SELECT part, operator_id, connector, state, updated_at FROM message_parts WHERE message_id = ? ORDER BY part",
        message_id,
    )
    callbacks = await tx.fetch(
        "SELECT id, kind, url, status, attempts, last_status, last_error, created_at, delivered_at FROM callbacks "
        "WHERE message_id = ? AND account_id = ? ORDER BY id", message_id, account_id,
    )
    from ujumbe.store.callbacks import attempts_of  # here: that module imports this one

    attempts = await attempts_of(tx, account_id, [c["id"] for c in callbacks])
    sip = await tx.fetchval("SELECT sip_log FROM calls WHERE message_id = ?", message_id)
    return {"msg": msg, "events": events, "parts": parts, "callbacks": callbacks, "attempts": attempts, "sip_log": sip}
