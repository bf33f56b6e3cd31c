"""The Tilil dialect, driven with the guide's own sample payloads: bulk and
premium sendsms with every status code we can cause, getdlr, DLR push,
inbound forwarding with replies, subscriptions and subscribermanage.
Both databases."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import Received, Receiver, auth, eventually, make_account, client_of, running
from ujumbe.channels.base import Inbound
from ujumbe.runtime import Platform
from ujumbe.store import now_ms

# --- the guide's samples, verbatim (api_key replaced per test) ---

SAMPLE_BULK: dict[str, Any] = json.loads("""
{
  "api_key": "{{Test API Key}}",
  "service_id": 0,
  "mobile": "0708400000",
  "response_type": "json",
  "shortcode": "Tilil",
  "message": "This is a message.\\n\\nRegards\\nTilil"
}
""")

SAMPLE_BULK_SUCCESS = json.loads("""
[
  {
    "status_code": "1000",
    "status_desc": "Success",
    "message_id": 288369252,
    "mobile_number": "254708400000",
    "network_id": "1",
    "message_cost": 1,
    "credit_balance": 148
  }
]
""")

SAMPLE_BULK_FAILED = json.loads("""
[
  {
    "status_code": "1003",
    "status_desc": "Invalid mobile number",
    "message_id": "0",
    "mobile_number": "123",
    "network_id": "",
    "message_cost": "",
    "credit_balance": ""
  }
]
""")

SAMPLE_INBOUND = json.loads("""
{
  "api_token": "944a73412bed1240b5a2afa381a928a6",
  "message": "Test inbox",
  "shortcode": "70700",
  "mobile": "254726770792",
  "inbox_id": "4448236",
  "service_id": "32",
  "network_name": "Safaricom",
  "timestamp": "20180217065028",
  "link_id": "763723672367236526261"
}
""")

SAMPLE_INBOUND_ANSWER = json.loads("""
{
  "result_code": 1,
  "result_desc": "OK",
  "result_message": "Thank you for your message."
}
""")

SAMPLE_PREMIUM: dict[str, Any] = json.loads("""
{
  "api_key": "1ts3bK2QVbr7caV9211b28kf0dd3kfIP95eb5bvEjAPScd12of1Pm7C2mGOLQca4",
  "sender_name": "22915",
  "mobile": "0708400000",
  "message": "This is a message from Tilil",
  "service_id": "44",
  "link_id": ""
}
""")

SAMPLE_PREMIUM_SUCCESS = json.loads("""
{
  "status_code": "1000",
  "status_desc": "Success",
  "message_id": "sms.5ed0e9e9619937.17151728",
  "mobile_number": "254708400000",
  "network_name": "Safaricom",
  "message_cost": "1",
  "credit_balance": "-1"
}
""")

SAMPLE_PREMIUM_FAILED = json.loads("""
{
  "status_code": "1003",
  "status_desc": "Invalid mobile number 26770792",
  "message_id": "0",
  "mobile_number": "0",
  "network_name": "Not set",
  "message_cost": "0.00",
  "credit_balance": ""
}
""")

SAMPLE_SUBSCRIPTION = json.loads("""
{
  "api_token": "23627367236232ghgge23g22gh2gh2",
  "network_name": "Safaricom",
  "shortcode": "22915",
  "service_id": "44",
  "mobile": "254708400000",
  "update_type": "activation",
  "keyword": "GAME",
  "subscriber_ref": "12345",
  "timestamp": "20200528124756"
}
""")

SAMPLE_SUBSCRIPTION_ANSWER = json.loads("""
{
  "result_code": 1,
  "result_desc": "OK",
  "result_message": "Thank you for subscribing to our service."
}
""")

SAMPLE_ACTIVATION: dict[str, Any] = json.loads("""
{
  "api_key": "1ts3bK2QVbr7caV9211b28kf0dd3kfIP95eb5bvEjAPScd12of1Pm7C2mGOLQca4",
  "service_id": "44",
  "mobile": "254708400000",
  "option": "activation"
}
""")

SAMPLE_DEACTIVATION: dict[str, Any] = json.loads("""
{
  "api_key": "1ts3bK2QVbr7caV9211b28kf0dd3kfIP95eb5bvEjAPScd12of1Pm7C2mGOLQca4",
  "service_id": "44",
  "mobile": "254708400000",
  "option": "deactivation"
}
""")

SAMPLE_SUBSCRIBERMANAGE_ANSWER = json.loads("""
{
  "status_code": "1",
  "status_desc": "Success",
  "mobile": "254708400000",
  "network_name": "Safaricom"
}
""")

DLR_LINE = re.compile(r"^(\d+);Success;(\d+);(\w+);(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d);(\d\d:\d\d:\d\d)$")


# --- fixtures: a platform whose retry schedules are shrunk a thousandfold ---


@pytest.fixture
async def tplatform(tmp_path, database_url) -> AsyncIterator[Platform]:  # type: ignore[no-untyped-def]
    async with running(tmp_path, database_url, callback_delay_scale=0.001) as p:
        yield p


@pytest.fixture
async def tapi(tplatform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(tplatform) as client:
        yield client


async def tilil_account(api: httpx.AsyncClient, platform: Platform, credits: str | None = "149",
                        senders: tuple[str, ...] = ("Tilil",)) -> dict[str, Any]:
    account = await make_account(platform, credits=credits)
    for name in senders:
        # a tenant asks for the name; the operator approves it (as Tilil itself does)
        r = await api.post("/v1/senders", headers=auth(account), json={"name": name})
        assert r.status_code == 201 and r.json()["status"] == "pending", r.text
        await platform.senders.approve(account["account_id"], name)
    return account


def with_key(sample: dict[str, Any], account: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**sample, "api_key": account["api_key"], **changes}


def same_shape(got: dict[str, Any], sample: dict[str, Any]) -> None:
    """Same keys in the same order, and each value of the sample's JSON type."""
    assert list(got) == list(sample), (got, sample)
    for key, value in sample.items():
        assert type(got[key]) is type(value), (key, got[key], value)


async def premium_service(
    api: httpx.AsyncClient, account: dict[str, Any], platform: Platform, **body: Any
) -> dict[str, Any]:
    # the operator grants the short code; the account then registers its service on it
    await platform.senders.assign_number(account["account_id"], body["shortcode"], dialect="tilil")
    r = await api.post("/v1/premium-services", headers=auth(account), json=body)
    assert r.status_code == 201, r.text
    return r.json()


# --- bulk sendsms ---


async def test_bulk_sample_single_and_comma_separated_local_formats(tplatform: Platform, tapi: httpx.AsyncClient) -> None:
    account = await tilil_account(tapi, tplatform)
    r = await tapi.post("/sms/v3/sendsms", json=with_key(SAMPLE_BULK, account))
    assert r.status_code == 200
    (one,) = r.json()
    same_shape(one, SAMPLE_BULK_SUCCESS[0])
    # the sample's own figures: cost 1, and 148 left of 149
    assert one == SAMPLE_BULK_SUCCESS[0] | {"message_id": one["message_id"]}
    msg = (await tapi.get(f"/v1/messages/{one['message_id']}", headers=auth(account))).json()
    assert (msg["sender"], msg["text"]) == ("Tilil", "This is a message.\n\nRegards\nTilil")

    mixed = "708400000, +254 733 000 100,123"
    r = await tapi.post("/sms/v3/sendsms", json=with_key(SAMPLE_BULK, account, mobile=mixed))
    rows = r.json()
    assert [x["status_code"] for x in rows] == ["1000", "1000", "1003"]
    assert [x["mobile_number"] for x in rows[:2]] == ["254708400000", "254733000100"]
    assert [x["network_id"] for x in rows[:2]] == ["1", "2"]  # Safaricom, Airtel
    assert [x["credit_balance"] for x in rows[:2]] == [146, 146]
    assert rows[2] == SAMPLE_BULK_FAILED[0] | {"status_desc": "Invalid mobile number 123"}
    assert (await tapi.get("/v1/balance", headers=auth(account))).json()["balance"] == 146


async def test_plain_response_type(tplatform: Platform, tapi: httpx.AsyncClient) -> None:
    account = await tilil_account(tapi, tplatform)
    r = await tapi.post("/sms/v3/sendsms", json=with_key(SAMPLE_BULK, account, response_type="plain",
                                                         mobile="0708400000,123"))
    assert r.headers["content-type"].startswith("text/plain")
    good, bad = r.text.split("\n")
    assert re.fullmatch(r"1000;Success;\d+;254708400000;1;1;148", good), good
    assert bad == "1003;Invalid mobile number 123;0;123;;;"


async def test_every_status_code_we_can_cause(tplatform: Platform, tapi: httpx.AsyncClient) -> None:
    account = await tilil_account(tapi, tplatform)
    send = lambda body: tapi.post("/sms/v3/sendsms", json=body)  # noqa: E731

    # 1001: a sender name the account has not registered
    (row,) = (await send(with_key(SAMPLE_BULK, account, shortcode="Other"))).json()
    assert (row["status_code"], row["status_desc"], row["message_id"]) == ("1001", "Invalid sender name Other", "0")

    # 1002: a sender for Airtel only, to a Safaricom and an Airtel number
    r = await tapi.post("/v1/senders", headers=auth(account), json={"name": "AirOnly", "networks": ["Airtel"]})
    assert r.status_code == 201 and r.json()["networks"] == ["Airtel"]
    await tplatform.senders.approve(account["account_id"], "AirOnly")
    rows = (await send(with_key(SAMPLE_BULK, account, shortcode="AirOnly", mobile="0708400000,0733000100"))).json()
    assert [x["status_code"] for x in rows] == ["1002", "1000"]
    assert rows[0]["status_desc"] == "Network not allowed: Safaricom" and rows[0]["mobile_number"] == "254708400000"

    # 1003 on its own
    (row,) = (await send(with_key(SAMPLE_BULK, account, mobile="123"))).json()
    assert row == SAMPLE_BULK_FAILED[0] | {"status_desc": "Invalid mobile number 123"}
    # the same person twice in one request gets one message
    rows = (await send(with_key(SAMPLE_BULK, account, mobile="0708400000,+254708400000"))).json()
    assert [x["status_code"] for x in rows] == ["1000", "1003"] and "repeated" in rows[1]["status_desc"]

    # 1006: unknown key; missing key
    for body in (with_key(SAMPLE_BULK, account, api_key="nope"), {k: v for k, v in SAMPLE_BULK.items() if k != "api_key"}):
        (row,) = (await send(body)).json()
        assert (row["status_code"], row["status_desc"], row["mobile_number"]) == ("1006", "Invalid credentials", "0708400000")

    # 1009: not JSON; message of the wrong type; a message over 920 characters
    r = await tapi.post("/sms/v3/sendsms", content=b"api_key=x&mobile=0708400000")
    assert r.status_code == 200 and r.json()[0]["status_code"] == "1009"
    (row,) = (await send(with_key(SAMPLE_BULK, account, message=12))).json()
    assert row["status_code"] == "1009" and "message" in row["status_desc"]
    (row,) = (await send(with_key(SAMPLE_BULK, account, message="x" * 921))).json()
    assert row["status_code"] == "1009" and "920" in row["status_desc"]
    (row,) = (await send(with_key(SAMPLE_BULK, account, message="x" * 920))).json()
    assert row["status_code"] == "1000"

    # 1010: a GET, an unknown response_type
    r = await tapi.get("/sms/v3/sendsms")
    assert r.status_code == 200 and r.json()[0]["status_code"] == "1010"
    (row,) = (await send(with_key(SAMPLE_BULK, account, response_type="xml"))).json()
    assert row["status_code"] == "1010"

    # 1004: no credit left
    broke = await tilil_account(tapi, tplatform, credits=None, senders=("Broke",))
    (row,) = (await send(with_key(SAMPLE_BULK, broke, shortcode="Broke"))).json()
    assert (row["status_code"], row["status_desc"], row["message_id"]) == ("1004", "Low bulk credits", "0")

    # 1011: a disabled account's key
    await tplatform.store.run(lambda tx: tx.execute("UPDATE accounts SET active = 0 WHERE id = ?", broke["account_id"]))
    tplatform.accounts._key_cache.clear()
    (row,) = (await send(with_key(SAMPLE_BULK, broke))).json()
    assert (row["status_code"], row["status_desc"]) == ("1011", "Invalid user state")

    # 1005: anything unexpected is a system error in Tilil's shape, never a 500
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    tplatform.messaging.send = broken  # type: ignore[method-assign]
    r = await send(with_key(SAMPLE_BULK, account))
    assert r.status_code == 200
    assert r.json()[0] | {"mobile_number": None} == {**SAMPLE_BULK_FAILED[0], "status_code": "1005",
                                                     "status_desc": "Failed. System error", "mobile_number": None}

    # 1007: the database cannot be reached
    async def unreachable(*_: Any, **__: Any) -> Any:
        raise ConnectionRefusedError("connection refused")

    tplatform.messaging.send = unreachable  # type: ignore[method-assign]
    (row,) = (await send(with_key(SAMPLE_BULK, account))).json()
    assert (row["status_code"], row["status_desc"]) == ("1007", "Database connection failed")


# --- delivery reports: pull and push ---


async def test_getdlr_before_and_after_delivery(tplatform: Platform, tapi: httpx.AsyncClient) -> None:
    account = await tilil_account(tapi, tplatform)
    rows = (await tapi.post("/sms/v3/sendsms", json=with_key(
        SAMPLE_BULK, account, mobile="0708400000,0708400005,0708400002"))).json()
    delivered, silent, absent = (x["message_id"] for x in rows)
    get = lambda mid, key=account["api_key"]: tapi.get("/sms/v3/getdlr", params={"api_key": key, "messageId": mid})  # noqa: E731

    r = await get(silent)  # the operator never reports this one
    assert r.headers["content-type"].startswith("text/plain") and r.text == "1009;No dlr"

    async def line(mid: int) -> str | None:
        text = (await get(mid)).text
        return None if text == "1009;No dlr" else text

    got = DLR_LINE.match(await eventually(lambda: line(delivered)))
    assert got and got.group(1, 2, 3) == (str(delivered), "1", "DeliveredToTerminal")
    assert got.group(5).startswith("00:00:0")  # TAT
    got = DLR_LINE.match(await eventually(lambda: line(absent)))
    assert got and got.group(2, 3) == ("16", "AbsentSubscriber")

    other = await tilil_account(tapi, tplatform, senders=())
    assert (await get(delivered, other["api_key"])).text == "1009;No dlr"  # not theirs
    assert (await get("288369252")).text == "1009;No dlr"
    assert (await get(delivered, "wrong")).text == "1006;Invalid credentials"


async def test_dlr_push_both_spellings_retried_until_ok(tplatform: Platform, tapi: httpx.AsyncClient,
                                                        receiver: Receiver) -> None:
    account = await tilil_account(tapi, tplatform)
    r = await tapi.put("/v1/account/callbacks", headers=auth(account), json={"dlr_url": receiver.url + "/dlr"})
    assert r.status_code == 200
    answers = iter(["FAILED", "", "0:error;unsupported data type"])

    def answer(call: Received) -> str:
        d = call.json()
        return next(answers, f"OK;{d['messageId']};{d['dldrDesc']};{d['network']}")

    receiver.answer = answer
    (row,) = (await tapi.post("/sms/v3/sendsms", json=with_key(SAMPLE_BULK, account))).json()
    calls = await receiver.wait_for(4, path="/dlr")
    bodies = [c.json() for c in calls]
    assert all(b == bodies[0] for b in bodies)  # the same report, tried again, only the final one
    dlr = bodies[0]
    assert dlr["messageId"] == row["message_id"]
    assert (dlr["dlrStatus"], dlr["dlrDesc"], dlr["network"]) == (1, "DeliveredToTerminal", "Safaricom")
    assert (dlr["dldrStatus"], dlr["dldrDesc"], dlr["dldrTime"]) == (dlr["dlrStatus"], dlr["dlrDesc"], dlr["dlrTime"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", dlr["dlrTime"]) and re.fullmatch(r"\d\d:\d\d:\d\d", dlr["tat"])

    async def acknowledged() -> list[Any]:
        data = (await tapi.get("/v1/callbacks", headers=auth(account))).json()["data"]
        return [c for c in data if c["status"] == "delivered"]

    (cb,) = await eventually(acknowledged)
    assert cb["attempts"] == 4


# --- premium: services, subscriptions, subscribermanage ---


async def test_premium_send_needs_a_subscription_and_subscribermanage(tplatform: Platform, tapi: httpx.AsyncClient) -> None:
    account = await tilil_account(tapi, tplatform)
    svc = await premium_service(tapi, account, tplatform, shortcode="22915", type="subscription", keywords=["game"],
                                service_id=44, api_token="23627367236232ghgge23g22gh2gh2")
    assert (svc["service_id"], svc["keywords"], svc["api_token_set"]) == (44, ["GAME"], True)
    send = lambda **kw: tapi.post("/sms/v3/sendsms", json=with_key(SAMPLE_PREMIUM, account, **kw))  # noqa: E731

    row = (await send()).json()
    same_shape(row, SAMPLE_PREMIUM_FAILED)
    assert (row["status_code"], row["mobile_number"], row["network_name"]) == ("1011", "254708400000", "Safaricom")
    assert "not subscribed" in row["status_desc"]

    manage = lambda body: tapi.post("/sms/v3/subscribermanage", json=with_key(body, account))  # noqa: E731
    assert (await manage(SAMPLE_ACTIVATION)).json() == SAMPLE_SUBSCRIBERMANAGE_ANSWER
    again = (await manage(SAMPLE_ACTIVATION)).json()
    assert again == SAMPLE_SUBSCRIBERMANAGE_ANSWER | {"status_code": "0", "status_desc": "Failed – user exists"}

    row = (await send()).json()
    same_shape(row, SAMPLE_PREMIUM_SUCCESS)
    assert {k: row[k] for k in ("status_code", "status_desc", "mobile_number", "network_name", "message_cost")} == {
        k: SAMPLE_PREMIUM_SUCCESS[k] for k in ("status_code", "status_desc", "mobile_number", "network_name", "message_cost")}
    assert row["message_id"].isdigit() and row["credit_balance"] == "148"

    async def sent() -> Any:
        return next((m for m in tplatform.simulator.sent if m.message_id == row["message_id"]), None)  # type: ignore[union-attr]

    out = await eventually(sent)
    assert (out.sender, out.recipient, out.body) == ("22915", "254708400000", "This is a message from Tilil")

    subs = (await tapi.get("/v1/premium-services/44/subscribers", headers=auth(account))).json()
    assert [(s["mobile"], s["source"]) for s in subs] == [("254708400000", "api")]

    assert (await manage(SAMPLE_DEACTIVATION)).json() == SAMPLE_SUBSCRIBERMANAGE_ANSWER
    assert (await manage(SAMPLE_DEACTIVATION)).json()["status_desc"] == "Failed – user does not exist"
    assert (await send()).json()["status_code"] == "1011"

    # the wrong short code, an unknown service, a bad mobile, a bad option, a bad key
    assert (await send(sender_name="Tilil")).json()["status_code"] == "1001"
    assert (await send(service_id="45")).json()["status_code"] == "1010"
    bad = (await send(mobile="26770792")).json()
    assert bad == SAMPLE_PREMIUM_FAILED
    assert (await manage(SAMPLE_ACTIVATION | {"option": "pause"})).json()["status_code"] == "1010"
    assert (await manage(SAMPLE_ACTIVATION | {"mobile": "12"})).json()["status_code"] == "1003"
    r = await tapi.post("/sms/v3/subscribermanage", json=SAMPLE_ACTIVATION)
    assert r.json()["status_code"] == "1006"

    # another account sees none of it and cannot use the service
    other = await tilil_account(tapi, tplatform, senders=())
    assert (await tapi.get("/v1/premium-services/44", headers=auth(other))).status_code == 404
    assert (await tapi.post("/sms/v3/sendsms", json=with_key(SAMPLE_PREMIUM, other))).json()["status_code"] == "1010"
    r = await tapi.post("/v1/premium-services", headers=auth(other), json={"shortcode": "22915", "type": "on-demand"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "shortcode_taken"


async def test_inbound_forwarded_and_result_message_replied_with_link_id(
    tplatform: Platform, tapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    account = await tilil_account(tapi, tplatform)
    await premium_service(tapi, account, tplatform, shortcode="70700", type="on-demand", keywords=["NEWS"], service_id=32,
                          api_token=SAMPLE_INBOUND["api_token"])
    await tapi.put("/v1/account/callbacks", headers=auth(account), json={"inbound_url": receiver.url + "/mo"})
    receiver.answer = json.dumps(SAMPLE_INBOUND_ANSWER)
    sim = tplatform.simulator
    assert sim is not None
    await sim.inject_inbound("254726770792", "70700", "Test inbox", link_id=SAMPLE_INBOUND["link_id"])

    (call,) = await receiver.wait_for(1, path="/mo")
    got = call.json()
    same_shape(got, SAMPLE_INBOUND)
    assert {k: v for k, v in got.items() if k not in ("inbox_id", "timestamp")} == {
        k: v for k, v in SAMPLE_INBOUND.items() if k not in ("inbox_id", "timestamp")}
    assert got["inbox_id"].isdigit() and re.fullmatch(r"\d{14}", got["timestamp"])

    async def reply() -> Any:
        return next((m for m in sim.sent if m.recipient == "254726770792"), None)

    out = await eventually(reply)
    assert (out.sender, out.body) == ("70700", "Thank you for your message.")
    assert out.meta.get("link_id") == SAMPLE_INBOUND["link_id"]

    # The client may also answer later through sendsms, with the link id we issued.
    reply_body = with_key(SAMPLE_PREMIUM, account, sender_name="70700", service_id="32", mobile="0726770792")
    r = await tapi.post("/sms/v3/sendsms", json=reply_body | {"link_id": SAMPLE_INBOUND["link_id"]})
    assert r.json()["status_code"] == "1000"
    r = await tapi.post("/sms/v3/sendsms", json=reply_body | {"link_id": "12345678987654321"})
    assert r.json()["status_code"] == "1011" and "link_id" in r.json()["status_desc"]
    r = await tapi.post("/sms/v3/sendsms", json=reply_body)  # no link id, no subscription
    assert r.json()["status_code"] == "1011"
    # a link id older than a day has expired
    await tplatform.store.run(lambda tx: tx.execute(
        "INSERT INTO premium_links (service_id, link_id, mobile, issued_at) VALUES (32, 'old-link', ?, ?)",
        "254726770792", now_ms() - 25 * 3600 * 1000))
    r = await tapi.post("/sms/v3/sendsms", json=reply_body | {"link_id": "old-link"})
    assert r.json()["status_code"] == "1011"
    # a link id issued to someone else is not a licence to message this number
    r = await tapi.post("/sms/v3/sendsms", json=reply_body | {"mobile": "0708400000", "link_id": SAMPLE_INBOUND["link_id"]})
    assert r.json()["status_code"] == "1011"


async def test_subscription_keyword_stop_and_network_notice_pushed_with_reply(
    tplatform: Platform, tapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    account = await tilil_account(tapi, tplatform)
    await premium_service(tapi, account, tplatform, shortcode="22915", type="subscription", keywords=["GAME"], service_id=44,
                          api_token=SAMPLE_SUBSCRIPTION["api_token"])
    await tapi.put("/v1/account/callbacks", headers=auth(account),
                   json={"subscription_url": receiver.url + "/subs", "inbound_url": receiver.url + "/mo"})
    receiver.answer = json.dumps(SAMPLE_SUBSCRIPTION_ANSWER)
    sim = tplatform.simulator
    assert sim is not None
    await sim.inject_inbound("254708400000", "22915", "game")

    (call,) = await receiver.wait_for(1, path="/subs")
    got = call.json()
    same_shape(got, SAMPLE_SUBSCRIPTION)
    assert {k: v for k, v in got.items() if k not in ("subscriber_ref", "timestamp")} == {
        k: v for k, v in SAMPLE_SUBSCRIPTION.items() if k not in ("subscriber_ref", "timestamp")}

    async def welcome() -> Any:
        return next((m for m in sim.sent if m.body == SAMPLE_SUBSCRIPTION_ANSWER["result_message"]), None)

    out = await eventually(welcome)
    assert (out.sender, out.recipient, out.meta.get("service_id")) == ("22915", "254708400000", 44)
    row = (await tapi.post("/sms/v3/sendsms", json=with_key(SAMPLE_PREMIUM, account))).json()
    assert row["status_code"] == "1000"  # now a subscriber

    # already subscribed: the keyword is an ordinary inbound message
    await sim.inject_inbound("254708400000", "22915", "GAME on")
    (mo,) = await receiver.wait_for(1, path="/mo")
    assert (mo.json()["message"], mo.json()["service_id"]) == ("GAME on", "44")

    await sim.inject_inbound("254708400000", "22915", "STOP")
    calls = await receiver.wait_for(2, path="/subs")
    # the keyword the subscriber joined with, not STOP (the document: "the exact keyword a user used when subscribing")
    assert (calls[1].json()["update_type"], calls[1].json()["keyword"]) == ("deactivation", "GAME")
    assert calls[1].json()["subscriber_ref"] == got["subscriber_ref"]
    assert (await tapi.post("/sms/v3/sendsms", json=with_key(SAMPLE_PREMIUM, account))).json()["status_code"] == "1011"

    # the network's own activation notice, as an operator connector reports it
    await tplatform.reports.inbound(Inbound("simulator", "254733000100", "22915", "", now_ms(),
                                            meta={"update_type": "activation", "keyword": "GAME"}))
    calls = await receiver.wait_for(3, path="/subs")
    assert (calls[2].json()["mobile"], calls[2].json()["network_name"], calls[2].json()["update_type"]) == (
        "254733000100", "Airtel", "activation")
    # none of the subscription changes went to the inbox (each is queued with its push)
    log = (await tapi.get("/v1/callbacks", headers=auth(account))).json()["data"]
    assert sorted(c["kind"] for c in log) == ["inbound", "subscription", "subscription", "subscription"]


async def test_failed_subscription_push_is_retried_three_times(
    tplatform: Platform, tapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    account = await tilil_account(tapi, tplatform)
    await premium_service(tapi, account, tplatform, shortcode="22915", type="subscription", keywords=["GAME"], service_id=44)
    await tapi.put("/v1/account/callbacks", headers=auth(account), json={"subscription_url": receiver.url + "/subs"})
    receiver.answer = json.dumps({"result_code": 0, "result_desc": "FAILED", "result_message": "no"})
    assert tplatform.simulator is not None
    await tplatform.simulator.inject_inbound("254708400000", "22915", "GAME")

    async def given_up() -> list[Any]:
        return (await tapi.get("/v1/callbacks", headers=auth(account), params={"status": "failed"})).json()["data"]

    (cb,) = await eventually(given_up)
    assert (cb["kind"], cb["attempts"]) == ("subscription", 4)  # the first try and three retries
    assert len(receiver.requests) == 4
    assert not [m for m in tplatform.simulator.sent if m.body == "no"]  # a FAILED answer sends no reply


async def test_native_sender_endpoints_and_openapi(tplatform: Platform, tapi: httpx.AsyncClient) -> None:
    account = await tilil_account(tapi, tplatform, senders=())
    h = auth(account)
    assert (await tapi.post("/v1/senders", headers=h, json={"name": "Much too long a name"})).status_code == 400
    assert (await tapi.post("/v1/senders", headers=h, json={"name": "Duka", "networks": ["Safaricom"]})).status_code == 201
    again = (await tapi.post("/v1/senders", headers=h, json={"name": "Duka"})).json()
    assert (again["networks"], again["status"]) == (None, "pending")
    assert [(s["name"], s["status"]) for s in (await tapi.get("/v1/senders", headers=h)).json()] == [("Duka", "pending")]
    other = await make_account(tplatform)
    assert (await tapi.get("/v1/senders", headers=auth(other))).json() == []
    assert (await tapi.delete("/v1/senders/Duka", headers=auth(other))).status_code == 404
    assert (await tapi.delete("/v1/senders/Duka", headers=h)).status_code == 204
    paths = (await tapi.get("/openapi.json")).json()["paths"]
    assert {"/v1/senders", "/v1/premium-services", "/v1/premium-services/{id}/subscribers/{mobile}"} <= set(paths)


def test_cli_provisions_senders_and_services(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from ujumbe import cli

    data = ["--data-dir", str(tmp_path / "d")]
    assert cli.main([*data, "accounts", "create", "--name", "Duka", "--email", "ops@duka.co.ke",
                     "--password", "a long password"]) == 0
    account_id = json.loads(capsys.readouterr().out)["account_id"]
    assert cli.main([*data, "senders", "add", account_id, "Tilil", "--networks", "Safaricom,Airtel"]) == 0
    assert json.loads(capsys.readouterr().out)["networks"] == ["Airtel", "Safaricom"]
    assert cli.main([*data, "services", "add", account_id, "--shortcode", "22915", "--type", "subscription",
                     "--keywords", "game,play", "--service-id", "44", "--api-token", "t0ken"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["service_id"], out["keywords"], out["api_token_set"]) == (44, ["GAME", "PLAY"], True)
    # the same short code for someone else is refused, clearly
    assert cli.main([*data, "accounts", "create", "--name", "B", "--email", "b@duka.co.ke",
                     "--password", "a long password"]) == 0
    other = json.loads(capsys.readouterr().out)["account_id"]
    assert cli.main([*data, "services", "add", other, "--shortcode", "22915", "--type", "on-demand"]) == 1
    assert "shortcode_taken" in capsys.readouterr().err
