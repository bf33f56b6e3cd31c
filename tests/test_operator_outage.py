"""An operator outage longer than the retry budget fails nothing.

While no bind of a message's route is up the message waits, without spending
tries, until its validity period ends; when a bind comes back the waiting
messages go at once. The retry schedule is compressed by configuration
(``retry_base_ms``, ``retry_cap_ms``, ``max_attempts``) so that the outage here,
a few seconds, is many times the whole old budget of tries. Runs on SQLite and
PostgreSQL, against the SMSC simulator on a real socket.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import auth, client_of, eventually, make_account, running
from ujumbe.channels.smpp.sim import SmscSimulator
from ujumbe.runtime import Platform
from ujumbe.store import now_ms

ADMIN = "outage-admin-token-0123456789abcdef"
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}
# Three tries 20 ms, 40 ms, 80 ms apart: the old rules spent them all within
# about 0.15 s of the operator going away, and failed the message.
RETRIES = {"retry_base_ms": 20, "retry_cap_ms": 80, "max_attempts": 3}
OUTAGE_S = 3.0  # twenty times that budget


@pytest.fixture
async def platform(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    async with running(tmp_path, database_url, simulator=False, admin_token=ADMIN, smpp_rebind_max_s=0.2,
                       **RETRIES) as p:
        yield p


async def _states(platform: Platform, ids: list[int]) -> dict[str, int]:
    marks = ",".join("?" * len(ids))
    rows = await platform.store.read(
        lambda tx: tx.fetch(f"SELECT state, count(*) FROM messages WHERE id IN ({marks}) GROUP BY state", *ids)
    )
    return {r[0]: r[1] for r in rows}


async def _binds_up(platform: Platform, name: str) -> int:
    status = platform.router.status(name)
    return int(status["binds_up"]) if status else 0


async def _send(api: httpx.AsyncClient, account: dict[str, Any], to: list[str], **kw: Any) -> list[int]:
    r = await api.post("/v1/messages", json={"to": to, "text": "outage", "sender": "Ujumbe", **kw}, headers=auth(account))
    assert r.status_code == 202, r.text
    return [m["id"] for m in r.json()["messages"]]


async def test_messages_wait_out_an_operator_outage_and_go_as_soon_as_the_bind_is_back(
    platform: Platform, tmp_path: Path
) -> None:
    smsc = SmscSimulator("127.0.0.1", 0, system_id="ujumbe", password="s3cret", latency_ms=5, receipt_delay_ms=20)
    await smsc.start()
    port = smsc.port
    try:
        async with client_of(platform) as api:
            r = await api.post("/admin/v1/connectors", headers=ADMIN_AUTH, json={
                "name": "op", "host": "127.0.0.1", "port": port, "system_id": "ujumbe", "password": "s3cret"})
            assert r.status_code == 201, r.text
            r = await api.post("/admin/v1/routes", json={"kind": "default", "connector": "op"}, headers=ADMIN_AUTH)
            assert r.status_code == 201, r.text
            await eventually(lambda: _binds_up(platform, "op"))
            account = await make_account(platform, credits="100")
            first = await _send(api, account, ["0712300009"])

            async def first_delivered() -> bool:
                return await _states(platform, first) == {"delivered": 1}

            await eventually(first_delivered, timeout=20)

            # The operator goes away.
            await smsc.stop()
            await eventually(lambda: _no_bind(platform))
            down_at = time.monotonic()
            waiting = await _send(api, account, [f"07124{i:04d}9" for i in range(20)])
            short = await _send(api, account, ["0712599999"], validity=2)

            async def short_expired() -> bool:
                return (await _states(platform, short)).get("expired") == 1

            await eventually(short_expired, timeout=20)
            left = OUTAGE_S - (time.monotonic() - down_at)
            if left > 0:
                await eventually(lambda: _elapsed(down_at, OUTAGE_S), timeout=left + 5)
            assert await _states(platform, waiting) == {"queued": 20}  # nothing failed, nothing sent
            assert not await _events(platform, waiting, "retry")  # not one try spent on the outage
            assert len(await _events(platform, waiting, "waiting")) == 20  # said once each, not per look

            # It comes back on the same address: the waiting messages go at once.
            # (With ids of its own: an SMSC that restarts its ids is another matter, issue 10.)
            smsc = SmscSimulator("127.0.0.1", port, system_id="ujumbe", password="s3cret", latency_ms=5,
                                 receipt_delay_ms=20, seed=1_000_000)
            await smsc.start()
            back_at = time.monotonic()

            async def all_delivered() -> bool:
                return (await _states(platform, waiting)).get("delivered") == 20

            try:
                await eventually(all_delivered, timeout=30, interval=0.05)
            except AssertionError:
                outbox = await platform.store.read(lambda tx: tx.fetch(
                    "SELECT message_id, due_at, waiting_since, attempts, lease_owner FROM outbox"))
                raise AssertionError(f"not all delivered: {await _states(platform, waiting)}; now {now_ms()}, "
                                     f"outbox {[tuple(r) for r in outbox]}, binds up {await _binds_up(platform, 'op')}")
            recovery = time.monotonic() - back_at
            # the bind comes back within ~0.2 s (smpp_rebind_max_s); then no
            # backoff is left to sit out: the messages go as soon as it is up
            assert recovery < 5, f"delivered {recovery:.1f} s after the operator came back"
            assert len(smsc.submitted) == 20  # the expired one never went

            assert not await _events(platform, waiting, "retry")
            refunds = await platform.store.read(lambda tx: tx.fetch(
                "SELECT message_id FROM ledger WHERE kind = 'refund' AND account_id = ?", account["account_id"]))
            assert [r[0] for r in refunds] == short  # only the one that expired unsent is refunded
            detail = (await api.get(f"/v1/messages/{short[0]}", headers=auth(account))).json()
            assert detail["state"] == "expired"
            assert detail["events"][-1]["detail"] == "validity period ended before sending"
    finally:
        await smsc.stop()


async def _events(platform: Platform, ids: list[int], state: str) -> list[Any]:
    marks = ",".join("?" * len(ids))
    return await platform.store.read(lambda tx: tx.fetch(
        f"SELECT message_id, detail FROM message_events WHERE state = ? AND message_id IN ({marks})", state, *ids))


async def _no_bind(platform: Platform) -> bool:
    return await _binds_up(platform, "op") == 0


async def _elapsed(since: float, seconds: float) -> bool:
    return time.monotonic() - since >= seconds
