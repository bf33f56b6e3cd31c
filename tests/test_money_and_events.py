"""What a user reads about money and a message's story: one unit (credits, as
GET /v1/balance shows them) in every answer, times as ISO 8601, the cost that
was finally charged, and a multi-part failure's own error. Both databases."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.conftest import Receiver, auth, eventually, make_account
from tests.test_lifecycle import idle, send_one, submit  # noqa: F401  (idle is a fixture)
from tests.test_tilil import SAMPLE_BULK, tilil_account, with_key
from tests.test_tingg import engagement, tingg_account
from ujumbe.channels.base import Receipt
from ujumbe.core.states import State
from ujumbe.runtime import Platform
from ujumbe.store import now_ms

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def cheap_parts(platform: Platform, price: str) -> None:
    await platform.credits.set_price("*", price)
    platform.messaging.forget_prices()


async def final(api: httpx.AsyncClient, h: dict[str, str], ids: list[int]) -> list[dict[str, Any]] | None:
    msgs = [(await api.get(f"/v1/messages/{i}", headers=h)).json() for i in ids]
    return msgs if all(m["final"] for m in msgs) else None


# --- one unit of money ---


async def test_402_message_and_details_speak_in_the_balance_unit(platform: Platform, api: httpx.AsyncClient) -> None:
    await cheap_parts(platform, "0.8")
    account = await make_account(platform, credits="2")
    h = auth(account)
    r = await api.post("/v1/messages", headers=h, json={"to": ["0708400000", "0722000000", "0733000000"], "text": "hi"})
    assert r.status_code == 402, r.text
    error = r.json()["error"]
    assert error["code"] == "insufficient_credit"
    assert error["message"] == "Insufficient credit: this request costs 2.4 and the balance is 2"
    assert error["details"] == {"cost": 2.4, "balance": 2}
    assert (await api.get("/v1/balance", headers=h)).json() == {"balance": error["details"]["balance"]}

    # what does go through is charged, listed and answered in the same unit
    r = await api.post("/v1/messages", headers=h, json={"to": ["0708400000", "0722000000"], "text": "hi"})
    assert r.status_code == 202, r.text
    assert (r.json()["cost"], r.json()["balance"]) == (1.6, 0.4)
    assert [m["cost"] for m in r.json()["messages"]] == [0.8, 0.8]
    tx = (await api.get("/v1/transactions", headers=h)).json()["data"]
    assert [(t["kind"], t["amount"], t["balance_after"]) for t in tx] == [("charge", -1.6, 0.4), ("topup", 2, 2)]
    assert (await api.get("/v1/account", headers=h)).json()["balance"] == 0.4


async def test_tingg_402_and_tilil_balances_are_credits(platform: Platform, api: httpx.AsyncClient) -> None:
    await cheap_parts(platform, "0.8")
    account, h = await tingg_account(platform, api, credits="0.5")
    r = await api.post("/api/v2/engagement", headers=h, json=engagement())
    assert r.status_code == 402
    assert r.json()["message"] == "Insufficient credit: this request costs 0.8 and the balance is 0.5"

    tilil = await tilil_account(api, platform, credits="3")
    (row,) = (await api.post("/sms/v3/sendsms", json=with_key(SAMPLE_BULK, tilil))).json()
    assert (row["status_code"], row["message_cost"], row["credit_balance"]) == ("1000", 0.8, 2.2)
    assert (await api.get("/v1/balance", headers=auth(tilil))).json() == {"balance": 2.2}


def test_cli_prints_prices_and_balances_in_credits(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from ujumbe import cli

    data = ["--data-dir", str(tmp_path / "d")]
    assert cli.main([*data, "prices", "set", "*", "0.80"]) == 0
    assert json.loads(capsys.readouterr().out)["price"] == 0.8
    assert cli.main([*data, "accounts", "create", "--name", "Duka", "--email", "ops@duka.co.ke",
                     "--password", "a long password", "--credits", "1"]) == 0
    account_id = json.loads(capsys.readouterr().out)["account_id"]
    assert cli.main([*data, "credits", "add", account_id, "2.5"]) == 0
    assert json.loads(capsys.readouterr().out)["balance"] == 3.5
    # a price that is not an amount is refused clearly, not with a traceback
    assert cli.main([*data, "prices", "set", "*", "abc"]) == 1
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "invalid_amount"


# --- events and what was charged ---


async def test_retry_events_write_the_next_try_as_iso_time(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    h = auth(account)
    r = await api.post("/v1/messages", headers=h, json={"to": "254700000004", "text": "throttled twice"})
    (msg,) = await eventually(lambda: final(api, h, [r.json()["messages"][0]["id"]]), timeout=20)
    retries = [e["detail"] for e in msg["events"] if e["state"] == "retry"]
    assert len(retries) == 2
    for detail in retries:
        assert re.search(r"; next at " + ISO_MS.pattern + "$", detail), detail
        assert not re.search(r"\d{13}", detail), detail  # no epoch milliseconds


async def test_a_refunded_message_shows_what_was_finally_charged(
    platform: Platform, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    account = await make_account(platform, credits="10")
    h = auth(account)
    r = await api.post("/v1/messages", headers=h, json={
        "to": ["254700000001", "254700000100"], "text": "hello", "callback_url": receiver.url + "/dlr",
    })
    assert r.status_code == 202 and r.json()["cost"] == 2, r.text
    refused, delivered = (m["id"] for m in r.json()["messages"])
    await eventually(lambda: final(api, h, [refused, delivered]), timeout=20)

    # refused at submit, never reached the operator: refunded, so it cost nothing
    assert (await api.get(f"/v1/messages/{refused}", headers=h)).json()["cost"] == 0
    assert (await api.get(f"/v1/messages/{delivered}", headers=h)).json()["cost"] == 1
    listed = {m["id"]: m["cost"] for m in (await api.get("/v1/messages", headers=h)).json()["data"]}
    assert listed == {refused: 0, delivered: 1}
    # the request: one of its two messages refunded
    req = (await api.get(f"/v1/requests/{r.json()['request_id']}", headers=h)).json()
    assert req["cost"] == 1 and [m["cost"] for m in req["messages"]] == [0, 1]
    # and the callback that told of the refusal
    calls = await receiver.wait_for(3)  # rejected; submitted and delivered
    (rejected,) = [c.json()["data"] for c in calls if c.json()["data"]["state"] == "rejected"]
    assert rejected["cost"] == 0
    # the ledger agrees: what the messages show as cost is what the balance lost
    assert (await api.get("/v1/balance", headers=h)).json() == {"balance": 9}


# --- a multi-part message's failure ---


async def receipts(p: Platform, *rs: tuple[str, State, str, str]) -> None:
    """Receipts (operator id, state, error code, reason) applied in one batch, in order."""
    batch = [Receipt("smsc-a", op, state, now_ms(), code, reason, f"stat:{state.value}") for op, state, code, reason in rs]
    await p.store.run(lambda tx: p.reports._apply(tx, batch, []))


async def test_a_last_delivered_part_leaves_the_failed_parts_error(idle: Platform) -> None:  # noqa: F811
    for one_batch in (False, True):
        msg = await send_one(idle, text="y" * 400)  # three parts
        ops = [f"{msg['id']}-{n}" for n in (1, 2, 3)]
        await submit(idle, msg, ops)
        given = [(ops[1], State.UNDELIVERED, "001", "absent_subscriber"), (ops[2], State.DELIVERED, "", ""),
                 (ops[0], State.DELIVERED, "", "")]
        if one_batch:
            await receipts(idle, *given)  # the failing part's error is still held, not written
        else:
            for r in given:
                await receipts(idle, r)
        after = await idle.messaging.message(msg["account_id"], msg["id"])
        assert after["state"] == "undelivered", one_batch
        assert (after["error_code"], after["error_reason"]) == ("001", "absent_subscriber"), one_batch
        last = after["events"][-1]
        assert last["state"] == "undelivered"
        assert last["detail"].startswith("part 2 undelivered: absent_subscriber; last receipt part 1:"), last


async def test_simulator_0007_ends_undelivered_with_the_failing_parts_reason(
    platform: Platform, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    account = await make_account(platform)
    h = auth(account)
    r = await api.post("/v1/messages", headers=h,
                       json={"to": "254700000007", "text": "z" * 300, "callback_url": receiver.url + "/dlr"})
    assert r.json()["parts"] == 2, r.text
    (msg,) = await eventually(lambda: final(api, h, [r.json()["messages"][0]["id"]]), timeout=20)
    assert msg["state"] == "undelivered"
    assert msg["error"] == {"code": "001", "message": "absent_subscriber"}
    (event,) = [e for e in msg["events"] if e["state"] == "undelivered" and "ignored" not in (e["detail"] or "")][-1:]
    assert "part 2" in event["detail"] and ("absent_subscriber" in event["detail"] or "UNDELIV" in event["detail"])
    calls = await receiver.wait_for(2)
    (last,) = [c.json()["data"] for c in calls if c.json()["data"]["state"] == "undelivered"]
    assert last["error"] == {"code": "001", "message": "absent_subscriber"}
