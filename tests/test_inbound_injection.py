"""Injecting inbound messages and network subscription notices: the tenant
endpoint reaches only the caller's own numbers and short codes and is off
once real operator connectors exist (unless enabled); the operator's admin
endpoint reaches any owned destination; unknown destinations answer 404;
senders are normalized; any process role can inject. Both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Receiver, auth, client_of, eventually, free_port, make_account, make_settings, running
from ujumbe.channels.base import Inbound
from ujumbe.runtime import Platform
from ujumbe.store import now_ms

ADMIN = "admin-token-for-injection-tests"


@pytest.fixture
async def iplatform(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    async with running(tmp_path, database_url, admin_token=ADMIN, callback_delay_scale=0.001) as p:
        yield p


@pytest.fixture
async def iapi(iplatform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(iplatform) as client:
        yield client


ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}


async def own_number(platform: Platform, account: dict[str, Any], number: str, dialect: str = "native") -> None:
    """What `ujumbe numbers add ACCOUNT NUMBER` does."""
    await platform.store.run(lambda tx: tx.execute(
        "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, 'long', ?, ?)",
        number, account["account_id"], dialect, now_ms(),
    ))


async def inbox(api: httpx.AsyncClient, account: dict[str, Any]) -> list[dict[str, Any]]:
    r = await api.get("/v1/inbound", headers=auth(account))
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_a_tenant_cannot_inject_to_another_accounts_short_code_or_number(
    iplatform: Platform, iapi: httpx.AsyncClient
) -> None:
    a, b = await make_account(iplatform), await make_account(iplatform)
    await iplatform.premium.create(a["account_id"], shortcode="22915", kind="subscription", keywords=["GAME"],
                                   service_id=44)
    await own_number(iplatform, a, "254722000100")

    for to, text in (("22915", "GAME"), ("254722000100", "hello A")):
        r = await iapi.post("/v1/simulator/inbound", headers=auth(b), json={"sender": "0708400000", "to": to, "text": text})
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_destination"), r.text
    r = await iapi.post("/v1/simulator/subscription", headers=auth(b),
                        json={"mobile": "0708400000", "service_id": 44, "update_type": "activation"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_service"), r.text
    # nothing reached A: no subscriber, nothing in its inbox; nor B's
    assert await iplatform.premium.subscribers(a["account_id"], 44) == []
    assert await inbox(iapi, a) == [] and await inbox(iapi, b) == []

    # A itself may
    r = await iapi.post("/v1/simulator/inbound", headers=auth(a), json={"sender": "0708400000", "to": "22915", "text": "GAME"})
    assert r.status_code == 202, r.text
    (sub,) = await iplatform.premium.subscribers(a["account_id"], 44)
    assert (sub.mobile, sub.keyword, sub.source) == ("254708400000", "GAME", "keyword")


async def test_the_operator_injects_to_any_account_and_needs_the_admin_token(
    iplatform: Platform, iapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    a = await make_account(iplatform)
    await own_number(iplatform, a, "254722000100")
    await iplatform.premium.create(a["account_id"], shortcode="22915", kind="subscription", keywords=["GAME"],
                                   service_id=44)
    await iplatform.accounts.set_callbacks(a["account_id"], {"subscription_url": receiver.url + "/subs"})
    body = {"sender": "0708400000", "to": "254722000100", "text": "from the operator"}

    r = await iapi.post("/admin/v1/simulator/inbound", json=body)
    assert r.status_code == 401
    r = await iapi.post("/admin/v1/simulator/inbound", headers=auth(a), json=body)  # a tenant key is no admin token
    assert r.status_code == 401
    r = await iapi.post("/admin/v1/simulator/inbound", headers=ADMIN_AUTH, json=body)
    assert r.status_code == 202, r.text
    got = r.json()
    assert (got["account_id"], got["sender"], got["to"], got["network"]) == (
        a["account_id"], "254708400000", "254722000100", "Safaricom")
    (kept,) = await inbox(iapi, a)
    assert (kept["id"], kept["sender"], kept["network"], kept["text"]) == (
        got["id"], "254708400000", "Safaricom", "from the operator")

    # a network's own subscription notice, by short code
    r = await iapi.post("/admin/v1/simulator/subscription", headers=ADMIN_AUTH,
                        json={"mobile": "+254 733 000 100", "shortcode": "22915", "update_type": "activation"})
    assert r.status_code == 202, r.text
    (push,) = await receiver.wait_for(1, path="/subs")
    assert (push.json()["update_type"], push.json()["mobile"], push.json()["keyword"]) == (
        "activation", "254733000100", "GAME")
    (sub,) = await iplatform.premium.subscribers(a["account_id"], 44)
    assert (sub.mobile, sub.source) == ("254733000100", "network")

    r = await iapi.post("/admin/v1/simulator/inbound", headers=ADMIN_AUTH, json=body | {"to": "99999"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_destination")
    r = await iapi.post("/admin/v1/simulator/subscription", headers=ADMIN_AUTH,
                        json={"mobile": "0708400000", "service_id": 2**63, "update_type": "activation"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_service")
    r = await iapi.post("/admin/v1/simulator/subscription", headers=ADMIN_AUTH,
                        json={"mobile": "0708400000", "service_id": 44, "update_type": "pause"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_update_type")


async def test_an_unowned_destination_is_refused_clearly_and_senders_are_normalized(
    iplatform: Platform, iapi: httpx.AsyncClient
) -> None:
    a = await make_account(iplatform)
    r = await iapi.post("/v1/simulator/inbound", headers=auth(a), json={"sender": "0708400000", "to": "40404", "text": "hi"})
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["code"] == "unknown_destination" and "ujumbe numbers add" in error["message"]

    await own_number(iplatform, a, "40404")
    r = await iapi.post("/v1/simulator/inbound", headers=auth(a), json={"sender": "0708400000", "to": "40404", "text": "hi"})
    assert r.status_code == 202, r.text
    (kept,) = await inbox(iapi, a)
    assert (kept["sender"], kept["network"], kept["to"]) == ("254708400000", "Safaricom", "40404")
    r = await iapi.post("/v1/simulator/inbound", headers=auth(a), json={"sender": "12", "to": "40404", "text": "hi"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_sender")


async def test_inbound_from_a_connector_to_an_unowned_number_stays_visible_to_the_operator(
    iplatform: Platform, iapi: httpx.AsyncClient
) -> None:
    # as an operator connector hands it over: a local sender, to a number nobody was given
    await iplatform.reports.inbound(Inbound("smsc-a", "0708400000", "254799000123", "anyone there?", now_ms()))

    async def unassigned() -> list[dict[str, Any]]:
        r = await iapi.get("/admin/v1/inbound/unassigned", headers=ADMIN_AUTH)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    (row,) = await eventually(unassigned)
    # read in the destination's country (KE), its network detected
    assert (row["channel"], row["sender"], row["network"], row["to"], row["text"]) == (
        "smsc-a", "254708400000", "Safaricom", "254799000123", "anyone there?")
    assert (await iapi.get("/admin/v1/inbound/unassigned")).status_code == 401


async def test_tenant_injection_is_off_with_a_real_connector_unless_enabled(
    iplatform: Platform, iapi: httpx.AsyncClient
) -> None:
    a = await make_account(iplatform)
    await own_number(iplatform, a, "40404")
    body = {"sender": "254708400000", "to": "40404", "text": "forged?"}
    assert (await iapi.post("/v1/simulator/inbound", headers=auth(a), json=body)).status_code == 202

    await iplatform.routing.add_connector({"name": "carrier", "host": "127.0.0.1", "port": free_port(),
                                           "system_id": "ujumbe", "password": "secret"})
    r = await iapi.post("/v1/simulator/inbound", headers=auth(a), json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "simulator_off"), r.text
    assert "UJUMBE_SIMULATOR_INBOUND=on" in r.json()["error"]["message"]
    r = await iapi.post("/v1/simulator/subscription", headers=auth(a),
                        json={"mobile": "254708400000", "shortcode": "40404", "update_type": "activation"})
    assert r.status_code == 409
    # the operator still can
    assert (await iapi.post("/admin/v1/simulator/inbound", headers=ADMIN_AUTH, json=body)).status_code == 202
    # and may allow tenants explicitly
    iplatform.settings.simulator_inbound = "on"
    assert (await iapi.post("/v1/simulator/inbound", headers=auth(a), json=body)).status_code == 202
    assert len(await inbox(iapi, a)) == 3
    iplatform.settings.simulator_inbound = "off"
    r = await iapi.post("/v1/simulator/inbound", headers=auth(a), json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "simulator_off")


async def test_injecting_on_an_api_only_process_works(tmp_path: Path, database_url: str | None) -> None:
    """An `--role api` process runs no channels: injecting writes to the store
    (it answered 500 when it went through the in-process simulator)."""
    settings = make_settings(tmp_path, database_url)
    api_process = Platform(settings)
    await api_process.start("api")
    try:
        a = await make_account(api_process)
        await own_number(api_process, a, "40404")
        async with client_of(api_process) as client:
            r = await client.post("/v1/simulator/inbound", headers=auth(a),
                                  json={"sender": "0708400000", "to": "40404", "text": "via the api role"})
            assert r.status_code == 202, r.text
            (kept,) = await inbox(client, a)
            assert (kept["sender"], kept["text"]) == ("254708400000", "via the api role")
    finally:
        await api_process.stop()
