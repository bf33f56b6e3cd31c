"""The Tingg Engage dialect (Cellulant): ``/api/v1/cas/authenticate`` for a
bearer token, ``/api/v2/engagement`` to send, and delivery callbacks in
Tingg's shape.

Answers use Tingg's envelope ``{"transactionID", "statusCode", "message"}``
with the HTTP status equal to ``statusCode``; the token endpoints answer
``{"statusCode", "message"}`` when they refuse. Times in callbacks are UTC
written without an offset, as Tingg writes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ujumbe.core.errors import ChannelUnavailable, Invalid, UjumbeError
from ujumbe.core.states import State, tingg_status
from ujumbe.http.common import (
    Handler, JSON, bearer, client_address, check_value, decode_json, error_status, handles_errors, read_body, services,
)
from ujumbe.http.openapi import Api
from ujumbe.services import callbacks
from ujumbe.services.messaging import SendRequest, SendResult

api = Api("Tingg Engage", "2")
T = TypeVar("T")

QUEUED = "Message queued successfully."
# Tingg channel names -> Ujumbe channel kinds
CHANNELS = {"SMS": "sms", "EMAIL": "email"}


# --- wire types ---


class AuthBody(msgspec.Struct):
    username: str
    password: str


class RefreshBody(msgspec.Struct):
    refresh_token: str
    grant_type: str | None = None


class Tokens(msgspec.Struct):
    token_type: str
    expires_in: int
    access_token: str
    refresh_token: str


class SmsDto(msgspec.Struct):
    msisdn: list[str | int] | None = None
    message: str | None = None
    params: dict[str, Any] | None = None
    smsType: str | None = None
    extraData: dict[str, Any] | None = None


class EmailDto(msgspec.Struct):
    email: list[str] | None = None
    subject: str | None = None
    message: str | None = None
    params: dict[str, Any] | None = None
    extraData: dict[str, Any] | None = None


# Unknown fields are ignored rather than refused: clients written for Tingg
# send fields of Tingg's wider platform that change nothing here.
class EngagementBody(msgspec.Struct):
    notificationType: str
    referenceID: str
    channels: list[str] | None = None
    callbackUrl: str | None = None
    callbackURL: str | None = None  # the spelling of the document's table
    smsDto: SmsDto | None = None
    emailDto: EmailDto | None = None
    email: list[str] | None = None  # the table lists email recipients at the top level too


class Envelope(msgspec.Struct):
    transactionID: str | None
    statusCode: int
    message: str


class CasError(msgspec.Struct):
    statusCode: int
    message: str


# --- plumbing ---


def _headers(exc: UjumbeError) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    if exc.kind == "unauthorized":
        headers["www-authenticate"] = "Bearer"
    if "retry_after" in exc.details:
        headers["retry-after"] = str(exc.details["retry_after"])
    return headers or None


def envelope_error(exc: UjumbeError) -> Response:
    status = error_status(exc)
    return JSON(Envelope(None, status, exc.message), status_code=status, headers=_headers(exc))


def cas_error(exc: UjumbeError) -> Response:
    status = error_status(exc)
    return JSON(CasError(status, exc.message), status_code=status, headers=_headers(exc))




def route(
    method: str, path: str, on_error: Callable[[UjumbeError], Response], **kw: Any
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        return api.route(method, path, **kw)(handles_errors(handler, on_error))

    return register


# --- token ---


@route("POST", "/api/v1/cas/authenticate", cas_error, summary="Get a bearer token", tag="tingg",
       body=AuthBody, response=Tokens, auth=False)
async def authenticate(request: Request) -> Response:
    body = decode_json(await read_body(request), AuthBody)
    if not body.username.strip() or not body.password:
        raise Invalid("username and password are required", code="missing_login")
    accounts = services(request).accounts
    account = await accounts.verify_password(body.username.strip(), body.password, client_address(request))
    return JSON(Tokens(**await accounts.issue_tokens(account)))


@route("POST", "/api/v1/cas/refresh", cas_error, summary="Trade a refresh token for new tokens (works once)",
       tag="tingg", body=RefreshBody, response=Tokens, auth=False)
async def refresh(request: Request) -> Response:
    raw = await read_body(request)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded") and not (
        raw.lstrip().startswith(b"{")  # JSON labelled as a form (curl -d '{...}') is JSON
    ):
        # the OAuth 2.0 form: grant_type=refresh_token&refresh_token=...
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        check_value(form)
        if not form.get("refresh_token"):
            raise Invalid("refresh_token is required", code="missing_refresh_token")
        body = RefreshBody(form["refresh_token"], form.get("grant_type"))
    else:
        body = decode_json(raw, RefreshBody)
    if body.grant_type not in (None, "refresh_token"):
        raise Invalid("grant_type must be refresh_token", code="unsupported_grant_type")
    return JSON(Tokens(**await services(request).accounts.refresh(body.refresh_token)))


# --- engagement ---


def _channels(given: list[str] | None) -> list[str]:
    """Ujumbe channel kinds asked for, in order; SMS when none is named (the
    document: "if one does not specify we will use the default ones")."""
    kinds: list[str] = []
    for name in given or ["SMS"]:
        kind = CHANNELS.get(name.strip().upper())
        if kind is None:
            raise ChannelUnavailable(f"The {name} channel is not available; use SMS or EMAIL")
        if kind not in kinds:
            kinds.append(kind)
    return kinds or ["sms"]


def _reply(results: list[SendResult]) -> Response:
    # one answer for every channel of the request, under the first one's transactionID
    result = results[0]
    everyone = [r for res in results for r in res.recipients]
    rejected = [r for r in everyone if r.message_id is None or r.state == State.REJECTED.value]
    detail = "; ".join(f"{r.input}: {r.error}" for r in rejected[:10])
    if not any(res.accepted for res in results):
        return JSON(Envelope(result.request_id, 400, f"No message was queued: {detail}"), status_code=400)
    if result.duplicate:
        text = "Duplicate referenceID: this request was already received; nothing new was sent."
    else:
        text = QUEUED + (f" Not sent to {detail}" if rejected else "")
    return JSON(Envelope(result.request_id, 200, text))


@route("POST", "/api/v2/engagement", envelope_error, summary="Send an SMS (or email) engagement", tag="tingg",
       body=EngagementBody, response=Envelope)
async def engagement(request: Request) -> Response:
    platform = services(request)
    account = await platform.accounts.authenticate_bearer(bearer(request), client_address(request))
    body = decode_json(await read_body(request), EngagementBody)
    reference = body.referenceID.strip()
    if not reference:
        raise Invalid("referenceID is required and must not be empty", code="missing_reference")
    notification = body.notificationType.strip()
    if not notification:
        raise Invalid("notificationType is required and must not be empty", code="missing_notification_type")
    kinds = _channels(body.channels)
    # A request asking for a channel this server lacks is refused whole: a
    # client told "queued" would believe every channel went out.
    missing = [k for k in kinds if k not in platform.messaging.channels]
    if missing:
        raise ChannelUnavailable(
            f"The {', '.join(k.upper() for k in missing)} channel is not configured on this server; nothing was sent"
        )
    callback_url = body.callbackUrl or body.callbackURL or None
    if callback_url:
        await platform.check_callback_url(callback_url)

    sends: list[SendRequest] = []
    for kind in kinds:
        meta: dict[str, Any]
        subject = None
        if kind == "sms":
            sms = body.smsDto
            if sms is None:
                raise Invalid("smsDto is required for the SMS channel", code="missing_sms")
            to = [str(m).strip() for m in sms.msisdn or [] if str(m).strip()]
            if not to:
                raise Invalid("smsDto.msisdn must list at least one recipient", code="missing_recipients")
            text, params, meta = sms.message, sms.params, {"smsType": sms.smsType, "extraData": sms.extraData}
        else:
            mail = body.emailDto or EmailDto()
            to = [e.strip() for e in (mail.email or body.email or []) if e.strip()]
            if not to:
                raise Invalid("emailDto.email must list at least one recipient", code="missing_recipients")
            text, params, meta = mail.message, mail.params, {"extraData": mail.extraData}
            subject = mail.subject
        meta = {"notificationType": notification, **{k: v for k, v in meta.items() if v is not None}}
        sends.append(SendRequest(
            recipients=to, text=text, template_key=notification, params=params,
            # one referenceID covers the whole request; each further channel is
            # its own stored request, so it gets a derived reference
            reference=reference if not sends else f"{reference}#{kind.upper()}",
            callback_url=callback_url, channel=kind, dialect="tingg", meta=meta, subject=subject,
            # an OTP's code is in its params: kept masked at rest, never shown
            conceal=kind == "sms" and (meta.get("smsType") or "").upper() == "OTP" and bool(params),
        ))
    if len(sends) > 1 and any(r.channel == "email" for r in sends):
        # an email that cannot have a From must not leave the SMS half sent
        await platform.domains.sender_for(account.id, None)
    results = [await platform.messaging.send(account, req) for req in sends]
    return _reply(results)


# --- callbacks ---


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")


def _stamp(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def dlr_payload(msg: dict[str, Any], event: callbacks.Event) -> dict[str, Any] | None:
    state = State(event.state)
    if state in (State.ACCEPTED, State.QUEUED):
        return None  # 100 "pending": the engagement answer already said so
    code, description = tingg_status(state, reached_operator=bool(msg.get("submitted_at")))
    if event.reason and state.final and state != State.DELIVERED:
        description = f"{description}: {event.reason}"  # "check description to determine what is wrong"
    out = {
        "refId": f"{msg['request_id']}_{msg['id']}",
        "status": code,
        "msisdn": msg["recipient"],  # "the recipient address": an email's address too
        "statusDescription": description,
        "timestamp": _iso(event.at),
        "receivedDateTime": _stamp(msg["created_at"]),
        "submitDateTime": _stamp(msg.get("submitted_at")),
        "doneDateTime": _stamp(msg.get("done_at")) if state.final else None,
    }
    if msg.get("channel") == "email":
        out["email"] = msg["recipient"]
        out["channel"] = "EMAIL"
    return out


callbacks.register("tingg", callbacks.Format(dlr=dlr_payload))


def routes() -> list[Any]:
    return api.routes()
