"""One-time codes through the native API: a code reaches the phone, is checked
once, expires, runs out of attempts, replaces the previous one, and the SMS
pumping guard holds back bursts; the code is nowhere at rest or in answers."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import auth, client_of, eventually, make_account, make_settings, running
from ujumbe.core import otp
from ujumbe.runtime import Platform
from ujumbe.store import now_ms


async def sent_code(platform: Platform, message_id: int) -> str:
    """The code as the operator (the simulator) received it."""
    async def find() -> Any:
        assert platform.simulator is not None
        return next((m for m in platform.simulator.sent if m.message_id == str(message_id)), None)

    sent = await eventually(find)
    found = re.search(r"\d{4,10}", sent.body)
    assert found, sent.body
    return found.group(0)


async def start(api: Any, account: dict[str, Any], **body: Any) -> Any:
    return await api.post("/v1/verifications", headers=auth(account), json={"to": "0708400111", **body})


async def test_code_reaches_the_phone_and_checks_once(platform: Platform, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    account = await make_account(platform)
    async with client_of(platform) as api:
        r = await start(api, account, text="Your Duka code is ${otp}. It expires in 10 minutes.")
        assert r.status_code == 201, r.text
        v = r.json()
        assert v["status"] == "pending" and v["to"] == "254708400111" and v["length"] == 6
        assert "code" not in v
        code = await sent_code(platform, v["message_id"])
        assert len(code) == 6

        wrong = "0" * 6 if code != "0" * 6 else "1" * 6
        r = await api.post(f"/v1/verifications/{v['id']}/check", headers=auth(account), json={"code": wrong})
        assert r.json() == {"id": v["id"], "result": "wrong_code", "valid": False, "status": "pending",
                            "attempts_left": 4}
        r = await api.post(f"/v1/verifications/{v['id']}/check", headers=auth(account), json={"code": code})
        assert r.json()["result"] == "approved" and r.json()["valid"] is True
        # a used code does not approve twice
        r = await api.post(f"/v1/verifications/{v['id']}/check", headers=auth(account), json={"code": code})
        assert r.json()["result"] == "already_approved" and r.json()["valid"] is False

        got = (await api.get(f"/v1/verifications/{v['id']}", headers=auth(account))).json()
        assert got["status"] == "approved" and got["attempts"] == 2
        listed = (await api.get("/v1/verifications", headers=auth(account))).json()
        message = (await api.get(f"/v1/messages/{v['message_id']}", headers=auth(account))).json()
        await eventually(lambda: _delivered(api, account, v["message_id"]))
        callbacks = (await api.get("/v1/callbacks", headers=auth(account))).text

    # The code is in no answer, event, log line or database row.
    assert message["text"] == "Your Duka code is ******. It expires in 10 minutes."
    for text in (str(got), str(listed), str(message), callbacks, caplog.text):
        assert code not in text
    await assert_not_stored(platform, code)


async def _delivered(api: Any, account: dict[str, Any], message_id: int) -> bool:
    m = (await api.get(f"/v1/messages/{message_id}", headers=auth(account))).json()
    return m["state"] == "delivered"


async def assert_not_stored(platform: Platform, code: str) -> None:
    """No table holds the code in any column (the database is read directly)."""
    store = platform.store
    if store.dialect == "sqlite":
        await platform.stop()  # checkpoints the WAL into the file
        data = b"".join(p.read_bytes() for p in Path(store.path).parent.glob(Path(store.path).name + "*"))  # type: ignore[attr-defined]
        assert code.encode() not in data
        return
    conn = await asyncpg.connect(platform.settings.database_url)
    try:
        tables = [r[0] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{table}" t')
            assert not [r["row"] for r in rows if code in r["row"]], table
    finally:
        await conn.close()


async def test_supplied_code_template_and_expiry(platform: Platform) -> None:
    account = await make_account(platform)
    async with client_of(platform) as api:
        await api.put("/v1/templates/otp", headers=auth(account), json={"body": "Habari ${name}, code {otp}"})
        r = await start(api, account, template="otp", params={"name": "Wanjiru"}, code="4321", expires_in=30)
        assert r.status_code == 201, r.text
        v = r.json()
        assert await sent_code(platform, v["message_id"]) == "4321"
        assert platform.simulator is not None
        assert any(m.body == "Habari Wanjiru, code 4321" for m in platform.simulator.sent)
        # expire it by moving its clock (no sleeping 30 s)
        await platform.store.run(lambda tx: tx.execute(
            "UPDATE verifications SET expires_at = ? WHERE id = ?", now_ms() - 1, v["id"]))
        r = await api.post(f"/v1/verifications/{v['id']}/check", headers=auth(account), json={"code": "4321"})
        assert r.json()["result"] == "expired" and r.json()["status"] == "expired"


async def test_five_checks_then_no_more_even_at_once(platform: Platform) -> None:
    account = await make_account(platform)
    async with client_of(platform) as api:
        v = (await start(api, account, code="123456")).json()
        # ten wrong guesses at once: exactly five are counted, the rest refused
        answers = await asyncio.gather(*(
            api.post(f"/v1/verifications/{v['id']}/check", headers=auth(account), json={"code": f"00000{i}"})
            for i in range(10)
        ))
        results = sorted(a.json()["result"] for a in answers)
        assert results.count("wrong_code") == 5 and results.count("too_many_attempts") == 5
        # the right code no longer helps
        r = await api.post(f"/v1/verifications/{v['id']}/check", headers=auth(account), json={"code": "123456"})
        assert r.json()["result"] == "too_many_attempts" and r.json()["valid"] is False
        got = (await api.get(f"/v1/verifications/{v['id']}", headers=auth(account))).json()
        assert got["status"] == "failed" and got["attempts"] == 5


async def test_new_code_cancels_old_and_resends_are_limited(platform: Platform) -> None:
    account = await make_account(platform)
    async with client_of(platform) as api:
        first = (await start(api, account, code="111111")).json()
        second = (await start(api, account, code="222222")).json()
        r = await api.post(f"/v1/verifications/{first['id']}/check", headers=auth(account), json={"code": "111111"})
        assert r.json()["result"] == "canceled"
        r = await api.post(f"/v1/verifications/{second['id']}/check", headers=auth(account), json={"code": "222222"})
        assert r.json()["result"] == "approved"
        for _ in range(3):
            assert (await start(api, account)).status_code == 201
        r = await start(api, account)  # the sixth code to one number in 10 minutes
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "too_many_sends"
        # another number is not affected
        assert (await start(api, account, to="0708400112")).status_code == 201


async def test_pumping_guard_holds_back_a_burst_to_new_ranges(platform: Platform) -> None:
    account = await make_account(platform, credits="1000", region="GB")
    async with client_of(platform) as api:
        r = await api.put("/v1/verification-settings", headers=auth(account), json={"new_prefixes_per_hour": 3})
        assert r.status_code == 200 and r.json()["new_prefixes_per_hour"] == 3
        # numbers in four different ranges (+44 7400.., 7500.., 7911.., 7800..)
        ranges = ["+447400123456", "+447500123456", "+447911123456", "+447800123456"]
        answers = [await start(api, account, to=n) for n in ranges]
        assert [a.status_code for a in answers] == [201, 201, 201, 429]
        assert answers[3].json()["error"]["code"] == "unusual_prefix_burst"
        # a range already used still gets codes
        assert (await start(api, account, to="+447400123457")).status_code == 201
        refusals = (await api.get("/v1/verification-refusals", headers=auth(account))).json()["data"]
        assert [(x["to"], x["prefix"], x["reason"]) for x in refusals] == [
            ("447800123456", "44780", "unusual_prefix_burst")]

        await api.put("/v1/verification-settings", headers=auth(account),
                      json={"sends_per_prefix_hour": 2, "new_prefixes_per_hour": 100})
        r = await start(api, account, to="+447400123458")  # a third code to 44740 in the hour
        assert r.status_code == 429 and r.json()["error"]["code"] == "prefix_limit"
        bad = await api.put("/v1/verification-settings", headers=auth(account), json={"max_checks": 0})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_settings"


async def test_codes_per_range_count_the_last_hour_only(platform: Platform) -> None:
    """The per-range limit counts codes sent in the last hour: refused codes
    and codes older than an hour do not count."""
    account = await make_account(platform, credits="1000")
    async with client_of(platform) as api:
        await api.put("/v1/verification-settings", headers=auth(account), json={"sends_per_prefix_hour": 3})
        sent = [(await start(api, account, to=f"07084001{i:02d}")).json() for i in range(20, 23)]
        assert all(v["status"] == "pending" for v in sent)
        r = await start(api, account, to="0708400123")  # a fourth code to 254708 in the hour
        assert r.status_code == 429 and r.json()["error"]["code"] == "prefix_limit"
        # that refusal is not a code: one more allowed, exactly one
        await api.put("/v1/verification-settings", headers=auth(account), json={"sends_per_prefix_hour": 4})
        assert (await start(api, account, to="0708400124")).status_code == 201
        assert (await start(api, account, to="0708400125")).status_code == 429
        # the first two codes were sent over an hour ago: two more go
        await platform.store.run(lambda tx: tx.execute(
            "UPDATE verifications SET created_at = created_at - 3600001 WHERE id IN (?, ?)",
            sent[0]["id"], sent[1]["id"]))
        assert (await start(api, account, to="0708400126")).status_code == 201
        assert (await start(api, account, to="0708400127")).status_code == 201
        assert (await start(api, account, to="0708400128")).status_code == 429
        # another range of the same account is counted apart
        assert (await start(api, account, to="0718400128")).status_code == 201


async def test_bad_requests_and_other_accounts(platform: Platform) -> None:
    a = await make_account(platform)
    b = await make_account(platform)
    async with client_of(platform) as api:
        cases = [
            ({"length": 3}, 400, "invalid_length"),
            ({"length": 11}, 400, "invalid_length"),
            ({"code": "12ab"}, 400, "invalid_code"),
            ({"text": "no placeholder here"}, 400, "missing_placeholder"),
            ({"to": "12"}, 400, "invalid_number"),
            ({"channel": "fax"}, 400, "invalid_channel"),
            ({"expires_in": 5}, 400, "invalid_expiry"),
        ]
        for body, status, code in cases:
            r = await start(api, a, **body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), body
        v = (await start(api, a, code="5555")).json()
        assert (await api.get(f"/v1/verifications/{v['id']}", headers=auth(b))).status_code == 404
        r = await api.post(f"/v1/verifications/{v['id']}/check", headers=auth(b), json={"code": "5555"})
        assert r.status_code == 404
        assert (await api.get("/v1/verifications", headers=auth(b))).json()["data"] == []
        # B's failed guess did not use up A's attempts
        got = (await api.get(f"/v1/verifications/{v['id']}", headers=auth(a))).json()
        assert got["attempts"] == 0


def test_codes_are_random_digits_and_hash_is_keyed() -> None:
    codes = {otp.generate(6) for _ in range(200)}
    assert len(codes) > 190 and all(c.isdigit() and len(c) == 6 for c in codes)
    assert otp.digest(b"k1", "ver_1", "123456") != otp.digest(b"k2", "ver_1", "123456")
    assert otp.digest(b"k1", "ver_1", "123456") != otp.digest(b"k1", "ver_2", "123456")
    assert otp.matches(b"k1", "ver_1", " 123456 ", otp.digest(b"k1", "ver_1", "123456"))
    assert otp.render("code: {otp} / ${otp}", "42") == "code: 42 / 42"
    assert otp.mask("{otp}", 4) == "****"
    assert otp.spoken("1234") == "1 2 3 4"


async def test_code_accepted_by_an_api_process_is_sent_by_a_worker_later(tmp_path: Path, database_url: str | None) -> None:
    """The text with the code is sealed with the server secret, not kept in
    memory: a worker that starts later (another process) opens and sends it."""
    api_only = Platform(make_settings(tmp_path, database_url))
    await api_only.start("api")
    try:
        account = await make_account(api_only)
        started = await api_only.verifications.start(
            await api_only.accounts.get(account["account_id"]), to="0708400222", code="98765")
    finally:
        await api_only.stop()
    async with running(tmp_path, database_url, secret_key=api_only.settings.secret_key) as worker:
        assert await sent_code(worker, started.verification["message_id"]) == "98765"
        msg = await worker.messaging.message(account["account_id"], started.verification["message_id"])
        assert msg["body"] == "Your verification code is *****"


async def test_tingg_otp_code_is_kept_masked(platform: Platform) -> None:
    """Tingg's smsType OTP carries the client's code in params: it reaches the
    operator, but the stored text, answers and database show it masked."""
    from tests.test_tingg import engagement, tingg_account

    async with client_of(platform) as api:
        account, headers = await tingg_account(platform, api)
        body = engagement(msisdn=["254708400333"], referenceID="otp-1")
        body["smsDto"].update({"smsType": "OTP", "message": "Your code is ${code}", "params": {"code": "864213"}})
        r = await api.post("/api/v2/engagement", headers=headers, json=body)
        assert r.status_code == 200, r.text

        async def sent() -> Any:
            assert platform.simulator is not None
            return next((m for m in platform.simulator.sent if m.recipient == "254708400333"), None)

        assert (await eventually(sent)).body == "Your code is 864213"
        listed = (await api.get("/v1/messages", headers=auth(account))).json()["data"]
        assert [m["text"] for m in listed] == ["Your code is ******"]
    await assert_not_stored(platform, "864213")


async def test_voice_code_is_a_call_that_says_it_twice_and_rests_nowhere(
        tmp_path: Path, database_url: str | None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path, database_url, sim_call_speed=0.01) as platform:
        said: list[tuple[str, str | None]] = []
        speech = platform.voice_simulator.speech  # type: ignore[union-attr]
        render = speech.render

        async def listening(text: str, **kw: Any) -> bytes:  # what the call was asked to say
            said.append((text, kw.get("code")))
            return await render(text, **kw)

        speech.render = listening
        account = await make_account(platform)
        async with client_of(platform) as api:
            r = await start(api, account, channel="voice", text="Your Duka code is {otp}.", length=5, to="0708400110")
            assert r.status_code == 201, r.text
            v = r.json()
            assert v["channel"] == "voice" and "code" not in v
            got = await eventually(lambda: _final_call(api, account, v["message_id"]))
            assert got["channel"] == "voice" and got["call"]["outcome"] == "completed"
            assert got["text"] == "Your Duka code is *****."
            # the call said the text with the code, given as code=: digit by digit, twice (services/speech)
            assert len(said) == 1
            text, code = said[0]
            assert code is not None and len(code) == 5 and text == f"Your Duka code is {code}."
            r = await api.post(f"/v1/verifications/{v['id']}/check", headers=auth(account), json={"code": code})
            assert r.json()["result"] == "approved"
            callbacks = (await api.get("/v1/callbacks", headers=auth(account))).text
            exchanges = (await api.get(f"/v1/messages/{v['message_id']}/exchanges", headers=auth(account))).text
        for shown in (str(got), callbacks, exchanges, caplog.text):
            assert code not in shown
        # the speech of a code is never kept in the speech cache
        assert not any(code in str(k) for k in speech._cache)
        await assert_not_stored(platform, code)


async def _final_call(api: Any, account: dict[str, Any], message_id: int) -> Any:
    m = (await api.get(f"/v1/messages/{message_id}", headers=auth(account))).json()
    return m if m.get("call") else None
