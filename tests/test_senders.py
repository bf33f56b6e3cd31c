"""Sender names belong to one account (issue 11.8): a tenant's registration is a
request the operator approves or rejects; nobody sends as another account's
name, or as a name not (yet) approved, in any dialect. On SQLite and PostgreSQL;
SMPP through smpplib, a client we did not write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import auth, make_account
from tests.test_smpp_customers import Esme, api, customer, platform  # noqa: F401  (fixtures: SMPP server on)
from ujumbe.channels.smpp import pdu as P
from ujumbe.runtime import Platform

ADMIN = "admin-token-for-senders-" + "x" * 16
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}


def tilil(account: dict[str, Any], sender: str, mobile: str = "0708400000") -> dict[str, Any]:
    return {"api_key": account["api_key"], "shortcode": sender, "mobile": mobile, "message": "Habari"}


async def native_send(api: httpx.AsyncClient, account: dict[str, Any], sender: str) -> httpx.Response:
    return await api.post("/v1/messages", headers=auth(account), json={"to": "0708400000", "text": "Habari", "sender": sender})


async def smpp_status(platform: Platform, system_id: str, password: str, sender: str) -> int:
    esme = Esme(platform.smpp_port or 0)
    await esme.bind("transceiver", system_id, password)
    try:
        status, _ = await esme.resp(esme.submit("254708400000", b"Habari", source_addr=sender))
        return status
    finally:
        await esme.close()


async def test_another_accounts_name_can_be_neither_claimed_nor_used_in_any_dialect(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    alpha, _, _ = await customer(platform, api)
    thief, system_id, password = await customer(platform, api)
    await platform.senders.add(alpha["account_id"], "AlphaCo")  # granted by the operator

    # B cannot register it, in any spelling a handset shows alike
    for name in ("AlphaCo", "ALPHACO", "alphaco"):
        r = await api.post("/v1/senders", headers=auth(thief), json={"name": name})
        assert r.status_code == 409 and r.json()["error"]["code"] == "sender_taken", r.text
    assert (await api.get("/v1/senders", headers=auth(thief))).json() == []

    # nor send as it: Tilil, native and SMPP, each in its own shape
    (row,) = (await api.post("/sms/v3/sendsms", json=tilil(thief, "AlphaCo"))).json()
    assert (row["status_code"], row["message_id"]) == ("1001", "0")
    assert "belongs to another account" in row["status_desc"]
    r = await native_send(api, thief, "AlphaCo")
    assert r.status_code == 403 and r.json()["error"]["code"] == "sender_taken"
    assert (await native_send(api, thief, "ALPHACO")).status_code == 403
    assert await smpp_status(platform, system_id, password, "AlphaCo") == P.ESME_RINVSRCADR
    # nothing was sent or charged in B's name
    assert (await api.get("/v1/messages", headers=auth(thief))).json()["data"] == []
    assert (await api.get("/v1/balance", headers=auth(thief))).json()["balance"] == 100

    # the holder itself sends as it everywhere
    (row,) = (await api.post("/sms/v3/sendsms", json=tilil(alpha, "AlphaCo"))).json()
    assert row["status_code"] == "1000", row
    assert (await native_send(api, alpha, "AlphaCo")).status_code == 202

    # an account's short code is its own too (granted by the operator, then its service registered)
    await platform.senders.assign_number(alpha["account_id"], "22915", dialect="tilil")
    r = await api.post("/v1/premium-services", headers=auth(alpha), json={"shortcode": "22915", "type": "on-demand"})
    assert r.status_code == 201, r.text
    r = await api.post("/v1/senders", headers=auth(thief), json={"name": "22915"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "sender_taken"
    assert (await native_send(api, thief, "22915")).status_code == 403
    assert await smpp_status(platform, system_id, password, "22915") == P.ESME_RINVSRCADR
    # and the operator cannot grant it to another by mistake either
    with pytest.raises(Exception) as refused:
        await platform.senders.add(thief["account_id"], "AlphaCo")
    assert getattr(refused.value, "code", "") == "sender_taken"


async def test_a_tenants_registration_waits_for_the_operator(platform: Platform, api: httpx.AsyncClient) -> None:
    platform.settings.admin_token = ADMIN
    beta, system_id, password = await customer(platform, api)
    r = await api.post("/v1/senders", headers=auth(beta), json={"name": "BetaCo"})
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text

    # pending: refused in every dialect, with the reason
    (row,) = (await api.post("/sms/v3/sendsms", json=tilil(beta, "BetaCo"))).json()
    assert row["status_code"] == "1001" and "awaiting the operator's approval" in row["status_desc"]
    r = await native_send(api, beta, "BetaCo")
    assert r.status_code == 403 and r.json()["error"]["code"] == "sender_pending"
    assert await smpp_status(platform, system_id, password, "BetaCo") == P.ESME_RINVSRCADR

    # the operator sees the request and approves it over the admin API
    assert (await api.get("/admin/v1/senders", params={"status": "pending"})).status_code == 401
    pending = (await api.get("/admin/v1/senders", params={"status": "pending"}, headers=ADMIN_AUTH)).json()["data"]
    assert [(s["account_id"], s["name"], s["status"]) for s in pending] == [(beta["account_id"], "BetaCo", "pending")]
    r = await api.post(f"/admin/v1/senders/{beta['account_id']}/BetaCo/approve", headers=ADMIN_AUTH)
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    (row,) = (await api.post("/sms/v3/sendsms", json=tilil(beta, "BetaCo"))).json()
    assert row["status_code"] == "1000", row
    assert (await native_send(api, beta, "BetaCo")).status_code == 202
    assert await smpp_status(platform, system_id, password, "BetaCo") == 0

    # asking again cannot widen what was granted
    r = await api.post("/v1/senders", headers=auth(beta), json={"name": "BetaCo", "networks": ["Airtel"]})
    assert r.status_code == 201 and (r.json()["status"], r.json()["networks"]) == ("approved", ["Airtel"])
    r = await api.post("/v1/senders", headers=auth(beta), json={"name": "BetaCo"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "sender_approved"

    # a rejection, with its reason, shown to the account; the name stays unusable
    assert (await api.post("/v1/senders", headers=auth(beta), json={"name": "Bank"})).status_code == 201
    r = await api.post(f"/admin/v1/senders/{beta['account_id']}/Bank/reject", headers=ADMIN_AUTH,
                       json={"reason": "not your brand"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    mine = {s["name"]: s for s in (await api.get("/v1/senders", headers=auth(beta))).json()}
    assert (mine["Bank"]["status"], mine["Bank"]["reason"]) == ("rejected", "not your brand")
    r = await native_send(api, beta, "Bank")
    assert r.status_code == 403 and r.json()["error"] == {
        "code": "sender_rejected", "message": "The sender name Bank was rejected by the operator: not your brand",
    }
    (row,) = (await api.post("/sms/v3/sendsms", json=tilil(beta, "Bank"))).json()
    assert row["status_code"] == "1001" and "not your brand" in row["status_desc"]

    # two accounts asking for one name: only the first approval holds
    gamma = await make_account(platform)
    assert (await api.post("/v1/senders", headers=auth(gamma), json={"name": "Shared"})).status_code == 201
    assert (await api.post("/v1/senders", headers=auth(beta), json={"name": "Shared"})).status_code == 201
    assert (await api.post(f"/admin/v1/senders/{gamma['account_id']}/Shared/approve", headers=ADMIN_AUTH)).status_code == 200
    r = await api.post(f"/admin/v1/senders/{beta['account_id']}/Shared/approve", headers=ADMIN_AUTH)
    assert r.status_code == 409 and r.json()["error"]["code"] == "sender_taken"
    # the operator grants a name directly too
    r = await api.post("/admin/v1/senders", headers=ADMIN_AUTH, json={"account_id": gamma["account_id"], "name": "Gamma"})
    assert r.status_code == 201 and r.json()["status"] == "approved"
    r = await api.post("/admin/v1/senders", headers=ADMIN_AUTH, json={"account_id": beta["account_id"], "name": "gamma"})
    assert r.status_code == 409


async def test_the_store_holds_an_approved_name_for_one_account_only(platform: Platform) -> None:
    a, b = await make_account(platform), await make_account(platform)
    await platform.senders.add(a["account_id"], "OnlyOne")
    insert = "INSERT INTO senders (account_id, name, created_at, status) VALUES (?, ?, 0, ?)"
    # another account may have a request for it, never a second approval
    await platform.store.run(lambda tx: tx.execute(insert, b["account_id"], "ONLYONE", "pending"))
    with pytest.raises(Exception) as failed:
        await platform.store.run(lambda tx: tx.execute(
            "UPDATE senders SET status = 'approved' WHERE account_id = ?", b["account_id"]))
    assert "unique" in str(failed.value).lower()
    holders = await platform.store.read(lambda tx: tx.fetch("SELECT account_id FROM senders WHERE status = 'approved'"))
    assert [r[0] for r in holders] == [a["account_id"]]


def test_cli_lists_approves_and_rejects_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from tests.conftest import make_settings
    from ujumbe import cli

    data = ["--data-dir", str(tmp_path / "d")]
    assert cli.main([*data, "accounts", "create", "--name", "Duka", "--email", "ops@duka.co.ke",
                     "--password", "a long password"]) == 0
    account_id = json.loads(capsys.readouterr().out)["account_id"]

    async def ask(*names: str) -> None:
        p = Platform(make_settings(tmp_path, None, data_dir=tmp_path / "d", simulator=False))
        await p.open()
        try:
            for name in names:
                await p.senders.request(account_id, name)
        finally:
            await p.store.close()

    asyncio.run(ask("Duka", "Fake Bank"))
    assert cli.main([*data, "senders", "pending"]) == 0
    assert [s["name"] for s in json.loads(capsys.readouterr().out)] == ["Duka", "Fake Bank"]
    assert cli.main([*data, "senders", "approve", account_id, "Duka"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "approved"
    assert cli.main([*data, "senders", "reject", account_id, "Fake Bank", "--reason", "not yours"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "account_id": account_id, "name": "Fake Bank", "networks": None, "status": "rejected", "reason": "not yours",
    }
    assert cli.main([*data, "senders", "pending"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main([*data, "senders", "approve", account_id, "Nobody"]) == 1
    assert "sender_not_found" in capsys.readouterr().err


async def test_an_account_cannot_take_a_short_code_the_operator_did_not_grant(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    """Short codes are granted, not taken: a tenant registers a premium service
    only on one the operator gave it; the operator's own command needs no grant."""
    a, _, _ = await customer(platform, api)
    r = await api.post("/v1/premium-services", headers=auth(a), json={"shortcode": "40404", "type": "on-demand"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "shortcode_not_granted", r.text
    assert "ujumbe numbers add" in r.json()["error"]["message"]
    assert not await platform.senders.owns_number(a["account_id"], "40404")
    await platform.senders.assign_number(a["account_id"], "40404", dialect="tilil")
    r = await api.post("/v1/premium-services", headers=auth(a), json={"shortcode": "40404", "type": "on-demand"})
    assert r.status_code == 201, r.text
    # the operator's path (ujumbe services add) claims an ungranted code itself
    service = await platform.premium.create(a["account_id"], shortcode="40405", kind="on-demand")
    assert service.shortcode == "40405" and await platform.senders.owns_number(a["account_id"], "40405")
