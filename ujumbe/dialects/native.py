"""The native API, ``/v1``: everything Ujumbe does, in its own clean JSON.

Errors are ``{"error": {"code": ..., "message": ...}}`` with an HTTP status
that fits. Authentication is ``Authorization: Bearer`` with an API key or an
access token from ``/v1/auth/token``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ujumbe.core import emails, numbers
from ujumbe.core.calls import DEFAULT_VOICE, VoiceOptions
from ujumbe.core.errors import Conflict, Invalid, NotFound, UjumbeError
from ujumbe.core.pricing import display
from ujumbe.core.states import State
from ujumbe.core.timefmt import iso
from ujumbe.http.common import (
    JSON, bearer, client_address, decode_json, error_status, handles_errors, parse_id, path_id, read_body, read_json,
    services,
)
from ujumbe.http.openapi import Api
from ujumbe.services import callbacks, reports
from ujumbe.services.accounts import Account
from ujumbe.services.callbacks import masked
from ujumbe.services.messaging import SendRequest, SendResult

api = Api("Ujumbe", "1.0")


# --- wire types ---


class TokenBody(msgspec.Struct, forbid_unknown_fields=True):
    password: str
    username: str | None = None
    email: str | None = None


class RefreshBody(msgspec.Struct):
    refresh_token: str


class Tokens(msgspec.Struct):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class SendBody(msgspec.Struct, forbid_unknown_fields=True):
    to: list[str] | str
    text: str | None = None
    template: str | None = None
    params: dict[str, Any] | None = None
    sender: str | None = None
    reference: str | None = None
    callback_url: str | None = None
    send_at: dt.datetime | None = None
    # seconds; at most 99 days, the longest an SMPP relative validity says
    validity: Annotated[int, msgspec.Meta(ge=1, le=99 * 86400)] | None = None
    unicode: bool = False
    channel: str | None = None  # "sms" | "email"; by default email when every "to" is an address
    meta: dict[str, Any] | None = None
    subject: str | None = None  # email
    html: str | None = None  # email: the HTML alternative of the text
    from_: str | None = msgspec.field(default=None, name="from")  # email: an address at a sending domain
    unsubscribe_url: str | None = None  # email: RFC 8058 one-click unsubscribe (https)
    # voice (channel "voice"): the text is spoken in this voice, or audio_id (POST /v1/audio) is played
    voice: str | None = None
    length_factor: float | None = None  # bigger is slower; 1.0 normal speed
    language: str | None = None  # the text's language, default ne (Nepali)
    audio_id: int | str | None = None  # an id from POST /v1/audio


class CallOut(msgspec.Struct):
    """What a voice message's call did (see docs/voice.md)."""

    outcome: str  # completed | hungup | unanswered | failed | terminated
    reason: str
    reason_text: str
    sip_status: int | None
    sip_phrase: str
    q850: int | None
    ring_seconds: float
    duration_seconds: float
    playback_seconds: float
    audio_seconds: float
    billable_minutes: int
    dtmf: str
    call_id: str  # the SIP Call-ID
    started_at: str | None
    ringing_at: str | None
    answered_at: str | None
    ended_at: str | None


class RecipientOut(msgspec.Struct):
    to: str
    id: int | None
    state: str
    network: str | None
    parts: int
    cost: float
    error: dict[str, str] | None = None


class SendResponse(msgspec.Struct):
    request_id: str
    reference: str | None
    duplicate: bool
    encoding: str
    parts: int
    cost: float
    balance: float | None
    created_at: str
    messages: list[RecipientOut]


class EventOut(msgspec.Struct):
    state: str
    at: str
    detail: str | None


class MessageOut(msgspec.Struct):
    id: int
    request_id: str
    reference: str | None
    channel: str
    sender: str | None
    to: str
    network: str | None
    text: str
    encoding: str
    parts: int
    cost: float
    state: str
    final: bool
    error: dict[str, str | None] | None
    created_at: str
    submitted_at: str | None
    done_at: str | None
    events: list[EventOut] | None = None
    subject: str | None = None  # email
    call: CallOut | None = None  # voice, once the call ended


class MessagePage(msgspec.Struct):
    data: list[MessageOut]
    next_cursor: str | None


class TemplateBody(msgspec.Struct, forbid_unknown_fields=True):
    body: Annotated[str, msgspec.Meta(max_length=65_536)]  # far past any SMS; a long email fits
    channel: str = "sms"
    subject: Annotated[str, msgspec.Meta(max_length=998)] | None = None  # an email header line's limit


class TemplateOut(msgspec.Struct):
    key: str
    channel: str
    body: str
    subject: str | None
    updated_at: str


class CallbackSettings(msgspec.Struct):
    dlr_url: str | None = None
    inbound_url: str | None = None
    subscription_url: str | None = None


class AccountOut(msgspec.Struct):
    id: str
    name: str
    username: str
    email: str
    region: str
    instance_id: str
    public_key: str
    balance: float
    callbacks: CallbackSettings


class Balance(msgspec.Struct):
    balance: float


class TransactionOut(msgspec.Struct):
    id: int
    at: str
    kind: str
    amount: float
    balance_after: float
    request_id: str | None
    message_id: int | None
    note: str | None


class TransactionPage(msgspec.Struct):
    data: list[TransactionOut]
    next_cursor: str | None


class CallbackOut(msgspec.Struct):
    id: int
    kind: str
    url: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    message_id: int | None
    created_at: str
    payload: Any


class CallbackPage(msgspec.Struct):
    data: list[CallbackOut]
    next_cursor: str | None


class WebhookSecret(msgspec.Struct):
    secret: str


class ApiKeyBody(msgspec.Struct):
    label: Annotated[str, msgspec.Meta(max_length=200)] = ""


class ApiKeyOut(msgspec.Struct):
    api_key: str


class InboundOut(msgspec.Struct):
    id: int
    sender: str
    to: str
    text: str
    network: str | None
    link_id: str | None
    channel: str
    received_at: str


class InboundPage(msgspec.Struct):
    data: list[InboundOut]
    next_cursor: str | None


class InboundBody(msgspec.Struct, forbid_unknown_fields=True):
    sender: str
    to: str
    text: str
    link_id: str | None = None  # the network's id for a reply; one is made up when absent


class SubscriptionNoticeBody(msgspec.Struct, forbid_unknown_fields=True):
    """A network's own (de)activation of a subscriber (e.g. from its portal)."""

    mobile: str
    update_type: str  # activation | deactivation
    service_id: int | None = None
    shortcode: str | None = None
    keyword: str | None = None  # activation: the service's first keyword when absent


class Injected(msgspec.Struct):
    status: str
    id: int  # the inbound message's id
    sender: str
    to: str
    network: str | None


# --- helpers ---


def error_response(exc: UjumbeError) -> Response:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details:
        body["details"] = exc.details
    headers = {"retry-after": str(exc.details["retry_after"])} if "retry_after" in exc.details else None
    return JSON({"error": body}, status_code=error_status(exc), headers=headers)


async def account_of(request: Request) -> Account:
    return await services(request).accounts.authenticate_bearer(bearer(request), client_address(request))


def int_param(request: Request, name: str, default: int | None, *, low: int = 1, high: int = 10**18) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = parse_id(raw)  # ASCII digits only: int() would take "٣" or " 5"
    if value is None or not low <= value <= high:
        raise Invalid(f"'{name}' must be a whole number from {low} to {high}", code="invalid_parameter")
    return value


def send_response(result: SendResult) -> SendResponse:
    return SendResponse(
        request_id=result.request_id,
        reference=result.reference,
        duplicate=result.duplicate,
        encoding=result.encoding,
        parts=result.parts,
        cost=display(result.cost),
        balance=display(result.balance) if result.balance is not None else None,
        created_at=iso(result.created_at) or "",
        messages=[
            RecipientOut(
                to=r.to, id=r.message_id, state=r.state, network=r.network, parts=r.parts, cost=display(r.cost),
                error={"code": r.error_code or "rejected", "message": r.error or ""} if r.error_code else None,
            )
            for r in result.recipients
        ],
    )


def message_out(m: dict[str, Any]) -> MessageOut:
    state = State(m["state"])
    return MessageOut(
        id=m["id"], request_id=m["request_id"], reference=m["reference"], channel=m["channel"],
        sender=m["sender"], to=m["recipient"], network=m["network"], text=m["body"], encoding=m["encoding"],
        parts=m["parts"], cost=display(m["cost"]), state=state.value, final=state.final,
        error={"code": m["error_code"], "message": m["error_reason"]} if m["error_code"] or m["error_reason"] else None,
        created_at=iso(m["created_at"]) or "", submitted_at=iso(m["submitted_at"]), done_at=iso(m["done_at"]),
        events=[EventOut(e["state"], iso(e["at"]) or "", e["detail"]) for e in m["events"]] if "events" in m else None,
        subject=_email_meta(m).get("subject"),
        call=CallOut(**m["call"]) if m.get("call") else None,
    )


def _email_meta(m: dict[str, Any]) -> dict[str, Any]:
    if m.get("channel") != "email" or not m.get("meta"):
        return {}
    meta = m["meta"] if isinstance(m["meta"], dict) else msgspec.json.decode(m["meta"])
    return meta if isinstance(meta, dict) else {}


def route(method: str, path: str, **kw: Any) -> Any:
    def register(handler: Any) -> Any:
        return api.route(method, path, **kw)(handles_errors(handler, error_response))

    return register


# --- auth ---


@route("POST", "/v1/auth/token", summary="Log in with username or email and password", tag="auth",
       body=TokenBody, response=Tokens, auth=False)
async def create_token(request: Request) -> Response:
    body = await read_json(request, TokenBody)
    login = body.username or body.email
    if not login:
        raise Invalid("Give a username or an email", code="missing_login")
    accounts = services(request).accounts
    account = await accounts.verify_password(login, body.password, client_address(request))
    return JSON(await accounts.issue_tokens(account))


@route("POST", "/v1/auth/refresh", summary="Trade a refresh token for new tokens", tag="auth",
       body=RefreshBody, response=Tokens, auth=False)
async def refresh_token(request: Request) -> Response:
    body = await read_json(request, RefreshBody)
    return JSON(await services(request).accounts.refresh(body.refresh_token))


@route("POST", "/v1/api-keys", summary="Create another API key", tag="auth", body=ApiKeyBody,
       response=ApiKeyOut, status=201)
async def create_api_key(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, ApiKeyBody) if await read_body(request) else ApiKeyBody()
    return JSON({"api_key": await services(request).accounts.new_api_key(account.id, body.label)}, 201)


# --- messages ---


@route("POST", "/v1/messages", summary="Send a message to one or many recipients", tag="messages",
       body=SendBody, response=SendResponse, status=202,
       also={200: "A reference sent before: the original request's answer (duplicate: true); nothing is sent"})
async def send_messages(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, SendBody)
    platform = services(request)
    if body.callback_url:
        await platform.check_callback_url(body.callback_url)
    to = [body.to] if isinstance(body.to, str) else body.to
    channel = body.channel or ("email" if to and all(emails.looks_like_email(str(t)) for t in to) else "sms")
    voice = None
    if channel == "voice":
        if body.subject or body.html or body.unsubscribe_url or body.unicode:
            raise Invalid("subject, html, unsubscribe_url and unicode are not for channel voice", code="invalid_request")
        voice = VoiceOptions(
            voice=body.voice or DEFAULT_VOICE, length_factor=1.0 if body.length_factor is None else body.length_factor,
            language=body.language or "ne", audio_id=None if body.audio_id is None else str(body.audio_id),
        )
    elif body.voice or body.length_factor is not None or body.language or body.audio_id:
        raise Invalid("voice, length_factor, language and audio_id are for channel voice", code="invalid_request")
    elif channel != "email" and (body.subject or body.html or body.from_ or body.unsubscribe_url):
        raise Invalid("subject, html, from and unsubscribe_url are for channel email", code="invalid_request")
    result = await platform.messaging.send(
        account,
        SendRequest(
            recipients=to,
            text=body.text, template_key=body.template, params=body.params, sender=body.from_ or body.sender,
            reference=body.reference, callback_url=body.callback_url, channel=channel,
            send_at=int(body.send_at.timestamp() * 1000) if body.send_at else None,
            validity_s=body.validity, meta=body.meta, unicode=body.unicode,
            subject=body.subject, html=body.html, unsubscribe_url=body.unsubscribe_url, voice=voice,
        ),
    )
    return JSON(send_response(result), 200 if result.duplicate else 202)


@route("GET", "/v1/messages/{id:id}", summary="A message with every event of its life", tag="messages",
       response=MessageOut)
async def get_message(request: Request) -> Response:
    account = await account_of(request)
    msg = await services(request).messaging.message(account.id, path_id(request, "message"))
    return JSON(message_out(msg))


@route("GET", "/v1/messages", summary="List messages, newest first", tag="messages", response=MessagePage,
       query={"state": "only this state", "to": "only this recipient (a number as a send takes it, or an address)",
              "request_id": "only this request",
              "limit": "page size, 1-500 (default 50)", "cursor": "next_cursor of the previous page"})
async def list_messages(request: Request) -> Response:
    account = await account_of(request)
    limit = int_param(request, "limit", 50, high=500) or 50
    state = request.query_params.get("state")
    if state is not None and state not in {s.value for s in State}:
        raise Invalid(f"'{state}' is not a state; use one of {', '.join(s.value for s in State)}", code="invalid_parameter")
    to = request.query_params.get("to")
    rows = await services(request).messaging.messages(
        account.id, limit=limit, before=int_param(request, "cursor", None), state=state,
        recipient=None if to is None else numbers.stored_form(to, account.region),
        request_id=request.query_params.get("request_id"),
    )
    return JSON(MessagePage([message_out(m) for m in rows], str(rows[-1]["id"]) if len(rows) == limit else None))


@route("GET", "/v1/requests/{id}", summary="A send request and what happened to each recipient",
       tag="messages", response=SendResponse)
async def get_request(request: Request) -> Response:
    account = await account_of(request)
    result = await services(request).messaging.request(account.id, request.path_params["id"])
    return JSON(send_response(result))


# --- templates ---


@route("PUT", "/v1/templates/{key}", summary="Create or replace a template", tag="templates",
       body=TemplateBody, response=TemplateOut)
async def put_template(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, TemplateBody)
    key = request.path_params["key"]
    tpl = await services(request).templates.put(account.id, key, body.channel, body.body, body.subject)
    return JSON(TemplateOut(tpl["key"], tpl["channel"], tpl["body"], tpl["subject"], iso(tpl["updated_at"]) or ""))


@route("GET", "/v1/templates", summary="List templates", tag="templates", response=list[TemplateOut])
async def list_templates(request: Request) -> Response:
    account = await account_of(request)
    rows = await services(request).templates.list(account.id)
    return JSON([TemplateOut(t["key"], t["channel"], t["body"], t["subject"], iso(t["updated_at"]) or "") for t in rows])


@route("GET", "/v1/templates/{key}", summary="One template", tag="templates", response=TemplateOut,
       query={"channel": "sms (default) or email"})
async def get_template(request: Request) -> Response:
    account = await account_of(request)
    t = await services(request).templates.get(account.id, request.path_params["key"], request.query_params.get("channel", "sms"))
    return JSON(TemplateOut(t["key"], t["channel"], t["body"], t["subject"], iso(t["updated_at"]) or ""))


@route("DELETE", "/v1/templates/{key}", summary="Delete a template", tag="templates", status=204,
       query={"channel": "sms (default) or email"})
async def delete_template(request: Request) -> Response:
    account = await account_of(request)
    await services(request).templates.delete(account.id, request.path_params["key"], request.query_params.get("channel", "sms"))
    return Response(status_code=204)


# --- account, callbacks, credits ---


def callback_settings(account: Account) -> CallbackSettings:
    """The account's callback URLs as answers show them: passwords masked."""
    return CallbackSettings(masked(account.dlr_url), masked(account.inbound_url), masked(account.subscription_url))


def account_out(account: Account, balance: int) -> AccountOut:
    return AccountOut(
        id=account.id, name=account.name, username=account.username, email=account.email, region=account.region,
        instance_id=account.instance_id, public_key=account.public_key, balance=display(balance),
        callbacks=callback_settings(account),
    )


@route("GET", "/v1/account", summary="The account: settings and balance (no secrets)", tag="account",
       response=AccountOut)
async def get_account(request: Request) -> Response:
    account = await account_of(request)
    return JSON(account_out(account, await services(request).credits.balance(account.id)))


@route("GET", "/v1/account/callbacks", summary="Where callbacks go", tag="account", response=CallbackSettings)
async def get_callbacks(request: Request) -> Response:
    account = await account_of(request)
    return JSON(callback_settings(account))


@route("PUT", "/v1/account/callbacks", summary="Set where delivery reports, inbound messages and subscription "
       "events go; a field left out is unchanged, null clears it", tag="account", body=CallbackSettings,
       response=CallbackSettings)
async def put_callbacks(request: Request) -> Response:
    account = await account_of(request)
    raw = await read_body(request)
    given = decode_json(raw, Any) if raw.strip() else {}
    if not isinstance(given, dict):
        raise Invalid("A JSON object was expected", code="invalid_json")
    unknown = set(given) - {"dlr_url", "inbound_url", "subscription_url"}
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}", code="validation_error")
    platform = services(request)
    for url in given.values():
        if url is not None:
            if not isinstance(url, str):
                raise Invalid("Callback URLs must be strings or null", code="validation_error")
            await platform.check_callback_url(url)
    updated = await platform.accounts.set_callbacks(account.id, given)
    return JSON(callback_settings(updated))


@route("GET", "/v1/account/webhook-secret", summary="The secret that signs callbacks (Standard Webhooks)",
       tag="account", response=WebhookSecret)
async def get_webhook_secret(request: Request) -> Response:
    account = await account_of(request)
    return JSON({"secret": services(request).accounts.webhook_secret(account.key_seed)})


@route("GET", "/v1/balance", summary="The prepaid balance", tag="credits", response=Balance)
async def get_balance(request: Request) -> Response:
    account = await account_of(request)
    return JSON({"balance": display(await services(request).credits.balance(account.id))})


@route("GET", "/v1/transactions", summary="The ledger: top-ups, charges and refunds, newest first",
       tag="credits", response=TransactionPage, query={"limit": "1-500", "cursor": "next page"})
async def list_transactions(request: Request) -> Response:
    account = await account_of(request)
    limit = int_param(request, "limit", 50, high=500) or 50
    rows = await services(request).credits.transactions(account.id, limit, int_param(request, "cursor", None))
    data = [
        TransactionOut(r["id"], iso(r["at"]) or "", r["kind"], display(r["amount"]), display(r["balance_after"]),
                       r["request_id"], r["message_id"], r["note"])
        for r in rows
    ]
    return JSON(TransactionPage(data, str(rows[-1]["id"]) if len(rows) == limit else None))


@route("GET", "/v1/callbacks", summary="Callbacks sent or pending, newest first", tag="callbacks",
       response=CallbackPage, query={"status": "pending, delivered or failed", "limit": "1-500", "cursor": "next page"})
async def list_callbacks(request: Request) -> Response:
    account = await account_of(request)
    limit = int_param(request, "limit", 50, high=500) or 50
    status = request.query_params.get("status")
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise Invalid("'status' must be pending, delivered or failed", code="invalid_parameter")
    rows = await services(request).callback_log.list(account.id, status, limit, int_param(request, "cursor", None))
    data = [
        CallbackOut(r["id"], r["kind"], masked(r["url"]) or "", r["status"], r["attempts"], r["last_status"], r["last_error"],
                    r["message_id"], iso(r["created_at"]) or "", msgspec.json.decode(r["payload"]))
        for r in rows
    ]
    return JSON(CallbackPage(data, str(rows[-1]["id"]) if len(rows) == limit else None))


@route("POST", "/v1/callbacks/{id:id}/retry", summary="Send a callback again (e.g. one that failed)",
       tag="callbacks", status=202)
async def retry_callback(request: Request) -> Response:
    account = await account_of(request)
    await services(request).callback_log.retry(account.id, path_id(request, "callback"))
    return JSON({"status": "pending"}, 202)


@route("GET", "/v1/inbound", summary="Inbound messages to the account's numbers, newest first", tag="inbound",
       response=InboundPage, query={"limit": "1-500", "cursor": "next page"})
async def list_inbound(request: Request) -> Response:
    account = await account_of(request)
    limit = int_param(request, "limit", 50, high=500) or 50
    before = int_param(request, "cursor", None)
    rows = await services(request).messaging.inbound(account.id, limit=limit, before=before)
    data = [
        InboundOut(r["id"], r["sender"], r["recipient"], r["body"], r["network"], r["link_id"], r["channel"],
                   iso(r["received_at"]) or "")
        for r in rows
    ]
    return JSON(InboundPage(data, str(data[-1].id) if len(data) == limit else None))


async def tenant_may_inject(request: Request) -> None:
    """Tenants may inject only while the simulator is the only carrier, unless
    the operator allowed it (UJUMBE_SIMULATOR_INBOUND=on): with real operator
    connectors an injected message would pass for one from a subscriber."""
    p = services(request)
    mode = p.settings.simulator_inbound
    if mode == "on":
        return
    if mode == "off" or not p.settings.simulator:
        raise NotFound("Injecting inbound messages is off on this server", code="simulator_off")
    real = [c for c in p.channels.values() if c.kind == "sms" and c is not p.simulator]
    if real or await p.routing.list_connectors():
        raise Conflict(
            "Injecting inbound messages is off: this server has real operator connectors. The operator can "
            "inject with POST /admin/v1/simulator/inbound, or allow tenants with UJUMBE_SIMULATOR_INBOUND=on",
            code="simulator_off",
        )


def injected(record: dict[str, Any]) -> Injected:
    return Injected("accepted", record["id"], record["sender"], record["recipient"], record["network"])


async def inject_notice(request: Request, body: SubscriptionNoticeBody, account_id: str | None) -> dict[str, Any]:
    """A network's subscription notice, as an operator connector reports it:
    an inbound message to the service's short code carrying ``update_type``."""
    if body.update_type not in ("activation", "deactivation"):
        raise Invalid("'update_type' must be activation or deactivation", code="invalid_update_type")
    p = services(request)
    service = await p.premium.notice_target(service_id=body.service_id, shortcode=body.shortcode,
                                            account_id=account_id)
    keyword = (body.keyword or "").strip().upper()
    if not keyword and body.update_type == "activation" and service.keywords:
        keyword = service.keywords[0]
    return await reports.inject_inbound(
        p.store, sender=body.mobile, to=service.shortcode, text="", account_id=service.account_id,
        meta={"update_type": body.update_type, "keyword": keyword, "service_id": service.id},
    )


@route("POST", "/v1/simulator/inbound", summary="Inject an inbound message to one of this account's numbers or "
       "short codes, as if a subscriber had sent it (while the built-in simulator is the only carrier)",
       tag="simulator", body=InboundBody, response=Injected, status=202)
async def simulate_inbound(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, InboundBody)
    await tenant_may_inject(request)
    record = await reports.inject_inbound(
        services(request).store, sender=body.sender, to=body.to, text=body.text, account_id=account.id,
        link_id=body.link_id,
    )
    return JSON(injected(record), 202)


@route("POST", "/v1/simulator/subscription", summary="Inject a network's (de)activation of a subscriber to one of "
       "this account's premium services (while the built-in simulator is the only carrier)",
       tag="simulator", body=SubscriptionNoticeBody, response=Injected, status=202)
async def simulate_subscription(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, SubscriptionNoticeBody)
    await tenant_may_inject(request)
    return JSON(injected(await inject_notice(request, body, account.id)), 202)


# --- callbacks in the native format ---


def dlr_payload(msg: dict[str, Any], event: callbacks.Event) -> dict[str, Any] | None:
    state = State(event.state)
    if state in (State.ACCEPTED, State.QUEUED):
        return None  # the API answer already said so
    if event.at_accept:
        return None  # the API answer already listed it
    return {
        "type": "message.status",
        "data": {
            "id": msg["id"],
            "request_id": msg["request_id"],
            "reference": msg.get("reference"),
            "to": msg["recipient"],
            "state": state.value,
            "final": state.final,
            "at": iso(event.at),
            "parts": msg["parts"],
            "cost": display(msg["cost"]),
            "error": {"code": event.error_code, "message": event.reason} if event.error_code or event.reason else None,
            **({"channel": "voice", "call": msg["call"]} if msg.get("call") else {}),
        },
    }


def inbound_payload(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message.inbound",
        "data": {
            "id": record["id"], "from": record["sender"], "to": record["recipient"], "text": record["body"],
            "network": record["network"], "link_id": record["link_id"], "at": iso(record["received_at"]),
        },
    }


callbacks.register("native", callbacks.Format(dlr=dlr_payload, inbound=inbound_payload))


def routes() -> list[Any]:
    return api.routes()
