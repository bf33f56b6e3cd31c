"""Messangi's REST API as its clients call it: signed path segments, Base64
text, XML answers. Signatures are computed here independently of the dialect."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tests.conftest import auth, client_of, eventually, make_account
from tests.wire import WireCase, run_case
from ujumbe.dialects.messangi import signature
from ujumbe.runtime import Platform
from ujumbe.store import now_ms

BASE = "/messangi_mmc/rest/api/"


def test_signature_matches_the_public_client_vector() -> None:
    # from a public Messangi client: sendMT instanceId/from/carrier/to/textB64
    signed = "7/2020/2/18765422035/U2ltcGxlIE1lc3NhZ2Ug4pi6"
    assert base64.urlsafe_b64decode(signed.rsplit("/", 1)[1] + "==").decode() == "Simple Message ☺"
    expected = "f69bc6a924480d3ed82970d9679c4be90589bd3064add51c47e8bf50a211d55f"
    assert signature("my-private-key", signed.split("/")) == expected
    assert hmac.new(b"my-private-key", signed.encode(), hashlib.sha256).hexdigest() == expected


def b64(text: str, *, pad: bool = False, standard: bool = False) -> str:
    raw = (base64.standard_b64encode if standard else base64.urlsafe_b64encode)(text.encode()).decode()
    return raw if pad else raw.rstrip("=")


def signed_path(account: dict[str, Any], method: str, *params: str) -> str:
    """Signed over the values; in the path, what a URL needs escaped is (a '/'
    of standard Base64 as %2F)."""
    key = account["private_key"].encode()
    sig = hmac.new(key, "/".join(params).encode(), hashlib.sha256).hexdigest()
    escaped = [urllib.parse.quote(p, safe="=+%") for p in params]
    return BASE + "/".join((method, *escaped, account["public_key"], sig))


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


@pytest.fixture
async def setup(platform: Platform) -> dict[str, Any]:
    a = await make_account(platform, region="VE", credits="100")
    b = await make_account(platform, region="VE", credits="100")
    await platform.senders.add(a["account_id"], "2020")
    await platform.store.run(lambda tx: tx.execute(
        "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, 'shortcode', 'messangi', ?)",
        "24365", a["account_id"], now_ms()))
    return {"a": a, "b": b}


def operator(platform: Platform) -> Any:
    return lambda: list(platform.simulator.sent) if platform.simulator else []


async def test_wire_cases(platform: Platform, setup: dict[str, Any]) -> None:
    a, b = setup["a"], setup["b"]
    inst = a["instance_id"]
    good_sig = signed_path(a, "sendMT", inst, "2020", "null", "04121234567", b64("Hola"))
    cases = [
        WireCase("sendSMS: number and text in Base64", "GET",
                 signed_path(a, "tools/sendSMS", inst, "movistar", "2020", b64("04141234567"), b64("Hola ☺ {x} ${y}")),
                 contains=("<input>sendSMS</input>", "<status>OK</status>", "<description>Completed</description>",
                           "<to>584141234567</to>", "<from>2020</from>", "<text>Hola ☺ {x} ${y}</text>",
                           "<status>SENT_TO_CARRIER</status>", "<statusDescription>Sent to Carrier</statusDescription>",
                           "<encoding>UTF-8</encoding>", "<timezone>America/Caracas</timezone>",
                           f"<clientId>{a['account_id']}</clientId>", "<carrier>movistar</carrier>"),
                 content_type="application/xml",
                 sent=lambda s: any(m.body == "Hola ☺ {x} ${y}" and m.recipient == "584141234567" for m in s)),
        WireCase("sendMT: plain number, carrier null", "GET", good_sig,
                 contains=("<input>sendMT</input>", "<status>OK</status>"), absent=("<result>",),
                 sent=lambda s: any(m.body == "Hola" for m in s)),
        WireCase("sendMT with flags, padded standard Base64", "GET",
                 signed_path(a, "sendMT", inst, "2020", "null", "584121234568", b64("Flags ok?", pad=True, standard=True),
                             "urgent"),
                 contains=("<status>OK</status>",), sent=lambda s: any(m.body == "Flags ok?" for m in s)),
        WireCase("a signature that does not match", "GET", good_sig[:-4] + "0000",
                 contains=("<status>BAD_SIGNATURE</status>",)),
        WireCase("a signature over other parameters", "GET",
                 good_sig.replace("/04121234567/", "/04121234569/"), contains=("<status>BAD_SIGNATURE</status>",)),
        WireCase("an unknown public key", "GET",
                 BASE + f"sendMT/{inst}/2020/null/04121234567/{b64('x')}/nosuchkey/{'0' * 64}",
                 contains=("<status>ERROR</status>", "Unknown public key")),
        WireCase("another account's instance id", "GET",
                 signed_path(b, "sendMT", inst, "2020", "null", "04121234567", b64("x")),
                 contains=("<status>ERROR</status>", "instance id")),
        WireCase("a from that is not the account's", "GET",
                 signed_path(a, "sendMT", inst, "9999", "null", "04121234567", b64("x")),
                 contains=("<status>ERROR</status>", "'9999' is not one of this instance")),
        WireCase("text that is not Base64", "GET",
                 signed_path(a, "sendMT", inst, "2020", "null", "04121234567", "%%%"),
                 contains=("<status>ERROR</status>", "Base64")),
        WireCase("a carrier that does not serve the number", "GET",
                 signed_path(a, "tools/sendSMS", inst, "Digitel", "2020", b64("04141234567"), b64("x")),
                 contains=("<status>ERROR</status>", "Digitel does not serve")),
        WireCase("a carrier named by its first word", "GET",
                 signed_path(a, "tools/sendSMS", inst, "Digitel", "2020", b64("04121234567"), b64("x")),
                 contains=("<status>OK</status>", "<carrier>Digitel</carrier>")),
        WireCase("a bad number", "GET",
                 signed_path(a, "sendMT", inst, "2020", "null", "12", b64("x")), contains=("<status>ERROR</status>",)),
        WireCase("an unknown method", "GET", BASE + "tools/nothing/1/2", contains=("<status>ERROR</status>",)),
        WireCase("too few parameters", "GET", BASE + "sendMT/1/2/3", contains=("<status>ERROR</status>",)),
        WireCase("a message id out of range", "GET", signed_path(a, "getMessage", inst, "99999999999999999999"),
                 contains=("<status>ERROR</status>",)),
        WireCase("another account's message", "GET", signed_path(b, "getMessage", b["instance_id"], "1"),
                 contains=("<status>ERROR</status>", "No message 1")),
    ]
    async with client_of(platform) as api:
        for case in cases:
            await run_case(api, case, {}, operator(platform))


async def test_get_message_follows_the_life_cycle(platform: Platform, setup: dict[str, Any]) -> None:
    a = setup["a"]
    async with client_of(platform) as api:
        r = await api.get(signed_path(a, "tools/sendSMS", a["instance_id"], "null", "2020", b64("04121234567"), b64("Hi")))
        mid = parse(r.text).findtext("result/messages/message/id")
        assert mid and mid.isdigit()

        async def delivered() -> Any:
            got = await api.get(signed_path(a, "getMessage", a["instance_id"], mid))
            return got if "<status>DELIVERED</status>" in got.text else None

        got = await eventually(delivered)
        block = parse(got.text).find("result/messages/message")
        assert block is not None and block.findtext("to") == "584121234567"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}-04:00", block.findtext("date") or "")


async def test_pin_is_returned_once_and_checks_through_the_native_api(platform: Platform, setup: dict[str, Any]) -> None:
    a = setup["a"]
    async with client_of(platform) as api:
        r = await api.get(signed_path(a, "tools/sendSMSPinMobileNumberConfirm", a["instance_id"], "null", "2020",
                                      "04121234567", b64("Tu PIN es"), "5"))
        root = parse(r.text)
        assert root.findtext("status") == "OK", r.text
        pin = root.findtext("result/PinSMSConfirmation/pin") or ""
        assert re.fullmatch(r"\d{5}", pin)
        await eventually(lambda: _sent(platform, f"Tu PIN es {pin}"))
        listed = (await api.get("/v1/verifications", headers=auth(a))).json()["data"]
        assert len(listed) == 1 and pin not in str(listed)
        check = await api.post(f"/v1/verifications/{listed[0]['id']}/check", headers=auth(a), json={"code": pin})
        assert check.json()["result"] == "approved"
        bad = await api.get(signed_path(a, "tools/sendSMSPinMobileNumberConfirm", a["instance_id"], "null", "2020",
                                        "04121234567", b64("x"), "3"))
        assert parse(bad.text).findtext("status") == "ERROR" and "4-10" in bad.text


async def _sent(platform: Platform, body: str) -> bool:
    return any(m.body == body for m in (platform.simulator.sent if platform.simulator else []))


async def test_fire_message_arrives_as_inbound_and_pages(platform: Platform, setup: dict[str, Any]) -> None:
    a, b = setup["a"], setup["b"]
    inst = a["instance_id"]
    async with client_of(platform) as api:
        r = await api.get(signed_path(a, "fireMessage", inst, "04121234567", b64("OGANGI hola")))
        root = parse(r.text)
        assert root.findtext("input") == "activateCampaign" and root.findtext("status") == "OK"
        assert root.findtext("result/mo/mobileNumber") == "584121234567"
        body = {"event": {"fld-val-list": {"sender_id_id": "24365", "keyword_value": "PROMO dos",
                                              "recipient_address": "04141234567"}}}
        r = await api.post(signed_path(a, "fireMessage", inst), json=body)
        root = parse(r.text)
        assert root.findtext("input") == "fireMessage" and root.findtext("result/mo/text") == "PROMO dos"
        assert root.findtext("result/mo/instanceId") == inst
        # the short code must be the account's
        body["event"]["fld-val-list"]["sender_id_id"] = "99999"
        r = await api.post(signed_path(a, "fireMessage", inst), json=body)
        assert parse(r.text).findtext("status") == "ERROR"
        r = await api.post(signed_path(a, "fireMessage", inst), content=b"not json")
        assert parse(r.text).findtext("status") == "ERROR"

        # both appear in the native inbound list, and in Messangi's pages
        native = (await api.get("/v1/inbound", headers=auth(a))).json()["data"]
        assert {m["text"] for m in native} == {"OGANGI hola", "PROMO dos"}
        assert (await api.get("/v1/inbound", headers=auth(b))).json()["data"] == []
        page = parse((await api.get(signed_path(a, "tools/getMOMessages", inst, "1", "1", "null"))).text)
        assert page.findtext("result/MOMessageList/records") == "2"
        assert len(page.findall("result/MOMessageList/MessageList/MOMessage")) == 1
        page2 = parse((await api.get(signed_path(a, "tools/getMOMessages", inst, "2", "1", "null"))).text)
        assert page2.findtext("result/MOMessageList/MessageList/MOMessage/text") == "PROMO dos"
        filtered = parse((await api.get(signed_path(a, "tools/getMOMessages", inst, "1", "10", "keyword:promo"))).text)
        assert filtered.findtext("result/MOMessageList/records") == "1"
        assert filtered.findtext("result/MOMessageList/MessageList/MOMessage/keyword") == "PROMO"
        assert filtered.findtext("result/MOMessageList/MessageList/MOMessage/from") == "584141234567"
        by_sender = parse((await api.get(signed_path(a, "tools/getMOMessages", inst, "1", "10", "from:04121234567"))).text)
        assert by_sender.findtext("result/MOMessageList/records") == "1"
        since = parse((await api.get(signed_path(a, "tools/getMOMessages", inst, "1", "10",
                                                 "since:2999-01-01,carrier:Movistar"))).text)
        assert since.findtext("result/MOMessageList/records") == "0"
        bad = parse((await api.get(signed_path(a, "tools/getMOMessages", inst, "1", "10", "colour:red"))).text)
        assert bad.findtext("status") == "ERROR"
        other = parse((await api.get(signed_path(b, "tools/getMOMessages", b["instance_id"], "1", "10", "null"))).text)
        assert other.findtext("result/MOMessageList/records") == "0"


async def test_delivery_reports_are_pushed_in_messangi_words(platform: Platform, setup: dict[str, Any], receiver: Any) -> None:
    a = setup["a"]
    async with client_of(platform) as api:
        r = await api.put("/v1/account/callbacks", headers=auth(a), json={"dlr_url": receiver.url + "/dlr"})
        assert r.status_code == 200, r.text
        r = await api.get(signed_path(a, "sendMT", a["instance_id"], "2020", "null", "04121234567", b64("Hola")))
        assert parse(r.text).findtext("status") == "OK", r.text

        async def delivered() -> Any:
            return [c.json() for c in receiver.requests if c.json().get("status") == "DELIVERED"]

        (report,) = await eventually(delivered)
    assert report["to"] == "584121234567" and report["from"] == "2020"
    assert report["statusDescription"] == "Delivered to the handset"
    assert "text" not in report  # a report never carries the message (it may hold a code)


async def test_guessing_signatures_is_limited_per_address_in_messangi_words(platform: Platform,
                                                                           setup: dict[str, Any]) -> None:
    # as a wrong API key in the other dialects: counted per client address in the
    # store, over the limit refused after a pause; a right signature still gets in
    platform.accounts.throttle.hold_s = 0.05
    a = setup["a"]
    inst = a["instance_id"]
    good = signed_path(a, "sendMT", inst, "2020", "null", "04121234567", b64("Hola"))
    limit = platform.accounts.key_attempts
    async with client_of(platform) as api:
        for n in range(limit):
            r = await api.get(good[:-8] + f"{n:08x}")
            assert r.status_code == 200 and "<status>BAD_SIGNATURE</status>" in r.text, r.text
        for guess in (good[:-8] + "ffffffff", BASE + f"sendMT/{inst}/2020/null/04121234567/{b64('x')}/guess/{'0' * 64}"):
            r = await api.get(guess)
            root = parse(r.text)
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
            assert root.findtext("status") == "ERROR", r.text
            assert root.findtext("description").startswith("Too many failed signatures"), r.text
            assert root.findtext("input") == "sendMT"
        r = await api.get(good)
        assert "<status>OK</status>" in r.text, r.text
