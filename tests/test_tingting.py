"""TingTing's API with the document's own sample payloads: login, refresh and
user details; campaigns list/add (individual numbers or an xlsx file)/update/
delete/details; numbers of a campaign; begin (individual, re-run by status,
schedule, audio); report download and summary; send OTP. Every answer is in
the document's envelope and spellings; paths work with and without '/'."""

from __future__ import annotations

import io
import json
from typing import Any

import jwt
import openpyxl

from tests.conftest import client_of, eventually, make_account
from ujumbe.runtime import Platform

NEPALI = "नमस्कार, टिङ्टिंगमा हजुरलाई स्वागत छ "


def xlsx(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    for r in rows:
        book.active.append(r)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def envelope_ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"status", "success", "message", "errors", "data"}, body
    assert body["status"] == status and body["success"] is True
    return body


def envelope_error(r: Any, status: int, code: str) -> Any:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and body["success"] is False and body["data"] == {}
    assert body["errors"][0]["code"] == code, body
    return body


async def logged_in(api: Any, platform: Platform, **kw: Any) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    account = await make_account(platform, name="Adwait Upadhyaya", email=kw.pop("email", "test@gmail.com"),
                                 password="test-password-1", region="NP", credits=kw.pop("credits", "100"))
    r = await api.post("/api/accounts/login/", json={"email": account["email"], "password": "test-password-1"})
    body = envelope_ok(r)
    assert body["message"] == "Successfully logged in" and body["errors"] == []
    assert set(body["data"]["token"]) == {"refresh", "access"}
    # as curl -d sends it (docs/tingting.md's examples): JSON labelled as a form
    curl_like = await api.post("/api/accounts/login/", headers={"content-type": "application/x-www-form-urlencoded"},
                               content=json.dumps({"email": account["email"], "password": "test-password-1"}))
    assert envelope_ok(curl_like)["message"] == "Successfully logged in"
    assert body["data"]["user_data"] == {"first_name": "Adwait", "last_name": "Upadhyaya", "email": account["email"]}
    return account, {"authorization": f"Bearer {body['data']['token']['access']}"}, body["data"]["token"]


async def test_login_refresh_and_user_details(platform: Platform) -> None:
    async with client_of(platform) as api:
        account, headers, tokens = await logged_in(api, platform)
        claims = jwt.decode(tokens["access"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 86_400  # a day
        r = await api.get("/api/accounts/user_details/", headers=headers)
        details = envelope_ok(r)["data"]["user_details"]
        assert details["first_name"] == "Adwait" and details["email"] == "test@gmail.com"
        assert details["username"] == account["username"]
        # the refresh token gives a new access token, and again (clients keep one)
        for _ in range(2):
            r = await api.post("/api/accounts/token/refresh/", json={"refresh": tokens["refresh"]})
            assert r.status_code == 200 and set(r.json()) == {"access"}
            r2 = await api.get("/api/accounts/user_details", headers={"authorization": f"Bearer {r.json()['access']}"})
            assert r2.status_code == 200
        envelope_error(await api.post("/api/accounts/token/refresh/", json={"refresh": "nope"}), 401,
                       "invalid_refresh_token")
        envelope_error(await api.post("/api/accounts/login/", json={"email": "test@gmail.com", "password": "x"}),
                       401, "invalid_credentials")
        envelope_error(await api.get("/api/accounts/user_details/"), 401, "missing_token")


async def test_campaigns_with_the_documents_samples(platform: Platform) -> None:
    async with client_of(platform) as api:
        account, headers, _ = await logged_in(api, platform)
        # PHONE campaigns are calls (test_voice_campaigns.py); the sample's numbers are not valid Nepali ones
        r = await api.post("/api/system/campaigns/", headers=headers, json={
            "name": "sample phone campaign", "services": "PHONE", "individual_number": [9876543210, 98675432123]})
        assert r.status_code == 201 and len(r.json()["errors"]) == 2
        await api.delete(f"/api/system/campaigns/{r.json()['data']['details'][0]['id']}/delete/", headers=headers)

        # the sample's numbers are not valid Nepali numbers: created, each reported
        r = await api.post("/api/system/campaigns/", headers=headers, json={
            "name": "sample individual campaign", "services": "SMS", "individual_number": [9876543210, 98675432123],
            "description": "This campaign is to notify users that an IPO has been opened"})
        assert r.status_code == 201
        body = r.json()
        assert body["status"] == 201 and body["message"] == "Campaign Created Successfully"
        assert len(body["errors"]) == 2 and "row 1" in body["errors"][0]
        details = body["data"]["details"][0]
        assert details == {"id": details["id"], "name": "sample individual campaign", "user_phone": [],
                           "services": "SMS", "description": "This campaign is to notify users that an IPO has been opened"}

        # bulk: the xlsx as multipart send_to_number_file
        data = xlsx([["number", "tags_name", "tags_age"], [9843818700.0, "Adwait", 25], [9851022343.0, "Sita", 31],
                     ["abc", "x", 1]])
        r = await api.post("/api/system/campaigns", headers=headers, data={"name": "sample bulk campaign",
                           "services": "SMS"}, files={"send_to_number_file": ("numbers.xlsx", data, "application/octet-stream")})
        assert r.status_code == 201, r.text
        assert r.json()["errors"] == ["row 4: abc 'abc' contains letters; a phone number has only digits"]
        bulk = r.json()["data"]["details"][0]
        # the file's name instead of the file: a clear error
        r = await api.post("/api/system/campaigns/", headers=headers, json={
            "name": "sample bulk campaign", "services": "SMS", "send_to_number_file": "numbers.xlsx"})
        envelope_error(r, 400, "invalid_upload")

        r = await api.get("/api/system/campaigns", headers=headers)
        listing = r.json()
        assert listing["pagination"] == {"total_items": 2, "total_pages": 1, "page_number": 1, "has_next": False,
                                         "has_previous": False, "links": []}
        assert listing["result"]["messages"] == "Campaign Successfully Retrieved"
        lists = listing["result"]["campaign-lists"]
        assert [c["name"] for c in lists] == ["sample bulk campaign", "sample individual campaign"]
        assert lists[0]["usable_tags"] == ["tags_age", "tags_name"]

        r = await api.put(f"/api/system/campaigns/{details['id']}/update/", headers=headers, json={
            "name": "new campaign name", "services": "SMS", "description": "Election campaign for 2023"})
        assert envelope_ok(r)["message"] == "Campaign details successfully updated."
        assert r.json()["data"]["details"][0]["name"] == "new campaign name"
        r = await api.get(f"/api/system/campaigns/{details['id']}/details", headers=headers)
        got = envelope_ok(r)["data"]
        assert got["messages"] == "Details Retrived successfully"
        assert got["details"][0]["description"] == "Election campaign for 2023" and got["details"][0]["usable_tags"] == []

        # numbers of the bulk campaign
        cid = bulk["id"]
        r = await api.post(f"/api/system/campaigns/number/{cid}/", headers=headers, json={"number": 9843812344})
        assert r.status_code == 201, r.text
        r = await api.post(f"/api/system/campaigns/number/{cid}/", headers=headers,
                           json={"number": 9832123432, "available_tags": {"tags_name": "name", "tags_age": 25}})
        envelope_error(r, 400, "invalid_number")  # the sample's number is not a valid Nepali number
        r = await api.post(f"/api/system/campaigns/number/{cid}", headers=headers,
                           json={"number": 9843818701, "available_tags": {"tags_name": "name", "tags_age": 25}})
        assert r.status_code == 201
        r = await api.get(f"/api/system/campaigns/number/{cid}/", headers=headers)
        data = envelope_ok(r)["data"]
        assert data["messages"] == "Number related to sample bulk campaign campaign Retrived successfully"
        nums = data["number-lists"]
        assert nums[0] == {"id": nums[0]["id"], "number": 9843818700, "campaing": "sample bulk campaign",
                           "available_tags": {"tags_name": "Adwait", "tags_age": 25}, "status": "not started",
                           "duration": None, "playback": None, "credit_consumed": 0}
        assert [n["number"] for n in nums] == [9843818700, 9851022343, 9843812344, 9843818701]

        nid = nums[2]["id"]
        r = await api.get(f"/api/system/number/{nid}/", headers=headers)
        assert envelope_ok(r)["data"]["messages"] == "9843812344 details retrieved successfully!!"
        assert r.json()["data"]["number-detail"]["number"] == 9843812344
        r = await api.put(f"/api/system/number/{nid}/", headers=headers,
                          json={"number": 9843812345, "available_tags": {"tags_name": "name", "tags_age": 25}})
        assert envelope_ok(r)["message"] == "Action details successfully updated."
        assert r.json()["data"]["details"]["number"] == 9843812345
        assert r.json()["data"]["details"]["available_tags"] == {"tags_name": "name", "tags_age": 25}

        # delete a number
        r = await api.delete(f"/api/system/campaigns/number/{nums[3]['id']}/delete/", headers=headers)
        assert envelope_ok(r)["data"] == {
            "campaign-details": "9843818701 of campaign sample bulk campaign deleted Successfully!!"}
        # begin for individual numbers: "N credits on hold"
        r = await api.post(f"/api/system/campaigns/{cid}/begin/", headers=headers,
                           json={"message": NEPALI, "individual": [nums[0]["id"], nums[1]["id"]]})
        body = envelope_ok(r)
        assert body["message"] == "Campaign is running!!"
        assert body["data"] == {"hold amount": "2 credits on hold for Individual Number campaign."}
        r = await api.post(f"/api/system/campaigns/{cid}/begin/", headers=headers, json={"message": NEPALI})
        envelope_error(r, 409, "campaign_active")

        async def done() -> Any:
            r = await api.get(f"/api/system/campaigns/number/{cid}/", headers=headers)
            ns = r.json()["data"]["number-lists"]
            return ns if ns[0]["status"] == "completed" and ns[1]["status"] == "completed" else None

        ns = await eventually(done)
        assert ns[0]["credit_consumed"] == 1 and ns[2]["status"] == "not started"
        assert platform.simulator is not None and NEPALI in {m.body for m in platform.simulator.sent}

        async def finished() -> Any:
            r = await api.get(f"/v1/campaigns/{cid}", headers=headers)
            return r.json()["status"] == "completed"

        await eventually(finished)
        # re-run by status with the document's one-string list; none failed yet
        r = await api.post(f"/api/system/campaigns/{cid}/begin", headers=headers,
                           json={"message": "Here you send your message you want to convey", "status": ["failed, hungup"]})
        envelope_error(r, 400, "no_numbers")
        r = await api.post(f"/api/system/campaigns/{cid}/begin", headers=headers, json={"status": ["lost"]})
        envelope_error(r, 400, "invalid_status")
        # the sample with every attribute asks for audio: not for an SMS campaign
        r = await api.post(f"/api/system/campaigns/{cid}/begin/", headers=headers, json={
            "priority": "audio", "voice_input": "np_prasanna", "schedule_date": "2023-05-09T17:07",
            "status": ["failed", "hungup"]})
        envelope_error(r, 400, "invalid_request")
        # a schedule read in Nepal's time (+05:45)
        r = await api.post(f"/api/system/campaigns/{cid}/begin/", headers=headers,
                           json={"message": "Namaste {tags_name}", "schedule_date": "2099-05-09T17:07"})
        body = envelope_ok(r)
        assert body["message"] == "Campaign is scheduled"
        assert body["data"]["hold amount"] == "1 credits on hold for sample bulk campaign campaign."
        r = await api.get(f"/v1/campaigns/{cid}", headers=headers)
        assert r.json()["schedule_at"] == "2099-05-09T17:07:00+05:45" and r.json()["credits_on_hold"] == 1

        # summary and report
        r = await api.get(f"/api/system/campaigns/report/summary/?campaign_id={cid}", headers=headers)
        summary = envelope_ok(r)["data"]["summary"][0]
        assert summary["by_status"]["completed"] == 2 and summary["by_status"]["scheduled"] == 1
        r = await api.get(f"/api/system/campaigns/report/download/?campaign_id={cid}", headers=headers)
        assert r.status_code == 200 and "spreadsheetml" in r.headers["content-type"]
        rows = list(openpyxl.load_workbook(io.BytesIO(r.content), read_only=True).worksheets[0].iter_rows(values_only=True))
        assert len(rows) == 4 and rows[1][3] == "completed"
        r = await api.get(f"/api/system/campaigns/report/download?campaign_id={cid}&format=csv", headers=headers)
        assert r.text.startswith("id,number,campaign,status")
        # nothing changed: the same report is served, not written again
        reports = await platform.store.read(lambda tx: tx.fetchval(
            "SELECT count(*) FROM jobs WHERE campaign_id = ? AND kind = 'report'", cid))
        assert reports == 1
        envelope_error(await api.get("/api/system/campaigns/report/download/", headers=headers), 400,
                       "missing_campaign_id")

        # deleting a scheduled campaign releases its hold
        r = await api.delete(f"/api/system/campaigns/{cid}/delete/", headers=headers)
        assert envelope_ok(r)["data"] == {"camaign": "Campaign Deleted Succesfully"}
        assert (await platform.credits.balance(account["account_id"])) == 98 * 10_000
        envelope_error(await api.get(f"/api/system/campaigns/{cid}/details/", headers=headers), 404,
                       "campaign_not_found")

        # another account sees none of it
        _, other, _ = await logged_in(api, platform, email="other@gmail.com")
        envelope_error(await api.get(f"/api/system/campaigns/{details['id']}/details", headers=other), 404,
                       "campaign_not_found")


async def test_send_otp_with_the_documents_samples(platform: Platform) -> None:
    async with client_of(platform) as api:
        _, headers, _ = await logged_in(api, platform)
        r = await api.post("/api/system/send/otp/", headers=headers, json={
            "number": "9851023212", "message": "Hi your OTP is {otp}", "sms_send_options": "text",
            "otp_options": "personnel", "otp": "12345"})
        body = envelope_ok(r)
        assert body["message"] == "OTP Sent Successfully."
        assert body["data"]["details"] == {"number": "9851023212", "otp_options": "personnel",
                                           "message": "Hi your OTP is 12345", "otp": "12345", "sms_send_options": "text"}

        async def sent() -> Any:
            assert platform.simulator is not None
            return [m for m in platform.simulator.sent if m.body == "Hi your OTP is 12345"]

        await eventually(sent)
        r = await api.post("/api/system/send/otp", headers=headers, json={
            "number": "9851023212", "message": "Hi your OTP is {otp}", "sms_send_options": "text",
            "otp_options": "generated", "otp_length": "4"})
        otp = envelope_ok(r)["data"]["details"]["otp"]
        assert len(otp) == 4 and otp.isdigit()
        # a code never rests in the database in the clear
        bodies = await platform.store.read(lambda tx: tx.fetch("SELECT body FROM messages"))
        assert all(otp not in b[0] and "12345" not in b[0] for b in bodies)
        r = await api.post("/api/system/send/otp/", headers=headers, json={
            "number": "9851023212", "message": "Hi your OTP is {otp}", "sms_send_options": "voice",
            "otp_options": "generated", "otp_length": "4"})
        details = envelope_ok(r)["data"]["details"]  # a call (channel voice) says the digits
        spoken = details["otp"]
        assert len(spoken) == 4 and details["sms_send_options"] == "voice" and details["otp_options"] == "generated"
        assert details["message"] == "Hi your OTP is " + " ".join(spoken)  # as the document's sample shows it
        bodies = await platform.store.read(lambda tx: tx.fetch("SELECT body FROM messages WHERE channel = 'voice'"))
        assert len(bodies) == 1 and all(spoken not in b[0] for b in bodies)
        assert bodies[0][0] == "Hi your OTP is ****"
        r = await api.post("/api/system/send/otp/", headers=headers, json={"number": "9851023212"})
        envelope_error(r, 400, "missing_parameters")


async def test_test_voice_says_the_message_and_serves_the_audio(platform: Platform) -> None:
    async with client_of(platform) as api:
        _, headers, _ = await logged_in(api, platform)
        r = await api.post("/api/system/test/voice/", headers=headers, json={"message": NEPALI})
        body = envelope_ok(r)
        assert body["message"] == "Voice generated successfully."
        details = body["data"]["details"]
        assert details["message"] == NEPALI and details["voice_input"] == "np_rija"  # the document's default
        assert details["length_factor"] == 1.0 and details["duration"] > 1
        wav = await api.get(details["audio_url"])  # no token needed: the URL is the key, for an hour
        assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
        assert wav.content[:4] == b"RIFF" and abs(len(wav.content) - 44 - details["duration"] * 16_000) < 16
        # slower with a bigger length factor, in another voice
        r = await api.post("/api/system/test/voice", headers=headers,
                           json={"message": NEPALI, "voice_input": "np_prasanna", "length_factor": "1.4"})
        slow = envelope_ok(r)["data"]["details"]
        assert slow["voice_input"] == "np_prasanna" and slow["length_factor"] == 1.4
        assert slow["duration"] > details["duration"]
        # a wrong token, a bad voice or no message: clear errors in the envelope
        envelope_error(await api.get(details["audio_url"].replace(".wav", "x.wav")), 404, "voice_test_not_found")
        envelope_error(await api.post("/api/system/test/voice/", headers=headers,
                                      json={"message": "hi", "voice_input": "np_robot"}), 400, "invalid_voice")
        envelope_error(await api.post("/api/system/test/voice/", headers=headers, json={}), 400, "missing_message")
        envelope_error(await api.post("/api/system/test/voice/", json={"message": "hi"}), 401, "missing_token")
        # an hour on, the WAVs are gone from the store: the next test takes them away
        await platform.store.run(lambda tx: tx.execute(
            "UPDATE jobs SET created_at = created_at - 3700000 WHERE kind = 'voice_test'"))
        envelope_ok(await api.post("/api/system/test/voice/", headers=headers, json={"message": NEPALI}))
        envelope_error(await api.get(details["audio_url"]), 404, "voice_test_not_found")
        left = await platform.store.read(lambda tx: tx.fetch(
            "SELECT j.id FROM jobs j JOIN job_files f ON f.job_id = j.id WHERE j.kind = 'voice_test'"))
        assert len(left) == 1  # only the newest


async def test_phone_numbers_bought_charged_routed_and_released(platform: Platform) -> None:
    stocked = await platform.phone_numbers.stock("9876565435", "40", sid="b7142c5ae3b673d944d81c83bda4f5de")
    assert stocked["account_id"] is None
    async with client_of(platform) as api:
        account, headers, _ = await logged_in(api, platform)
        sample = {"phone_number": "9876565435", "rate": 40.0, "available_capabilities": "Voice, SMS",
                  "phone_number_sid": "b7142c5ae3b673d944d81c83bda4f5de", "friendly_name": "", "accept_incoming": None,
                  "configure_with": "", "call_comes_in": None, "call_url": None, "http_request": None}
        r = await api.get("/api/system/phone_numbers", headers=headers)
        body = envelope_ok(r)
        assert body["message"] == "Number Lists Retrived Successfully!!" and body["data"] == {"number_lists": [sample]}
        # bought: charged its rate in the ledger, owned, no longer available, inbound reaches the owner
        r = await api.post("/api/system/phone_numbers/", headers=headers,
                           json={"phone_sid": "b7142c5ae3b673d944d81c83bda4f5de"})
        body = envelope_ok(r)
        assert body["message"] == "9876565435 number bought successfully!!"
        assert body["data"] == {"number_details": [sample]}
        assert await platform.credits.balance(account["account_id"]) == 60 * 10_000
        rows = await platform.credits.transactions(account["account_id"], 10, None)
        assert rows[0]["kind"] == "charge" and rows[0]["amount"] == -40 * 10_000
        r = await api.get("/api/system/owned/phone_numbers", headers=headers)
        assert envelope_ok(r)["data"] == {"owned_numbers": [sample]}
        assert envelope_ok(await api.get("/api/system/phone_numbers/", headers=headers))["data"] == {"number_lists": []}
        r = await api.post("/v1/simulator/inbound", headers=headers,
                           json={"sender": "9843818700", "to": "9876565435", "text": "Hello"})
        assert r.status_code == 202, r.text
        # another account cannot buy it or release it
        _, other, _ = await logged_in(api, platform, email="other@gmail.com")
        r = await api.post("/api/system/phone_numbers/", headers=other, json={"phone_sid": "b7142c5ae3b673d944d81c83bda4f5de"})
        envelope_error(r, 404, "number_not_available")
        r = await api.request("DELETE", "/api/system/phone_numbers", headers=other,
                              json={"phone_sid": "b7142c5ae3b673d944d81c83bda4f5de"})
        envelope_error(r, 404, "number_not_found")
        # released with DELETE and a JSON body
        r = await api.request("DELETE", "/api/system/phone_numbers", headers=headers,
                              json={"phone_sid": "b7142c5ae3b673d944d81c83bda4f5de"})
        assert r.status_code == 200 and r.json() == {"status": 204, "success": True, "errors": [], "data": {},
                                                     "message": "9876565435 number released successfully!!"}
        assert envelope_ok(await api.get("/api/system/owned/phone_numbers", headers=headers))["data"] == {
            "owned_numbers": []}
        r = await api.post("/v1/simulator/inbound", headers=headers,
                           json={"sender": "9843818700", "to": "9876565435", "text": "Hello"})
        assert r.status_code == 404  # no longer the account's number
        # a number dearer than the balance is refused with 402
        await platform.phone_numbers.stock("9800000001", "1000", sid="dear")
        r = await api.post("/api/system/phone_numbers/", headers=headers, json={"phone_sid": "dear"})
        envelope_error(r, 402, "insufficient_credit")
        envelope_error(await api.post("/api/system/phone_numbers/", headers=headers, json={}), 400, "missing_sid")


async def test_the_operator_stocks_numbers_with_the_cli(platform: Platform) -> None:
    from tests.test_cli import clean_env, ok, run

    if platform.store.dialect != "sqlite":
        return  # the CLI reads the same store on both; the SQLite data dir is the simple one to share
    env = clean_env(UJUMBE_DATA_DIR=str(platform.settings.data_dir), UJUMBE_SECRET_KEY=platform.settings.secret_key)
    import asyncio

    async def cli(*args: str) -> Any:  # in a thread: the platform in this loop must go on committing
        return await asyncio.to_thread(run, env, *args)

    added = ok(await cli("phone-numbers", "add", "9876565435", "--rate", "40", "--sid", "abc123"))
    assert added == {"number": "9876565435", "sid": "abc123", "rate": 40, "capabilities": "Voice, SMS",
                     "friendly_name": "", "account_id": None}
    again = await cli("phone-numbers", "add", "9876565435", "--rate", "40")
    assert again.returncode == 1 and "number_exists" in again.stderr
    assert [n["sid"] for n in ok(await cli("phone-numbers", "list"))] == ["abc123"]
    assert [n["sid"] for n in await platform.phone_numbers.available()] == ["abc123"]


async def test_the_operator_stocks_numbers_with_the_admin_api(platform: Platform) -> None:
    platform.settings.admin_token = "admin-token-for-tests-0123456789"
    admin = {"authorization": "Bearer admin-token-for-tests-0123456789"}
    async with client_of(platform) as api:
        body = {"number": "9876565435", "rate": 40, "sid": "b7142c5ae3b673d944d81c83bda4f5de"}
        assert (await api.post("/admin/v1/phone-numbers", json=body)).status_code == 401
        r = await api.post("/admin/v1/phone-numbers", headers=admin, json=body)
        assert r.status_code == 201 and r.json()["rate"] == 40 and r.json()["account_id"] is None
        r = await api.post("/admin/v1/phone-numbers", headers=admin, json=body)
        assert r.status_code == 409
        r = await api.post("/admin/v1/phone-numbers", headers=admin, json={"number": "98x", "rate": 1})
        assert r.status_code == 400
        _, headers, _ = await logged_in(api, platform)
        await api.post("/api/system/phone_numbers/", headers=headers, json={"phone_sid": body["sid"]})
        listed = (await api.get("/admin/v1/phone-numbers", headers=admin)).json()["data"]
        assert listed[0]["number"] == "9876565435" and listed[0]["account_id"] is not None
