"""Native ``/v1/verifications``: one-time codes (services/verifications.py).

The code is never in any answer here: a client that wants its own code
supplies it (``code``); a check says only whether the guess was right.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ujumbe.dialects.native import account_of, int_param, iso, route
from ujumbe.http.common import JSON, read_json, services


class VerificationBody(msgspec.Struct, forbid_unknown_fields=True):
    to: str
    channel: str = "sms"
    length: int | None = None
    text: str | None = None  # with {otp} or ${otp}
    template: str | None = None
    params: dict[str, Any] | None = None
    code: str | None = None  # supply your own code instead of a generated one
    expires_in: int | None = None  # seconds
    sender: str | None = None
    callback_url: str | None = None


class CheckBody(msgspec.Struct, forbid_unknown_fields=True):
    code: str


class VerificationOut(msgspec.Struct):
    id: str
    to: str
    channel: str
    status: str  # pending | approved | expired | canceled | failed
    attempts: int
    max_attempts: int
    length: int
    message_id: int | None
    created_at: str
    expires_at: str


class CheckOut(msgspec.Struct):
    id: str
    result: str  # approved | wrong_code | expired | too_many_attempts | canceled | already_approved
    valid: bool
    status: str
    attempts_left: int


class VerificationPage(msgspec.Struct):
    data: list[VerificationOut]
    next_cursor: str | None


class LimitsBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    ttl_s: int | None = None
    max_checks: int | None = None
    sends_per_destination: int | None = None
    destination_window_s: int | None = None
    prefix_digits: int | None = None
    sends_per_prefix_hour: int | None = None
    new_prefixes_per_hour: int | None = None


class LimitsOut(msgspec.Struct):
    ttl_s: int
    max_checks: int
    sends_per_destination: int
    destination_window_s: int
    prefix_digits: int
    sends_per_prefix_hour: int
    new_prefixes_per_hour: int


class RefusalOut(msgspec.Struct):
    id: int
    to: str
    prefix: str
    reason: str
    at: str


class RefusalPage(msgspec.Struct):
    data: list[RefusalOut]
    next_cursor: str | None


def verification_out(v: dict[str, Any]) -> VerificationOut:
    return VerificationOut(
        v["id"], v["recipient"], v["channel"], v["status"], v["attempts"], v["max_attempts"], v["length"],
        v["message_id"], iso(v["created_at"]) or "", iso(v["expires_at"]) or "",
    )


@route("POST", "/v1/verifications", summary="Send a one-time code (generated, or the one you supply)",
       tag="verifications", body=VerificationBody, response=VerificationOut, status=201)
async def start_verification(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, VerificationBody)
    platform = services(request)
    if body.callback_url:
        await platform.check_callback_url(body.callback_url)
    started = await platform.verifications.start(
        account, to=body.to, channel=body.channel, length=body.length, code=body.code, text=body.text,
        template=body.template, params=body.params, sender=body.sender, expires_in=body.expires_in,
        callback_url=body.callback_url,
    )
    return JSON(verification_out(started.verification), 201)


@route("POST", "/v1/verifications/{id}/check", summary="Check a code: approved, wrong_code, expired or "
       "too_many_attempts", tag="verifications", body=CheckBody, response=CheckOut)
async def check_verification(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, CheckBody)
    checked = await services(request).verifications.check(account, request.path_params["id"], body.code)
    v = checked.verification
    return JSON(CheckOut(v["id"], checked.result, checked.result == "approved", v["status"], checked.attempts_left))


@route("GET", "/v1/verifications/{id}", summary="A verification's state (never its code)", tag="verifications",
       response=VerificationOut)
async def get_verification(request: Request) -> Response:
    account = await account_of(request)
    return JSON(verification_out(await services(request).verifications.get(account, request.path_params["id"])))


@route("GET", "/v1/verifications", summary="Verifications, newest first", tag="verifications",
       response=VerificationPage, query={"to": "a number", "limit": "1-500", "cursor": "next page"})
async def list_verifications(request: Request) -> Response:
    account = await account_of(request)
    limit = int_param(request, "limit", 50, high=500) or 50
    before = int_param(request, "cursor", None)
    rows = await services(request).verifications.list(
        account, limit=limit, before=before, to=request.query_params.get("to") or None
    )
    cursor = str(rows[-1]["created_at"]) if len(rows) == limit else None
    return JSON(VerificationPage([verification_out(v) for v in rows], cursor))


@route("GET", "/v1/verification-settings", summary="This account's one-time code limits (SMS pumping guard)",
       tag="verifications", response=LimitsOut)
async def get_limits(request: Request) -> Response:
    account = await account_of(request)
    return JSON((await services(request).verifications.limits(account.id)).as_dict())


@route("PUT", "/v1/verification-settings", summary="Change some of this account's one-time code limits",
       tag="verifications", body=LimitsBody, response=LimitsOut)
async def put_limits(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, LimitsBody)
    changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
    return JSON((await services(request).verifications.set_limits(account.id, changes)).as_dict())


@route("GET", "/v1/verification-refusals", summary="Codes the limits held back, newest first",
       tag="verifications", response=RefusalPage, query={"limit": "1-500", "cursor": "next page"})
async def list_refusals(request: Request) -> Response:
    account = await account_of(request)
    limit = int_param(request, "limit", 50, high=500) or 50
    before = int_param(request, "cursor", None)
    rows = await services(request).verifications.refusals(account, limit=limit, before=before)
    data = [RefusalOut(r["id"], r["recipient"], r["prefix"], r["reason"], iso(r["at"]) or "") for r in rows]
    return JSON(RefusalPage(data, str(data[-1].id) if len(data) == limit else None))
