"""Native ``/v1`` endpoints for campaigns, their numbers, contact imports,
reports and jobs. They join the native API (same ``api`` object, so they are
in ``/openapi.json``); importing this module registers them."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ujumbe.core import campaigns as rules
from ujumbe.core.errors import Invalid
from ujumbe.core.pricing import display
from ujumbe.dialects.native import account_of, int_param, iso, route
from ujumbe.http.common import JSON, path_id, read_json, services


class NumberIn(msgspec.Struct, forbid_unknown_fields=True):
    number: str | int | float
    tags: dict[str, str | int | float | None] = {}


class CampaignBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    services: str | list[str] = "SMS"
    description: str = ""
    message: str | None = None
    sender: str | None = None
    rate: int | None = None  # messages a second; none: the server's UJUMBE_CAMPAIGN_RATE
    numbers: list[NumberIn | str | int | float] = []
    # PHONE: the calls speak the message in this voice at this length factor, or play audio_id (POST /v1/audio)
    voice: str | None = None
    length_factor: float | None = None
    audio_id: int | str | None = None


class CampaignPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    services: str | list[str] | None = None
    description: str | None = None
    message: str | None = None
    sender: str | None = None
    rate: int | None = None
    voice: str | None = None
    length_factor: float | None = None
    audio_id: int | str | None = None


class NumbersBody(msgspec.Struct, forbid_unknown_fields=True):
    numbers: list[NumberIn | str | int | float]


class NumberPatch(msgspec.Struct, forbid_unknown_fields=True):
    number: str | int | float | None = None
    tags: dict[str, str | int | float | None] | None = None


class BeginBody(msgspec.Struct, forbid_unknown_fields=True):
    message: str | None = None
    schedule_at: str | None = None  # 2023-05-09T17:07, read in the account's time zone, or with an offset
    status: str | list[str] | None = None  # re-run the numbers with these statuses
    numbers: list[int] | None = None  # run for these number ids only
    rate: int | None = None
    # PHONE: a new audio to play (POST /v1/audio), the voice and length factor to speak the message in, and
    # which plays (message or audio) when the campaign has both
    audio_id: int | str | None = None
    voice: str | None = None
    length_factor: float | None = None
    priority: str | None = None


class TimeZoneBody(msgspec.Struct, forbid_unknown_fields=True):
    time_zone: str | None  # IANA name; null: the region's


def entries(items: list[Any]) -> list[tuple[object, dict[str, object]]]:
    return [(i.number, dict(i.tags)) if isinstance(i, NumberIn) else (i, {}) for i in items]


async def zone(request: Request, account: Any) -> Any:
    return await services(request).campaigns.zone(account)


def campaign_json(c: dict[str, Any], tz: Any) -> dict[str, Any]:
    return {
        "id": c["id"], "name": c["name"], "description": c["description"], "services": c["services"].split(","),
        "message": c["message"], "sender": c["sender"], "status": c["status"], "rate": c["rate"] or None,
        "voice": c["voice"], "length_factor": c["length_factor"], "audio_id": c["audio"],
        "usable_tags": c["usable_tags"], "schedule_at": rules.local_iso(c["schedule_at"], tz),
        "credits_on_hold": display(c["held_units"]), "created_at": iso(c["created_at"]),
        "updated_at": iso(c["updated_at"]),
    }


def number_json(n: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": n["id"], "campaign_id": n["campaign_id"], "number": n["number"], "network": n["network"],
        "tags": n["tags"], "status": n["status"], "credit_consumed": display(n["credit_consumed_units"]),
        "message_id": n["message_id"], "error": n["error"], "duration": n["duration"], "playback": n["playback"],
        "sms_message_id": n["sms_message_id"],
    }


def _audio(audio_id: int | str | None) -> str | None:
    return None if audio_id is None or audio_id == "" else str(audio_id)


def job_json(j: dict[str, Any]) -> dict[str, Any]:
    return {**j, "created_at": iso(j["created_at"]), "updated_at": iso(j["updated_at"])}


_THINGS = {"/v1/campaigns/": ("campaign", "campaign_not_found"), "/v1/campaign-numbers/": ("number", "number_not_found"),
           "/v1/jobs/": ("job", "job_not_found")}


def _id(request: Request) -> int:
    """The path's id; one that cannot exist (not ASCII digits, past 2^63-1) is not found."""
    thing, code = next(v for k, v in _THINGS.items() if request.url.path.startswith(k))
    return path_id(request, thing, code)


@route("GET", "/v1/campaigns", summary="This account's campaigns, newest first", tag="campaigns",
       query={"offset": "skip this many", "limit": "at most this many (default 50)"})
async def list_campaigns(request: Request) -> Response:
    account = await account_of(request)
    offset = int_param(request, "offset", 0, low=0) or 0
    limit = int_param(request, "limit", 50, high=500) or 50
    total, items = await services(request).campaigns.list(account, offset=offset, limit=limit)
    tz = await zone(request, account)
    return JSON({"total": total, "campaigns": [campaign_json(c, tz) for c in items]})


@route("POST", "/v1/campaigns", summary="Create a campaign (SMS; PHONE needs the voice channel), optionally with "
       "numbers and their tags; invalid numbers are listed with their row and reason, the rest are added",
       tag="campaigns", body=CampaignBody, status=201)
async def create_campaign(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, CampaignBody)
    camp, bad = await services(request).campaigns.create(
        account, name=body.name, services=body.services, description=body.description, message=body.message,
        sender=body.sender, rate=body.rate, numbers_in=entries(body.numbers), voice=body.voice,
        length_factor=body.length_factor, audio=_audio(body.audio_id),
    )
    return JSON({"campaign": campaign_json(camp, await zone(request, account)),
                 "invalid": [e.as_dict() for e in bad]}, 201)


@route("GET", "/v1/campaigns/{id:id}", summary="One campaign", tag="campaigns")
async def get_campaign(request: Request) -> Response:
    account = await account_of(request)
    camp = await services(request).campaigns.get(account, _id(request))
    return JSON(campaign_json(camp, await zone(request, account)))


@route("PATCH", "/v1/campaigns/{id:id}", summary="Change a campaign's name, services, description, message, "
       "sender or rate", tag="campaigns", body=CampaignPatch)
async def patch_campaign(request: Request) -> Response:
    account = await account_of(request)
    cid = _id(request)  # a bad id is a 404 whatever the body
    body = await read_json(request, CampaignPatch)
    camp = await services(request).campaigns.update(
        account, cid, name=body.name, services=body.services, description=body.description,
        message=body.message, sender=body.sender, rate=body.rate, voice=body.voice,
        length_factor=body.length_factor, audio=_audio(body.audio_id),
    )
    return JSON(campaign_json(camp, await zone(request, account)))


@route("DELETE", "/v1/campaigns/{id:id}", summary="Delete a campaign (stopped first: what is held goes back)",
       tag="campaigns", status=204)
async def delete_campaign(request: Request) -> Response:
    account = await account_of(request)
    await services(request).campaigns.delete(account, _id(request))
    return Response(status_code=204)


@route("GET", "/v1/campaigns/{id:id}/numbers", summary="A campaign's numbers with status and credit consumed",
       tag="campaigns", query={"after": "number id to page after", "limit": "at most (default 1000)",
                               "status": "only numbers with this status"})
async def list_numbers(request: Request) -> Response:
    account = await account_of(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in rules.NUMBER_STATUSES:
        raise Invalid(f"'{status}' is not a number status; use {', '.join(rules.NUMBER_STATUSES)}",
                      code="invalid_status")
    nums = await services(request).campaigns.numbers(
        account, _id(request), after=int_param(request, "after", 0, low=0) or 0,
        limit=int_param(request, "limit", 1000, high=10_000) or 1000, status=status,
    )
    return JSON({"numbers": [number_json(n) for n in nums]})


@route("POST", "/v1/campaigns/{id:id}/numbers", summary="Add numbers (with tags) to a campaign", tag="campaigns",
       body=NumbersBody, status=201)
async def add_numbers(request: Request) -> Response:
    account = await account_of(request)
    cid = _id(request)  # a bad id is a 404 whatever the body
    body = await read_json(request, NumbersBody)
    added, bad = await services(request).campaigns.add_numbers(account, cid, entries(body.numbers))
    return JSON({"numbers": [number_json(n) for n in added], "invalid": [e.as_dict() for e in bad]}, 201)


@route("POST", "/v1/campaigns/{id:id}/contacts", summary="Import numbers from a csv or xlsx file (multipart field "
       "'file'): one column of numbers, every other column a tag. Answers the import job (GET /v1/jobs/{id})",
       tag="campaigns", status=202)
async def import_contacts(request: Request) -> Response:
    account = await account_of(request)
    cid = _id(request)  # a bad id is a 404 whatever the body
    name, data = await uploaded(request, ("file", "send_to_number_file"))
    job = await services(request).jobs.start_import(account, cid, name, data)
    return JSON(job_json(job), 202)


async def uploaded(request: Request, fields: tuple[str, ...]) -> tuple[str, bytes]:
    """The file of a multipart upload in one of ``fields``."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Invalid(f"Send the file as multipart/form-data in the field '{fields[0]}'", code="invalid_upload")
    try:
        form = await request.form(max_part_size=50 * 1024 * 1024)
    except Exception as exc:  # the parser's own errors: a malformed body
        raise Invalid(f"The multipart body could not be read: {exc}", code="invalid_upload") from None
    for field in fields:
        item = form.get(field)
        if item is not None and hasattr(item, "read"):
            return item.filename or "", await item.read()
    raise Invalid(f"No file in the field '{fields[0]}'", code="missing_file")


@route("GET", "/v1/campaign-numbers/{id:id}", summary="One number of a campaign", tag="campaigns")
async def get_number(request: Request) -> Response:
    account = await account_of(request)
    return JSON(number_json(await services(request).campaigns.number(account, _id(request))))


@route("PATCH", "/v1/campaign-numbers/{id:id}", summary="Change a number or its tags (not while in a run)",
       tag="campaigns", body=NumberPatch)
async def patch_number(request: Request) -> Response:
    account = await account_of(request)
    nid = _id(request)  # a bad id is a 404 whatever the body
    body = await read_json(request, NumberPatch)
    n = await services(request).campaigns.edit_number(
        account, nid, number=body.number, tags=dict(body.tags) if body.tags is not None else None)
    return JSON(number_json(n))


@route("DELETE", "/v1/campaign-numbers/{id:id}", summary="Remove a number from its campaign", tag="campaigns",
       status=204)
async def delete_number(request: Request) -> Response:
    account = await account_of(request)
    await services(request).campaigns.delete_number(account, _id(request))
    return Response(status_code=204)


@route("POST", "/v1/campaigns/{id:id}/begin", summary="Start a run: hold its cost, then send at the campaign's "
       "rate (every number not started; 'numbers' for chosen ids; 'status' to re-run by status)",
       tag="campaigns", body=BeginBody)
async def begin(request: Request) -> Response:
    account = await account_of(request)
    cid = _id(request)  # a bad id is a 404 whatever the body
    body = await read_json(request, BeginBody) if (await request.body()).strip() else BeginBody()
    run = await services(request).campaigns.begin(
        account, cid, message=body.message, schedule=body.schedule_at, statuses=body.status,
        individual=body.numbers, rate=body.rate, audio=_audio(body.audio_id), voice=body.voice,
        length_factor=body.length_factor, priority=body.priority,
    )
    tz = await zone(request, account)
    return JSON({"campaign_id": run["campaign_id"], "status": run["status"], "numbers": run["numbers"],
                 "credits_on_hold": display(run["held"]), "message": run["hold_note"],
                 "schedule_at": rules.local_iso(run["schedule_at"], tz)})


def _verb(name: str, summary: str) -> None:
    async def handler(request: Request) -> Response:
        account = await account_of(request)
        camp = await getattr(services(request).campaigns, name)(account, _id(request))
        return JSON(campaign_json(camp, await zone(request, account)))

    handler.__name__ = f"{name}_campaign"
    route("POST", f"/v1/campaigns/{{id:id}}/{name}", summary=summary, tag="campaigns")(handler)


_verb("pause", "Pause a run: nothing more is sent until resumed")
_verb("resume", "Resume a paused run")
_verb("stop", "Stop a run: numbers not sent end terminated and their held credits go back; calls in progress "
      "are ended (terminated, reason stopped)")


@route("GET", "/v1/campaigns/{id:id}/summary", summary="Counts by status and credits of a campaign",
       tag="campaigns")
async def summary(request: Request) -> Response:
    account = await account_of(request)
    return JSON(await services(request).campaigns.summary(account, _id(request)))


@route("POST", "/v1/campaigns/{id:id}/reports", summary="Write a report (csv and xlsx, one row per number) "
       "as a job; download with GET /v1/jobs/{id}/files/csv or xlsx", tag="campaigns", status=202)
async def start_report(request: Request) -> Response:
    account = await account_of(request)
    return JSON(job_json(await services(request).jobs.start_report(account, _id(request))), 202)


@route("GET", "/v1/jobs/{id:id}", summary="An import or report job with its progress (percent)", tag="campaigns")
async def get_job(request: Request) -> Response:
    account = await account_of(request)
    return JSON(job_json(await services(request).jobs.get(account, _id(request))))


@route("GET", "/v1/jobs/{id:id}/files/{format}", summary="A finished report's file (csv or xlsx)", tag="campaigns")
async def job_file(request: Request) -> Response:
    account = await account_of(request)
    ctype, data, name = await services(request).jobs.file(account, _id(request), request.path_params["format"])
    return Response(data, media_type=ctype, headers={"content-disposition": f'attachment; filename="{name}"'})


@route("PUT", "/v1/account/time-zone", summary="The account's time zone (schedules without an offset are read "
       "in it); null: the region's", tag="account", body=TimeZoneBody)
async def put_time_zone(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, TimeZoneBody)
    return JSON({"time_zone": await services(request).campaigns.set_time_zone(account, body.time_zone)})
