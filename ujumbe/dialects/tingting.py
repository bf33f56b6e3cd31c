"""TingTing (Nepal): JWT login, SMS campaigns with numbers, tags, xlsx upload,
schedule, begin and re-run by status, reports, and OTP. Every answer is the
document's envelope ``{status, success, message, errors, data}`` (the campaign
list alone has ``pagination`` + ``result``); field names keep the document's
spellings (``campaing``, ``number-lists``, ``campaign-lists``, ``hold amount``).
Paths answer with and without the trailing slash. Decisions where the
document is vague: docs/tingting.md."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import phonenumbers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ujumbe.core import otp, speech
from ujumbe.core.errors import Invalid, UjumbeError
from ujumbe.core.pricing import display
from ujumbe.dialects.native_campaigns import uploaded
from ujumbe.http.common import (
    JSON, bearer, client_address, error_status, handles_errors, path_id, read_body, services,
)
from ujumbe.services.accounts import Account

ACCESS_TTL_S = 86_400  # TingTing: access tokens last a day
IMPORT_WAIT_S = 60.0  # an upload is imported before the answer (100,000 rows take seconds)
REPORT_WAIT_S = 60.0


def envelope(data: Any, message: str | None = None, status: int = 200) -> Response:
    return JSON({"status": status, "success": 200 <= status < 300, "message": message, "errors": [], "data": data},
                status_code=status)


def error_response(exc: UjumbeError) -> Response:
    status = error_status(exc)
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details:
        error["details"] = exc.details
    return JSON({"status": status, "success": False, "message": exc.message, "errors": [error], "data": {}},
                status_code=status)


async def body_of(request: Request) -> dict[str, Any]:
    """The JSON object sent, or the fields of a form (a file upload). JSON
    labelled as a form is JSON: ``curl -d '{...}'`` sends it so."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data") or (
        ctype.startswith("application/x-www-form-urlencoded") and not (await read_body(request)).lstrip().startswith(b"{")
    ):
        form = await request.form()
        out: dict[str, Any] = {}
        for key in form:
            values = form.getlist(key)
            if all(isinstance(v, str) for v in values):
                out[key] = values if len(values) > 1 else values[0]
        return out
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise Invalid(f"The body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise Invalid("The body must be a JSON object", code="invalid_json")
    return value


async def account_of(request: Request) -> Account:
    return await services(request).accounts.authenticate_bearer(bearer(request), client_address(request))


def _int(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(str(value).strip())
    except ValueError:
        raise Invalid(f"'{name}' must be a whole number", code="invalid_parameter") from None


def _list(value: Any) -> list[Any]:
    """A list as JSON gives it, or as a form does ("[1, 2]", "1,2")."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise Invalid(f"'{value}' is not a list", code="invalid_parameter") from None
            return parsed if isinstance(parsed, list) else [parsed]
        return [v for v in (p.strip() for p in text.split(",")) if v]
    return [value]


def national(e164: str) -> int | str:
    """A number as TingTing shows it: national digits, as an integer."""
    try:
        return int(phonenumbers.parse("+" + e164).national_number)
    except phonenumbers.NumberParseException:
        return e164


def campaign_json(c: dict[str, Any], *, tags: bool = True) -> dict[str, Any]:
    out = {"id": c["id"], "name": c["name"], "user_phone": [], "services": c["services"].replace(",", ", "),
           "description": c["description"]}
    if tags:
        out["usable_tags"] = c["usable_tags"]
    return out


def number_json(n: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": n["id"], "number": national(n["number"]), "campaing": n["campaign"], "available_tags": n["tags"],
        "status": n["status"], "duration": n["duration"], "playback": n["playback"],
        "credit_consumed": display(n["credit_consumed_units"]),
    }


def _pid(request: Request) -> int:
    """The path's id; one that cannot exist (not ASCII digits, past 2^63-1) is not found."""
    return path_id(request, "item")


# --- accounts ---


async def login(request: Request) -> Response:
    body = await body_of(request)
    email, password = body.get("email"), body.get("password")
    if not email or not password:
        raise Invalid("Give email and password", code="missing_login")
    accounts = services(request).accounts
    account = await accounts.verify_password(str(email), str(password), client_address(request))
    tokens = await accounts.issue_tokens(account, ACCESS_TTL_S)
    first, _, last = account.name.partition(" ")
    return envelope({
        "token": {"refresh": tokens["refresh_token"], "access": tokens["access_token"]},
        "user_data": {"first_name": first, "last_name": last, "email": account.email},
    }, "Successfully logged in")


async def refresh(request: Request) -> Response:
    body = await body_of(request)
    if not body.get("refresh"):
        raise Invalid("Give the refresh token as 'refresh'", code="missing_refresh")
    access = await services(request).accounts.access_from_refresh(str(body["refresh"]), ACCESS_TTL_S)
    return JSON({"access": access})  # the document's answer is bare, not in the envelope


async def user_details(request: Request) -> Response:
    account = await account_of(request)
    first, _, last = account.name.partition(" ")
    return envelope({"user_details": {
        "first_name": first, "last_name": last, "email": account.email, "username": account.username,
        "is_verified_email": True, "contact_number": "", "is_verified_phone": False, "address": "",
    }})


# --- phone numbers ---


def phone_json(n: dict[str, Any]) -> dict[str, Any]:
    return {
        "phone_number": n["number"], "rate": float(display(n["rate"])), "available_capabilities": n["capabilities"],
        "phone_number_sid": n["sid"], "friendly_name": n["friendly_name"], "accept_incoming": None,
        "configure_with": "", "call_comes_in": None, "call_url": None, "http_request": None,
    }


async def owned_numbers(request: Request) -> Response:
    account = await account_of(request)
    return envelope({"owned_numbers": [phone_json(n) for n in await services(request).phone_numbers.owned(account)]})


async def phone_numbers(request: Request) -> Response:
    account = await account_of(request)
    inventory = services(request).phone_numbers
    if request.method == "GET":
        return envelope({"number_lists": [phone_json(n) for n in await inventory.available()]},
                        "Number Lists Retrived Successfully!!")
    body = await body_of(request)
    sid = str(body.get("phone_sid") or "")
    if request.method == "POST":
        n = await inventory.buy(account, sid)
        return envelope({"number_details": [phone_json(n)]}, f"{n['number']} number bought successfully!!")
    n = await inventory.release(account, sid)
    # The document's answer says 204 in its body, which an HTTP 204 cannot carry: HTTP 200.
    return JSON({"status": 204, "success": True, "message": f"{n['number']} number released successfully!!",
                 "errors": [], "data": {}})


# --- campaigns ---


async def campaigns_root(request: Request) -> Response:
    if request.method == "POST":
        return await add_campaign(request)
    account = await account_of(request)
    page = _int(request.query_params.get("page", 1), "page")
    size = _int(request.query_params.get("page_size", 10), "page_size")
    if page < 1 or not 1 <= size <= 100:
        raise Invalid("'page' starts at 1; 'page_size' is 1 to 100", code="invalid_parameter")
    total, items = await services(request).campaigns.list(account, offset=(page - 1) * size, limit=size)
    pages = max(1, math.ceil(total / size))
    return JSON({
        "pagination": {"total_items": total, "total_pages": pages, "page_number": page,
                       "has_next": page < pages, "has_previous": page > 1, "links": []},
        "result": {"messages": "Campaign Successfully Retrieved",
                   "campaign-lists": [campaign_json(c) for c in items]},
    })


async def add_campaign(request: Request) -> Response:
    account = await account_of(request)
    svc = services(request)
    ctype = request.headers.get("content-type", "")
    body = await body_of(request)
    upload: tuple[str, bytes] | None = None
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        if hasattr(form.get("send_to_number_file"), "read"):
            upload = await uploaded(request, ("send_to_number_file",))
    elif isinstance(body.get("send_to_number_file"), str):
        raise Invalid("Upload send_to_number_file as a file (multipart/form-data), not its name",
                      code="invalid_upload")
    individual = _list(body.get("individual_number"))
    if upload is None and not individual:
        raise Invalid("Give individual_number or send_to_number_file", code="missing_numbers")
    camp, bad = await svc.campaigns.create(
        account, name=str(body.get("name") or ""), services=body.get("services") or "",
        description=str(body.get("description") or ""), message=body.get("message"),
        numbers_in=[(n, {}) for n in individual], voice=_text(body.get("voice_input")),
        length_factor=body.get("length_factor"),
    )
    errors = [f"row {e.row}: {e.number} {e.reason}".replace("  ", " ") for e in bad]
    if upload is not None:
        job = await svc.jobs.start_import(account, camp["id"], upload[0], upload[1])
        job = await svc.jobs.wait(account, job["id"], IMPORT_WAIT_S)
        if job["status"] == "failed":
            errors.append(job["error"])
        elif job["status"] != "done":
            errors.append(f"the file is still importing (job {job['id']}, {job['progress']}%)")
        else:
            errors.extend(f"row {e['row']}: {e['number']} {e['reason']}".replace("  ", " ")
                          for e in job["result"]["errors"])
        camp = await svc.campaigns.get(account, camp["id"])
    return JSON({"status": 201, "success": True, "message": "Campaign Created Successfully", "errors": errors,
                 "data": {"details": [campaign_json(camp, tags=False)]}}, status_code=201)


async def update_campaign(request: Request) -> Response:
    account = await account_of(request)
    body = await body_of(request)
    camp = await services(request).campaigns.update(
        account, _pid(request), name=body.get("name"), services=body.get("services"),
        description=body.get("description"), message=body.get("message"), voice=_text(body.get("voice_input")),
        length_factor=body.get("length_factor"),
    )
    return envelope({"details": [campaign_json(camp, tags=False)]}, "Campaign details successfully updated.")


async def delete_campaign(request: Request) -> Response:
    account = await account_of(request)
    await services(request).campaigns.delete(account, _pid(request))
    return envelope({"camaign": "Campaign Deleted Succesfully"})  # the document's spellings


async def campaign_details(request: Request) -> Response:
    account = await account_of(request)
    camp = await services(request).campaigns.get(account, _pid(request))
    return envelope({"messages": "Details Retrived successfully", "details": [campaign_json(camp)]})


async def begin(request: Request) -> Response:
    account = await account_of(request)
    body = await body_of(request)
    svc = services(request).campaigns
    cid = _pid(request)
    camp = await svc.get(account, cid)
    audio = await _audio_of(request, body, account)
    individual = [_int(i, "individual") for i in _list(body["individual"])] if "individual" in body else None
    statuses = body.get("status")
    if isinstance(statuses, str) and statuses.strip().startswith("["):
        statuses = _list(statuses)
    priority = body.get("priority")
    if priority is not None and not isinstance(priority, str):
        raise Invalid("'priority' is message or audio", code="invalid_priority")
    run = await svc.begin(
        account, cid, message=body.get("message"), schedule=body.get("schedule_date") or None,
        statuses=statuses if statuses else None, individual=individual, audio=audio,
        voice=_text(body.get("voice_input")), length_factor=body.get("length_factor"), priority=priority or None,
    )
    name = "Individual Number" if individual is not None else camp["name"]
    message = "Campaign is scheduled" if run["status"] == "scheduled" else (
        "Campaign is running!!" if individual is not None else "Campaign is running")
    return envelope({"hold amount": f"{display(run['held'])} credits on hold for {name} campaign."}, message)


async def campaign_numbers(request: Request) -> Response:
    account = await account_of(request)
    svc = services(request).campaigns
    cid = _pid(request)
    if request.method == "POST":
        body = await body_of(request)
        if body.get("number") in (None, ""):
            raise Invalid("Give the number to add", code="missing_number")
        tags = body.get("available_tags") or {}
        if not isinstance(tags, dict):
            raise Invalid("'available_tags' must be an object", code="invalid_tags")
        added, bad = await svc.add_numbers(account, cid, [(body["number"], tags)])
        if bad:
            raise Invalid(bad[0].reason, code="invalid_number")
        return envelope({"number-detail": number_json(added[0])},
                        f"{national(added[0]['number'])} added to the campaign", status=201)
    camp = await svc.get(account, cid)
    nums: list[dict[str, Any]] = []
    after = 0
    while True:  # the document lists every number at once
        page = await svc.numbers(account, cid, after=after, limit=5000)
        if not page:
            break
        nums.extend(page)
        after = page[-1]["id"]
    return envelope({"messages": f"Number related to {camp['name']} campaign Retrived successfully",
                     "number-lists": [number_json(n) for n in nums]})


async def delete_number(request: Request) -> Response:
    account = await account_of(request)
    n = await services(request).campaigns.delete_number(account, _pid(request))
    return envelope({"campaign-details": f"{national(n['number'])} of campaign {n['campaign']} deleted Successfully!!"})


async def number_detail(request: Request) -> Response:
    account = await account_of(request)
    svc = services(request).campaigns
    if request.method == "PUT":
        body = await body_of(request)
        tags = body.get("available_tags")
        if tags is not None and not isinstance(tags, dict):
            raise Invalid("'available_tags' must be an object", code="invalid_tags")
        n = await svc.edit_number(account, _pid(request), number=body.get("number"), tags=tags)
        return envelope({"details": number_json(n)}, "Action details successfully updated.")
    n = await svc.number(account, _pid(request))
    return envelope({"messages": f"{national(n['number'])} details retrieved successfully!!",
                     "number-detail": number_json(n)})


async def report_download(request: Request) -> Response:
    account = await account_of(request)
    raw = request.query_params.get("campaign_id")
    if not raw:
        raise Invalid("Give campaign_id as a query parameter", code="missing_campaign_id")
    cid = _int(raw, "campaign_id")
    fmt = (request.query_params.get("format") or "xlsx").lower()
    if fmt not in ("xlsx", "csv"):
        raise Invalid("'format' is xlsx or csv", code="invalid_format")
    jobs = services(request).jobs
    job = await jobs.current_report(account, cid)
    if job is None:
        job = await jobs.start_report(account, cid)
        job = await jobs.wait(account, job["id"], REPORT_WAIT_S)
    if job["status"] == "failed":
        raise Invalid(f"The report could not be written: {job['error']}", code="report_failed")
    if job["status"] != "done":
        return envelope({"job_id": job["id"], "progress": job["progress"]},
                        "The report is being prepared; ask again shortly", status=202)
    ctype, data, name = await jobs.file(account, job["id"], fmt)
    return Response(data, media_type=ctype, headers={"content-disposition": f'attachment; filename="{name}"'})


async def report_summary(request: Request) -> Response:
    account = await account_of(request)
    svc = services(request).campaigns
    raw = request.query_params.get("campaign_id")
    if raw:
        ids = [_int(raw, "campaign_id")]
    else:
        _, items = await svc.list(account, offset=0, limit=1000)
        ids = [c["id"] for c in items]
    return envelope({"summary": [await svc.summary(account, i) for i in ids]}, "Report summary retrieved")


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(f"{value!r} is not a voice; use one of {', '.join(speech.VOICES)}",
                      code="invalid_voice")
    return value


async def _audio_of(request: Request, body: dict[str, Any], account: Account) -> str | None:
    """The run's new audio: a file uploaded as ``aud_file`` (or ``audio``,
    the document's other spelling), kept through services/speech; or the id
    of one uploaded before (POST /v1/audio). A path as text cannot be read."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        for field in ("aud_file", "audio"):
            if hasattr(form.get(field), "read"):
                name, data = await uploaded(request, (field,))
                return await services(request).campaigns.save_audio(account, name, data)
    value = body.get("aud_file") or body.get("audio")
    if value in (None, ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.strip().isdigit():
        return str(value).strip()  # Campaigns checks it is one of the account's audio files
    raise Invalid("Upload aud_file as a file (multipart/form-data), not its path, or give the id of an audio "
                  "uploaded with POST /v1/audio", code="invalid_upload")


async def test_voice(request: Request) -> Response:
    """The document names the inputs (message, voice_input) but not the
    answer: the envelope with the sample's settings, its length and a URL
    that serves the WAV for an hour (docs/tingting.md)."""
    account = await account_of(request)
    body = await body_of(request)
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        raise Invalid("Give the message to say", code="missing_message")
    test = await services(request).jobs.voice_test(account, message, voice=_text(body.get("voice_input")),
                                                   length_factor=body.get("length_factor"))
    url = str(request.url_for("tingting_voice_test_audio", id=str(test["id"]), token=test["token"]))
    return envelope({"details": {
        "message": message, "voice_input": test["voice"], "length_factor": test["length_factor"],
        "duration": test["seconds"], "audio_url": url,
    }}, "Voice generated successfully.")


async def voice_test_audio(request: Request) -> Response:
    jid = _pid(request)
    data = await services(request).jobs.voice_test_audio(jid, request.path_params["token"])
    return Response(data, media_type="audio/wav", headers={"content-disposition": 'inline; filename="voice-test.wav"'})


async def send_otp(request: Request) -> Response:
    account = await account_of(request)
    body = await body_of(request)
    number, message = body.get("number"), body.get("message")
    if not number or not message:
        raise Invalid("Give number and message", code="missing_parameters")
    how = str(body.get("sms_send_options") or "").lower()
    if how not in ("text", "voice"):
        raise Invalid("'sms_send_options' is text or voice", code="invalid_send_option")
    option = str(body.get("otp_options") or "generated").lower()
    if option not in ("personnel", "generated"):
        raise Invalid("'otp_options' is personnel or generated", code="invalid_otp_option")
    code = None
    length = None
    if option == "personnel":
        if not body.get("otp"):
            raise Invalid("'otp' is needed with otp_options personnel", code="missing_otp")
        code = str(body["otp"])
    elif body.get("otp_length") not in (None, ""):
        length = _int(body["otp_length"], "otp_length")
    started = await services(request).verifications.start(
        account, to=str(number), channel="sms" if how == "text" else "voice", length=length, code=code,
        text=str(message),
    )
    # a call says the code digit by digit: shown spaced, as the document's sample shows it
    sent_text = str(message).replace("{otp}", otp.spoken(started.code) if how == "voice" else started.code)
    return envelope({"details": {
        "number": str(number), "otp_options": option, "message": sent_text, "otp": started.code,
        "sms_send_options": how,
    }}, "OTP Sent Successfully.")


Handler = Callable[[Request], Awaitable[Response]]


def _both(path: str, handler: Handler, methods: list[str]) -> list[Route]:
    wrapped = handles_errors(handler, error_response)
    return [Route(path, wrapped, methods=methods), Route(path + "/", wrapped, methods=methods)]


def routes() -> list[Any]:
    table: list[tuple[str, Handler, list[str]]] = [
        ("/api/accounts/login", login, ["POST"]),
        ("/api/accounts/token/refresh", refresh, ["POST"]),
        ("/api/accounts/user_details", user_details, ["GET"]),
        ("/api/system/owned/phone_numbers", owned_numbers, ["GET"]),
        ("/api/system/phone_numbers", phone_numbers, ["GET", "POST", "DELETE"]),
        ("/api/system/campaigns", campaigns_root, ["GET", "POST"]),
        ("/api/system/campaigns/report/download", report_download, ["GET"]),
        ("/api/system/campaigns/report/summary", report_summary, ["GET"]),
        ("/api/system/campaigns/{id:id}/update", update_campaign, ["PUT", "PATCH"]),
        ("/api/system/campaigns/{id:id}/delete", delete_campaign, ["DELETE"]),
        ("/api/system/campaigns/{id:id}/details", campaign_details, ["GET"]),
        ("/api/system/campaigns/{id:id}/begin", begin, ["POST"]),
        ("/api/system/campaigns/number/{id:id}", campaign_numbers, ["GET", "POST"]),
        ("/api/system/campaigns/number/{id:id}/delete", delete_number, ["DELETE"]),
        ("/api/system/number/{id:id}", number_detail, ["GET", "PUT"]),
        ("/api/system/test/voice", test_voice, ["POST"]),
        ("/api/system/send/otp", send_otp, ["POST"]),
    ]
    audio = Route("/api/system/test/voice/{id:id}/{token}.wav", handles_errors(voice_test_audio, error_response),
                  methods=["GET"], name="tingting_voice_test_audio")
    return [audio, *(r for path, handler, methods in table for r in _both(path, handler, methods))]
