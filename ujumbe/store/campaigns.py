"""Queries on campaigns, their numbers, jobs and job files (see
services/campaigns.py for the rules)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ujumbe.store import accounts as accounts_q
from ujumbe.store.base import Row, Tx, now_ms

CAMPAIGN = (
    "id, account_id, name, description, services, message, sender, audio, voice, length_factor, usable_tags, "
    "status, rate, schedule_at, run_message, run_audio, held, created_at, updated_at"
)
NUMBER = (
    "id, campaign_id, account_id, number, network, tags, status, held, credit_consumed, message_id, error, "
    "duration, playback, sms_message_id, updated_at"
)
JOB = "id, account_id, kind, campaign_id, status, total, done, params, result, error, created_at, updated_at"


def _dict(row: Row | None) -> dict[str, Any] | None:
    return None if row is None else dict(row)


# --- campaigns ---


async def insert_campaign(tx: Tx, c: dict[str, Any]) -> int:
    names = list(c)
    return int(await tx.fetchval(
        f"INSERT INTO campaigns ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) RETURNING id",
        *c.values(),
    ))


async def campaign(tx: Tx, account_id: str, campaign_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    sql = f"SELECT {CAMPAIGN} FROM campaigns WHERE id = ? AND account_id = ? AND deleted_at IS NULL"
    if lock and tx.dialect == "postgres":
        sql += " FOR UPDATE"  # begin, stop and the worker change a campaign one at a time
    return _dict(await tx.fetchrow(sql, campaign_id, account_id))


async def campaign_by_id(tx: Tx, campaign_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    sql = f"SELECT {CAMPAIGN} FROM campaigns WHERE id = ? AND deleted_at IS NULL"
    if lock and tx.dialect == "postgres":
        sql += " FOR UPDATE"
    return _dict(await tx.fetchrow(sql, campaign_id))


async def campaigns_page(tx: Tx, account_id: str, *, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
    total = int(await tx.fetchval(
        "SELECT count(*) FROM campaigns WHERE account_id = ? AND deleted_at IS NULL", account_id
    ))
    rows = await tx.fetch(
        f"SELECT {CAMPAIGN} FROM campaigns WHERE account_id = ? AND deleted_at IS NULL "
        "ORDER BY id DESC LIMIT ? OFFSET ?",
        account_id, limit, offset,
    )
    return total, [dict(r) for r in rows]


async def update_campaign(tx: Tx, campaign_id: int, fields: dict[str, Any]) -> None:
    fields = {**fields, "updated_at": now_ms()}
    await tx.execute(
        f"UPDATE campaigns SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", *fields.values(), campaign_id
    )


async def active_campaigns(tx: Tx) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        f"SELECT {CAMPAIGN}, paced_until_us FROM campaigns "
        "WHERE status IN ('scheduled', 'running') AND deleted_at IS NULL ORDER BY id"
    )
    return [dict(r) for r in rows]


_PACE_BASE = "(CASE WHEN paced_until_us > ? THEN paced_until_us ELSE ? END)"


async def take_pace(tx: Tx, campaign_id: int, now_us: int, cost_us: int, horizon_us: int) -> bool:
    """Advance a running campaign's pace by ``cost_us``, from now if it fell
    behind, unless that would take it past ``horizon_us`` ahead of now (other
    workers took the share meanwhile). One statement; whether it moved."""
    row = await tx.fetchrow(
        f"UPDATE campaigns SET paced_until_us = {_PACE_BASE} + ? "
        f"WHERE id = ? AND status = 'running' AND {_PACE_BASE} + ? <= ? RETURNING id",
        now_us, now_us, cost_us, campaign_id, now_us, now_us, cost_us, now_us + horizon_us,
    )
    return row is not None


async def give_back_pace(tx: Tx, campaign_id: int, cost_us: int) -> None:
    """Fewer were sent than paid for: their time goes back."""
    await tx.execute("UPDATE campaigns SET paced_until_us = paced_until_us - ? WHERE id = ?", cost_us, campaign_id)


# --- numbers ---


async def insert_numbers(tx: Tx, campaign_id: int, account_id: str, rows: Sequence[tuple[str, str | None, str]]) -> int:
    """Add (number, network, tags JSON) rows; a number already in the
    campaign is skipped. How many were added."""
    if not rows:
        return 0
    before = int(await tx.fetchval("SELECT count(*) FROM campaign_numbers WHERE campaign_id = ?", campaign_id))
    now = now_ms()
    await tx.executemany(
        "INSERT INTO campaign_numbers (campaign_id, account_id, number, network, tags, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (campaign_id, number) DO NOTHING",
        [(campaign_id, account_id, n, net, tags, now) for n, net, tags in rows],
    )
    after = int(await tx.fetchval("SELECT count(*) FROM campaign_numbers WHERE campaign_id = ?", campaign_id))
    return after - before


async def existing_numbers(tx: Tx, campaign_id: int) -> set[str]:
    return {r[0] for r in await tx.fetch("SELECT number FROM campaign_numbers WHERE campaign_id = ?", campaign_id)}


async def number(tx: Tx, account_id: str, number_id: int) -> dict[str, Any] | None:
    return _dict(await tx.fetchrow(
        f"SELECT {NUMBER} FROM campaign_numbers WHERE id = ? AND account_id = ?", number_id, account_id
    ))


async def numbers_page(tx: Tx, campaign_id: int, *, after: int, limit: int, status: str | None = None) -> list[dict[str, Any]]:
    sql = f"SELECT {NUMBER} FROM campaign_numbers WHERE campaign_id = ? AND id > ?"
    args: list[Any] = [campaign_id, after]
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    rows = await tx.fetch(sql + " ORDER BY id LIMIT ?", *args, limit)
    return [dict(r) for r in rows]


async def update_number(tx: Tx, number_id: int, fields: dict[str, Any]) -> None:
    fields = {**fields, "updated_at": now_ms()}
    await tx.execute(
        f"UPDATE campaign_numbers SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", *fields.values(), number_id
    )


async def delete_number(tx: Tx, number_id: int) -> None:
    await tx.execute("DELETE FROM campaign_numbers WHERE id = ?", number_id)


async def count_by_status(tx: Tx, campaign_id: int) -> dict[str, tuple[int, int, int]]:
    """status -> (numbers, credits consumed, seconds of calls)."""
    rows = await tx.fetch(
        "SELECT status, count(*), sum(credit_consumed), sum(duration) FROM campaign_numbers WHERE campaign_id = ? "
        "GROUP BY status",
        campaign_id,
    )
    return {r[0]: (int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows}


async def selectable(tx: Tx, campaign_id: int, statuses: Sequence[str], ids: Sequence[int] | None) -> list[Row]:
    """Numbers a run would send to: (id, network, tags)."""
    sql = "SELECT id, network, tags FROM campaign_numbers WHERE campaign_id = ?"
    args: list[Any] = [campaign_id]
    if statuses:
        sql += f" AND status IN ({', '.join('?' for _ in statuses)})"
        args.extend(statuses)
    if ids is not None:
        sql += f" AND id IN ({', '.join('?' for _ in ids)})"
        args.extend(ids)
    return await tx.fetch(sql + " ORDER BY id", *args)


async def schedule_numbers(tx: Tx, rows: Sequence[tuple[int, int]]) -> None:
    """Put (held, id) numbers in the run: scheduled, with what is held for each."""
    now = now_ms()
    await tx.executemany(
        "UPDATE campaign_numbers SET status = 'scheduled', held = ?, error = NULL, lease_until = NULL, "
        "sms_message_id = NULL, updated_at = ? WHERE id = ?",
        [(held, now, nid) for held, nid in rows],
    )


async def claim_numbers(tx: Tx, campaign_id: int, limit: int, now: int, lease_ms: int) -> list[dict[str, Any]]:
    """Take up to ``limit`` scheduled numbers to send, leased: a worker that
    dies leaves them to be taken again when the lease ends."""
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
    rows = await tx.fetch(
        f"SELECT id, number, network, tags, held FROM campaign_numbers WHERE campaign_id = ? AND status = 'scheduled' "
        f"AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?{lock}",
        campaign_id, now, limit,
    )
    if rows:
        ids = [r[0] for r in rows]
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            await tx.execute(
                f"UPDATE campaign_numbers SET lease_until = ? WHERE id IN ({', '.join('?' for _ in chunk)})",
                now + lease_ms, *chunk,
            )
    return [dict(r) for r in rows]


async def mark_sent(tx: Tx, rows: Sequence[tuple[int | None, str, str | None, int]]) -> None:
    """(message_id, status, error, number id) once the send is stored; the hold
    of each is spent (released into the charge), so it is zero."""
    now = now_ms()
    await tx.executemany(
        "UPDATE campaign_numbers SET message_id = ?, status = ?, error = ?, held = 0, lease_until = NULL, "
        "updated_at = ? WHERE id = ?",
        [(mid, status, error, now, nid) for mid, status, error, nid in rows],
    )


# A number still scheduled whose text already went (SMS,PHONE: its call was
# next): it waits, running, for the text's final cost, and then ends terminated.
_STOP_SET = (
    "status = CASE WHEN sms_message_id IS NULL THEN 'terminated' ELSE 'running' END, "
    "error = CASE WHEN sms_message_id IS NULL THEN error ELSE 'stopped' END, held = 0, lease_until = NULL, "
)


async def terminate_scheduled(tx: Tx, campaign_id: int) -> int:
    """End the numbers not sent yet; what was held for them (read and zeroed
    at once, so a send taking the same holds cannot count them twice)."""
    if tx.dialect == "postgres":
        return int(await tx.fetchval(
            "WITH t AS (SELECT id, held FROM campaign_numbers WHERE campaign_id = ? AND status = 'scheduled' "
            f"FOR UPDATE), u AS (UPDATE campaign_numbers n SET {_STOP_SET}"
            "updated_at = ? FROM t WHERE n.id = t.id RETURNING t.held) SELECT coalesce(sum(held), 0) FROM u",
            campaign_id, now_ms(),
        ))
    # SQLite: one writer, so the read and the update are one step
    held = int(await tx.fetchval(
        "SELECT coalesce(sum(held), 0) FROM campaign_numbers WHERE campaign_id = ? AND status = 'scheduled'",
        campaign_id,
    ))
    await tx.execute(
        f"UPDATE campaign_numbers SET {_STOP_SET}updated_at = ? WHERE campaign_id = ? AND status = 'scheduled'",
        now_ms(), campaign_id,
    )
    return held


async def finished_messages(tx: Tx, limit: int) -> list[dict[str, Any]]:
    """Numbers whose messages are final (the call's and, for SMS,PHONE, the
    text's): number id, campaign id, the message's channel, state, cost and
    error, the call's outcome, reason, duration and playback (voice), the
    text's cost."""
    # SMS,PHONE numbers whose call never went (refused by the balance, or the
    # campaign stopped between the text and the call) have no message_id: they
    # wait for their text alone, with their error already set (n.error).
    rows = await tx.fetch(
        "SELECT n.id, n.campaign_id, n.error, m.channel, m.state, m.cost, m.error_reason, c.outcome, c.reason, "
        "c.duration_ms, c.playback_ms, s.cost AS sms_cost FROM campaign_numbers n "
        "LEFT JOIN messages m ON m.id = n.message_id LEFT JOIN calls c ON c.message_id = n.message_id "
        "LEFT JOIN messages s ON s.id = n.sms_message_id WHERE n.status = 'running' "
        "AND (m.state IN ('delivered', 'undelivered', 'failed', 'rejected', 'expired') "
        "OR (n.message_id IS NULL AND n.sms_message_id IS NOT NULL)) "
        "AND (n.sms_message_id IS NULL OR s.state IN ('delivered', 'undelivered', 'failed', 'rejected', 'expired')) "
        "LIMIT ?",
        limit,
    )
    return [dict(r) for r in rows]


async def settle(tx: Tx, rows: Sequence[tuple[str, int, str | None, int | None, str | None, int]]) -> None:
    """(status, cost, error, duration, playback, number id): the number's
    outcome; what its messages finally cost is added to what it consumed."""
    now = now_ms()
    await tx.executemany(
        "UPDATE campaign_numbers SET status = ?, credit_consumed = credit_consumed + ?, error = ?, duration = ?, "
        "playback = ?, updated_at = ? WHERE id = ? AND status = 'running'",
        [(status, cost, error, duration, playback, now, nid) for status, cost, error, duration, playback, nid in rows],
    )


async def texted(tx: Tx, ids: Sequence[int]) -> set[int]:
    """Of these numbers, those whose text went in this run (SMS,PHONE)."""
    out: set[int] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows = await tx.fetch(
            f"SELECT id FROM campaign_numbers WHERE id IN ({', '.join('?' for _ in chunk)}) "
            "AND sms_message_id IS NOT NULL", *chunk)
        out.update(int(r[0]) for r in rows)
    return out


async def mark_sms(tx: Tx, rows: Sequence[tuple[int | None, int]]) -> None:
    """(message id, number id): the text an SMS,PHONE number was sent before its call."""
    await tx.executemany("UPDATE campaign_numbers SET sms_message_id = ? WHERE id = ?", list(rows))


async def stopped_calls(tx: Tx, limit: int = 1000) -> list[int]:
    """Message ids of calls still out for campaigns that were stopped."""
    rows = await tx.fetch(
        "SELECT n.message_id FROM campaign_numbers n JOIN campaigns c ON c.id = n.campaign_id "
        "JOIN messages m ON m.id = n.message_id WHERE n.status = 'running' AND c.status = 'terminated' "
        "AND m.channel = 'voice' LIMIT ?",
        limit,
    )
    return [int(r[0]) for r in rows]


async def running_calls(tx: Tx, campaign_id: int) -> int:
    """Calls of this campaign out and not final yet (for the pace)."""
    return int(await tx.fetchval(
        "SELECT count(*) FROM campaign_numbers n JOIN messages m ON m.id = n.message_id "
        "WHERE n.campaign_id = ? AND n.status = 'running' AND m.channel = 'voice'",
        campaign_id,
    ))


async def open_numbers(tx: Tx, campaign_id: int) -> int:
    return int(await tx.fetchval(
        "SELECT count(*) FROM campaign_numbers WHERE campaign_id = ? AND status IN ('scheduled', 'running')",
        campaign_id,
    ))


async def add_ledger(tx: Tx, account_id: str, kind: str, amount: int, campaign_id: int, note: str) -> int | None:
    """Move ``amount`` (signed) for a campaign; a debit only if the balance
    covers it. The new balance, or None."""
    return await accounts_q.add_ledger(tx, account_id, kind, amount, campaign_id=campaign_id, note=note, covered=True)


# --- jobs ---


async def insert_job(tx: Tx, account_id: str, kind: str, campaign_id: int | None, params: dict[str, Any],
                     status: str = "queued") -> int:
    """A job for the worker (queued), or one already done (a voice test's file)."""
    now = now_ms()
    return int(await tx.fetchval(
        "INSERT INTO jobs (account_id, kind, campaign_id, status, params, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        account_id, kind, campaign_id, status, json.dumps(params), now, now,
    ))


async def job(tx: Tx, job_id: int, account_id: str | None = None) -> dict[str, Any] | None:
    sql, args = f"SELECT {JOB} FROM jobs WHERE id = ?", [job_id]
    if account_id is not None:
        sql += " AND account_id = ?"
        args.append(account_id)
    return _dict(await tx.fetchrow(sql, *args))


async def claim_job(tx: Tx, now: int, lease_ms: int) -> dict[str, Any] | None:
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
    row = await tx.fetchrow(
        f"SELECT {JOB} FROM jobs WHERE status IN ('queued', 'running') AND (lease_until IS NULL OR lease_until < ?) "
        f"ORDER BY id LIMIT 1{lock}",
        now,
    )
    if row is None:
        return None
    await tx.execute("UPDATE jobs SET status = 'running', lease_until = ?, updated_at = ? WHERE id = ?",
                     now + lease_ms, now, row["id"])
    return dict(row)


async def update_job(tx: Tx, job_id: int, fields: dict[str, Any]) -> None:
    fields = {**fields, "updated_at": now_ms()}
    await tx.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", *fields.values(), job_id)


async def purge_jobs(tx: Tx, kind: str, before: int, limit: int = 100) -> int:
    """Forget up to ``limit`` finished jobs of ``kind`` created before
    ``before``, with their files; how many."""
    ids = [r[0] for r in await tx.fetch(
        "SELECT id FROM jobs WHERE kind = ? AND status = 'done' AND created_at < ? ORDER BY id LIMIT ?",
        kind, before, limit)]
    for jid in ids:
        await tx.execute("DELETE FROM job_files WHERE job_id = ?", jid)
        await tx.execute("DELETE FROM jobs WHERE id = ?", jid)
    return len(ids)


async def purge_campaign_jobs(tx: Tx, campaign_id: int, *, reports_before: int | None = None) -> int:
    """Forget a campaign's jobs with their files, in one go so that no file
    outlives its record: all of them (the campaign is deleted), or only its
    finished reports older than job ``reports_before`` (a newer one replaced
    them). How many."""
    sql, args = "SELECT id FROM jobs WHERE campaign_id = ?", [campaign_id]
    if reports_before is not None:
        sql += " AND kind = 'report' AND status IN ('done', 'failed') AND id < ?"
        args.append(reports_before)
    ids = [r[0] for r in await tx.fetch(sql, *args)]
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ", ".join("?" for _ in chunk)
        await tx.execute(f"DELETE FROM job_files WHERE job_id IN ({marks})", *chunk)
        await tx.execute(f"DELETE FROM jobs WHERE id IN ({marks})", *chunk)
    return len(ids)


async def job_exists(tx: Tx, job_id: int) -> bool:
    lock = " FOR UPDATE" if tx.dialect == "postgres" else ""
    return await tx.fetchval("SELECT 1 FROM jobs WHERE id = ?" + lock, job_id) is not None


async def put_file(tx: Tx, job_id: int, name: str, content_type: str, data: bytes) -> None:
    await tx.execute("DELETE FROM job_files WHERE job_id = ? AND name = ?", job_id, name)
    await tx.execute("INSERT INTO job_files (job_id, name, content_type, data) VALUES (?, ?, ?, ?)",
                     job_id, name, content_type, data)


async def get_file(tx: Tx, job_id: int, name: str) -> tuple[str, bytes] | None:
    row = await tx.fetchrow("SELECT content_type, data FROM job_files WHERE job_id = ? AND name = ?", job_id, name)
    return None if row is None else (row[0], bytes(row[1]))


async def import_running(tx: Tx, campaign_id: int) -> bool:
    return bool(await tx.fetchval(
        "SELECT 1 FROM jobs WHERE campaign_id = ? AND kind = 'import' AND status IN ('queued', 'running') LIMIT 1",
        campaign_id,
    ))


async def last_change(tx: Tx, campaign_id: int) -> int:
    """When the campaign or any of its numbers last changed (epoch ms)."""
    numbers_at = await tx.fetchval("SELECT max(updated_at) FROM campaign_numbers WHERE campaign_id = ?", campaign_id)
    campaign_at = await tx.fetchval("SELECT updated_at FROM campaigns WHERE id = ?", campaign_id)
    return int(max(numbers_at or 0, campaign_at or 0))


async def latest_report(tx: Tx, campaign_id: int) -> dict[str, Any] | None:
    return _dict(await tx.fetchrow(
        f"SELECT {JOB} FROM jobs WHERE campaign_id = ? AND kind = 'report' ORDER BY id DESC LIMIT 1", campaign_id
    ))


async def account_time_zone(tx: Tx, account_id: str) -> str | None:
    return await tx.fetchval("SELECT time_zone FROM accounts WHERE id = ?", account_id)


async def set_time_zone(tx: Tx, account_id: str, zone: str | None) -> None:
    await tx.execute("UPDATE accounts SET time_zone = ? WHERE id = ?", zone, account_id)
