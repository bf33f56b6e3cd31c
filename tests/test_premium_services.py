"""Premium services: the keyword Tilil's unsubscribe notice names, and the
partner's api_token kept encrypted at rest (also rows from before migration
0011) while every push still carries it. Both databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Receiver, auth, client_of, make_account, running
from ujumbe.runtime import Platform
from ujumbe.store import now_ms

ADMIN = "admin-token-for-premium-tests"
TOKEN = "tok-3f9a1c77e2b54d0e-partner"


@pytest.fixture
async def pplatform(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    async with running(tmp_path, database_url, admin_token=ADMIN, callback_delay_scale=0.001) as p:
        yield p


@pytest.fixture
async def papi(pplatform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(pplatform) as client:
        yield client


async def jokes_service(api: httpx.AsyncClient, platform: Platform, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    account = await make_account(platform)
    await platform.senders.assign_number(account["account_id"], "22948", dialect="tilil")  # the operator's grant
    r = await api.post("/v1/premium-services", headers=auth(account), json={
        "shortcode": "22948", "type": "subscription", "keywords": ["JOKES"], "service_id": 48, **extra})
    assert r.status_code == 201, r.text
    r = await api.put("/v1/account/callbacks", headers=auth(account),
                      json={"subscription_url": receiver.url + "/subs", "inbound_url": receiver.url + "/mo"})
    assert r.status_code == 200, r.text
    return account


async def mo(api: httpx.AsyncClient, account: dict[str, Any], text: str, sender: str = "254708400000") -> None:
    r = await api.post("/v1/simulator/inbound", headers=auth(account), json={"sender": sender, "to": "22948", "text": text})
    assert r.status_code == 202, r.text


async def test_unsubscribe_notice_names_the_keyword_the_subscriber_joined_with(
    pplatform: Platform, papi: httpx.AsyncClient, receiver: Receiver
) -> None:
    account = await jokes_service(papi, pplatform, receiver)
    pushes: list[tuple[str, str]] = []

    async def expect(update_type: str, keyword: str) -> None:
        pushes.append((update_type, keyword))
        calls = await receiver.wait_for(len(pushes), path="/subs")
        assert [(c.json()["update_type"], c.json()["keyword"]) for c in calls] == pushes

    await mo(papi, account, "jokes")
    await expect("activation", "JOKES")
    await mo(papi, account, "STOP JOKES")
    await expect("deactivation", "JOKES")
    await mo(papi, account, "JOKES")
    await expect("activation", "JOKES")
    await mo(papi, account, "stop")
    await expect("deactivation", "JOKES")

    # the network's own notices (as a connector reports them), injected for the service
    notice = {"mobile": "0708400000", "service_id": 48}
    r = await papi.post("/v1/simulator/subscription", headers=auth(account), json=notice | {"update_type": "activation"})
    assert r.status_code == 202, r.text
    await expect("activation", "JOKES")
    r = await papi.post("/admin/v1/simulator/subscription", headers={"authorization": f"Bearer {ADMIN}"},
                        json=notice | {"update_type": "deactivation"})
    assert r.status_code == 202, r.text
    await expect("deactivation", "JOKES")
    (sub,) = await pplatform.premium.subscribers(account["account_id"], 48, active_only=False)
    assert (sub.mobile, sub.active, sub.keyword, sub.source) == ("254708400000", False, "JOKES", "network")

    # joined through the API (subscribermanage), with no keyword: none is named, not an old one
    r = await papi.post("/sms/v3/subscribermanage", json={"api_key": account["api_key"], "service_id": "48",
                                                            "mobile": "254708400000", "option": "activation"})
    assert r.json()["status_code"] == "1", r.text
    await mo(papi, account, "STOP")
    await expect("deactivation", "")


async def _database_text(platform: Platform) -> str:
    """Every row of every table, as text: what someone holding the database reads."""
    async def dump(tx: Any) -> str:
        if platform.store.dialect == "sqlite":
            tables = [r[0] for r in await tx.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")]
        else:
            tables = [r[0] for r in await tx.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert "premium_services" in tables
        lines = []
        for t in tables:
            lines += [repr(tuple(row)) for row in await tx.fetch(f'SELECT * FROM "{t}"')]
        return "\n".join(lines)

    return await platform.store.read(dump)


def _files_text(platform: Platform) -> bytes:
    """The embedded database's files (with its WAL), byte for byte."""
    if platform.store.dialect != "sqlite":
        return b""
    return b"".join(p.read_bytes() for p in platform.settings.data_dir.rglob("*") if p.is_file())


async def test_api_token_is_encrypted_at_rest_and_every_push_carries_it(
    pplatform: Platform, papi: httpx.AsyncClient, receiver: Receiver
) -> None:
    account = await jokes_service(papi, pplatform, receiver, api_token=TOKEN)
    assert (await papi.get("/v1/premium-services/48", headers=auth(account))).json()["api_token_set"] is True
    await mo(papi, account, "JOKES")
    (sub,) = await receiver.wait_for(1, path="/subs")
    await mo(papi, account, "tell me one")  # a subscriber's message: forwarded as inbound
    (inbound,) = await receiver.wait_for(1, path="/mo")
    assert (sub.json()["api_token"], inbound.json()["api_token"]) == (TOKEN, TOKEN)

    stored = await _database_text(pplatform)
    assert TOKEN not in stored and TOKEN.encode() not in _files_text(pplatform)
    # the callbacks the account lists hold no token either
    listed = (await papi.get("/v1/callbacks", headers=auth(account))).json()["data"]
    assert {c["kind"] for c in listed} == {"subscription", "inbound"} and TOKEN not in json.dumps(listed)

    # a new token: sealed too, and the next push carries it
    new = TOKEN + "-rotated"
    r = await papi.patch("/v1/premium-services/48", headers=auth(account), json={"api_token": new})
    assert r.status_code == 200 and r.json()["api_token_set"] is True
    await mo(papi, account, "STOP")
    calls = await receiver.wait_for(2, path="/subs")
    assert calls[1].json()["api_token"] == new
    assert new not in await _database_text(pplatform)
    # cleared: pushes carry none
    r = await papi.patch("/v1/premium-services/48", headers=auth(account), json={"api_token": ""})
    assert r.json()["api_token_set"] is False
    await mo(papi, account, "JOKES")
    calls = await receiver.wait_for(3, path="/subs")
    assert calls[2].json()["api_token"] == ""


async def test_plaintext_tokens_from_before_0011_are_encrypted_at_start(
    tmp_path: Path, database_url: str | None, receiver: Receiver
) -> None:
    secret = "premium-token-test-secret"
    async with running(tmp_path, database_url, secret_key=secret, callback_delay_scale=0.001) as p:
        account = await make_account(p)
        await p.accounts.set_callbacks(account["account_id"], {"subscription_url": receiver.url + "/subs"})
        # rows as a server before migration 0011 wrote them: the token in clear
        now = now_ms()
        await p.store.run(lambda tx: tx.executemany(
            "INSERT INTO premium_services (id, account_id, shortcode, name, kind, keywords, api_token, created_at) "
            "VALUES (?, ?, ?, ?, 'subscription', ?, ?, ?)",
            [(60 + n, account["account_id"], "2296" + str(n), f"old {n}", json.dumps([f"K{n}"]), f"{TOKEN}-{n}", now)
             for n in range(5)],
        ))
        await p.store.run(lambda tx: tx.execute(
            "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES ('22960', ?, 'shortcode', "
            "'tilil', ?)", account["account_id"], now,
        ))
        # and a push such a server queued: it carried the token in its stored payload
        old_push = json.dumps({"api_token": f"{TOKEN}-0", "message": "hi", "shortcode": "22960", "service_id": "60"},
                              separators=(",", ":"))
        await p.store.run(lambda tx: tx.execute(
            "INSERT INTO callbacks (account_id, kind, dialect, url, payload, status, attempts, due_at, created_at) "
            "VALUES (?, 'inbound', 'tilil', 'http://127.0.0.1:9/mo', ?, 'delivered', 1, ?, ?)",
            account["account_id"], old_push, now, now,
        ))
        assert f"{TOKEN}-3" in await _database_text(p)

    async with running(tmp_path, database_url, secret_key=secret, callback_delay_scale=0.001) as p:
        stored = await _database_text(p)
        assert TOKEN not in stored
        rows = await p.store.read(lambda tx: tx.fetch(
            "SELECT api_token, api_token_enc FROM premium_services ORDER BY id"))
        assert len(rows) == 5 and all(r[0] is None and r[1] for r in rows)
        (kept,) = await p.store.read(lambda tx: tx.fetch("SELECT payload FROM callbacks WHERE status = 'delivered'"))
        assert json.loads(kept[0]) == {"api_token": "", "message": "hi", "shortcode": "22960", "service_id": "60"}
        # the service still authenticates with its token
        async with client_of(p) as api:
            r = await api.post("/v1/simulator/inbound", headers=auth(account),
                               json={"sender": "254708400000", "to": "22960", "text": "K0"})
            assert r.status_code == 202, r.text
        (push,) = await receiver.wait_for(1, path="/subs")
        assert (push.json()["service_id"], push.json()["api_token"]) == ("60", f"{TOKEN}-0")
