"""Plain text goes out as written, and an empty reference is no reference:
through /v1, SMPP (smpplib), Tingg and Tilil, on both databases. What the
operator receives is read from the built-in simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import auth, client_of, eventually, make_account, running
from tests.test_smpp_customers import Esme, customer
from tests.test_tilil import SAMPLE_BULK, tilil_account, with_key
from tests.test_tingg import engagement, tingg_account
from ujumbe.core import encoding
from ujumbe.runtime import Platform

# Braces a sender meant literally: a code in braces, a lone placeholder-like
# word, a dollar form, doubled braces and JSON.
LITERAL = ["Your code is {code}", "{curly}", "Pay ${amount} by {date}", '{{x}} {"a": 1}']


@pytest.fixture
async def platform(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    """The usual platform, plus the customers' SMPP server on a free port."""
    async with running(tmp_path, database_url, smpp_port=0) as p:
        yield p


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(platform) as client:
        yield client


async def at_operator(platform: Platform, message_id: Any) -> str:
    """The text the operator (the simulator) was handed for this message."""
    assert platform.simulator is not None

    async def sent() -> Any:
        return next((m for m in platform.simulator.sent if m.message_id == str(message_id)), None)  # type: ignore[union-attr]

    return (await eventually(sent)).body


# --- braces ---


async def test_native_plain_text_with_braces_goes_out_as_written(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    h = auth(account)
    for n, text in enumerate(LITERAL):
        r = await api.post("/v1/messages", headers=h, json={"to": f"07084001{n:02d}", "text": text})
        assert r.status_code == 202, r.text
        assert await at_operator(platform, r.json()["messages"][0]["id"]) == text
    # an empty params object asks for nothing either
    r = await api.post("/v1/messages", headers=h, json={"to": "0708400150", "text": "{curly}", "params": {}})
    assert r.status_code == 202, r.text
    assert await at_operator(platform, r.json()["messages"][0]["id"]) == "{curly}"

    # placeholders still work where the sender asks for them: params ...
    r = await api.post("/v1/messages", headers=h,
                       json={"to": "0708400151", "text": "Hi {name}, ${name}", "params": {"name": "Wanjiru"}})
    assert r.status_code == 202, r.text
    assert await at_operator(platform, r.json()["messages"][0]["id"]) == "Hi Wanjiru, Wanjiru"
    r = await api.post("/v1/messages", headers=h, json={"to": "0708400152", "text": "Hi {name}", "params": {"x": 1}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_params"
    # ... or a template, whose placeholders must be given
    assert (await api.put("/v1/templates/otp", headers=h, json={"body": "Code {code}"})).status_code == 200
    r = await api.post("/v1/messages", headers=h, json={"to": "0708400153", "template": "otp"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_params"
    r = await api.post("/v1/messages", headers=h, json={"to": "0708400153", "template": "otp", "params": {"code": 7}})
    assert await at_operator(platform, r.json()["messages"][0]["id"]) == "Code 7"


async def test_smpp_submit_with_braces_goes_out_as_written(platform: Platform, api: httpx.AsyncClient) -> None:
    account, system_id, password = await customer(platform, api)
    esme = Esme(platform.smpp_port or 0)
    await esme.bind("transceiver", system_id, password)
    try:
        for n, text in enumerate(LITERAL):
            # data_coding 0 is the GSM default alphabet, where braces are escapes;
            # 1 (IA5) and 3 (Latin-1) carry them as single bytes
            for dc, raw in ((0, encoding.encode_part(text, encoding.GSM7)), (1, text.encode("ascii")),
                            (3, text.encode("latin-1"))):
                status, message_id = await esme.resp(esme.submit(f"2547084002{n:02d}", raw, data_coding=dc))
                assert status == 0, (text, dc, hex(status))
                assert await at_operator(platform, message_id) == text
        # SMPP has no idempotency key: the same submit twice is two messages
        first = await esme.resp(esme.submit("254708400299", b"same"))
        second = await esme.resp(esme.submit("254708400299", b"same"))
        assert first[0] == second[0] == 0 and first[1] != second[1]
        assert [await at_operator(platform, i) for i in (first[1], second[1])] == ["same", "same"]
    finally:
        await esme.close()


async def test_tingg_message_with_braces_and_no_params_goes_out_as_written(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    account, h = await tingg_account(platform, api)
    for n, text in enumerate(LITERAL):
        body = engagement(msisdn=[f"2547084003{n:02d}"], referenceID=f"braces-{n}")
        body["smsDto"]["message"] = text
        del body["smsDto"]["params"]
        r = await api.post("/api/v2/engagement", headers=h, json=body)
        assert r.status_code == 200, r.text
        (msg,) = await platform.messaging.messages(account["account_id"], limit=1, request_id=r.json()["transactionID"])
        assert await at_operator(platform, msg["id"]) == text
    # the document's own tags, ${name} from params, still work (the sample)
    r = await api.post("/api/v2/engagement", headers=h, json=engagement(msisdn=["254708400399"]))
    (msg,) = await platform.messaging.messages(account["account_id"], limit=1, request_id=r.json()["transactionID"])
    assert await at_operator(platform, msg["id"]) == "Test message value"


async def test_tilil_message_with_braces_goes_out_as_written(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await tilil_account(api, platform)
    for n, text in enumerate(LITERAL):
        r = await api.post("/sms/v3/sendsms", json=with_key(SAMPLE_BULK, account, mobile=f"07084004{n:02d}", message=text))
        (row,) = r.json()
        assert row["status_code"] == "1000", row
        assert await at_operator(platform, row["message_id"]) == text


# --- references ---


@pytest.mark.parametrize("reference", ["", "   ", "\t\n", None], ids=["empty", "blank", "whitespace", "absent"])
async def test_native_empty_blank_or_absent_reference_is_no_reference(
    platform: Platform, api: httpx.AsyncClient, reference: str | None
) -> None:
    account = await make_account(platform)
    h = auth(account)
    answers = []
    for to, text in (("0708400111", "one"), ("0708400112", "two")):
        body: dict[str, Any] = {"to": to, "text": text}
        if reference is not None:
            body["reference"] = reference
        r = await api.post("/v1/messages", headers=h, json=body)
        assert r.status_code == 202, r.text
        answers.append(r.json())
    # the second is a send of its own, not the first one's answer again
    assert [a["duplicate"] for a in answers] == [False, False]
    assert answers[0]["request_id"] != answers[1]["request_id"]
    assert [a["reference"] for a in answers] == [None, None]
    assert [await at_operator(platform, a["messages"][0]["id"]) for a in answers] == ["one", "two"]
    stored = await platform.store.read(
        lambda tx: tx.fetch("SELECT reference FROM requests WHERE account_id = ?", account["account_id"])
    )
    assert [r[0] for r in stored] == [None, None]

    # a real reference still answers a repeat with the original request
    first = await api.post("/v1/messages", headers=h, json={"to": "0708400113", "text": "x", "reference": "r-1"})
    again = await api.post("/v1/messages", headers=h, json={"to": "0708400114", "text": "y", "reference": "r-1"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["request_id"] == first.json()["request_id"]


@pytest.mark.parametrize("reference", ["", "   ", None], ids=["empty", "blank", "absent"])
async def test_tingg_reference_id_is_required_so_an_empty_one_is_refused_not_a_duplicate(
    platform: Platform, api: httpx.AsyncClient, reference: str | None
) -> None:
    # Tingg's document makes referenceID required ("YES"): without one the
    # client is told so in Tingg's envelope, every time, and nothing is sent;
    # it is never answered as a duplicate of another request.
    account, h = await tingg_account(platform, api)
    for to in ("254708400511", "254708400512"):
        body = engagement(msisdn=[to])
        if reference is None:
            del body["referenceID"]
        else:
            body["referenceID"] = reference
        r = await api.post("/api/v2/engagement", headers=h, json=body)
        assert r.status_code == 400, r.text
        assert r.json()["transactionID"] is None and "referenceID" in r.json()["message"]
    assert await platform.messaging.messages(account["account_id"], limit=10) == []
    # two distinct referenceIDs: two sends
    for n, to in enumerate(("254708400513", "254708400514")):
        r = await api.post("/api/v2/engagement", headers=h, json=engagement(msisdn=[to], referenceID=f"ref-{n}"))
        assert r.status_code == 200 and "Duplicate" not in r.json()["message"], r.text
    assert len(await platform.messaging.messages(account["account_id"], limit=10)) == 2


async def test_tilil_has_no_idempotency_key_so_two_identical_sends_both_go(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    # Tilil's guide defines no client reference: a repeat is a new message.
    account = await tilil_account(api, platform)
    rows = [(await api.post("/sms/v3/sendsms", json=with_key(SAMPLE_BULK, account))).json()[0] for _ in range(2)]
    assert [r["status_code"] for r in rows] == ["1000", "1000"]
    assert rows[0]["message_id"] != rows[1]["message_id"]
    assert [await at_operator(platform, r["message_id"]) for r in rows] == [SAMPLE_BULK["message"]] * 2
