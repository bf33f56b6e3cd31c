"""Sending through /v1, end to end on the simulator, on both databases."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import Receiver, auth, eventually, make_account
from ujumbe.runtime import Platform
from ujumbe.services import messaging


async def test_templated_send_to_three_numbers_one_invalid(
    platform: Platform, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    account = await make_account(platform, credits="10")
    h = auth(account)
    r = await api.put("/v1/templates/welcome", json={"body": "Habari ${name}, karibu {shop}!"}, headers=h)
    assert r.status_code == 200, r.text

    r = await api.post(
        "/v1/messages",
        headers=h,
        json={
            "to": ["0708400000", "12345", "+254 722 000 100"],
            "template": "welcome",
            "params": {"name": "Wanjiru", "shop": "Duka"},
            "reference": "order-17",
            "callback_url": receiver.url + "/dlr",
        },
    )
    assert r.status_code == 202, r.text
    sent = r.json()
    assert [m["to"] for m in sent["messages"]] == ["254708400000", "12345", "254722000100"]
    assert [m["state"] for m in sent["messages"]] == ["queued", "rejected", "queued"]
    assert "not a valid phone number" in sent["messages"][1]["error"]["message"]
    assert sent["cost"] == 2 and sent["balance"] == 8

    ids = [m["id"] for m in sent["messages"] if m["state"] == "queued"]

    async def delivered() -> bool:
        states = [(await api.get(f"/v1/messages/{i}", headers=h)).json()["state"] for i in ids]
        return states == ["delivered", "delivered"]

    await eventually(delivered)
    msg = (await api.get(f"/v1/messages/{ids[0]}", headers=h)).json()
    assert msg["text"] == "Habari Wanjiru, karibu Duka!"
    assert [e["state"] for e in msg["events"]] == ["accepted", "queued", "submitted", "delivered"]
    assert msg["submitted_at"] and msg["done_at"]

    # Signed callbacks: submitted and delivered for each valid recipient,
    # verified with the Standard Webhooks reference library.
    calls = await receiver.wait_for(4)
    secret = (await api.get("/v1/account/webhook-secret", headers=h)).json()["secret"]
    hook = Webhook(secret)
    seen = set()
    for call in calls:
        payload = hook.verify(call.body, call.headers)
        seen.add((payload["data"]["id"], payload["data"]["state"]))
    assert seen == {(i, s) for i in ids for s in ("submitted", "delivered")}

    # Credits were charged: a ledger of the top-up and one charge.
    tx = (await api.get("/v1/transactions", headers=h)).json()["data"]
    assert [(t["kind"], t["amount"]) for t in tx] == [("charge", -2), ("topup", 10)]
    assert (await api.get("/v1/balance", headers=h)).json() == {"balance": 8}

    # The same reference again: the original request, nothing new sent.
    again = await api.post(
        "/v1/messages", headers=h,
        json={"to": ["0708400000"], "text": "different", "reference": "order-17"},
    )
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["request_id"] == sent["request_id"]
    listed = (await api.get("/v1/messages", headers=h)).json()["data"]
    assert len(listed) == 3
    assert (await api.get("/v1/balance", headers=h)).json() == {"balance": 8}


async def test_failure_numbers_end_as_documented_and_refund_what_never_left(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    account = await make_account(platform, credits="10")
    h = auth(account)
    to = ["254700000001", "254700000002", "254700000004", "254700000006", "254700000100"]
    r = await api.post("/v1/messages", headers=h, json={"to": to, "text": "hello"})
    assert r.status_code == 202, r.text
    ids = {m["to"]: m["id"] for m in r.json()["messages"]}

    async def states() -> dict[str, str] | None:
        got = {n: (await api.get(f"/v1/messages/{i}", headers=h)).json()["state"] for n, i in ids.items()}
        return got if all(s not in ("queued", "submitted") for s in got.values()) else None

    final = await eventually(states, timeout=20)
    assert final == {
        "254700000001": "rejected",  # refused at submit: never reached the operator
        "254700000002": "undelivered",
        "254700000004": "delivered",  # throttled twice, then through
        "254700000006": "rejected",
        "254700000100": "delivered",
    }
    throttled = (await api.get(f"/v1/messages/{ids['254700000004']}", headers=h)).json()
    assert [e["state"] for e in throttled["events"]].count("retry") == 2
    # Only the message that never reached the operator is refunded.
    tx = (await api.get("/v1/transactions", headers=h)).json()["data"]
    refunds = [t for t in tx if t["kind"] == "refund"]
    assert [(t["message_id"], t["amount"]) for t in refunds] == [(ids["254700000001"], 1)]
    assert (await api.get("/v1/balance", headers=h)).json() == {"balance": 6}


async def test_long_message_parts_fold_to_the_worst_outcome(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform, credits="10")
    h = auth(account)
    text = "x" * 300  # three GSM-7 parts
    r = await api.post("/v1/messages", headers=h, json={"to": ["254700000007", "254700000200"], "text": text})
    body = r.json()
    assert body["parts"] == 2 and body["cost"] == 4
    bad, good = (m["id"] for m in body["messages"])

    async def final() -> list[str] | None:
        got = [(await api.get(f"/v1/messages/{i}", headers=h)).json()["state"] for i in (bad, good)]
        return got if "submitted" not in got and "queued" not in got else None

    # the first part's delivery does not hide the second part's failure
    assert await eventually(final) == ["undelivered", "delivered"]


async def test_insufficient_credit_sends_nothing(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform, credits="1")
    h = auth(account)
    r = await api.post("/v1/messages", headers=h, json={"to": ["0708400000", "0722000000"], "text": "hi"})
    assert r.status_code == 402
    assert r.json()["error"]["code"] == "insufficient_credit"
    assert "costs 2" in r.json()["error"]["message"]
    assert (await api.get("/v1/messages", headers=h)).json()["data"] == []
    assert (await api.get("/v1/balance", headers=h)).json() == {"balance": 1}


async def test_scheduled_message_waits_for_its_time(platform: Platform, api: httpx.AsyncClient) -> None:
    import datetime as dt

    account = await make_account(platform)
    h = auth(account)
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    r = await api.post("/v1/messages", headers=h, json={"to": "0708400000", "text": "later", "send_at": at.isoformat()})
    mid = r.json()["messages"][0]["id"]
    assert r.json()["messages"][0]["state"] == "accepted"
    msg = (await api.get(f"/v1/messages/{mid}", headers=h)).json()
    assert msg["state"] == "accepted"

    async def sent() -> bool:
        return (await api.get(f"/v1/messages/{mid}", headers=h)).json()["state"] == "delivered"

    await eventually(sent, timeout=15)
    msg = (await api.get(f"/v1/messages/{mid}", headers=h)).json()
    assert msg["submitted_at"] >= at.isoformat(timespec="milliseconds").replace("+00:00", "Z")[:19]


async def test_list_filters_and_pages(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    h = auth(account)
    r = await api.post("/v1/messages", headers=h, json={"to": [f"07084000{i}9" for i in range(5)] + ["1"], "text": "hi"})
    request_id = r.json()["request_id"]
    page = (await api.get("/v1/messages", headers=h, params={"limit": 2})).json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    rest = (await api.get("/v1/messages", headers=h, params={"limit": 10, "cursor": page["next_cursor"]})).json()
    assert len(rest["data"]) == 4 and rest["next_cursor"] is None
    ids = [m["id"] for m in page["data"] + rest["data"]]
    assert ids == sorted(ids, reverse=True)
    rejected = (await api.get("/v1/messages", headers=h, params={"state": "rejected"})).json()["data"]
    assert [m["to"] for m in rejected] == ["1"]
    one = (await api.get("/v1/messages", headers=h, params={"to": "254708400039"})).json()["data"]
    assert len(one) == 1
    # the number as a client writes it finds the same message
    for written in ("+254708400039", "0708400039", "+254 708 400 039"):
        same = (await api.get("/v1/messages", headers=h, params={"to": written})).json()["data"]
        assert [m["id"] for m in same] == [one[0]["id"]], written
    assert [m["to"] for m in (await api.get("/v1/messages", headers=h, params={"to": "1"})).json()["data"]] == ["1"]
    req = (await api.get(f"/v1/requests/{request_id}", headers=h)).json()
    assert len(req["messages"]) == 6


async def test_concurrent_sends_are_charged_and_deduplicated_one_by_one(platform: Platform) -> None:
    """On PostgreSQL concurrent sends share transactions (group commit); each
    must still get exactly the outcome it would have had alone."""
    import asyncio

    from ujumbe.core.errors import InsufficientCredit
    from ujumbe.services.messaging import SendRequest

    account = await make_account(platform, credits="5")
    acc = await platform.accounts.get(account["account_id"])
    results = await asyncio.gather(
        *(platform.messaging.send(acc, SendRequest(recipients=[f"070840{i:02d}19"], text="hi")) for i in range(10)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, InsufficientCredit) for r in results) == 5
    assert sum(not isinstance(r, Exception) for r in results) == 5
    assert await platform.credits.balance(acc.id) == 0

    other = await make_account(platform, credits="100")
    acc2 = await platform.accounts.get(other["account_id"])
    same = await asyncio.gather(
        *(platform.messaging.send(acc2, SendRequest(recipients=["0708400019"], text="once", reference="ref-1")) for _ in range(10))
    )
    assert len({r.request_id for r in same}) == 1
    assert sum(not r.duplicate for r in same) == 1
    assert len(await platform.messaging.messages(acc2.id, limit=50)) == 1
    assert await platform.credits.balance(acc2.id) == 99 * 10_000


async def test_concurrent_sends_of_several_accounts_each_land_whole(platform: Platform) -> None:
    """Sends of several accounts at once (on PostgreSQL grouped per account,
    their rows written together at commit): every message, its events and its
    place in the dispatch queue are there, under its own account, and each
    account paid for its own."""
    import asyncio

    from ujumbe.services.messaging import SendRequest

    accounts = [await platform.accounts.get((await make_account(platform, credits="100"))["account_id"])
                for _ in range(3)]
    results = await asyncio.gather(*(
        platform.messaging.send(acc, SendRequest(recipients=[f"0708{a}{i:03d}19", f"0709{a}{i:03d}19"], text="hi"))
        for i in range(40) for a, acc in enumerate(accounts)
    ))
    ids = [r.message_id for res in results for r in res.recipients]
    assert len(set(ids)) == len(ids) == 240
    for a, acc in enumerate(accounts):
        mine = await platform.messaging.messages(acc.id, limit=500)
        assert len(mine) == 80
        sent = {r.to for res in results[a::len(accounts)] for r in res.recipients}
        assert {m["recipient"] for m in mine} == sent
        assert await platform.credits.balance(acc.id) == (100 - 80) * 10_000
        one = await platform.messaging.message(acc.id, mine[0]["id"])
        assert [e["state"] for e in one["events"]][:2] == ["accepted", "queued"]

    async def all_submitted() -> bool:  # every one was queued for the dispatcher
        rows = [m for acc in accounts for m in await platform.messaging.messages(acc.id, limit=500)]
        return all(m["submitted_at"] is not None for m in rows)

    await eventually(all_submitted)


async def test_concurrent_sends_past_the_balance_keep_the_money_exact(
    tmp_path: Path, database_url: str | None
) -> None:
    """Many sends at once through two processes on one database, on two
    accounts whose balances cover about a third of them. On PostgreSQL a
    group's charges are taken in one update of each balance row (folded);
    whatever the path, every send is charged once or refused, a refused send
    is one that did not fit, the ledger explains each balance row by row and
    no balance goes below zero."""
    import asyncio

    from tests.conftest import make_settings
    from ujumbe.core.errors import InsufficientCredit
    from ujumbe.core.pricing import SCALE
    from ujumbe.services.messaging import SendRequest, SendResult

    apis = [Platform(make_settings(tmp_path, database_url)) for _ in range(2)]
    for p in apis:
        await p.start("api")
    try:
        accounts = [await apis[0].accounts.get((await make_account(apis[0], credits="40"))["account_id"])
                    for _ in range(2)]
        # 1, 2 or 3 recipients (credits) each: 2 x 60 sends asking 120 credits of each account
        sends = [(a, acc, i, 1 + i % 3) for i in range(60) for a, acc in enumerate(accounts)]
        results = await asyncio.gather(*(
            apis[i % 2].messaging.send(acc, SendRequest(recipients=[f"07{11 + a}{i:04d}{k}9" for k in range(n)], text="hi"))
            for a, acc, i, n in sends
        ), return_exceptions=True)
        odd = [r for r in results if not isinstance(r, (SendResult, InsufficientCredit))]
        assert not odd, odd
        if database_url:  # the folded path was taken, not only a charge per send
            assert sum(p.store.folded_charges for p in apis) > 0  # type: ignore[attr-defined]

        for a, acc in enumerate(accounts):
            mine = [(n, r) for (b, _, _, n), r in zip(sends, results) if b == a]
            went = [(n, r) for n, r in mine if isinstance(r, SendResult)]
            refused = [(n, r) for n, r in mine if isinstance(r, InsufficientCredit)]
            balance = await apis[1].credits.balance(acc.id)
            assert went and refused
            assert all(r.cost == n * SCALE for n, r in went)
            assert 40 * SCALE - sum(r.cost for _, r in went) == balance >= 0
            # refused only for want of credit: each costs more than was left, then and at the end
            assert all(n * SCALE > balance for n, _ in refused)
            assert all(0 <= r.details["balance"] < n for n, r in refused)  # type: ignore[operator]
            assert all(0 <= r.balance < 40 * SCALE for _, r in went)  # type: ignore[operator]

            rows = await apis[0].store.read(lambda tx, acc=acc: tx.fetch(
                "SELECT kind, amount, balance_after, request_id FROM ledger WHERE account_id = ? ORDER BY id", acc.id))
            charges = [r for r in rows if r["kind"] == "charge"]
            # one charge row per send that went, none for a refused one
            assert sorted(r["request_id"] for r in charges) == sorted(r.request_id for _, r in went)
            assert {r["request_id"]: -r["amount"] for r in charges} == {r.request_id: r.cost for _, r in went}
            # row by row: each balance_after is the one before plus its amount, never below zero, ending at the balance
            running = 0
            for row in rows:
                running += row["amount"]
                assert row["balance_after"] == running >= 0
            assert running == balance
            # the balance each send answered with is its own ledger row's
            assert {r["request_id"]: r["balance_after"] for r in charges} == {r.request_id: r.balance for _, r in went}
            listed = await apis[0].messaging.messages(acc.id, limit=500)
            assert sorted(m["id"] for m in listed) == sorted(m.message_id for _, r in went for m in r.recipients)
    finally:
        for p in apis:
            await p.stop()


async def test_two_processes_on_one_database_never_share_a_message_id(
    tmp_path: Path, database_url: str | None
) -> None:
    """Each API process reserves message ids in blocks (PostgreSQL) or counts
    under the write lock (SQLite): sends through two at once get distinct
    ids, and every message is listed once."""
    import asyncio

    from tests.conftest import make_settings
    from ujumbe.services.messaging import SendRequest

    apis = [Platform(make_settings(tmp_path, database_url)) for _ in range(2)]
    for p in apis:
        await p.start("api")
    try:
        account = await apis[0].accounts.get((await make_account(apis[0], credits="1000"))["account_id"])
        results = await asyncio.gather(*(
            p.messaging.send(account, SendRequest(recipients=[f"0711{i:04d}{n}9"], text="hi"))
            for i in range(60) for n, p in enumerate(apis)
        ))
        ids = [r.message_id for res in results for r in res.recipients]
        assert len(set(ids)) == len(ids) == 120
        listed = await apis[1].messaging.messages(account.id, limit=500)
        assert sorted(m["id"] for m in listed) == sorted(ids)
    finally:
        for p in apis:
            await p.stop()


async def test_a_request_bigger_than_one_insert_slice_is_stored_whole(
    platform: Platform, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A big request's rows reach the store a slice at a time (INSERT_CHUNK);
    # every recipient of every slice, the rejected one in the middle too, is
    # kept with its events and sent.
    monkeypatch.setattr(messaging, "INSERT_CHUNK", 3)
    account = await make_account(platform, credits="10")
    h = auth(account)
    to = ["0708400010", "0708400011", "0708400012", "12345", "0708400013", "0708400014", "0708400015"]
    r = await api.post("/v1/messages", headers=h, json={"to": to, "text": "Habari"})
    assert r.status_code == 202, r.text
    sent = r.json()
    assert [m["state"] for m in sent["messages"]] == ["queued"] * 3 + ["rejected"] + ["queued"] * 3
    assert sent["cost"] == 6 and sent["balance"] == 4
    ids = [m["id"] for m in sent["messages"]]
    assert len(set(ids)) == 7

    async def all_delivered() -> bool:
        msgs = [(await api.get(f"/v1/messages/{i}", headers=h)).json() for i in ids]
        return [m["state"] for m in msgs] == ["delivered"] * 3 + ["rejected"] + ["delivered"] * 3

    await eventually(all_delivered)
    listed = (await api.get("/v1/messages", params={"request_id": sent["request_id"]}, headers=h)).json()["data"]
    assert sorted(m["id"] for m in listed) == sorted(ids)
    first = (await api.get(f"/v1/messages/{ids[0]}", headers=h)).json()
    assert [e["state"] for e in first["events"]] == ["accepted", "queued", "submitted", "delivered"]
