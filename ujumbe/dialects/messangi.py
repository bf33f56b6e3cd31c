"""The Messangi dialect: ``/messangi_mmc/rest/api/...`` as Messangi's clients call it.

Every parameter is a path segment; text (and for ``sendSMS`` the number) is
Base64. A call is signed: lowercase hex HMAC-SHA256, keyed with the account's
private key, over the segments after the method name up to (not including)
the public key, joined with ``/``. Answers are XML with ``<input>`` (the
method), ``<status>`` (OK, BAD_SIGNATURE or ERROR), ``<description>`` and,
for some methods, ``<result>``; always HTTP 200, as a client reads
``<status>``. Decisions where the document is vague are in docs/messangi.md.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import re
import urllib.parse
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ujumbe.channels.base import Inbound
from ujumbe.core import numbers
from ujumbe.core.errors import InsufficientCredit, NotFound, RateLimited, UjumbeError
from ujumbe.core.states import MESSANGI_STATUS, State
from ujumbe.http.common import client_address, services
from ujumbe.services import callbacks
from ujumbe.services.accounts import Account
from ujumbe.services.messaging import SendRequest
from ujumbe.services.reports import record_inbound
from ujumbe.services.senders import SenderRefused
from ujumbe.store import now_ms

log = logging.getLogger("ujumbe.messangi")

DIALECT = "messangi"
BASE = "/messangi_mmc/rest/api/"


# method -> the number of segments after it, publicKey and signature included
METHODS = {
    "tools/sendSMS": (7,),
    "sendMT": (7, 8),  # 8: with {flags}
    "tools/sendSMSPinMobileNumberConfirm": (8,),
    "fireMessage": (5, 3),  # 3: POST with a JSON body
    "tools/getMOMessages": (6,),
    "getMessage": (4,),
}
_FILTERS = ("from", "keyword", "carrier", "since", "until")


class MessangiError(Exception):
    def __init__(self, description: str, status: str = "ERROR") -> None:
        super().__init__(description)
        self.status = status
        self.description = description


# --- wire helpers ---


def signature(private_key: str, segments: list[str]) -> str:
    """What a client signs: the segments after the method name, before publicKey."""
    return hmac.new(private_key.encode(), "/".join(segments).encode(), hashlib.sha256).hexdigest()


def b64decode(value: str, what: str) -> str:
    """URL-safe Base64 with or without padding; the standard alphabet too,
    when the value does not mix the two."""
    urlsafe, standard = bool(re.search(r"[-_]", value)), bool(re.search(r"[+/]", value))
    if urlsafe and standard:
        raise MessangiError(f"{what} mixes two Base64 alphabets")
    text = value.replace("-", "+").replace("_", "/").rstrip("=")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise MessangiError(f"{what} is not Base64-encoded UTF-8 text") from None


def _number_segment(value: str, what: str, *, base64_always: bool) -> str:
    # A Base64 number never looks like digits (ASCII digits encode to M.../N...),
    # so plain digits are read as they are where the document is unclear.
    if not base64_always and re.fullmatch(r"\+?[0-9]+", value):
        return value
    return b64decode(value, what)


def xml(method: str, status: str, description: str, result: str = "") -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<response>'
        f"<input>{escape(method)}</input><status>{status}</status><description>{escape(description)}</description>"
        + (f"<result>{result}</result>" if result else "")
        + "</response>"
    )
    return Response(body, media_type="application/xml")


def _el(name: str, value: Any) -> str:
    return f"<{name}>{escape('' if value is None else str(value))}</{name}>"


def _zone(e164: str | None) -> dt.tzinfo:
    zone = numbers.time_zone(e164) if e164 else None
    return ZoneInfo(zone) if zone else dt.timezone.utc


def joda(ms: int, e164: str | None) -> str:
    """yyyy-MM-dd'T'HH:mm:ss.SSSZZ in the subscriber's zone: 2013-09-17T10:13:59.176-04:30."""
    t = dt.datetime.fromtimestamp(ms / 1000, _zone(e164))
    offset = t.strftime("%z")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}" + (offset[:3] + ":" + offset[3:] if offset else "Z")


def zone_name(e164: str | None) -> str:
    return (numbers.time_zone(e164) if e164 else None) or "UTC"


def message_block(msg: dict[str, Any], account: Account, carrier: str | None = None) -> str:
    status, description = MESSANGI_STATUS[State(msg["state"])]
    return "<message>" + "".join((
        _el("id", msg["id"]), _el("carrier", carrier or msg.get("network") or ""), _el("from", msg["sender"] or ""),
        _el("to", msg["recipient"]), _el("text", msg["body"]), _el("status", status),
        _el("statusDescription", description), _el("encoding", "UTF-8"),
        _el("date", joda(msg["created_at"], msg["recipient"])), _el("timezone", zone_name(msg["recipient"])),
        _el("clientId", account.id),
    )) + "</message>"


# --- the one route: Messangi's paths are parsed here, not by the router, so
# each segment is seen exactly as the client sent it (signatures cover it) ---


async def messangi(request: Request) -> Response:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    rest = path[len(BASE):] if path.startswith(BASE) else ""
    method = ""
    try:
        method, segments = _split(rest)
        if request.method == "POST" and not (method == "fireMessage" and len(segments) == 3):
            raise MessangiError(f"{method} is called with GET")
        if request.method == "GET" and method == "fireMessage" and len(segments) == 3:
            raise MessangiError("fireMessage with a JSON body is called with POST")
        account = await _authenticate(request, method, segments)
        args = [urllib.parse.unquote(s) for s in segments[:-2]]
        return await HANDLERS[method](request, account, method.rsplit("/", 1)[-1], args)
    except MessangiError as exc:
        return xml(method.rsplit("/", 1)[-1] or "unknown", exc.status, exc.description)
    except Exception:  # a Messangi client reads <status>; never a 500
        log.exception("messangi %s failed", method)
        return xml(method.rsplit("/", 1)[-1] or "unknown", "ERROR", "System error; try again")


def _split(rest: str) -> tuple[str, list[str]]:
    parts = rest.split("/")
    for name, counts in METHODS.items():
        words = name.split("/")
        if parts[: len(words)] == words and len(parts) - len(words) in counts:
            return name, parts[len(words):]
    for name in METHODS:
        if rest.startswith(name + "/") or rest == name:
            raise MessangiError(f"Wrong number of parameters for {name}")
    raise MessangiError(f"Unknown method: {rest.split('/')[0] or '(none)'}")


async def _authenticate(request: Request, method: str, segments: list[str]) -> Account:
    public_key, given = urllib.parse.unquote(segments[-2]), urllib.parse.unquote(segments[-1]).lower()
    platform = services(request)
    account = await platform.accounts.by_public_key(public_key) if public_key else None
    if account is None:
        await _refused(request)
        raise MessangiError("Unknown public key")
    key = platform.accounts.private_key(account.key_seed)
    signed = segments[:-2]
    # as sent, or with the client's own percent-encoding undone: either is what it signed
    if not hmac.compare_digest(given, signature(key, signed)):
        unquoted = [urllib.parse.unquote(s) for s in signed]
        if unquoted == signed or not hmac.compare_digest(given, signature(key, unquoted)):
            await _refused(request)
            raise MessangiError("The signature does not match this call", status="BAD_SIGNATURE")
    if not account.active:
        raise MessangiError("This account is disabled")
    if urllib.parse.unquote(segments[0]) != account.instance_id:
        raise MessangiError("The instance id is not this public key's")
    return account


async def _refused(request: Request) -> None:
    """A wrong public key or signature is counted per client address, as a wrong
    API key is in the other dialects (shared count); over the limit it is
    answered after a pause, in Messangi's words (HTTP 200, status ERROR)."""
    try:
        await services(request).accounts.refuse_key(client_address(request))
    except RateLimited as exc:
        retry = exc.details.get("retry_after")
        raise MessangiError(f"Too many failed signatures from this address; try again in {retry} s") from None


# --- sending ---


async def _sender(request: Request, account: Account, sender: str) -> str:
    """``from`` must be one of the account's senders or its own short/long codes."""
    platform = services(request)
    try:
        # only a name approved for this account (not another's, not one pending or rejected)
        found = await platform.senders.usable(account.id, sender) if sender else None
    except SenderRefused as exc:
        raise MessangiError(exc.message) from None
    if found is not None:
        return found.name
    if sender and await platform.senders.owns_number(account.id, sender):
        return sender
    raise MessangiError(f"'{sender}' is not one of this instance's short or long codes")


def _carrier_check(carrier: str | None) -> Any:
    if not carrier:
        return None
    wanted = carrier.strip().lower()

    async def check(number: numbers.PhoneNumber) -> tuple[str, str] | None:
        network = (number.network or "").lower()
        if wanted.isdigit() or network == wanted or network.startswith(wanted + " "):
            return None  # a numeric id is the workspace's own: kept with the message
        return ("carrier_mismatch", f"{carrier} does not serve {number.e164} ({number.network or 'unknown network'}); "
                "send null to detect the carrier")

    return check


async def _send(
    request: Request, account: Account, method: str, *, carrier: str, sender: str, mobile: str, text: str,
    flags: str | None = None,
) -> Response:
    carrier_given = None if carrier.lower() in ("null", "") else carrier
    sender = await _sender(request, account, sender)
    meta: dict[str, Any] = {}
    if carrier_given:
        meta["carrier"] = carrier_given
    if flags is not None:
        meta["flags"] = flags
    try:
        result = await services(request).messaging.send(account, SendRequest(
            recipients=[mobile], text=text, sender=sender, dialect=DIALECT, message_meta=meta or None,
            check=_carrier_check(carrier_given),
        ))
    except InsufficientCredit:
        raise MessangiError("Insufficient credit") from None
    except UjumbeError as exc:
        raise MessangiError(exc.message) from None
    (r,) = result.recipients
    if r.error_code:
        raise MessangiError(r.error or "The mobile number was rejected")
    if method == "sendMT":
        return xml(method, "OK", "Completed")
    msg = await services(request).messaging.message(account.id, r.message_id, with_events=False)  # type: ignore[arg-type]
    return xml(method, "OK", "Completed", f"<messages>{message_block(msg, account, carrier_given)}</messages>")


async def send_sms(request: Request, account: Account, method: str, args: list[str]) -> Response:
    _, carrier, sender, mobile, text = args
    return await _send(
        request, account, method, carrier=carrier, sender=sender,
        mobile=_number_segment(mobile, "mobileNumber", base64_always=True), text=b64decode(text, "text"),
    )


async def send_mt(request: Request, account: Account, method: str, args: list[str]) -> Response:
    sender, carrier, mobile, text = args[1:5]
    flags = args[5] if len(args) == 6 else None
    return await _send(
        request, account, method, carrier=carrier, sender=sender,
        mobile=_number_segment(mobile, "mobileNumber", base64_always=False), text=b64decode(text, "text"),
        flags=flags,
    )


async def send_pin(request: Request, account: Account, method: str, args: list[str]) -> Response:
    _, carrier, sender, mobile, text, length = args
    if not length.isascii() or not length.isdigit():
        raise MessangiError("length must be a whole number")
    del carrier  # a PIN goes by the network detected from the number
    sender = await _sender(request, account, sender)
    try:
        started = await services(request).verifications.start(
            account, to=_number_segment(mobile, "mobileNumber", base64_always=False), length=int(length),
            text=b64decode(text, "text"), sender=sender, dialect=DIALECT, append_code=True,
        )
    except UjumbeError as exc:  # limits (SMS pumping guard), credit, a bad number
        raise MessangiError(exc.message) from None
    if started.verification["status"] == "failed":
        raise MessangiError("The PIN could not be sent to this mobile number")
    # The document returns the PIN: the only place it is ever shown.
    return xml(method, "OK", "Completed", f"<PinSMSConfirmation>{_el('pin', started.code)}</PinSMSConfirmation>")


# --- inbound ---


async def _fire(request: Request, account: Account, *, mobile: str, text: str, shortcode: str | None) -> dict[str, Any]:
    platform = services(request)
    if shortcode is None:
        owned = await platform.senders.numbers(account.id)
        if not owned:
            raise MessangiError("This instance has no short or long code to receive messages on")
        shortcode = owned[0]
    elif not await platform.senders.owns_number(account.id, shortcode):
        raise MessangiError(f"'{shortcode}' is not one of this instance's short or long codes")
    try:
        number = numbers.normalize(mobile, account.region)
    except numbers.InvalidNumber as exc:
        raise MessangiError(f"Invalid mobile number {mobile}: {exc.reason}") from None
    message = Inbound(channel=DIALECT, sender=number.e164, recipient=shortcode, body=text, at=now_ms(),
                      network=number.network)
    await platform.store.run(lambda tx: record_inbound(tx, message))
    return {"instanceId": account.instance_id, "mobileNumber": number.e164, "text": text}


def _mo(fired: dict[str, Any]) -> str:
    return "<mo>" + "".join(_el(k, v) for k, v in fired.items()) + "</mo>"


class FireEvent(msgspec.Struct):
    sender_id_id: str | int | None = None
    keyword_value: str | None = None
    recipient_address: str | int | None = None


class FireBody(msgspec.Struct):
    event: dict[str, Any]


async def fire_message(request: Request, account: Account, method: str, args: list[str]) -> Response:
    if len(args) == 3:  # GET {instanceId}/{mobileNumber}/{text}
        fired = await _fire(request, account, mobile=_number_segment(args[1], "mobileNumber", base64_always=False),
                            text=b64decode(args[2], "text"), shortcode=None)
        # the document names this answer's input activateCampaign
        return xml("activateCampaign", "OK", "Completed", _mo(fired))
    try:
        body = msgspec.json.decode(await request.body(), type=FireBody)
        fields = msgspec.convert(body.event.get("fld-val-list"), FireEvent)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MessangiError(f"The body is not a fireMessage event: {exc}") from None
    if not fields.recipient_address or fields.keyword_value is None:
        raise MessangiError("recipient_address and keyword_value are required")
    fired = await _fire(request, account, mobile=str(fields.recipient_address), text=fields.keyword_value,
                        shortcode=str(fields.sender_id_id) if fields.sender_id_id else None)
    return xml(method, "OK", "Completed", _mo(fired))


def parse_filters(raw: str) -> dict[str, Any]:
    """``null``, or ``key:value`` pairs joined by commas: from, keyword, carrier,
    since and until (ISO dates or times; UTC unless they carry an offset)."""
    if raw.lower() in ("null", ""):
        return {}
    out: dict[str, Any] = {}
    for item in raw.split(","):
        key, sep, value = item.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in _FILTERS or not value:
            raise MessangiError(f"Unknown filter '{item}'; use from:, keyword:, carrier:, since:, until: or null")
        if key in ("since", "until"):
            try:
                t = dt.datetime.fromisoformat(value)
            except ValueError:
                raise MessangiError(f"{key} must be an ISO date or time, e.g. 2026-12-01T10:00:00") from None
            if t.tzinfo is None:
                t = t.replace(tzinfo=dt.timezone.utc)
            out[key] = int(t.timestamp() * 1000)
        else:
            out[key] = value
    return out


async def get_mo_messages(request: Request, account: Account, method: str, args: list[str]) -> Response:
    _, page, per_page, raw_filters = args
    if not (page.isascii() and page.isdigit() and per_page.isascii() and per_page.isdigit()):
        raise MessangiError("page and resultsPerPage must be whole numbers")
    page_no, size = int(page), int(per_page)
    if not 1 <= size <= 500 or page_no < 1 or page_no > 1_000_000:
        raise MessangiError("page starts at 1; resultsPerPage is 1-500")
    filters = parse_filters(raw_filters)
    if "from" in filters:
        try:
            filters["from"] = numbers.normalize(filters["from"], account.region).e164
        except numbers.InvalidNumber as exc:
            raise MessangiError(f"from: {exc.reason}") from None
    total, rows = await services(request).messaging.inbound_search(
        account.id, offset=(page_no - 1) * size, limit=size, **filters
    )
    items = "".join(
        "<MOMessage>" + "".join((
            _el("text", r["body"]), _el("from", r["sender"]), _el("to", r["recipient"]), _el("encoding", "UTF-8"),
            _el("keyword", (r["body"].split() or [""])[0].upper()), _el("carrier", r["network"] or ""),
            _el("sendDate", joda(r["received_at"], r["sender"])),
        )) + "</MOMessage>"
        for r in rows
    )
    return xml(method, "OK", "Completed",
               f"<MOMessageList>{_el('records', total)}<MessageList>{items}</MessageList></MOMessageList>")


async def get_message(request: Request, account: Account, method: str, args: list[str]) -> Response:
    raw = args[1]
    if not re.fullmatch(r"-?[0-9]{1,19}", raw) or not -(2**63) <= int(raw) < 2**63:
        raise MessangiError(f"No message {raw}")
    try:
        msg = await services(request).messaging.message(account.id, int(raw), with_events=False)
    except NotFound:
        raise MessangiError(f"No message {raw}") from None
    return xml(method, "OK", "Completed", f"<messages>{message_block(msg, account)}</messages>")


HANDLERS = {
    "tools/sendSMS": send_sms,
    "sendMT": send_mt,
    "tools/sendSMSPinMobileNumberConfirm": send_pin,
    "fireMessage": fire_message,
    "tools/getMOMessages": get_mo_messages,
    "getMessage": get_message,
}


# --- callbacks in Messangi's words (JSON; the document defines no push format) ---


def dlr_payload(msg: dict[str, Any], event: callbacks.Event) -> dict[str, Any] | None:
    state = State(event.state)
    if state in (State.ACCEPTED, State.QUEUED) or event.at_accept:
        return None
    status, description = MESSANGI_STATUS[state]
    return {
        "id": str(msg["id"]), "from": msg["sender"], "to": msg["recipient"], "carrier": msg.get("network") or "",
        "status": status, "statusDescription": event.reason or description, "date": joda(event.at, msg["recipient"]),
    }


def inbound_payload(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": record["body"], "from": record["sender"], "to": record["recipient"], "encoding": "UTF-8",
        "keyword": (record["body"].split() or [""])[0].upper(), "carrier": record["network"] or "",
        "sendDate": joda(record["received_at"], record["sender"]),
    }


callbacks.register(DIALECT, callbacks.Format(dlr=dlr_payload, inbound=inbound_payload))


def routes() -> list[Any]:
    return [Route(BASE + "{rest:path}", messangi, methods=["GET", "POST"])]

