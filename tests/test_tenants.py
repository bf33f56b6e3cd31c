"""The tenant matrix (issue 11, "in CI, every run"): for every kind of resource
an account has, another account tries it by id and by list filter, through
every dialect that can name it (native /v1, Tingg, Tilil, SMPP, Messangi). It sees none
of it: the answer is the dialect's own 404 or "unknown", or a list without it.

Account A (alpha) owns one of everything; account B (bravo) probes. The table
below is the whole matrix: one row per (resource, dialect, way), run on SQLite
and PostgreSQL; every failing row is reported, not only the first.
"""

from __future__ import annotations

import argparse
import copy
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import Receiver, auth, eventually
from tests.test_smpp_customers import Esme, _value, api, customer, platform  # noqa: F401  (fixtures: SMPP server on)
from tests.test_messangi import b64, parse, signed_path
from tests.test_tingg import SAMPLE_ENGAGEMENT
from ujumbe import cli
from ujumbe.channels.smpp import pdu as P
from ujumbe.runtime import Platform

ALPHA_NUMBER = "254700999888"  # a long number of A's that receives inbound messages
SUBSCRIBER = "254708400000"


@dataclass
class World:
    """What A owns, and B's ways in."""

    platform: Platform
    api: httpx.AsyncClient
    a: dict[str, Any]
    b: dict[str, Any]
    a_smpp: tuple[str, str]
    b_smpp: tuple[str, str]
    b_esme: Esme
    message_id: int = 0
    request_id: str = ""
    tingg_request_id: str = ""
    callback_id: int = 0
    route_id: int = 0
    smpp_message_id: str = ""  # submitted on A's own bind; its receipt came back there
    a_ids: frozenset[int] = frozenset()

    def b_get(self, path: str, **params: Any) -> Awaitable[httpx.Response]:
        return self.api.get(path, headers=auth(self.b), params=params)

    async def b_query_sm(self, message_id: str) -> int:
        seen: dict[int, Any] = {}
        self.b_esme.client.set_query_resp_handler(lambda pdu, **kw: seen.__setitem__(pdu.sequence, pdu))
        seq = self.b_esme.client.query_message(message_id=message_id, source_addr="").sequence
        return int((await eventually(lambda: _value(seen.get(seq)), timeout=15)).status)


def is_404(r: httpx.Response) -> None:
    assert r.status_code == 404 and "error" in r.json(), (r.status_code, r.text)


# --- the probes: each one row of the matrix ---


async def message_by_id(w: World) -> None:
    is_404(await w.b_get(f"/v1/messages/{w.message_id}"))


async def messages_by_request_filter(w: World) -> None:
    r = await w.b_get("/v1/messages", request_id=w.request_id)
    assert r.status_code == 200 and r.json()["data"] == [], r.text


async def messages_by_recipient_filter(w: World) -> None:
    r = await w.b_get("/v1/messages", to=SUBSCRIBER)
    assert r.status_code == 200 and not {m["id"] for m in r.json()["data"]} & w.a_ids, r.text


async def messages_by_state_filter(w: World) -> None:
    for state in ("delivered", "accepted", "submitted"):
        r = await w.b_get("/v1/messages", state=state)
        assert r.status_code == 200 and not {m["id"] for m in r.json()["data"]} & w.a_ids, r.text


async def message_tilil_getdlr(w: World) -> None:
    r = await w.api.get("/sms/v3/getdlr", params={"api_key": w.b["api_key"], "messageId": str(w.message_id)})
    assert r.text == "1009;No dlr", r.text


async def message_smpp_query_sm(w: World) -> None:
    assert await w.b_query_sm(str(w.message_id)) == P.ESME_RQUERYFAIL


async def message_messangi_get_message(w: World) -> None:
    got = parse((await w.api.get(signed_path(w.b, "getMessage", w.b["instance_id"], str(w.message_id)))).text)
    assert got.findtext("status") == "ERROR" and f"No message {w.message_id}" in (got.findtext("description") or ""), \
        ET.tostring(got)


async def request_by_id(w: World) -> None:
    is_404(await w.b_get(f"/v1/requests/{w.request_id}"))
    is_404(await w.b_get(f"/v1/requests/{w.tingg_request_id}"))


async def request_by_native_reference(w: World) -> None:
    # the same idempotency key is B's own: a new request, never A's answer
    r = await w.api.post("/v1/messages", headers=auth(w.b), json={"to": "0708400100", "text": "b", "reference": "order-1"})
    assert r.status_code == 202 and not r.json()["duplicate"] and r.json()["request_id"] != w.request_id, r.text


async def request_by_tingg_reference(w: World) -> None:
    body = copy.deepcopy(SAMPLE_ENGAGEMENT)
    body.pop("callbackUrl")
    body["referenceID"], body["smsDto"]["msisdn"] = "tingg-ref-1", ["254708400101"]
    r = await w.api.post("/api/v2/engagement", headers=auth(w.b), json=body)
    assert r.status_code == 200 and r.json()["transactionID"] not in (None, w.tingg_request_id), r.text


async def template_by_key(w: World) -> None:
    is_404(await w.b_get("/v1/templates/welcome"))
    is_404(await w.api.delete("/v1/templates/welcome", headers=auth(w.b)))
    assert (await w.api.get("/v1/templates/welcome", headers=auth(w.a))).status_code == 200  # still A's


async def template_list(w: World) -> None:
    r = await w.b_get("/v1/templates")
    assert r.status_code == 200 and [t["key"] for t in r.json()] == [], r.text


async def template_used_natively(w: World) -> None:
    r = await w.api.post("/v1/messages", headers=auth(w.b), json={"to": "0708400102", "template": "welcome"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "template_not_found", r.text


async def template_used_by_tingg(w: World) -> None:
    # Tingg's notificationType names a template: B's own (none), never A's
    body = copy.deepcopy(SAMPLE_ENGAGEMENT)
    body.pop("callbackUrl")
    body["notificationType"], body["referenceID"] = "welcome", "tingg-tpl"
    body["smsDto"].update(msisdn=["254708400103"], message="B's own words", params=None)
    r = await w.api.post("/api/v2/engagement", headers=auth(w.b), json=body)
    assert r.status_code == 200, r.text
    sent = (await w.b_get("/v1/messages", to="254708400103")).json()["data"]
    assert [m["text"] for m in sent] == ["B's own words"]


async def callbacks_list(w: World) -> None:
    for status in (None, "pending", "delivered", "failed"):
        r = await (w.b_get("/v1/callbacks", status=status) if status else w.b_get("/v1/callbacks"))
        assert r.status_code == 200 and w.callback_id not in {c["id"] for c in r.json()["data"]}, r.text
        assert not {c["message_id"] for c in r.json()["data"]} & w.a_ids


async def callback_retry_by_id(w: World) -> None:
    is_404(await w.api.post(f"/v1/callbacks/{w.callback_id}/retry", headers=auth(w.b)))


async def transactions_list(w: World) -> None:
    r = await w.b_get("/v1/transactions", limit=500)
    assert r.status_code == 200, r.text
    leaked = [t for t in r.json()["data"] if t["request_id"] in (w.request_id, w.tingg_request_id)
              or t["message_id"] in w.a_ids]
    assert not leaked, leaked


async def inbound_list(w: World) -> None:
    r = await w.b_get("/v1/inbound", limit=500)
    assert r.status_code == 200 and [m for m in r.json()["data"] if m["to"] == ALPHA_NUMBER] == [], r.text


async def inbound_messangi_pages(w: World) -> None:
    page = parse((await w.api.get(signed_path(w.b, "tools/getMOMessages", w.b["instance_id"], "1", "100", "null"))).text)
    assert page.findtext("result/MOMessageList/records") == "0", ET.tostring(page)


async def premium_service_by_id(w: World) -> None:
    is_404(await w.b_get("/v1/premium-services/44"))
    is_404(await w.api.patch("/v1/premium-services/44", headers=auth(w.b), json={"name": "mine now"}))


async def premium_service_list(w: World) -> None:
    r = await w.b_get("/v1/premium-services")
    assert r.status_code == 200 and r.json() == [], r.text


async def premium_subscribers_by_service(w: World) -> None:
    is_404(await w.b_get("/v1/premium-services/44/subscribers"))
    is_404(await w.api.put(f"/v1/premium-services/44/subscribers/{SUBSCRIBER}", headers=auth(w.b)))
    is_404(await w.api.delete(f"/v1/premium-services/44/subscribers/{SUBSCRIBER}", headers=auth(w.b)))
    subs = (await w.api.get("/v1/premium-services/44/subscribers", headers=auth(w.a))).json()
    assert [s["mobile"] for s in subs] == [SUBSCRIBER] and subs[0]["active"]  # untouched


async def premium_tilil_sendsms(w: World) -> None:
    r = await w.api.post("/sms/v3/sendsms", json={"api_key": w.b["api_key"], "sender_name": "22915",
                                                  "mobile": SUBSCRIBER, "message": "x", "service_id": "44"})
    assert r.json()["status_code"] == "1010", r.text


async def premium_tilil_subscribermanage(w: World) -> None:
    r = await w.api.post("/sms/v3/subscribermanage", json={"api_key": w.b["api_key"], "service_id": "44",
                                                           "mobile": SUBSCRIBER, "option": "deactivation"})
    assert r.json()["status_code"] != "1" and "no service_id 44" in r.json()["status_desc"], r.text


async def premium_shortcode_claim(w: World) -> None:
    r = await w.api.post("/v1/premium-services", headers=auth(w.b), json={"shortcode": "22915", "type": "on-demand"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "shortcode_taken", r.text


async def senders_list(w: World) -> None:
    r = await w.b_get("/v1/senders")
    assert r.status_code == 200 and [s["name"] for s in r.json()] == [], r.text


async def sender_by_name(w: World) -> None:
    is_404(await w.api.delete("/v1/senders/AlphaCo", headers=auth(w.b)))
    assert [s["name"] for s in (await w.api.get("/v1/senders", headers=auth(w.a))).json()] == ["AlphaCo"]


async def sender_tilil_sendsms(w: World) -> None:
    (row,) = (await w.api.post("/sms/v3/sendsms", json={"api_key": w.b["api_key"], "shortcode": "AlphaCo",
                                                        "mobile": "0708400104", "message": "x"})).json()
    assert row["status_code"] == "1001", row


async def sender_smpp_submit(w: World) -> None:
    status, _ = await w.b_esme.resp(w.b_esme.submit("254708400105", b"x", source_addr="AlphaCo"))
    assert status == P.ESME_RINVSRCADR


async def sender_native_send(w: World) -> None:
    r = await w.api.post("/v1/messages", headers=auth(w.b), json={"to": "0708400106", "text": "x", "sender": "AlphaCo"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "sender_taken", r.text


async def sender_messangi_send(w: World) -> None:
    got = parse((await w.api.get(signed_path(w.b, "sendMT", w.b["instance_id"], "AlphaCo", "null", "0708400107",
                                             b64("x")))).text)
    assert got.findtext("status") == "ERROR", ET.tostring(got)


async def receipts_on_smpp_binds(w: World) -> None:
    # B's transceiver bind was up all along: none of A's receipts or inbound reached it
    got = [(p.receipted_message_id, p.destination_addr) for p in w.b_esme.delivered]
    assert not [g for g in got if g[0] in (w.smpp_message_id, w.smpp_message_id.encode())], got
    assert not [g for g in got if g[1] in (ALPHA_NUMBER, ALPHA_NUMBER.encode())], got


async def api_keys(w: World) -> None:
    # B's keys, old and new, are B's: neither reads A's account
    r = await w.api.post("/v1/api-keys", headers=auth(w.b), json={"label": "second"})
    assert r.status_code == 201, r.text
    for key in (w.b["api_key"], r.json()["api_key"]):
        me = (await w.api.get("/v1/account", headers={"authorization": f"Bearer {key}"})).json()
        assert me["id"] == w.b["account_id"], me


async def smpp_credentials_read(w: World) -> None:
    r = await w.b_get("/v1/smpp/credentials")
    assert r.status_code == 200 and r.json()["system_id"] == w.b_smpp[0], r.text


async def smpp_credentials_take_over(w: World) -> None:
    r = await w.api.put("/v1/smpp/credentials", headers=auth(w.b), json={"system_id": w.a_smpp[0], "password": "bpass1"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "system_id_taken", r.text


async def smpp_bind_as_a(w: World) -> None:
    esme = Esme(w.platform.smpp_port or 0)
    try:
        try:
            await esme.bind("transceiver", w.a_smpp[0], w.b_smpp[1])
        except Exception as exc:  # smpplib raises PDUError(message, status)
            assert int(exc.args[1]) in (P.ESME_RINVPASWD, P.ESME_RBINDFAIL), exc.args
        else:
            raise AssertionError("B bound with A's system_id")
    finally:
        await esme.close()


async def routes_list(w: World) -> None:
    r = await w.b_get("/v1/routes")
    assert r.status_code == 200 and w.route_id not in {x["id"] for x in r.json()["data"]}, r.text


async def route_by_id(w: World) -> None:
    is_404(await w.api.delete(f"/v1/routes/{w.route_id}", headers=auth(w.b)))


async def account_settings(w: World) -> None:
    cb = (await w.b_get("/v1/account/callbacks")).json()
    assert "alpha.example" not in str(cb), cb
    a_secret = (await w.api.get("/v1/account/webhook-secret", headers=auth(w.a))).json()
    b_secret = (await w.b_get("/v1/account/webhook-secret")).json()
    assert a_secret != b_secret


# (resource, dialect, how, probe)
MATRIX: list[tuple[str, str, str, Callable[[World], Awaitable[None]]]] = [
    ("message", "native", "GET /v1/messages/{id}", message_by_id),
    ("message", "native", "list ?request_id=", messages_by_request_filter),
    ("message", "native", "list ?to=", messages_by_recipient_filter),
    ("message", "native", "list ?state=", messages_by_state_filter),
    ("message", "tilil", "getdlr messageId=", message_tilil_getdlr),
    ("message", "smpp", "query_sm message_id", message_smpp_query_sm),
    ("message", "smpp", "deliver_sm on B's bind", receipts_on_smpp_binds),
    ("message", "messangi", "getMessage {id}", message_messangi_get_message),
    ("request", "native", "GET /v1/requests/{id}", request_by_id),
    ("request", "native", "reference (idempotency key)", request_by_native_reference),
    ("request", "tingg", "referenceID (idempotency key)", request_by_tingg_reference),
    ("template", "native", "GET/DELETE /v1/templates/{key}", template_by_key),
    ("template", "native", "list", template_list),
    ("template", "native", "send with template=", template_used_natively),
    ("template", "tingg", "notificationType", template_used_by_tingg),
    ("callback", "native", "list ?status=", callbacks_list),
    ("callback", "native", "POST /v1/callbacks/{id}/retry", callback_retry_by_id),
    ("transaction", "native", "list", transactions_list),
    ("inbound", "native", "list", inbound_list),
    ("inbound", "messangi", "getMOMessages", inbound_messangi_pages),
    ("premium service", "native", "GET/PATCH /v1/premium-services/{id}", premium_service_by_id),
    ("premium service", "native", "list", premium_service_list),
    ("premium service", "tilil", "sendsms service_id=", premium_tilil_sendsms),
    ("premium service", "native", "claim its short code", premium_shortcode_claim),
    ("subscriber", "native", "GET/PUT/DELETE /v1/premium-services/{id}/subscribers", premium_subscribers_by_service),
    ("subscriber", "tilil", "subscribermanage service_id=", premium_tilil_subscribermanage),
    ("sender", "native", "list", senders_list),
    ("sender", "native", "DELETE /v1/senders/{name}", sender_by_name),
    ("sender", "tilil", "sendsms shortcode=", sender_tilil_sendsms),
    ("sender", "smpp", "submit_sm source_addr", sender_smpp_submit),
    ("sender", "native", "send with sender=", sender_native_send),
    ("sender", "messangi", "sendMT from=", sender_messangi_send),
    ("api key", "native", "GET /v1/account with each key", api_keys),
    ("smpp credentials", "native", "GET /v1/smpp/credentials", smpp_credentials_read),
    ("smpp credentials", "native", "PUT with A's system_id", smpp_credentials_take_over),
    ("smpp credentials", "smpp", "bind with A's system_id", smpp_bind_as_a),
    ("route", "native", "list", routes_list),
    ("route", "native", "DELETE /v1/routes/{id}", route_by_id),
    ("account", "native", "callbacks and webhook secret", account_settings),
]


async def alpha_owns_one_of_everything(w: World, receiver: Receiver) -> None:
    p, api, a = w.platform, w.api, w.a
    h = auth(a)
    assert (await api.put("/v1/templates/welcome", headers=h, json={"body": "Karibu ${name}"})).status_code == 200
    assert (await api.put("/v1/account/callbacks", headers=h, json={"dlr_url": receiver.url + "/alpha"})).status_code == 200
    r = await api.post("/v1/messages", headers=h, json={"to": SUBSCRIBER, "template": "welcome", "params": {"name": "A"},
                                                       "reference": "order-1", "callback_url": receiver.url + "/alpha.example"})
    assert r.status_code == 202, r.text
    w.request_id, w.message_id = r.json()["request_id"], r.json()["messages"][0]["id"]
    body = copy.deepcopy(SAMPLE_ENGAGEMENT)
    body["callbackUrl"], body["referenceID"], body["smsDto"]["msisdn"] = receiver.url + "/tingg", "tingg-ref-1", [SUBSCRIBER]
    r = await api.post("/api/v2/engagement", headers=h, json=body)
    assert r.status_code == 200, r.text
    w.tingg_request_id = r.json()["transactionID"]
    await p.senders.add(a["account_id"], "AlphaCo")
    await p.senders.assign_number(a["account_id"], "22915", dialect="tilil")
    r = await api.post("/v1/premium-services", headers=h, json={"shortcode": "22915", "type": "subscription",
                                                                "keywords": ["GAME"], "service_id": 44})
    assert r.status_code == 201, r.text
    assert (await api.put(f"/v1/premium-services/44/subscribers/{SUBSCRIBER}", headers=h)).status_code in (200, 201)
    await cli._add_number(p, argparse.Namespace(account=a["account_id"], number=ALPHA_NUMBER, kind="long", dialect="native"))
    assert p.simulator is not None
    await p.simulator.inject_inbound(SUBSCRIBER, ALPHA_NUMBER, "for A only")
    a_esme = Esme(p.smpp_port or 0)
    await a_esme.bind("transceiver", *w.a_smpp)
    try:
        status, w.smpp_message_id = await a_esme.resp(a_esme.submit(SUBSCRIBER, b"over SMPP", source_addr="AlphaCo"))
        assert status == 0
        await a_esme.receipt_for(w.smpp_message_id)
    finally:
        await a_esme.close()

    # last: A's route pins its traffic to a connector that is off
    await p.routing.add_connector({"name": "alpha-op", "host": "127.0.0.1", "port": 1, "system_id": "a",
                                   "password": "pw", "enabled": False})
    r = await api.post("/v1/routes", headers=h, json={"kind": "default", "connector": "alpha-op"})
    assert r.status_code == 201, r.text
    w.route_id = r.json()["id"]

    async def settled() -> Any:
        cbs = (await api.get("/v1/callbacks", headers=h)).json()["data"]
        inbound = (await api.get("/v1/inbound", headers=h)).json()["data"]
        msgs = (await api.get("/v1/messages", headers=h)).json()["data"]
        return cbs and inbound and msgs and (cbs, msgs)

    cbs, msgs = await eventually(settled)
    w.callback_id = cbs[0]["id"]
    w.a_ids = frozenset(m["id"] for m in msgs)


async def test_no_account_sees_or_touches_anothers_resources(
    platform: Platform, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    a, a_id, a_pw = await customer(platform, api)
    b, b_id, b_pw = await customer(platform, api)
    esme = Esme(platform.smpp_port or 0)
    await esme.bind("transceiver", b_id, b_pw)
    w = World(platform, api, a, b, (a_id, a_pw), (b_id, b_pw), esme)
    try:
        await alpha_owns_one_of_everything(w, receiver)
        failures = []
        for resource, dialect, how, probe in MATRIX:
            try:
                await probe(w)
            except AssertionError as exc:
                failures.append(f"{resource} / {dialect} / {how}: {exc}")
        assert not failures, "B reached A's data:\n" + "\n".join(failures)
        # and the matrix covers every resource kind through every dialect that names one
        assert {d for _, d, _, _ in MATRIX} == {"native", "tingg", "tilil", "smpp", "messangi"}
    finally:
        await esme.close()
