"""PHONE campaigns (the voice half of TingTing's campaigns) through the service
and the workers with the call simulator: each number reaches its call's
outcome with its duration, playback and exact credits; re-run by status calls
only those numbers; stop ends calls in progress and the numbers not called;
SMS,PHONE sends each number a text and a call. Money is checked against the
ledger to the unit."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import client_of, eventually, running
from tests.test_campaigns import account_of, balance, ledger, money_is_exact, settled
from tests.test_tingting import envelope_error, envelope_ok, logged_in, xlsx
from ujumbe.core import calls
from ujumbe.core import campaigns as rules
from ujumbe.core.errors import Invalid
from ujumbe.core.pricing import display, to_units
from ujumbe.core.speech import wav
from ujumbe.runtime import Platform

TEXT = "नमस्ते {tags_name}, तपाईंको अर्डर तयार छ। धन्यवाद।"
# the simulator answers by the last digit (channels/voice/sim.py)
EXPECTED = {"0": ("completed", None), "1": ("hungup", "callee_hangup"), "2": ("unanswered", "busy"),
            "3": ("unanswered", "no_answer"), "4": ("failed", "bad_number"), "5": ("unanswered", "declined"),
            "6": ("failed", "network_error")}


@pytest.fixture
async def voice(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    async with running(tmp_path, database_url, sim_call_speed=0.01) as p:
        yield p


async def calls_of(platform: Platform, cid: int) -> dict[int, dict[str, Any]]:
    """The calls row of each number's message, by number id."""
    rows = await platform.store.read(lambda tx: tx.fetch(
        "SELECT n.id, c.outcome, c.reason, c.duration_ms, c.playback_ms, c.answered_at FROM campaign_numbers n "
        "JOIN calls c ON c.message_id = n.message_id WHERE n.campaign_id = ?", cid))
    return {r[0]: dict(r) for r in rows}


async def test_phone_campaign_numbers_reach_their_call_outcomes(voice: Platform) -> None:
    await voice.credits.set_price("*", "3", "voice")  # per started minute
    account = await account_of(voice, credits="500")
    start = await balance(voice, account.id)
    camp, bad = await voice.campaigns.create(
        account, name="Order calls", services="PHONE", message=TEXT, voice="np_prasanna", length_factor="1.2",
        numbers_in=[(f"070840020{d}", {"tags_name": f"n{d}"}) for d in EXPECTED])
    assert not bad and camp["voice"] == "np_prasanna" and camp["length_factor"] == 1.2
    run = await voice.campaigns.begin(account, camp["id"])
    nums = await voice.campaigns.numbers(account, camp["id"])
    # the hold: what Messaging holds for each call (3 credits for every minute its text can take)
    texts = [rules.render(TEXT, n["tags"], ["tags_name"]) for n in nums]
    per_call = [to_units("3") * calls.hold_minutes(calls.estimated_ms(t, 1.2)) for t in texts]
    assert run["held"] == sum(per_call) and run["numbers"] == 7
    await settled(voice, account, camp["id"])
    nums = await voice.campaigns.numbers(account, camp["id"])
    got = await calls_of(voice, camp["id"])
    for n in nums:
        status, error = EXPECTED[n["number"][-1]]
        call = got[n["id"]]
        assert (n["status"], n["error"]) == (status, error), n
        assert n["duration"] == rules.seconds(call["duration_ms"]) and n["playback"] == round(call["playback_ms"] / 1000, 1)
        minutes = calls.billable_minutes(call["duration_ms"]) if call["answered_at"] else 0
        assert n["credit_consumed_units"] == to_units("3") * minutes, n
    done = next(n for n in nums if n["number"].endswith("0"))
    assert done["duration"] >= 1 and done["playback"] > 1 and done["credit_consumed_units"] == to_units("3")
    assert next(n for n in nums if n["number"].endswith("2"))["duration"] == 0
    # the calls spoke each number's text in the campaign's voice
    msgs = await voice.store.read(lambda tx: tx.fetch(
        "SELECT body, channel, meta FROM messages WHERE account_id = ? ORDER BY id", account.id))
    assert {m[0] for m in msgs} == set(texts) and {m[1] for m in msgs} == {"voice"}
    assert all('"voice": "np_prasanna"' in m[2] and '"length_factor": 1.2' in m[2] for m in msgs)
    await money_is_exact(voice, account, camp["id"], start)
    summary = await voice.campaigns.summary(account, camp["id"])
    assert summary["by_status"] == {"not started": 0, "scheduled": 0, "running": 0, "completed": 1, "failed": 2,
                                    "hungup": 1, "unanswered": 3, "terminated": 0}
    assert summary["duration"] == sum(n["duration"] for n in nums)
    assert summary["duration_by_status"]["completed"] == done["duration"]

    # re-run by status with the document's one-string form: only the failed and hung-up numbers are called
    placed = len(voice.voice_simulator.caller.placed)  # type: ignore[union-attr]
    run = await voice.campaigns.begin(account, camp["id"], statuses=["failed, hungup"])
    assert run["numbers"] == 3
    await settled(voice, account, camp["id"])
    again = voice.voice_simulator.caller.placed[placed:]  # type: ignore[union-attr]
    assert sorted(p["to"][-1] for p in again) == ["1", "4", "6"]
    nums2 = {n["id"]: n for n in await voice.campaigns.numbers(account, camp["id"])}
    hung = next(n for n in nums if n["number"].endswith("1"))
    assert nums2[hung["id"]]["credit_consumed_units"] == 2 * hung["credit_consumed_units"]  # both runs
    await money_is_exact(voice, account, camp["id"], start)


async def test_stop_ends_calls_in_progress_and_the_numbers_not_called(tmp_path: Path, database_url: str | None) -> None:
    # real time: the call rings 2.5 s, long enough to be stopped while it rings
    async with running(tmp_path, database_url, sim_call_speed=1.0) as p:
        account = await account_of(p, credits="500")
        start = await balance(p, account.id)
        camp, _ = await p.campaigns.create(account, name="Slow", services="PHONE", message="Namaste", rate=1,
                                           numbers_in=[(f"07084003{i:02d}", {}) for i in range(5)])
        await p.campaigns.begin(account, camp["id"])

        async def ringing() -> Any:
            return p.voice_simulator.caller.placed and p.voice_simulator.active_calls  # type: ignore[union-attr]

        await eventually(ringing)
        await p.campaigns.stop(account, camp["id"])
        await settled(p, account, camp["id"])

        async def ended() -> Any:
            ns = await p.campaigns.numbers(account, camp["id"])
            return ns if all(n["status"] == "terminated" for n in ns) else None

        nums = await eventually(ended)
        called = [n for n in nums if n["message_id"]]
        assert 1 <= len(called) < 5 and all(n["error"] == "stopped" for n in called)
        assert all(n["message_id"] is None and n["error"] is None for n in nums if n not in called)
        got = await calls_of(p, camp["id"])
        assert {c["reason"] for c in got.values()} == {"stopped"} and {c["outcome"] for c in got.values()} == {"terminated"}
        await money_is_exact(p, account, camp["id"], start)
        assert len(p.voice_simulator.caller.placed) == len(called)  # type: ignore[union-attr]


async def test_sms_and_phone_send_each_number_a_text_and_a_call(voice: Platform) -> None:
    account = await account_of(voice, credits="500")
    start = await balance(voice, account.id)
    camp, _ = await voice.campaigns.create(account, name="Both", services="SMS,PHONE", message="Namaste {tags_name}",
                                           numbers_in=[("0708400400", {"tags_name": "Asha"}), ("0708400402", {})])
    await voice.campaigns.begin(account, camp["id"])
    await settled(voice, account, camp["id"])
    nums = await voice.campaigns.numbers(account, camp["id"])
    assert [n["status"] for n in nums] == ["completed", "unanswered"]
    msgs = await voice.store.read(lambda tx: tx.fetch(
        "SELECT id, channel, body, cost FROM messages WHERE account_id = ? ORDER BY id", account.id))
    by_id = {m[0]: m for m in msgs}
    for n in nums:
        call, text = by_id[n["message_id"]], by_id[n["sms_message_id"]]
        assert (call[1], text[1]) == ("voice", "sms") and call[2] == text[2]
        assert n["credit_consumed_units"] == call[3] + text[3]
    assert by_id[nums[0]["sms_message_id"]][2] == "Namaste Asha"
    await money_is_exact(voice, account, camp["id"], start)


async def texts_and_calls(platform: Platform, account: Any, cid: int) -> list[dict[str, Any]]:
    """Each number with what its text and its call (if any) finally cost."""
    nums = await platform.campaigns.numbers(account, cid)
    costs = dict(await platform.store.read(lambda tx: tx.fetch(
        "SELECT id, cost FROM messages WHERE account_id = ?", account.id)))
    return [{**n, "text_cost": costs.get(n["sms_message_id"]), "call_cost": costs.get(n["message_id"])} for n in nums]


async def test_sms_and_phone_whose_call_is_refused_still_counts_its_text(tmp_path: Path,
                                                                         database_url: str | None) -> None:
    # a text a call cannot speak (over calls.MAX_TEXT) but the account can send as SMS
    async with running(tmp_path, database_url, sim_call_speed=0.01) as p:
        account = await account_of(p, credits="500", max_chars=3000)
        start = await balance(p, account.id)
        camp, _ = await p.campaigns.create(account, name="Long", services="SMS,PHONE", message="a" * (calls.MAX_TEXT + 1),
                                           numbers_in=[("0708400600", {})])
        await p.campaigns.begin(account, camp["id"])
        await settled(p, account, camp["id"])
        [n] = await texts_and_calls(p, account, camp["id"])
        assert n["status"] == "failed" and "a call speaks at most" in n["error"]
        assert n["text_cost"] > 0 and n["credit_consumed_units"] == n["text_cost"]  # what the text was charged
        await money_is_exact(p, account, camp["id"], start)


async def test_sms_and_phone_whose_call_the_balance_no_longer_covers_counts_its_text(voice: Platform) -> None:
    await voice.credits.set_price("*", "3", "voice")
    account = await account_of(voice, credits="50")
    start = await balance(voice, account.id)
    camp, _ = await voice.campaigns.create(account, name="Spent", services="SMS,PHONE", message="Namaste",
                                           numbers_in=[("0708400610", {})])
    send = voice.campaigns.messaging.send
    spent: list[int] = []

    async def another_send_spends_it_all(acc: Any, req: Any) -> Any:
        out = await send(acc, req)
        if req.channel == "sms":  # between the text and the call, the account's credits go elsewhere
            left = await balance(voice, account.id)
            spent.append(left)
            await voice.credits.add(account.id, str(-display(left)), note="another send")
        return out

    voice.campaigns.messaging.send = another_send_spends_it_all  # type: ignore[method-assign]
    await voice.campaigns.begin(account, camp["id"])
    await settled(voice, account, camp["id"])
    [n] = await texts_and_calls(voice, account, camp["id"])
    assert n["status"] == "failed" and n["error"].startswith("Insufficient credit") and n["message_id"] is None
    assert n["text_cost"] > 0 and n["credit_consumed_units"] == n["text_cost"]
    rows = await ledger(voice, account.id)
    assert sum(r["amount"] for r in rows) == await balance(voice, account.id) == start - n["text_cost"] - spent[0]


async def test_sms_and_phone_stopped_between_text_and_call_counts_its_text(voice: Platform) -> None:
    account = await account_of(voice, credits="500")
    start = await balance(voice, account.id)
    camp, _ = await voice.campaigns.create(account, name="Halt", services="SMS,PHONE", message="Namaste",
                                           numbers_in=[("0708400620", {})])
    send = voice.campaigns.messaging.send

    async def stopped_after_the_text(acc: Any, req: Any) -> Any:
        out = await send(acc, req)
        if req.channel == "sms":
            await voice.campaigns.stop(account, camp["id"])
        return out

    voice.campaigns.messaging.send = stopped_after_the_text  # type: ignore[method-assign]
    await voice.campaigns.begin(account, camp["id"])
    await settled(voice, account, camp["id"])

    async def final() -> Any:
        [n] = await texts_and_calls(voice, account, camp["id"])
        return n if n["status"] in rules.FINAL_NUMBER else None

    n = await eventually(final)
    assert (n["status"], n["error"], n["message_id"]) == ("terminated", "stopped", None)
    assert n["text_cost"] > 0 and n["credit_consumed_units"] == n["text_cost"]
    assert voice.voice_simulator.caller.placed == []  # type: ignore[union-attr]
    await money_is_exact(voice, account, camp["id"], start)


async def test_what_a_phone_run_plays(voice: Platform) -> None:
    account = await account_of(voice)
    camp, _ = await voice.campaigns.create(account, name="Calls", services="PHONE", numbers_in=[("0708400500", {})])
    for kwargs, code in [({}, "missing_text"), ({"priority": "audio"}, "missing_audio"),
                         ({"priority": "video", "message": "x"}, "invalid_priority"),
                         ({"message": "x", "voice": "robot"}, "invalid_voice"),
                         ({"message": "x", "length_factor": "9"}, "invalid_length_factor"),
                         ({"message": "x", "length_factor": "fast"}, "invalid_length_factor"),
                         ({"audio": "aud_missing"}, "audio_not_found")]:
        with pytest.raises(Invalid) as err:
            await voice.campaigns.begin(account, camp["id"], **kwargs)
        assert err.value.code == code, kwargs
    sms, _ = await voice.campaigns.create(account, name="Texts", services="SMS", numbers_in=[("0708400501", {})])
    with pytest.raises(Invalid) as err:
        await voice.campaigns.begin(account, sms["id"], message="x", audio="aud_1")
    assert err.value.code == "invalid_request"
    assert (await ledger(voice, account.id))[-1]["kind"] != "hold"  # nothing held by refusals


def wav_of(seconds: float) -> bytes:
    """A WAV file of a tone, as a client would upload it."""
    pcm = b"".join(int(8000 * math.sin(i / 8)).to_bytes(2, "little", signed=True) for i in range(int(8000 * seconds)))
    return wav(pcm)


async def test_tingting_phone_campaign_with_the_documents_samples(voice: Platform) -> None:
    await voice.credits.set_price("*", "2", "voice")
    async with client_of(voice) as api:
        account, headers, _ = await logged_in(api, voice, credits="200")
        start = await balance(voice, account["account_id"])
        # a bulk PHONE campaign from an xlsx with tags; numbers end in the simulator's digits
        data = xlsx([["number", "tags_name"], [9841234500.0, "Adwait"], [9841234501.0, "Sita"],
                     [9841234502.0, "Ram"], [9841234504.0, "Hari"]])
        r = await api.post("/api/system/campaigns/", headers=headers, data={"name": "sample campaign name",
                           "services": "PHONE"}, files={"send_to_number_file": ("numbers.xlsx", data, "application/octet-stream")})
        assert r.status_code == 201 and r.json()["errors"] == [], r.text
        cid = r.json()["data"]["details"][0]["id"]
        assert r.json()["data"]["details"][0]["services"] == "PHONE"
        # the document's begin sample with voice_input and length_factor (as text)
        r = await api.post(f"/api/system/campaigns/{cid}/begin/", headers=headers, json={
            "message": "नमस्कार, {tags_name}, टिङ्टिंगमा हजुरलाई स्वागत छ", "voice_input": "np_prasanna",
            "length_factor": "1.4"})
        body = envelope_ok(r)
        assert body["message"] == "Campaign is running"
        held = body["data"]["hold amount"]
        assert held.endswith("credits on hold for sample campaign name campaign.")

        async def numbers_final() -> Any:
            r = await api.get(f"/api/system/campaigns/number/{cid}/", headers=headers)
            ns = envelope_ok(r)["data"]["number-lists"]
            return ns if all(n["status"] in rules.FINAL_NUMBER for n in ns) else None

        ns = await eventually(numbers_final, timeout=30)
        assert [(n["number"], n["status"]) for n in ns] == [
            (9841234500, "completed"), (9841234501, "hungup"), (9841234502, "unanswered"), (9841234504, "failed")]
        assert set(ns[0]) == {"id", "number", "campaing", "available_tags", "status", "duration", "playback",
                              "credit_consumed"}
        assert ns[0]["campaing"] == "sample campaign name" and ns[0]["available_tags"] == {"tags_name": "Adwait"}
        assert ns[0]["duration"] >= 1 and ns[0]["playback"] > 1 and ns[0]["credit_consumed"] == 2
        assert 0 < ns[1]["playback"] <= ns[1]["duration"] <= 3 and ns[1]["credit_consumed"] == 2
        assert (ns[2]["duration"], ns[2]["playback"], ns[2]["credit_consumed"]) == (0, 0.0, 0)
        r = await api.get(f"/api/system/number/{ns[1]['id']}/", headers=headers)
        assert envelope_ok(r)["data"]["number-detail"] == ns[1]
        await settled(voice, await voice.accounts.get(account["account_id"]), cid)

        # re-run by status with the document's own sample: only the failed and hung-up numbers are called
        placed = len(voice.voice_simulator.caller.placed)  # type: ignore[union-attr]
        r = await api.post(f"/api/system/campaigns/{cid}/begin", headers=headers, json={
            "message": "Here you send your message you want to convey", "status": ["failed, hungup"]})
        assert envelope_ok(r)["message"] == "Campaign is running"
        await settled(voice, await voice.accounts.get(account["account_id"]), cid)
        again = voice.voice_simulator.caller.placed[placed:]  # type: ignore[union-attr]
        assert sorted(p["to"] for p in again) == ["9779841234501", "9779841234504"]

        # an uploaded aud_file plays instead; the campaign now has both: a re-run needs priority
        r = await api.post(f"/api/system/campaigns/{cid}/begin/", headers=headers, data={"status": "completed"},
                           files={"aud_file": ("audio.wav", wav_of(2.0), "audio/wav")})
        assert envelope_ok(r)["data"]["hold amount"] == "2 credits on hold for sample campaign name campaign."
        await settled(voice, await voice.accounts.get(account["account_id"]), cid)
        last = voice.voice_simulator.caller.placed[-1]  # type: ignore[union-attr]
        assert last["to"] == "9779841234500" and last["audio_ms"] == 2000
        r = await api.post(f"/api/system/campaigns/{cid}/begin/", headers=headers, json={"status": ["completed"]})
        envelope_error(r, 400, "missing_priority")
        # the document's sample with every attribute: priority audio, a voice, a schedule, statuses
        r = await api.post(f"/api/system/campaigns/{cid}/begin/", headers=headers, json={
            "priority": "audio", "voice_input": "np_prasanna", "schedule_date": "2099-05-09T17:07",
            "status": ["failed", "hungup"]})
        body = envelope_ok(r)
        assert body["message"] == "Campaign is scheduled"
        assert body["data"]["hold amount"] == "4 credits on hold for sample campaign name campaign."
        r = await api.delete(f"/api/system/campaigns/{cid}/delete/", headers=headers)  # stops: the hold goes back
        envelope_ok(r)
        envelope_error(await api.post(f"/api/system/campaigns/{cid}/begin/", headers=headers,
                                      json={"aud_file": "path/containing/audio.mp3"}), 404, "campaign_not_found")

        # summary with durations, and the report's columns
        r = await api.post("/api/system/campaigns/", headers=headers, json={
            "name": "calls", "services": "PHONE", "individual_number": [9841234510, 9841234512]})
        cid2 = r.json()["data"]["details"][0]["id"]
        envelope_error(await api.post(f"/api/system/campaigns/{cid2}/begin/", headers=headers,
                                      json={"aud_file": "path/containing/audio.mp3"}), 400, "invalid_upload")
        envelope_ok(await api.post(f"/api/system/campaigns/{cid2}/begin/", headers=headers, json={"message": "Namaste"}))
        await settled(voice, await voice.accounts.get(account["account_id"]), cid2)
        r = await api.get(f"/api/system/campaigns/report/summary/?campaign_id={cid2}", headers=headers)
        summary = envelope_ok(r)["data"]["summary"][0]
        assert summary["by_status"]["completed"] == 1 and summary["by_status"]["unanswered"] == 1
        nums = envelope_ok(await api.get(f"/api/system/campaigns/number/{cid2}", headers=headers))["data"]["number-lists"]
        assert summary["duration"] == nums[0]["duration"] == summary["duration_by_status"]["completed"]
        r = await api.get(f"/api/system/campaigns/report/download?campaign_id={cid2}&format=csv", headers=headers)
        lines = r.text.splitlines()
        assert lines[0] == "id,number,campaign,status,credit_consumed,duration,playback,message_id,error"
        assert lines[1].split(",")[3:7] == ["completed", "2", str(nums[0]["duration"]), str(nums[0]["playback"])]
        assert lines[2].split(",")[3] == "unanswered" and lines[2].split(",")[-1] == "busy"
    # the ledger explains the balance: what the numbers consumed, nothing more
    consumed = await voice.store.read(lambda tx: tx.fetchval(
        "SELECT coalesce(sum(credit_consumed), 0) FROM campaign_numbers WHERE account_id = ?", account["account_id"]))
    assert await balance(voice, account["account_id"]) == start - consumed
