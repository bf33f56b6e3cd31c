"""Retention: old final messages are purged in batches; their totals stay."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import auth, eventually, make_account
from ujumbe.runtime import Platform

FINAL = {"delivered", "undelivered", "failed", "rejected", "expired"}
from ujumbe.store import retention as retention_q
from ujumbe.workers.retention import DAY_MS, Retention


async def count(platform: Platform, table: str) -> int:
    return await platform.store.read(lambda tx: tx.fetchval(f"SELECT count(*) FROM {table}"))


async def test_purging_keeps_the_store_bounded_and_the_totals_whole(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform, credits="1000")
    retention = Retention(platform.store, days=90, batch=7)  # small batches: many of them per pass
    purged_total, cost_total, peak = 0, 0, 0
    for round_ in range(3):
        r = await api.post("/v1/messages", headers=auth(account),
                           json={"to": [f"07084{round_}{i:02d}99" for i in range(20)], "text": "hello"})
        assert r.status_code == 202, r.text
        ids = [m["id"] for m in r.json()["messages"]]

        async def all_final() -> bool:
            rows = await platform.store.read(lambda tx: tx.fetch(
                f"SELECT state FROM messages WHERE id IN ({','.join('?' * len(ids))})", *ids))
            return all(row["state"] in FINAL for row in rows)

        await eventually(all_final, timeout=30)
        # one message of the round is still on its way: it must stay however old
        await platform.store.run(lambda tx: tx.execute("UPDATE messages SET state = 'submitted' WHERE id = ?", ids[0]))
        cost_total += await platform.store.read(lambda tx: tx.fetchval(
            f"SELECT sum(cost) FROM messages WHERE id IN ({','.join('?' * (len(ids) - 1))})", *ids[1:]))
        peak = max(peak, await count(platform, "messages"))
        # age everything by 100 days, as if it had been sent then
        await platform.store.run(lambda tx: tx.execute(
            "UPDATE messages SET created_at = created_at - ?", 100 * DAY_MS))
        await platform.store.run(lambda tx: tx.execute(
            "UPDATE callbacks SET created_at = created_at - ?", 100 * DAY_MS))
        purged = await retention.purge()
        assert purged["messages"] == 19
        purged_total += purged["messages"]
        # only the unfinished messages are left, whatever was sent before
        assert await count(platform, "messages") == round_ + 1
        left = await platform.store.read(lambda tx: tx.fetch("SELECT id FROM messages"))
        in_flight = {row["id"] for row in left}
        assert ids[0] in in_flight
        for table in ("message_events", "message_parts"):
            orphans = await platform.store.read(lambda tx, table=table: tx.fetchval(
                f"SELECT count(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = t.message_id)"))
            assert orphans == 0, table
    assert peak <= 20 + 2  # bounded: one round's messages, plus the unfinished ones
    totals = await platform.store.read(lambda tx: retention_q.daily_totals(tx, account["account_id"]))
    assert sum(t["messages"] for t in totals) == purged_total == 57
    assert sum(t["cost"] for t in totals) == cost_total
    assert {t["state"] for t in totals} <= FINAL and {t["channel"] for t in totals} == {"sms"}
    # a message newer than the retention is kept
    r = await api.post("/v1/messages", headers=auth(account), json={"to": "0708499999", "text": "new"})
    before = await count(platform, "messages")
    assert (await retention.purge())["messages"] == 0
    assert await count(platform, "messages") == before


async def test_old_callback_attempts_go_but_pending_ones_stay(platform: Platform) -> None:
    account = await make_account(platform)
    now = 10 * DAY_MS

    async def add(tx, status: str, created: int) -> None:  # type: ignore[no-untyped-def]
        await tx.execute(
            "INSERT INTO callbacks (account_id, message_id, kind, dialect, url, payload, status, attempts, due_at, "
            "created_at) VALUES (?, NULL, 'dlr', 'native', 'http://127.0.0.1:9/x', '{}', ?, 1, ?, ?)",
            account["account_id"], status, created + 10**13, created)

    for status in ("delivered", "failed", "pending"):
        await platform.store.run(lambda tx, status=status: add(tx, status, now))
    await platform.store.run(lambda tx: add(tx, "delivered", now + 5 * DAY_MS))
    purged = await Retention(platform.store, days=1, batch=2).purge(cutoff_ms=now + DAY_MS)
    assert purged["callbacks"] == 2
    rows = await platform.store.read(lambda tx: tx.fetch("SELECT status, created_at FROM callbacks ORDER BY id"))
    assert [(r["status"], r["created_at"]) for r in rows] == [("pending", now), ("delivered", now + 5 * DAY_MS)]


async def test_two_workers_purging_at_once_count_each_message_once(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform, credits="1000")
    r = await api.post("/v1/messages", headers=auth(account),
                       json={"to": [f"070860{i:02d}99" for i in range(30)], "text": "hello"})
    assert r.status_code == 202, r.text

    async def all_final() -> bool:
        rows = await platform.store.read(lambda tx: tx.fetch("SELECT state FROM messages"))
        return len(rows) == 30 and all(row["state"] in FINAL for row in rows)

    await eventually(all_final, timeout=30)
    await platform.store.run(lambda tx: tx.execute("UPDATE messages SET created_at = created_at - ?", 100 * DAY_MS))
    # a cluster: two workers with the retention, on the same store, at the same moment
    a, b = Retention(platform.store, days=90, batch=10), Retention(platform.store, days=90, batch=10)
    results = await asyncio.gather(a.purge(), b.purge())
    assert sum(p["messages"] for p in results) == 30
    totals = await platform.store.read(lambda tx: retention_q.daily_totals(tx, account["account_id"]))
    assert sum(t["messages"] for t in totals) == 30
    assert await count(platform, "messages") == 0
