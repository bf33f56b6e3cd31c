"""Voice calls as messages, end to end through the native API with the call
simulator: outcomes by the number's last digit, the call's figures and
events, credits held at accept and settled on the outcome, callbacks, the
exchange log, bad input, tenancy. (Calls over a real SIP peer: test_voice_sip.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Receiver, auth, client_of, eventually, make_account, running
from ujumbe.core import calls
from ujumbe.core.pricing import to_units
from ujumbe.runtime import Platform

TEXT = "नमस्ते, तपाईंको अर्डर तयार छ। धन्यवाद।"  # Nepali: "hello, your order is ready. thank you."
FINAL = ("delivered", "undelivered", "failed", "rejected", "expired")


@pytest.fixture
async def voice(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    # 0.01: a 6 s call lasts 60 ms; the figures reported stay the real ones
    async with running(tmp_path, database_url, sim_call_speed=0.01) as p:
        yield p


@pytest.fixture
async def vapi(voice: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(voice) as client:
        yield client


async def final(api: httpx.AsyncClient, account: dict[str, Any], mid: int, timeout: float = 20) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        m = (await api.get(f"/v1/messages/{mid}", headers=auth(account))).json()
        return m if m["state"] in FINAL and (m["call"] or m["state"] in ("failed", "expired")) else None

    return await eventually(done, timeout=timeout)


async def test_each_simulator_ending_ends_in_its_outcome(voice: Platform, vapi: httpx.AsyncClient) -> None:
    account = await make_account(voice)
    numbers = {d: f"070840010{d}" for d in "0123456"}
    r = await vapi.post("/v1/messages", headers=auth(account), json={
        "channel": "voice", "to": list(numbers.values()), "text": TEXT, "from": "0700000100", "length_factor": 1.2,
    })
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["encoding"] == "speech" and out["parts"] == 1
    ids = {m["to"][-1]: m["id"] for m in out["messages"]}
    expected = {  # digit: (state, outcome, reason, sip_status)
        "0": ("delivered", "completed", "played_to_end", 200),
        "1": ("delivered", "hungup", "callee_hangup", 200),
        "2": ("undelivered", "unanswered", "busy", 486),
        "3": ("undelivered", "unanswered", "no_answer", 487),
        "4": ("failed", "failed", "bad_number", 404),
        "5": ("undelivered", "unanswered", "declined", 603),
        "6": ("failed", "failed", "network_error", 503),
    }
    got = {d: await final(vapi, account, mid) for d, mid in ids.items()}
    for d, (state, outcome, reason, status) in expected.items():
        m = got[d]
        assert (m["state"], m["call"]["outcome"], m["call"]["reason"], m["call"]["sip_status"]) == (
            state, outcome, reason, status), (d, m)
        assert m["channel"] == "voice" and m["sender"] == "254700000100"
        assert m["call"]["reason_text"] == calls.REASON_TEXT[reason]
        if state != "delivered":
            assert m["error"]["code"] == reason
    done = got["0"]["call"]
    # the whole text was spoken: its audio's length, played to the end, ringing first
    assert done["audio_seconds"] > 1 and done["playback_seconds"] == done["audio_seconds"]
    assert done["duration_seconds"] >= done["playback_seconds"] and done["ring_seconds"] == 2.5
    assert done["billable_minutes"] == 1 and done["answered_at"] and done["ended_at"] and done["ringing_at"]
    assert [e["state"] for e in got["0"]["events"]][-3:] == ["ringing", "answered", "delivered"]
    final_event = got["0"]["events"][-1]
    assert "completed (played_to_end): 200 OK" in final_event["detail"] and final_event["at"].endswith("Z")
    hung = got["1"]["call"]
    assert hung["playback_seconds"] == min(3.0, int(hung["audio_seconds"] * 500) / 1000) < hung["audio_seconds"]
    assert hung["duration_seconds"] == hung["playback_seconds"]
    busy = got["2"]
    assert busy["call"]["duration_seconds"] == 0 and busy["call"]["answered_at"] is None
    assert "answered" not in [e["state"] for e in busy["events"]]
    assert got["3"]["call"]["ring_seconds"] == 30.0  # rang to the ring timeout, then our CANCEL
    # a list shows the call too
    page = (await vapi.get("/v1/messages", headers=auth(account), params={"to": busy["to"]})).json()
    listed = (await vapi.get("/v1/messages", headers=auth(account))).json()["data"]
    assert {m["id"]: m["call"]["outcome"] for m in listed} == {got[d]["id"]: o[1] for d, o in expected.items()}
    assert [m["id"] for m in page["data"]] == [busy["id"]]  # found by its number


async def test_credits_per_minute_are_held_then_settled_on_the_duration(voice: Platform, vapi: httpx.AsyncClient) -> None:
    await voice.credits.set_price("*", "2.5", "voice")  # per started minute (the default unit)
    voice.messaging.forget_prices()
    account = await make_account(voice, credits="100")
    long_text = "क" * 700  # at most ~88 s to say at length_factor 1.0: two minutes held
    r = await vapi.post("/v1/messages", headers=auth(account), json={
        "channel": "voice", "to": ["0708400110", "0708400112", "0708400111"], "text": long_text})
    assert r.status_code == 202, r.text
    out = r.json()
    assert [m["cost"] for m in out["messages"]] == [5, 5, 5] and out["cost"] == 15 and out["balance"] == 85
    ids = [m["id"] for m in out["messages"]]
    done, busy, hung = [await final(vapi, account, mid) for mid in ids]
    minutes = done["call"]["billable_minutes"]
    assert 1 <= minutes <= 2 and done["cost"] == 2.5 * minutes  # what it lasted, never more than held
    assert busy["cost"] == 0  # never answered: nothing
    assert hung["call"]["billable_minutes"] == 1 and hung["cost"] == 2.5
    balance = (await vapi.get("/v1/balance", headers=auth(account))).json()["balance"]
    assert balance == 100 - done["cost"] - 2.5
    ledger = (await vapi.get("/v1/transactions", headers=auth(account))).json()["data"]
    assert sum(t["amount"] for t in ledger) == balance  # every move is a ledger row
    refunds = {t["message_id"]: t["amount"] for t in ledger if t["kind"] == "refund"}
    assert refunds[busy["id"]] == 5 and refunds[hung["id"]] == 2.5


async def test_a_per_call_price_is_charged_once_per_answered_call(voice: Platform, vapi: httpx.AsyncClient) -> None:
    await voice.credits.set_price("*", "3", "voice", unit="per_call")
    voice.messaging.forget_prices()
    account = await make_account(voice, credits="10")
    r = await vapi.post("/v1/messages", headers=auth(account), json={
        "channel": "voice", "to": ["0708400120", "0708400124"], "text": "क" * 1500})
    assert r.status_code == 202 and [m["cost"] for m in r.json()["messages"]] == [3, 3]
    done, bad = [await final(vapi, account, m["id"]) for m in r.json()["messages"]]
    assert done["cost"] == 3 and bad["cost"] == 0
    assert (await vapi.get("/v1/balance", headers=auth(account))).json()["balance"] == 7
    # more than the balance covers: refused whole, 402
    r = await vapi.post("/v1/messages", headers=auth(account), json={
        "channel": "voice", "to": ["0708400130", "0708400131", "0708400132"], "text": "Hi"})
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_credit"


async def test_concurrent_calls_settle_to_exact_sums(voice: Platform, vapi: httpx.AsyncClient) -> None:
    await voice.credits.set_price("*", "1.5", "voice")
    voice.messaging.forget_prices()
    account = await make_account(voice, credits="1000")
    endings = "0123456789"

    async def send(k: int) -> list[int]:
        to = [f"07084{k:02d}0{d}{d}" for d in endings]
        r = await vapi.post("/v1/messages", headers=auth(account), json={"channel": "voice", "to": to, "text": TEXT})
        assert r.status_code == 202, r.text
        return [m["id"] for m in r.json()["messages"]]

    ids = [mid for batch in await asyncio.gather(*(send(k) for k in range(8))) for mid in batch]
    msgs = [await final(vapi, account, mid, timeout=40) for mid in ids]
    charged = sum(m["cost"] for m in msgs)
    answered = [m for m in msgs if m["call"] and m["call"]["answered_at"]]
    assert len(answered) == 8 * 5  # ...0, ...1 and ...7-9 are answered
    assert charged == sum(1.5 * m["call"]["billable_minutes"] for m in answered)
    balance = (await vapi.get("/v1/balance", headers=auth(account))).json()["balance"]
    assert balance == pytest.approx(1000 - charged)
    rows = await voice.store.read(lambda tx: tx.fetch(
        "SELECT kind, amount FROM ledger WHERE account_id = ?", account["account_id"]))
    assert sum(r[1] for r in rows) == to_units(str(balance))  # the ledger is the balance


async def test_a_callback_carries_the_call(voice: Platform, vapi: httpx.AsyncClient, receiver: Receiver) -> None:
    account = await make_account(voice)
    r = await vapi.post("/v1/messages", headers=auth(account), json={
        "channel": "voice", "to": "0708400141", "text": TEXT * 4, "callback_url": f"{receiver.url}/calls",
        "reference": "call-1", "voice": "np_prasanna"})
    assert r.status_code == 202, r.text
    got = await receiver.wait_for(1, path="/calls")
    finals = [c.json()["data"] for c in got if c.json()["data"]["final"]]
    if not finals:
        got = await receiver.wait_for(2, path="/calls")
        finals = [c.json()["data"] for c in got if c.json()["data"]["final"]]
    data = finals[0]
    assert data["state"] == "delivered" and data["reference"] == "call-1" and data["channel"] == "voice"
    call = data["call"]
    assert call["outcome"] == "hungup" and call["reason"] == "callee_hangup" and call["sip_status"] == 200
    assert call["duration_seconds"] == 3.0 and call["playback_seconds"] == 3.0 and call["answered_at"]


async def test_the_exchange_log_shows_the_sip_dialogue(voice: Platform, vapi: httpx.AsyncClient) -> None:
    account = await make_account(voice)
    r = await vapi.post("/v1/messages", headers=auth(account), json={
        "channel": "voice", "to": "0708400150", "text": TEXT})
    mid = r.json()["messages"][0]["id"]
    await final(vapi, account, mid)
    got = (await vapi.get(f"/v1/messages/{mid}/exchanges", headers=auth(account))).json()
    sip = [c["summary"] for c in got["carrier"] if c["kind"] == "sip"]
    assert sip[0].startswith("INVITE sip:254708400150") and "SIP/2.0 200 OK (PCMA/8000)" in sip and "BYE" in sip
    other = await make_account(voice)
    assert (await vapi.get(f"/v1/messages/{mid}/exchanges", headers=auth(other))).status_code == 404


async def test_another_account_cannot_see_the_call(voice: Platform, vapi: httpx.AsyncClient) -> None:
    account, other = await make_account(voice), await make_account(voice)
    r = await vapi.post("/v1/messages", headers=auth(account), json={"channel": "voice", "to": "0708400160", "text": "Hi"})
    mid = r.json()["messages"][0]["id"]
    await final(vapi, account, mid)
    assert (await vapi.get(f"/v1/messages/{mid}", headers=auth(other))).status_code == 404
    assert (await vapi.get("/v1/messages", headers=auth(other))).json()["data"] == []


@pytest.mark.parametrize(("body", "code"), [
    ({"text": "Hi", "audio_id": "aud_1"}, "invalid_request"),
    ({}, "missing_text"),
    ({"text": "Hi", "voice": "robot"}, "invalid_voice"),
    ({"text": "Hi", "length_factor": 9}, "invalid_length_factor"),
    ({"text": "Hi", "length_factor": 0}, "invalid_length_factor"),
    ({"text": "Hi", "length_factor": "slow"}, "validation_error"),
    ({"audio_id": "aud_missing"}, "audio_not_found"),
    ({"text": "Hi", "from": "not a number"}, "invalid_sender"),
    ({"text": "क" * 2001}, "message_too_long"),
    ({"text": "7" * 2000}, "message_too_long"),  # within the characters, but said digit by digit: 21 minutes
    ({"text": "Hi", "subject": "Hello"}, "invalid_request"),
])
async def test_bad_voice_input_is_400_in_the_native_shape(
    platform: Platform, api: httpx.AsyncClient, body: dict[str, Any], code: str,
) -> None:
    account = await make_account(platform)
    r = await api.post("/v1/messages", headers=auth(account), json={"channel": "voice", "to": "0708400170", **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert (await api.get("/v1/balance", headers=auth(account))).json()["balance"] == 100  # nothing held


async def test_voice_fields_on_an_sms_are_refused(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    r = await api.post("/v1/messages", headers=auth(account), json={"to": "0708400170", "text": "Hi", "voice": "np_rija"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


async def test_a_batch_with_one_text_per_recipient(voice: Platform) -> None:
    """What campaigns and voice codes build on: Messaging.send(channel="voice", texts=...)."""
    from ujumbe.core.calls import VoiceOptions
    from ujumbe.services.messaging import SendRequest

    account_row = await make_account(voice)
    account = await voice.accounts.get(account_row["account_id"])
    texts = [f"नमस्ते {name}" for name in ("सीता", "राम", "हरि")]
    result = await voice.messaging.send(account, SendRequest(
        recipients=["0708400180", "0708400181", "0708400182"], texts=texts, channel="voice",
        voice=VoiceOptions(voice="np_binod", length_factor=1.4)))
    assert len(result.accepted) == 3
    msgs = [await voice.messaging.message(account.id, r.message_id) for r in result.recipients]  # type: ignore[arg-type]
    assert [m["body"] for m in msgs] == texts
    async with client_of(voice) as api:
        ended = [await final(api, account_row, m["id"]) for m in msgs]
    assert [m["call"]["outcome"] for m in ended] == ["completed", "hungup", "unanswered"]


async def test_shutdown_ends_calls_terminated(tmp_path: Path, database_url: str | None) -> None:
    async with running(tmp_path, database_url, sim_call_speed=1.0) as p:
        row = await make_account(p)
        account = await p.accounts.get(row["account_id"])
        from ujumbe.services.messaging import SendRequest

        result = await p.messaging.send(account, SendRequest(recipients=["0708400190"], text="क" * 1000, channel="voice"))
        mid = result.recipients[0].message_id

        async def answered() -> bool:
            m = await p.messaging.message(account.id, mid)  # type: ignore[arg-type]
            return p.voice_simulator is not None and p.voice_simulator.active_calls == 1 and m["state"] == "submitted"

        await eventually(answered)

        async def playing() -> bool:  # rang 2.5 s and was answered (the channel kept the answer's codec)
            return any(live.codec for live in p.voice_simulator._live.values())  # type: ignore[union-attr]

        await eventually(playing)
    async with running(tmp_path, database_url, sim_call_speed=1.0) as p:
        m = await p.messaging.message(account.id, mid)  # type: ignore[arg-type]
        assert m["call"]["outcome"] == "terminated" and m["call"]["reason"] == "shutdown"
        assert m["state"] == "delivered" and m["call"]["answered_at"]


async def test_a_one_time_code_by_voice_is_a_call_that_says_the_digits(voice: Platform, vapi: httpx.AsyncClient) -> None:
    account = await make_account(voice)
    r = await vapi.post("/v1/verifications", headers=auth(account), json={
        "to": "0708400200", "channel": "voice", "code": "4821"})
    assert r.status_code == 201, r.text
    mid = r.json()["message_id"]
    m = await final(vapi, account, int(mid))
    assert m["channel"] == "voice" and m["call"]["outcome"] == "completed"
    assert "4821" not in m["text"] and "4 8 2 1" not in m["text"]  # kept masked at rest


async def test_an_uploaded_audio_file_is_played_and_held_for_its_length(voice: Platform, vapi: httpx.AsyncClient) -> None:
    from tests.test_speech import wav_file

    await voice.credits.set_price("*", "2", "voice")
    voice.messaging.forget_prices()
    account = await make_account(voice, credits="50")
    r = await vapi.post("/v1/audio", headers=auth(account), files={"file": ("offer.wav", wav_file(8000, 1, 70.0))})
    assert r.status_code == 201, r.text
    audio_id = r.json()["id"]
    r = await vapi.post("/v1/messages", headers=auth(account), json={
        "channel": "voice", "to": "0708400210", "audio_id": audio_id})
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["encoding"] == "audio" and out["cost"] == 4  # 70 s: two started minutes held
    m = await final(vapi, account, out["messages"][0]["id"])
    assert m["call"]["outcome"] == "completed" and m["call"]["audio_seconds"] == pytest.approx(70, abs=0.1)
    assert m["call"]["billable_minutes"] == 2 and m["cost"] == 4
    # another account's audio id is unknown to this one
    other = await make_account(voice)
    r = await vapi.post("/v1/messages", headers=auth(other), json={
        "channel": "voice", "to": "0708400210", "audio_id": audio_id})
    assert r.status_code == 400 and r.json()["error"]["code"] == "audio_not_found"


async def test_an_outcome_parked_before_its_submit_is_recorded_keeps_the_call(
    voice: Platform, vapi: httpx.AsyncClient,
) -> None:
    # no hold: an outcome that comes before its submit's record is parked at once (early_receipts)
    voice.reports.hold_s = 0
    account = await make_account(voice)
    r = await vapi.post("/v1/messages", headers=auth(account), json={
        "channel": "voice", "to": ["0708400222", "0708400224", "0708400220"], "text": "Hi"})
    ms = [await final(vapi, account, m["id"]) for m in r.json()["messages"]]
    assert [(m["state"], m["call"]["reason"]) for m in ms] == [
        ("undelivered", "busy"), ("failed", "bad_number"), ("delivered", "played_to_end")]
    assert ms[0]["call"]["sip_status"] == 486 and ms[0]["cost"] == 0 and ms[2]["cost"] == 1
    parked = await voice.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM early_receipts"))
    assert parked == 0


async def test_with_no_voice_channel_a_call_fails_no_route_and_is_refunded(
    tmp_path: Path, database_url: str | None,
) -> None:
    async with running(tmp_path, database_url, simulator=False) as p:
        await p.credits.set_price("*", "2", "voice")
        row = await make_account(p, credits="10")
        async with client_of(p) as api:
            r = await api.post("/v1/messages", headers=auth(row), json={"channel": "voice", "to": "0708400230",
                                                                      "text": "Hi"})
            assert r.status_code == 202 and r.json()["cost"] == 2, r.text
            mid = r.json()["messages"][0]["id"]
            m = await final(api, row, mid)
            assert m["state"] == "failed" and m["error"]["code"] == "no_route" and m["cost"] == 0
            assert (await api.get("/v1/balance", headers=auth(row))).json()["balance"] == 10


async def test_metrics_count_calls_by_outcome(voice: Platform, vapi: httpx.AsyncClient) -> None:
    voice.settings.admin_token = "metrics-admin"
    account = await make_account(voice)
    r = await vapi.post("/v1/messages", headers=auth(account), json={"channel": "voice", "to": "0708400242",
                                                                    "text": "Hi"})
    await final(vapi, account, r.json()["messages"][0]["id"])
    text = (await vapi.get("/metrics", headers={"authorization": "Bearer metrics-admin"})).text
    busy = [line for line in text.splitlines() if line.startswith("ujumbe_calls_total{")
            and 'outcome="unanswered"' in line and 'reason="busy"' in line and 'connector="voice-simulator"' in line]
    assert busy and float(busy[0].rsplit(" ", 1)[1]) >= 1


async def test_a_call_waiting_for_a_free_line_longer_than_a_lease_is_placed_once(
    tmp_path: Path, database_url: str | None,
) -> None:
    async with running(tmp_path, database_url, sim_call_speed=0.1) as p:
        assert p.dispatcher is not None and p.voice_simulator is not None
        p.dispatcher.lease_ms = 1500  # a lease far shorter than the wait for a line
        p.voice_simulator._slots = asyncio.Semaphore(1)  # one line: the calls go one after another
        row = await make_account(p)
        async with client_of(p) as api:
            r = await api.post("/v1/messages", headers=auth(row), json={
                "channel": "voice", "to": ["0708400250", "0708400260", "0708400270"], "text": TEXT * 6})
            ms = [await final(api, row, m["id"], timeout=60) for m in r.json()["messages"]]
        assert [m["call"]["outcome"] for m in ms] == ["completed"] * 3
        assert sum(c["audio_ms"] for c in p.voice_simulator.caller.placed) / 1000 > 3 * 15  # each took > 1.5 s
        assert [c["to"] for c in p.voice_simulator.caller.placed] == [m["to"] for m in ms]  # none twice


async def test_a_call_whose_process_died_reaches_a_final_state_on_every_store(tmp_path: Path,
                                                                             database_url: str | None) -> None:
    # no outcome ever comes (the process placing it "dies"): past the longest a
    # call can last (the simulator's, scaled by its speed) it expires, refunded,
    # on PostgreSQL too, where other workers of a cluster cannot be told apart
    from ujumbe.services.messaging import SendRequest

    async with running(tmp_path, database_url, sim_call_speed=0.01) as p:
        await p.credits.set_price("*", "2", "voice")
        p.messaging.forget_prices()
        row = await make_account(p, credits="10")
        account = await p.accounts.get(row["account_id"])
        assert p.voice_simulator is not None
        p.voice_simulator.events = None  # what the call did is never told
        result = await p.messaging.send(account, SendRequest(recipients=["0708400260"], text="Namaste", channel="voice"))
        mid = result.recipients[0].message_id
        assert mid is not None

        async def placed() -> bool:
            return (await p.messaging.message(account.id, mid))["state"] == "submitted"

        await eventually(placed)
        m = await p.messaging.message(account.id, mid)
        assert await p.credits.balance(account.id) < to_units("10")  # the call's hold
    async with running(tmp_path, database_url, sim_call_speed=0.01) as p:
        async def ended() -> dict[str, Any] | None:
            m = await p.messaging.message(account.id, mid)
            return m if m["state"] not in ("queued", "submitted") else None

        m = await eventually(ended, timeout=60)
        if database_url is None:
            assert m["state"] == "failed" and m["call"]["reason"] == "shutdown"  # ended at start, as before
        else:
            assert m["state"] == "expired", m
        assert m["cost"] == 0 and await p.credits.balance(account.id) == to_units("10")


async def test_a_call_lost_with_a_dead_process_ends_at_the_next_start(tmp_path: Path, database_url: str | None) -> None:
    from ujumbe.services.messaging import SendRequest

    async with running(tmp_path, database_url, sim_call_speed=1.0) as p:
        await p.credits.set_price("*", "2", "voice")
        p.messaging.forget_prices()
        row = await make_account(p, credits="10")
        account = await p.accounts.get(row["account_id"])
        result = await p.messaging.send(account, SendRequest(recipients=["0708400260"], text="क" * 800, channel="voice"))
        mid = result.recipients[0].message_id
        assert mid is not None

        async def placed() -> bool:
            return (await p.messaging.message(account.id, mid))["state"] == "submitted"

        await eventually(placed)
        assert p.voice_simulator is not None
        p.voice_simulator.events = None  # the process "dies": what the call did is never told
    async with running(tmp_path, database_url, sim_call_speed=1.0) as p:
        if database_url is not None:
            # a cluster's other workers may still be on the call: it waits for its validity to end
            assert (await p.messaging.message(account.id, mid))["state"] == "submitted"
            return

        async def ended() -> dict[str, Any] | None:
            m = await p.messaging.message(account.id, mid)
            return m if m.get("call") else None

        # the embedded store's only server knows the line is gone: failed, refunded
        m = await eventually(ended)
        assert m["state"] == "failed" and m["call"]["reason"] == "shutdown" and m["cost"] == 0
        assert await p.credits.balance(account.id) == to_units("10")
