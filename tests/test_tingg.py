"""The Tingg Engage dialect, driven with the specification's own sample
payloads: token, engagement, callbacks. Both databases."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import Receiver, auth, eventually, make_account, make_settings, serving
from ujumbe.http.app import create_app
from ujumbe.runtime import Platform

# --- the document's samples, verbatim ---

SAMPLE_AUTH = {"username": "TEST_USER", "password": "TEST_PASSWORD"}

SAMPLE_ENGAGEMENT: dict[str, Any] = json.loads("""
{
"notificationType": "SMS_TEST",
"channels": [
"SMS"
],
"referenceID": "cas-123",
"callbackUrl": "https://client.callback.url/",
"smsDto": {
"smsType": "TRX",
"msisdn": [
"254700000000",
"254700000000"
],
"message": "Test message ${placeholder}",
"params": {
"placeholder": "value"
},
"extraData": {
"clientinfo": "additional client info"
}
}
}
""")

SAMPLE_RESPONSE = {"transactionID": "{uuid}", "statusCode": 200, "message": "Message queued successfully."}

SAMPLE_CALLBACK = {
    "refId": "0103fd2e-e784-469f-8cee-7d87720f2b98_6371f87b-aa3b-4387-850d-c6aa1153286a9",
    "status": 103,
    "msisdn": "254773301164",
    "statusDescription": "Forwarded to operator",
    "timestamp": "2024-04-11T09:34:31.066667",
    "receivedDateTime": "2024-04-11 09:34:30.749",
    "submitDateTime": "2024-04-11 09:34:30.761",
    "doneDateTime": None,
}

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")


def engagement(callback_url: str | None = None, *, msisdn: list[Any] | None = None, **top: Any) -> dict[str, Any]:
    body = copy.deepcopy(SAMPLE_ENGAGEMENT)
    # the sample's callback host does not exist: our receiver, or none
    if callback_url is not None:
        body["callbackUrl"] = callback_url
    else:
        del body["callbackUrl"]
    if msisdn is not None:
        body["smsDto"]["msisdn"] = msisdn
    body.update(top)
    return body


async def tingg_account(platform: Platform, api: httpx.AsyncClient, credits: str | None = "100") -> tuple[dict[str, Any], dict[str, str]]:
    """An account with the sample's credentials, and the bearer header a
    Tingg client gets from /api/v1/cas/authenticate."""
    account = await make_account(platform, credits=credits, username=SAMPLE_AUTH["username"], password=SAMPLE_AUTH["password"])
    r = await api.post("/api/v1/cas/authenticate", json=SAMPLE_AUTH)
    assert r.status_code == 200, r.text
    return account, {"authorization": f"Bearer {r.json()['access_token']}"}


async def messages_of(platform: Platform, account: dict[str, Any], transaction_id: str) -> list[dict[str, Any]]:
    return list(reversed(await platform.messaging.messages(account["account_id"], limit=100, request_id=transaction_id)))


def by_status(calls: list[Any]) -> dict[str, list[int]]:
    """msisdn -> its callback statuses in the order the events happened."""
    out: dict[str, list[tuple[str, int]]] = {}
    for call in calls:
        p = call.json()
        out.setdefault(p["msisdn"], []).append((p["timestamp"], p["status"]))
    return {k: [s for _, s in sorted(v)] for k, v in out.items()}


# --- token ---


async def test_authenticate_with_the_sample_payload_and_refresh(platform: Platform, api: httpx.AsyncClient) -> None:
    await make_account(platform, username="TEST_USER", password="TEST_PASSWORD")
    r = await api.post("/api/v1/cas/authenticate", json=SAMPLE_AUTH)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert set(tokens) == {"token_type", "expires_in", "access_token", "refresh_token"}
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 3600
    assert isinstance(tokens["access_token"], str) and isinstance(tokens["refresh_token"], str)

    # the token sends
    h = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await api.post("/api/v2/engagement", headers=h, json=engagement())).status_code == 200

    # refresh, as JSON and in the OAuth form; each refresh token works once
    r = await api.post("/api/v1/cas/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200 and r.json()["token_type"] == "bearer", r.text
    again = await api.post("/api/v1/cas/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401 and again.json()["statusCode"] == 401
    r = await api.post(
        "/api/v1/cas/refresh", data={"grant_type": "refresh_token", "refresh_token": r.json()["refresh_token"]}
    )
    assert r.status_code == 200, r.text
    # JSON that curl -d labels as a form (docs' examples) is read as JSON
    r = await api.post("/api/v1/cas/refresh", content=json.dumps({"refresh_token": r.json()["refresh_token"]}),
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    new = {"authorization": f"Bearer {r.json()['access_token']}"}
    assert (await api.post("/api/v2/engagement", headers=new, json=engagement(referenceID="cas-124"))).status_code == 200
    bad_grant = await api.post("/api/v1/cas/refresh", data={"grant_type": "password", "refresh_token": "x"})
    assert bad_grant.status_code == 400 and "grant_type" in bad_grant.json()["message"]


async def test_wrong_or_missing_credentials(platform: Platform, api: httpx.AsyncClient) -> None:
    await make_account(platform, username="TEST_USER", password="TEST_PASSWORD")
    r = await api.post("/api/v1/cas/authenticate", json={"username": "TEST_USER", "password": "WRONG_PASSWORD"})
    assert r.status_code == 401
    assert r.json() == {"statusCode": 401, "message": "Wrong username or password"}
    r = await api.post("/api/v1/cas/authenticate", json={"username": "TEST_USER"})
    assert r.status_code == 400 and "password" in r.json()["message"]
    r = await api.post("/api/v1/cas/authenticate", content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    # failed logins are limited; the answer says when to come back
    for _ in range(4):
        assert (await api.post("/api/v1/cas/authenticate", json={**SAMPLE_AUTH, "password": "nope"})).status_code == 401
    r = await api.post("/api/v1/cas/authenticate", json=SAMPLE_AUTH)
    assert r.status_code == 429 and r.json()["statusCode"] == 429 and int(r.headers["retry-after"]) > 0


# --- engagement ---


async def test_sample_engagement_without_a_template_sends_the_message_with_params(
    platform: Platform, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    account, h = await tingg_account(platform, api)
    r = await api.post("/api/v2/engagement", headers=h, json=engagement(receiver.url + "/tingg"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == set(SAMPLE_RESPONSE) and body["statusCode"] == 200
    assert body["message"].startswith(SAMPLE_RESPONSE["message"])
    transaction = str(uuid.UUID(body["transactionID"]))

    msgs = await messages_of(platform, account, transaction)
    # the sample names the same number twice: it gets one message
    assert [(m["recipient"], m["state"] != "rejected") for m in msgs] == [("254700000000", True), ("254700000000", False)]
    assert msgs[0]["body"] == "Test message value"
    meta = await platform.store.read(lambda tx: tx.fetchval("SELECT meta FROM requests WHERE id = ?", transaction))
    assert json.loads(meta) == {
        "notificationType": "SMS_TEST", "smsType": "TRX", "extraData": {"clientinfo": "additional client info"},
    }

    # 103 then 104 for the message, 102 for the repeated number
    calls = await receiver.wait_for(3)
    payloads = [c.json() for c in calls]
    assert sorted(p["status"] for p in payloads) == [102, 103, 104]
    dup = next(p for p in payloads if p["status"] == 102)
    assert "appears twice" in dup["statusDescription"]


async def test_template_for_the_notification_type_replaces_the_message(platform: Platform, api: httpx.AsyncClient) -> None:
    account, h = await tingg_account(platform, api)
    # templates per notificationType are managed through the native API
    r = await api.put(
        "/v1/templates/SMS_TEST", headers=auth(account), json={"body": "Your code is ${placeholder}.", "channel": "sms"}
    )
    assert r.status_code == 200, r.text
    r = await api.post("/api/v2/engagement", headers=h, json=engagement())
    assert r.status_code == 200, r.text
    (msg, _dup) = await messages_of(platform, account, r.json()["transactionID"])
    assert msg["body"] == "Your code is value."

    # the template's placeholders must be given
    body = engagement(referenceID="cas-125")
    body["smsDto"]["params"] = {}
    r = await api.post("/api/v2/engagement", headers=h, json=body)
    assert r.status_code == 400
    assert r.json() == {"transactionID": None, "statusCode": 400, "message": "The message needs values for: placeholder"}

    # no template for this type and no message to fall back on
    body = engagement(referenceID="cas-126", notificationType="OTP_LOGIN")
    del body["smsDto"]["message"]
    r = await api.post("/api/v2/engagement", headers=h, json=body)
    assert r.status_code == 400 and "No template 'OTP_LOGIN'" in r.json()["message"]


async def test_repeated_reference_returns_the_original_transaction_and_sends_nothing(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    account, h = await tingg_account(platform, api)
    first = await api.post("/api/v2/engagement", headers=h, json=engagement())
    assert first.status_code == 200, first.text
    balance = await platform.credits.balance(account["account_id"])
    again = await api.post("/api/v2/engagement", headers=h, json=engagement())
    assert again.status_code == 200, again.text
    assert again.json()["transactionID"] == first.json()["transactionID"]
    assert again.json()["statusCode"] == 200 and "Duplicate referenceID" in again.json()["message"]
    assert len(await platform.messaging.messages(account["account_id"], limit=100)) == 2
    assert await platform.credits.balance(account["account_id"]) == balance

    # a referenceID is unique per account, not across accounts
    other = await make_account(platform)
    r = await api.post("/api/v2/engagement", headers=auth(other), json=engagement())
    assert r.status_code == 200 and r.json()["transactionID"] != first.json()["transactionID"]


async def test_callbacks_in_the_documented_shape(platform: Platform, api: httpx.AsyncClient, receiver: Receiver) -> None:
    account, h = await tingg_account(platform, api)
    # delivered; not a number; undelivered at the operator (simulator: ...0002)
    r = await api.post(
        "/api/v2/engagement", headers=h,
        json=engagement(receiver.url + "/tingg", msisdn=["254773301164", "12345", "254711110002"]),
    )
    assert r.status_code == 200, r.text
    assert "12345" in r.json()["message"]  # queued, with the recipient it could not take named
    transaction = r.json()["transactionID"]
    ids = {m["recipient"]: m["id"] for m in await messages_of(platform, account, transaction)}

    calls = await receiver.wait_for(5)
    assert by_status(calls) == {"254773301164": [103, 104], "12345": [102], "254711110002": [103, 129]}
    secret = platform.accounts.webhook_secret((await platform.accounts.get(account["account_id"])).key_seed)
    for call in calls:
        Webhook(secret).verify(call.body, call.headers)  # signed like every Ujumbe callback
        p = call.json()
        assert set(p) == set(SAMPLE_CALLBACK)
        assert p["refId"] == f"{transaction}_{ids[p['msisdn']]}"
        assert isinstance(p["status"], int) and isinstance(p["statusDescription"], str)
        assert ISO.match(p["timestamp"]) and STAMP.match(p["receivedDateTime"])
        if p["status"] == 102:
            assert p["submitDateTime"] is None and STAMP.match(p["doneDateTime"])
            assert "not a valid phone number" in p["statusDescription"]
        elif p["status"] == 103:
            assert p["statusDescription"] == SAMPLE_CALLBACK["statusDescription"]
            assert STAMP.match(p["submitDateTime"]) and p["doneDateTime"] is None
        else:
            assert STAMP.match(p["submitDateTime"]) and STAMP.match(p["doneDateTime"])
            assert p["receivedDateTime"] <= p["submitDateTime"] <= p["doneDateTime"]
    failed = next(c.json() for c in calls if c.json()["status"] == 129)
    assert "absent_subscriber" in failed["statusDescription"]


async def test_all_recipients_invalid_is_a_400_with_the_transaction(
    platform: Platform, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    account, h = await tingg_account(platform, api)
    r = await api.post("/api/v2/engagement", headers=h, json=engagement(receiver.url + "/t", msisdn=["12345"]))
    assert r.status_code == 400
    body = r.json()
    assert body["statusCode"] == 400 and "No message was queued" in body["message"] and body["transactionID"]
    (call,) = await receiver.wait_for(1)
    assert call.json()["status"] == 102 and call.json()["refId"].startswith(body["transactionID"] + "_")
    assert await platform.credits.balance(account["account_id"]) == 100 * 10_000


@pytest.fixture
async def quick_platform(tmp_path, database_url) -> AsyncIterator[Platform]:  # type: ignore[no-untyped-def]
    # the retry schedule shrunk to milliseconds
    p = Platform(make_settings(tmp_path, database_url, callback_delay_scale=0.0001))
    await p.start("all")
    try:
        yield p
    finally:
        await p.stop()


async def test_callbacks_are_retried_until_the_client_answers(quick_platform: Platform, receiver: Receiver) -> None:
    receiver.fail_first = 2
    async with serving(create_app(quick_platform, manage_platform=False)) as base, httpx.AsyncClient(base_url=base) as api:
        account, h = await tingg_account(quick_platform, api)
        # no callbackUrl in the request: the account's delivery-report URL applies
        await quick_platform.accounts.set_callbacks(account["account_id"], {"dlr_url": receiver.url + "/dlr"})
        r = await api.post("/api/v2/engagement", headers=h, json=engagement(msisdn=["254700000000"]))
        assert r.status_code == 200, r.text
        calls = await receiver.wait_for(2, path="/dlr")
        assert by_status(calls) == {"254700000000": [103, 104]}

        async def all_delivered() -> list[dict[str, Any]]:
            data = (await api.get("/v1/callbacks", headers=auth(account))).json()["data"]
            return data if [c["status"] for c in data] == ["delivered", "delivered"] else []

        log = await eventually(all_delivered)
        assert sum(c["attempts"] for c in log) == 2 + 2


# --- refusals ---


async def test_missing_bad_and_expired_tokens_are_401(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    expired = await platform.accounts.issue_tokens(await platform.accounts.get(account["account_id"]), ttl_s=-60)
    for headers in (
        {},
        {"authorization": "Bearer not-a-token"},
        {"authorization": f"Bearer {expired['access_token']}"},
        {"authorization": "Basic dXNlcjpwYXNz"},
    ):
        r = await api.post("/api/v2/engagement", headers=headers, json=engagement())
        assert r.status_code == 401, headers
        body = r.json()
        assert body["transactionID"] is None and body["statusCode"] == 401 and body["message"]
        assert r.headers["www-authenticate"] == "Bearer"
    r = await api.post("/api/v2/engagement", headers={"authorization": f"Bearer {expired['access_token']}"}, json=engagement())
    assert "expired" in r.json()["message"]
    # an API key is a bearer token too
    assert (await api.post("/api/v2/engagement", headers=auth(account), json=engagement())).status_code == 200


async def test_bad_payloads_are_400_in_the_tingg_envelope(platform: Platform, api: httpx.AsyncClient) -> None:
    account, h = await tingg_account(platform, api)
    no_ref = engagement()
    del no_ref["referenceID"]
    no_type = engagement()
    del no_type["notificationType"]
    no_sms = engagement()
    del no_sms["smsDto"]
    no_msisdn = engagement()
    del no_msisdn["smsDto"]["msisdn"]
    cases: list[tuple[Any, str]] = [
        (no_ref, "referenceID"),
        (no_type, "notificationType"),
        (engagement(referenceID="  "), "referenceID"),
        (engagement(notificationType=""), "notificationType"),
        (no_sms, "smsDto"),
        (no_msisdn, "msisdn"),
        (engagement(msisdn=[]), "msisdn"),
        (engagement(msisdn="254700000000"), "msisdn"),
        (engagement(channels="SMS"), "channels"),
        (engagement(referenceID=123), "referenceID"),
        (engagement(callbackUrl="ftp://client.callback.url/"), "http"),
        (b"{\"referenceID\": ", "JSON"),
        (b"", "empty"),
        (b"[1, 2]", "object"),
    ]
    for body, word in cases:
        r = await (
            api.post("/api/v2/engagement", headers=h, content=body)
            if isinstance(body, bytes)
            else api.post("/api/v2/engagement", headers=h, json=body)
        )
        assert r.status_code == 400, (body, r.text)
        answer = r.json()
        assert answer["transactionID"] is None and answer["statusCode"] == 400, answer
        assert word.lower() in answer["message"].lower(), (word, answer)
    assert await platform.messaging.messages(account["account_id"], limit=10) == []
    # numbers written as JSON numbers are taken as they are
    r = await api.post("/api/v2/engagement", headers=h, json=engagement(msisdn=[254700000000]))
    assert r.status_code == 200 and r.json()["message"] == SAMPLE_RESPONSE["message"], r.text


async def test_insufficient_credit_is_402_and_sends_nothing(platform: Platform, api: httpx.AsyncClient) -> None:
    account, h = await tingg_account(platform, api, credits=None)
    r = await api.post("/api/v2/engagement", headers=h, json=engagement())
    assert r.status_code == 402
    assert r.json()["statusCode"] == 402 and r.json()["transactionID"] is None
    assert "Insufficient credit" in r.json()["message"]
    assert await platform.messaging.messages(account["account_id"], limit=10) == []


async def test_unknown_channel_is_refused_whole(platform: Platform, api: httpx.AsyncClient) -> None:
    account, h = await tingg_account(platform, api)
    email_dto = {"email": ["jane@example.com"], "message": "Test message ${placeholder}", "params": {"placeholder": "v"}}
    for channels in (["WHATSAPP"], ["SMS", "WHATSAPP"]):
        body = engagement(channels=channels, emailDto=email_dto)
        r = await api.post("/api/v2/engagement", headers=h, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["statusCode"] == 422 and r.json()["transactionID"] is None
        assert "not" in r.json()["message"] and channels[-1] in r.json()["message"]
    # a mixed request is refused whole: not even the SMS went
    assert await platform.messaging.messages(account["account_id"], limit=10) == []
    # channels left out means SMS
    body = engagement()
    del body["channels"]
    assert (await api.post("/api/v2/engagement", headers=h, json=body)).status_code == 200


def test_sample_callback_matches_the_formats_used_here() -> None:
    # the patterns above are the document's own sample's
    assert ISO.match(SAMPLE_CALLBACK["timestamp"]) and STAMP.match(SAMPLE_CALLBACK["receivedDateTime"])
    assert STAMP.match(SAMPLE_CALLBACK["submitDateTime"])


async def test_sms_and_email_in_one_request(platform: Platform, api: httpx.AsyncClient, receiver: Receiver) -> None:
    account, h = await tingg_account(platform, api)
    await platform.domains.add(account["account_id"], "duka.co.ke")
    # the notificationType's email template, with its subject
    r = await api.put("/v1/templates/SMS_TEST", headers=auth(account), json={
        "channel": "email", "subject": "Oda ${placeholder}", "body": "Barua: ${placeholder}"})
    assert r.status_code in (200, 201), r.text
    body = engagement(receiver.url + "/tingg", msisdn=["254773301164"], channels=["SMS", "EMAIL"],
                      emailDto={"email": ["jane@example.com", "bounce@example.com", "not-an-address"],
                                "params": {"placeholder": "value"}})
    r = await api.post("/api/v2/engagement", headers=h, json=body)
    assert r.status_code == 200, r.text
    assert "not-an-address" in r.json()["message"]  # refused alone, named in the answer
    transaction = r.json()["transactionID"]
    sms = await messages_of(platform, account, transaction)
    assert [m["channel"] for m in sms] == ["sms"] and sms[0]["body"] == "Test message value"
    # each recipient of each channel is called back in Tingg's shape
    calls = await receiver.wait_for(7)
    assert by_status(calls) == {"254773301164": [103, 104], "jane@example.com": [103, 104],
                                "bounce@example.com": [103, 129], "not-an-address": [102]}
    emails = [c.json() for c in calls if c.json().get("channel") == "EMAIL"]
    assert {p["email"] for p in emails} == {"jane@example.com", "bounce@example.com", "not-an-address"}
    assert all(set(p) == set(SAMPLE_CALLBACK) | {"email", "channel"} for p in emails)
    mail = next(m for m in await platform.messaging.messages(account["account_id"], limit=10, recipient="jane@example.com"))
    assert mail["body"] == "Barua: value" and mail["sender"] == "no-reply@duka.co.ke"
    # the same referenceID again: a duplicate, nothing new on either channel
    r = await api.post("/api/v2/engagement", headers=h, json=body)
    assert r.json()["transactionID"] == transaction and "Duplicate" in r.json()["message"]
    assert len(await platform.messaging.messages(account["account_id"], limit=20)) == 4


async def test_email_without_a_sending_domain_sends_nothing(platform: Platform, api: httpx.AsyncClient) -> None:
    account, h = await tingg_account(platform, api)
    body = engagement(channels=["SMS", "EMAIL"], emailDto={"email": ["jane@example.com"], "subject": "Hi"})
    r = await api.post("/api/v2/engagement", headers=h, json=body)
    assert r.status_code == 400 and "sending domain" in r.json()["message"]
    assert await platform.messaging.messages(account["account_id"], limit=10) == []  # not even the SMS
