"""The Tilil Technologies dialect: ``/sms/v3/...`` as Tilil's clients call it.

A client written against Tilil's Quick SMS API guide works by changing only
the host. Everything is JSON with ``api_key`` in the body; answers always
come with HTTP 200 and Tilil's own ``status_code`` strings (1000-1011), never
a 500. Delivery reports, inbound messages and subscription events are pushed
in Tilil's shapes and count as received only when the client answers ``OK``
(or a JSON ``result_code`` of 1); a ``result_message`` in the answer to an
inbound message or subscription goes back to the subscriber.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ujumbe.core import numbers
from ujumbe.core.errors import InsufficientCredit, NotFound, RateLimited, StoreUnavailable, UjumbeError, Unauthorized
from ujumbe.core.pricing import display
from ujumbe.core.states import TILIL_DELIVERY, State, tilil_delivery_code
from ujumbe.http.common import JSON, MAX_ID, client_address, decode_json, parse_id, read_body, services
from ujumbe.services import callbacks
from ujumbe.services.accounts import Account
from ujumbe.services.messaging import Recipient, SendRequest, SendResult
from ujumbe.services.premium import Service
from ujumbe.services.senders import SenderRefused

log = logging.getLogger("ujumbe.tilil")

DIALECT = "tilil"

DESC = {
    "1000": "Success",
    "1001": "Invalid sender name",
    "1002": "Network not allowed",
    "1003": "Invalid mobile number",
    "1004": "Low bulk credits",
    "1005": "Failed. System error",
    "1006": "Invalid credentials",
    "1007": "Database connection failed",
    "1009": "unsupported data type",
    "1010": "unsupported request type",
    "1011": "Invalid user state",
}

# Tilil's network identifiers; a network not listed gets "0".
NETWORK_IDS = {"safaricom": "1", "airtel": "2", "telkom": "3", "equitel": "4", "faiba": "5"}

# Why Messaging rejected a recipient -> the status code a Tilil client expects.
REJECTION_CODES = {
    "invalid_number": "1003",
    "duplicate_recipient": "1003",
    "network_not_allowed": "1002",
    "not_subscribed": "1011",
    "invalid_link_id": "1011",
}


class TililError(Exception):
    def __init__(self, code: str, detail: str | None = None) -> None:
        super().__init__(detail or DESC[code])
        self.code = code
        self.desc = detail or DESC[code]


# --- wire helpers ---


def _zone(e164: str | None) -> dt.tzinfo:
    """The subscriber's own time zone: Tilil's times are local, and a client
    in Nairobi reads 08:47 as its own morning."""
    zone = numbers.time_zone(e164) if e164 else None
    return ZoneInfo(zone) if zone else dt.timezone.utc


def local_time(ms: int, e164: str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return dt.datetime.fromtimestamp(ms / 1000, _zone(e164)).strftime(fmt)


def ymdhis(ms: int, e164: str | None) -> str:
    return local_time(ms, e164, "%Y%m%d%H%M%S")


def tat(start_ms: int, end_ms: int) -> str:
    seconds = max(0, (end_ms - start_ms) // 1000)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def network_id(network: str | None) -> str:
    return NETWORK_IDS.get((network or "").lower(), "0") if network else ""


def system_code(exc: BaseException) -> str:
    """1007 when the database cannot be reached, else 1005: never a 500."""
    if isinstance(exc, (StoreUnavailable, OSError)):
        return "1007"
    return "1005"


def delivery_code(state: State, *reasons: str | None) -> tuple[int, str]:
    """The finest Tilil delivery code any of the reasons names."""
    for reason in reasons:
        found = tilil_delivery_code(state, reason)
        if found != TILIL_DELIVERY[state]:
            return found
    return TILIL_DELIVERY[state]


async def _body(request: Request) -> dict[str, Any]:
    try:
        raw = await read_body(request)
        data = decode_json(raw, Any) if raw.strip() else None
    except UjumbeError as exc:  # too large, not JSON, nested too deep, NUL characters
        if exc.code in ("invalid_json", "validation_error"):
            data = None
        else:
            raise TililError("1009", f"unsupported data type: {exc.message}") from None
    if not isinstance(data, dict):
        raise TililError("1009", "unsupported data type: send a JSON object")
    return data


def _text(data: dict[str, Any], *names: str) -> str | None:
    """The first of ``names`` present, as text; numbers are accepted (a JSON
    client may send 708400000 or 44 unquoted)."""
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TililError("1009", f"unsupported data type: '{name}' must be a string")
        return str(value).strip()
    return None


async def _account(request: Request, api_key: Any) -> Account:
    if not isinstance(api_key, str) or not api_key.strip():
        raise TililError("1006")
    try:
        return await services(request).accounts.authenticate_api_key(api_key.strip(), client_address(request))
    except Unauthorized as exc:
        raise TililError("1011" if exc.code == "account_disabled" else "1006") from None
    except RateLimited as exc:
        # Tilil has no code of its own for it: too many wrong keys from this address
        raise TililError("1006", f"{DESC['1006']}: {exc.message}") from None


def _service_id(data: dict[str, Any]) -> int:
    """The service_id asked for (0: none); one above any stored id is kept
    as ``NO_SUCH_SERVICE``, which no lookup finds."""
    raw = _text(data, "service_id")
    if raw in (None, ""):
        return 0
    value = parse_id(raw or "")  # ASCII digits only: int() would take "٣"
    if value is None:
        if raw and raw.isascii() and raw.isdigit():
            return NO_SUCH_SERVICE
        raise TililError("1009", f"unsupported data type: service_id '{raw}' is not a number")
    return value


# Any service_id past what the store holds (2^63 and up): like an unknown
# one it names no service, and it is never looked up.
NO_SUCH_SERVICE = MAX_ID + 1


def _respond(rows: list[dict[str, Any]] | dict[str, Any], response_type: str) -> Response:
    if response_type == "plain":
        items = rows if isinstance(rows, list) else [rows]
        return PlainTextResponse("\n".join(";".join(str(v) for v in item.values()) for item in items))
    return JSON(rows)


def _failed_bulk(code: str, desc: str, mobile: str, r: Recipient | None = None) -> dict[str, Any]:
    return {
        "status_code": code, "status_desc": desc, "message_id": "0",
        "mobile_number": r.to if r is not None and code != "1003" else mobile,
        "network_id": network_id(r.network) if r is not None else "", "message_cost": "", "credit_balance": "",
    }


def _failed_premium(code: str, desc: str, r: Recipient | None = None) -> dict[str, Any]:
    return {
        "status_code": code, "status_desc": desc, "message_id": "0",
        "mobile_number": r.to if r is not None and code != "1003" else "0",
        "network_name": (r.network if r is not None else None) or "Not set",
        "message_cost": "0.00", "credit_balance": "",
    }


def _rejection(r: Recipient) -> tuple[str, str]:
    code = REJECTION_CODES.get(r.error_code or "", "1005")
    if r.error_code == "duplicate_recipient":
        return code, f"{DESC[code]} {r.input}: repeated in this request, sent once"
    if code == "1003":
        return code, f"{DESC[code]} {r.input}".strip()
    if code == "1002":
        return code, f"{DESC[code]}: {r.network or 'unknown network'}"
    return code, f"{DESC[code]}: {r.error}" if r.error else DESC[code]


def _mobiles(data: dict[str, Any]) -> list[str]:
    value = data.get("mobile")
    if isinstance(value, list):
        items = value
    else:
        text = _text(data, "mobile") or ""
        items = text.split(",")
    out = [str(m).strip() for m in items if isinstance(m, (str, int)) and not isinstance(m, bool) and str(m).strip()]
    if not out:
        raise TililError("1003", "Invalid mobile number: no mobile was given")
    return out


# --- sendsms ---


async def sendsms(request: Request) -> Response:
    response_type = "json"
    premium = False
    mobiles: list[str] = [""]
    try:
        if request.method != "POST":
            raise TililError("1010", "unsupported request type: POST a JSON object")
        data = await _body(request)
        premium = _service_id(data) != 0
        response_type = (_text(data, "response_type") or "json").lower()
        if response_type not in ("json", "plain"):
            response_type = "json"
            raise TililError("1010", "unsupported request type: response_type is json or plain")
        try:
            mobiles = _mobiles(data)
        except TililError:
            mobiles = [_text(data, "mobile") or ""] if not isinstance(data.get("mobile"), list) else [""]
            raise
        account = await _account(request, data.get("api_key"))
        message = data.get("message")
        if not isinstance(message, str) or not message.strip():
            raise TililError("1009", "unsupported data type: 'message' must be a non-empty string")
        sender = _text(data, "sender_name", "shortcode") or ""
        if premium:
            return _respond(await _send_premium(request, account, data, mobiles, message, sender), response_type)
        return _respond(await _send_bulk(request, account, mobiles, message, sender), response_type)
    except TililError as exc:
        if premium:
            return _respond(_failed_premium(exc.code, exc.desc), response_type)
        return _respond([_failed_bulk(exc.code, exc.desc, m) for m in mobiles], response_type)
    except Exception as exc:
        log.exception("tilil sendsms failed")
        code = system_code(exc)
        failed = _failed_premium(code, DESC[code]) if premium else [_failed_bulk(code, DESC[code], m) for m in mobiles]
        return _respond(failed, response_type)


async def _send(request: Request, account: Account, req: SendRequest) -> SendResult:
    try:
        return await services(request).messaging.send(account, req)
    except InsufficientCredit:
        raise TililError("1004") from None
    except SenderRefused as exc:
        raise TililError("1001", f"{DESC['1001']} {req.sender}: {exc.message}") from None
    except UjumbeError as exc:
        if exc.kind == "invalid":
            raise TililError("1009", f"unsupported data type: {exc.message}") from None
        log.warning("tilil send refused: %s", exc.message)
        raise TililError("1005") from None


async def _send_bulk(
    request: Request, account: Account, mobiles: list[str], message: str, sender_name: str,
) -> list[dict[str, Any]]:
    try:
        # only a name the operator approved for this account (pending, rejected
        # and other accounts' names are 1001 with the reason)
        sender = await services(request).senders.usable(account.id, sender_name) if sender_name else None
    except SenderRefused as exc:
        raise TililError("1001", f"{DESC['1001']} {sender_name}: {exc.message}") from None
    if sender is None:
        raise TililError("1001", f"{DESC['1001']} {sender_name}".strip())
    result = await _send(
        request, account,
        SendRequest(recipients=mobiles, text=message, sender=sender.name, dialect=DIALECT, check=sender.check),
    )
    balance = display(result.balance) if result.balance is not None else ""
    out = []
    for r in result.recipients:
        if r.state == State.REJECTED.value:
            code, desc = _rejection(r)
            out.append(_failed_bulk(code, desc, r.input, r))
            continue
        out.append({
            "status_code": "1000", "status_desc": DESC["1000"], "message_id": r.message_id,
            "mobile_number": r.to, "network_id": network_id(r.network), "message_cost": display(r.cost),
            "credit_balance": balance,
        })
    return out


async def _send_premium(
    request: Request, account: Account, data: dict[str, Any], mobiles: list[str], message: str, sender: str,
) -> dict[str, Any]:
    premium = services(request).premium
    sid = _service_id(data)
    try:
        if sid == NO_SUCH_SERVICE:
            raise NotFound("no such service")
        service: Service = await premium.get(account.id, sid)
    except NotFound:
        raise TililError("1010", f"unsupported request type: no service_id {sid} on this account") from None
    if sender and sender != service.shortcode:
        raise TililError("1001", f"{DESC['1001']} {sender}")
    if len(mobiles) != 1:
        raise TililError("1003", f"{DESC['1003']}: a premium message goes to one mobile")
    link_id = _text(data, "link_id") or None
    result = await _send(
        request, account,
        SendRequest(
            recipients=mobiles, text=message, sender=service.shortcode, dialect=DIALECT,
            message_meta={"service_id": service.id, "link_id": link_id} if link_id else {"service_id": service.id},
            check=premium.check_for(service, link_id),
        ),
    )
    (r,) = result.recipients
    if r.state == State.REJECTED.value:
        code, desc = _rejection(r)
        return _failed_premium(code, desc, r)
    return {
        "status_code": "1000", "status_desc": DESC["1000"], "message_id": str(r.message_id),
        "mobile_number": r.to, "network_name": r.network or "Not set", "message_cost": str(display(r.cost)),
        "credit_balance": str(display(result.balance)) if result.balance is not None else "",
    }


# --- getdlr ---


async def getdlr(request: Request) -> Response:
    try:
        account = await _account(request, request.query_params.get("api_key"))
        raw = (request.query_params.get("messageId") or request.query_params.get("message_id") or "").strip()
        message_id = parse_id(raw)  # ASCII digits up to 2^63-1: "²" and "٣" pass str.isdigit
        if message_id is None:
            raise TililError("1009", "No dlr")
        try:
            msg = await services(request).messaging.message(account.id, message_id, with_events=False)
        except NotFound:
            raise TililError("1009", "No dlr") from None
        state = State(msg["state"])
        if not state.final or msg["done_at"] is None:
            raise TililError("1009", "No dlr")
        code, desc = delivery_code(state, msg["error_reason"], msg["error_code"])
        line = ";".join((
            str(msg["id"]), "Success", str(code), desc, local_time(msg["done_at"], msg["recipient"]),
            tat(msg["created_at"], msg["done_at"]),
        ))
        return PlainTextResponse(line)
    except TililError as exc:
        return PlainTextResponse(f"{exc.code};{exc.desc}")
    except Exception as exc:
        log.exception("tilil getdlr failed")
        code = system_code(exc)
        return PlainTextResponse(f"{code};{DESC[code]}")


# --- subscribermanage ---


async def subscribermanage(request: Request) -> Response:
    mobile = ""
    try:
        if request.method != "POST":
            raise TililError("1010", "Failed – unsupported request type")
        data = await _body(request)
        mobile = _text(data, "mobile") or ""
        account = await _account(request, data.get("api_key"))
        option = (_text(data, "option") or "").lower()
        if option not in ("activation", "deactivation"):
            raise TililError("1010", "Failed – option must be activation or deactivation")
        premium = services(request).premium
        sid = _service_id(data)
        try:
            if sid == NO_SUCH_SERVICE:
                raise NotFound("no such service", code="service_not_found")
            if option == "activation":
                _, number = await premium.subscribe(account.id, sid, mobile, region=account.region)
            else:
                _, number = await premium.unsubscribe(account.id, sid, mobile, region=account.region)
        except UjumbeError as exc:
            reason = {
                "user_exists": "Failed – user exists",
                "user_not_subscribed": "Failed – user does not exist",
                "service_not_found": f"Failed – no service_id {sid} on this account",
                "invalid_number": "Failed – invalid mobile number",
            }.get(exc.code, f"Failed – {exc.message}")
            code = "1003" if exc.code == "invalid_number" else "0"
            shown = mobile
            if exc.code != "invalid_number":
                found = _normal(mobile, account.region)
                shown = found.e164 if found else mobile
            return JSON({"status_code": code, "status_desc": reason, "mobile": shown,
                         "network_name": _network_of(shown)})
        return JSON({"status_code": "1", "status_desc": "Success", "mobile": number.e164,
                     "network_name": number.network or "Not set"})
    except TililError as exc:
        desc = exc.desc if exc.desc.startswith("Failed") else f"Failed – {exc.desc}"
        return JSON({"status_code": exc.code, "status_desc": desc, "mobile": mobile, "network_name": ""})
    except Exception:
        log.exception("tilil subscribermanage failed")
        return JSON({"status_code": "1005", "status_desc": "Failed – system error", "mobile": mobile, "network_name": ""})


def _normal(mobile: str, region: str) -> numbers.PhoneNumber | None:
    try:
        return numbers.normalize(mobile, region)
    except numbers.InvalidNumber:
        return None


def _network_of(e164: str) -> str:
    return (numbers.carrier_name(e164) if e164.isdigit() else None) or "Not set"


# --- pushes: delivery reports, inbound messages, subscriptions ---


def dlr_payload(msg: dict[str, Any], event: callbacks.Event) -> dict[str, Any] | None:
    state = State(event.state)
    # Only final outcomes: Tilil clients treat each push as *the* report.
    if not state.final:
        return None
    if event.at_accept:
        return None  # refused at sendsms: the API answer already said so
    code, desc = delivery_code(state, event.reason, event.error_code)
    when = local_time(event.at, msg["recipient"])
    took = tat(msg["created_at"], event.at)
    return {
        "messageId": msg["id"],
        # The guide's PHP sample reads dldr*; Tilil's newer docs say dlr*. Both, so either client works.
        "dlrTime": when, "dlrStatus": code, "dlrDesc": desc,
        "dldrTime": when, "dldrStatus": code, "dldrDesc": desc,
        "tat": took,
        "network": msg["network"] or "",
        "mobile": msg["recipient"],
    }


def inbound_payload(record: dict[str, Any]) -> dict[str, Any]:
    sender = record["sender"]
    sid = record.get("service_id")
    return {
        "api_token": "",  # the service's token, added when sent (with_api_token)
        "message": record["body"],
        "shortcode": record["recipient"],
        "mobile": sender,
        "inbox_id": str(record["id"]),
        "service_id": str(sid) if sid is not None else "",
        "network_name": record.get("network") or numbers.carrier_name(sender) or "",
        "timestamp": ymdhis(record["received_at"], sender),
        "link_id": record.get("link_id") or "",
    }


def subscription_payload(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "api_token": "",  # the service's token, added when sent (with_api_token)
        "network_name": event.get("network") or "",
        "shortcode": event["shortcode"],
        "service_id": str(event["service_id"]),
        "mobile": event["mobile"],
        "update_type": event["update_type"],
        "keyword": event.get("keyword") or "",
        "subscriber_ref": str(event["subscriber_ref"]),
        "timestamp": ymdhis(event["at"], event["mobile"]),
    }


async def with_api_token(platform: Any, row: dict[str, Any]) -> str:
    """The push as sent: with the service's api_token, which the database
    keeps only encrypted (in the service, never in the queued callback)."""
    payload = row["payload"]
    if row["kind"] not in ("inbound", "subscription") or platform is None:
        return payload
    pushed = _json_answer(payload)
    sid = str(pushed.get("service_id") or "") if pushed else ""
    if pushed is None or "api_token" not in pushed or not sid.isdigit():
        return payload
    pushed["api_token"] = await platform.premium.token(row["account_id"], int(sid)) or ""
    return callbacks.encode(pushed)


def acknowledged(status: int, body: str) -> bool:
    """``OK...`` (the DLR sample echoes ``OK;id;desc;network``) or a JSON
    ``result_code`` of 1 (the inbound and subscription answers)."""
    if not 200 <= status < 300:
        return False
    text = body.strip()
    if text.upper().startswith("OK"):
        return True
    answer = _json_answer(text)
    return answer is not None and str(answer.get("result_code", "")).strip() == "1"


def _json_answer(text: str) -> dict[str, Any] | None:
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


async def after_ack(platform: Any, row: dict[str, Any], status: int, body: str) -> None:
    """Send the client's ``result_message`` back to the subscriber, from the
    short code, carrying the link id of the message it answers."""
    if row["kind"] not in ("inbound", "subscription"):
        return
    answer = _json_answer(body.strip())
    reply = answer.get("result_message") if answer else None
    if not isinstance(reply, str) or not reply.strip():
        return
    pushed = json.loads(row["payload"])
    meta: dict[str, Any] = {}
    if pushed.get("service_id"):
        meta["service_id"] = int(pushed["service_id"])
    if pushed.get("link_id"):
        meta["link_id"] = pushed["link_id"]
    account = await platform.accounts.get(row["account_id"])
    try:
        await platform.messaging.send(
            account,
            SendRequest(
                recipients=[pushed["mobile"]], text=reply, sender=pushed["shortcode"], dialect=DIALECT,
                # one reply per pushed callback, even if this hook runs twice
                reference=f"tilil-reply-{row['id']}", message_meta=meta or None,
            ),
        )
    except UjumbeError as exc:
        log.warning("reply to %s callback %s not sent: %s", row["kind"], row["id"], exc.message)


callbacks.register(
    DIALECT,
    callbacks.Format(
        dlr=dlr_payload, inbound=inbound_payload, subscription=subscription_payload, acknowledged=acknowledged,
        retry_delays={"subscription": (180, 180, 180)}, after_ack=after_ack, prepare=with_api_token,
    ),
)


def routes() -> list[Any]:
    return [
        Route("/sms/v3/sendsms", sendsms, methods=["POST", "GET"]),
        Route("/sms/v3/getdlr", getdlr, methods=["GET", "POST"]),
        Route("/sms/v3/subscribermanage", subscribermanage, methods=["POST", "GET"]),
    ]
