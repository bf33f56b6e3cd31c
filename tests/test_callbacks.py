"""Callbacks: retried until acknowledged, kept when given up, replayable."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Receiver, auth, eventually, make_account, running, serving
from ujumbe.http.app import create_app
from ujumbe.runtime import Platform


@pytest.fixture
async def quick_platform(tmp_path, database_url):  # type: ignore[no-untyped-def]
    # the full schedule (about a day of tries) shrunk to under a second
    async with running(tmp_path, database_url, callback_delay_scale=0.00001) as p:
        yield p


async def test_failing_receiver_gets_retries_until_it_answers(quick_platform: Platform, receiver: Receiver) -> None:
    receiver.fail_first = 3
    account = await make_account(quick_platform)
    async with serving(create_app(quick_platform, manage_platform=False)) as base, httpx.AsyncClient(base_url=base) as api:
        await api.put("/v1/account/callbacks", headers=auth(account), json={"dlr_url": receiver.url + "/hook"})
        r = await api.post("/v1/messages", headers=auth(account), json={"to": "0708400000", "text": "hi"})
        assert r.status_code == 202
        calls = await receiver.wait_for(2, timeout=20)
        assert {c.json()["data"]["state"] for c in calls} == {"submitted", "delivered"}

        async def recorded() -> list:
            data = (await api.get("/v1/callbacks", headers=auth(account))).json()["data"]
            return data if {c["status"] for c in data} == {"delivered"} else []

        log = await eventually(recorded)
        assert sum(c["attempts"] for c in log) == 2 + 3  # three failed tries before the receiver answered


async def test_given_up_callbacks_are_kept_and_can_be_replayed(quick_platform: Platform, receiver: Receiver) -> None:
    receiver.status = 503  # never acknowledges
    account = await make_account(quick_platform)
    async with serving(create_app(quick_platform, manage_platform=False)) as base, httpx.AsyncClient(base_url=base) as api:
        r = await api.post(
            "/v1/messages", headers=auth(account),
            json={"to": "0708400000", "text": "hi", "callback_url": receiver.url + "/cb"},
        )
        assert r.status_code == 202

        async def failed() -> list:
            data = (await api.get("/v1/callbacks", headers=auth(account), params={"status": "failed"})).json()["data"]
            return data if len(data) == 2 else []

        gone = await eventually(failed, timeout=30, interval=0.2)
        assert all(c["attempts"] == 31 and c["last_status"] == 503 for c in gone)
        receiver.status = 200
        before = len(receiver.requests)
        for c in gone:
            assert (await api.post(f"/v1/callbacks/{c['id']}/retry", headers=auth(account))).status_code == 202
        await receiver.wait_for(before + 2)

        async def delivered() -> bool:
            data = (await api.get("/v1/callbacks", headers=auth(account), params={"status": "delivered"})).json()["data"]
            return len(data) == 2

        await eventually(delivered)


async def test_inbound_message_reaches_the_number_owner(platform: Platform, api: httpx.AsyncClient, receiver: Receiver) -> None:
    from ujumbe.store import now_ms

    account = await make_account(platform)
    await platform.accounts.set_callbacks(account["account_id"], {"inbound_url": receiver.url + "/mo"})
    await platform.store.run(
        lambda tx: tx.execute(
            "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, 'shortcode', 'native', ?)",
            "22915", account["account_id"], now_ms(),
        )
    )
    r = await api.post("/v1/simulator/inbound", headers=auth(account), json={"sender": "254708400000", "to": "22915", "text": "STOP"})
    assert r.status_code == 202
    (call,) = await receiver.wait_for(1, path="/mo")
    data = call.json()["data"]
    assert (data["from"], data["to"], data["text"]) == ("254708400000", "22915", "STOP")
    (kept,) = (await api.get("/v1/inbound", headers=auth(account))).json()["data"]
    assert (kept["sender"], kept["to"], kept["text"]) == ("254708400000", "22915", "STOP")
    other = await make_account(platform)
    assert (await api.get("/v1/inbound", headers=auth(other))).json()["data"] == []


async def test_a_failing_inbound_hook_neither_loses_the_message_nor_blocks_others(
    platform: Platform, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    from ujumbe.services import reports
    from ujumbe.store import now_ms

    account = await make_account(platform)
    await platform.accounts.set_callbacks(account["account_id"], {"inbound_url": receiver.url + "/mo"})
    await platform.store.run(
        lambda tx: tx.execute(
            "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, 'shortcode', 'native', ?)",
            "40404", account["account_id"], now_ms(),
        )
    )

    async def broken(tx, record):  # type: ignore[no-untyped-def]
        if record["body"] == "boom":
            raise RuntimeError("a bug in a hook")
        return False

    reports.INBOUND_HOOKS.append(broken)
    try:
        sent = await api.post("/v1/messages", headers=auth(account), json={"to": "0708400000", "text": "hi"})
        for text in ("boom", "fine"):
            r = await api.post("/v1/simulator/inbound", headers=auth(account), json={"sender": "254708400000", "to": "40404", "text": text})
            assert r.status_code == 202
        calls = await receiver.wait_for(2, path="/mo")
        assert sorted(c.json()["data"]["text"] for c in calls) == ["boom", "fine"]

        async def delivered() -> bool:
            mid = sent.json()["messages"][0]["id"]
            return (await api.get(f"/v1/messages/{mid}", headers=auth(account))).json()["state"] == "delivered"

        await eventually(delivered)
    finally:
        reports.INBOUND_HOOKS.remove(broken)
