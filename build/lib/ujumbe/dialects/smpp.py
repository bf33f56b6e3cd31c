"""The SMPP dialect: customers bind to Ujumbe's SMPP server (SMPP 3.4).

Wire format in, service call, wire format out, as for every dialect:

* ``submit_sm`` / ``data_sm`` -> ``Messaging.send`` (dialect ``smpp``); the
  ``submit_sm_resp`` carries Ujumbe's message id in decimal.
* a final state -> a ``deliver_sm`` receipt (esm_class 0x04), and an inbound
  message to one of the account's ``smpp`` numbers -> a ``deliver_sm``
  (esm_class 0). Both go through the callbacks table (url ``smpp:<account>``)
  so they are durable and retried like HTTP callbacks; ``SmppGateway.deliver``
  is the transport the callback worker hands those rows to. A row counts as
  delivered only when the customer answered ``deliver_sm_resp`` OK.
* ``PUT /v1/smpp/credentials`` lets an account set its own system_id and
  password; the bind limit and throughput are set by the operator
  (``ujumbe smpp credentials``).

``schedule_delivery_time`` and ``validity_period`` (absolute or relative)
become the message's send time and validity; ``query_sm`` answers a message's
state. ``cancel_sm`` and ``replace_sm`` are refused (there is no cancelled
state in the life cycle yet).

Each submitted PDU becomes one message. A customer sending a long text should
put it in ``message_payload`` (we split and concatenate it for the operator);
UDH or SAR segments are sent as separate messages (see docs/smpp-server.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ujumbe.channels.smpp.pdu import (
    DELIVER_SM,
    ESM_UDHI,
    ESME_RINVDSTADR,
    ESME_RINVEXPIRY,
    ESME_RINVMSGID,
    ESME_RINVMSGLEN,
    ESME_RINVSCHED,
    ESME_RINVSRCADR,
    ESME_ROK,
    ESME_RSUBMITFAIL,
    ESME_RSYSERR,
    ESME_RQUERYFAIL,
    ESME_RTHROTTLED,
    QUERY_SM,
    TAG_MESSAGE_PAYLOAD,
    Pdu,
    SmppError,
)
from ujumbe.channels.smpp.client import address_ton_npi
from ujumbe.channels.smpp.receipts import receipt_pdu
from ujumbe.channels.smpp.server import SmppServer
from ujumbe.channels.smpp.session import RequestTimeout, SessionClosed, SmppSession
from ujumbe.channels.smpp.times import absolute_time, parse_time
from ujumbe.core import encoding, numbers
from ujumbe.core.errors import (
    ChannelUnavailable,
    InsufficientCredit,
    NotFound,
    RateLimited,
    UjumbeError,
)
from ujumbe.core.states import STATE_TO_SMPP_STAT, State
from ujumbe.dialects.native import account_of, iso, route
from ujumbe.http.common import JSON, read_json, services
from ujumbe.services import callbacks
from ujumbe.services.accounts import Account
from ujumbe.services import smpp_credentials
from ujumbe.services.messaging import SendRequest
from ujumbe.store import now_ms

log = logging.getLogger("ujumbe.smpp.customers")

DIALECT = "smpp"
URL_PREFIX = "smpp:"

# data_coding -> how core.encoding reads it. 0 is "SMSC default alphabet",
# which for us (as for the operators we relay to) is GSM 03.38, unpacked.
_DATA_CODING = {0x00: encoding.GSM7, 0x01: "ascii", 0x03: "latin1", 0x08: encoding.UCS2}


def smpp_url(account_id: str) -> str:
    return URL_PREFIX + account_id


# --- HTTP: the one endpoint of this dialect --------------------------------------------

class CredentialsBody(msgspec.Struct, forbid_unknown_fields=True):
    system_id: str
    password: str


class CredentialsOut(msgspec.Struct):
    system_id: str
    max_binds: int
    tps: float | None
    created_at: str
    updated_at: str


def _credentials_out(c: dict[str, Any]) -> CredentialsOut:
    return CredentialsOut(c["system_id"], c["max_binds"], c["tps"], iso(c["created_at"]) or "", iso(c["updated_at"]) or "")


# The credentials endpoints belong to the native API (and its OpenAPI document);
# the SMPP dialect itself speaks PDUs, not HTTP.
@route("PUT", "/v1/smpp/credentials", summary="Set the system_id and password this account binds with over SMPP",
        tag="smpp", body=CredentialsBody, response=CredentialsOut)
async def put_credentials(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, CredentialsBody)
    creds = await smpp_credentials.set_credentials(services(request).store, account.id, body.system_id, body.password)
    return JSON(_credentials_out(creds))


@route("GET", "/v1/smpp/credentials", summary="This account's SMPP system_id and limits (never the password)",
        tag="smpp", response=CredentialsOut)
async def read_credentials(request: Request) -> Response:
    account = await account_of(request)
    return JSON(_credentials_out(await smpp_credentials.get_credentials(services(request).store, account.id)))


def routes() -> list[Any]:
    return []  # its two HTTP endpoints are mounted with the native API


# --- PDUs -> SendRequest ---------------------------------------------------------------


def submitted_text(pdu: Pdu) -> tuple[str, bool]:
    """The text of a submit_sm/data_sm and whether the customer asked for UCS-2."""
    raw = pdu.fields.get("short_message") or b""
    payload = pdu.tlvs.get(TAG_MESSAGE_PAYLOAD)
    if payload:
        if raw:
            # SMPP 3.4, 5.3.2.32: one or the other, never both.
            raise SmppError(ESME_RINVMSGLEN, "short_message and message_payload both given")
        raw = payload if isinstance(payload, bytes) else str(payload).encode("latin-1", "replace")
    if pdu.fields.get("esm_class", 0) & ESM_UDHI:
        if not raw or raw[0] + 1 > len(raw):
            raise SmppError(ESME_RINVMSGLEN, "the UDH is longer than the message")
        raw = raw[raw[0] + 1 :]
    dc = pdu.fields.get("data_coding", 0)
    if 0xF0 <= dc <= 0xFF:
        # Message-class coding group: bit 2 clear means the GSM default alphabet.
        enc = encoding.GSM7 if not dc & 0x04 else None
    else:
        enc = _DATA_CODING.get(dc)
    if enc is None:
        raise SmppError(ESME_RSUBMITFAIL, f"data_coding 0x{dc:02X} is not supported (use 0, 1, 3 or 8)")
    return encoding.decode_part(bytes(raw), enc), enc == encoding.UCS2


def _error_status(exc: UjumbeError) -> int:
    if isinstance(exc, InsufficientCredit):
        # Not THROTTLED: a client retries that at once, forever. SUBMITFAIL
        # tells it this message was refused; topping up is a human's job.
        return ESME_RSUBMITFAIL
    if isinstance(exc, RateLimited):
        return ESME_RTHROTTLED
    if isinstance(exc, ChannelUnavailable):
        return ESME_RSUBMITFAIL
    if exc.code in ("message_too_long", "missing_text"):
        return ESME_RINVMSGLEN
    return ESME_RSUBMITFAIL


def _schedule(pdu: Pdu) -> tuple[int | None, int | None]:
    """(send_at ms, validity s) from the submit's SMPP times; None where not given."""
    now = now_ms()
    try:
        send_at = parse_time(str(pdu.fields.get("schedule_delivery_time") or ""), now)
    except ValueError:
        raise SmppError(ESME_RINVSCHED) from None
    try:
        expires = parse_time(str(pdu.fields.get("validity_period") or ""), now)
    except ValueError:
        raise SmppError(ESME_RINVEXPIRY) from None
    if expires is None:
        return send_at, None
    start = max(send_at or now, now)
    if expires <= start:
        raise SmppError(ESME_RINVEXPIRY, "the validity period ends before the message would be sent")
    return send_at, -(-(expires - start) // 1000)


def _ton_npi(addr: str) -> tuple[int, int]:
    try:
        return address_ton_npi(addr)
    except ValueError:
        return 0, 1  # too long for E.164: say "unknown" and let the customer read it


# --- states -> deliver_sm (the callbacks Format) --------------------------------------


def _meta(msg: dict[str, Any]) -> dict[str, Any]:
    raw = msg.get("meta")
    if isinstance(raw, str) and raw:
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return raw if isinstance(raw, dict) else {}


def _err(error_code: str | None) -> str:
    code = (error_code or "").strip()
    return code[-3:].zfill(3) if code.isdigit() else "000"


def dlr_payload(msg: dict[str, Any], event: callbacks.Event) -> dict[str, Any] | None:
    # Only messages that asked for a receipt carry an smpp: URL; without this
    # check the account's HTTP dlr_url would get SMPP receipts.
    if not (msg.get("callback_url") or "").startswith(URL_PREFIX):
        return None
    state = State(event.state)
    if not state.final:
        return None
    if event.at_accept:
        return None  # rejected at accept: the submit_sm_resp already said so
    meta = _meta(msg)
    if meta.get("registered_delivery") == 2 and state == State.DELIVERED:
        return None  # 2 = receipts for failures only
    return {
        "type": "receipt",
        "message_id": str(msg["id"]),
        "state": state.value,
        "source_addr": msg["recipient"],  # swapped, as in the submit: the handset reports to the sender
        "destination_addr": msg.get("sender") or "",
        "dest_ton": meta.get("source_ton"),
        "dest_npi": meta.get("source_npi"),
        "submit_at": msg["created_at"],
        "done_at": event.at,
        "err": _err(event.error_code if state != State.DELIVERED else None),
        "text": (msg.get("body") or "")[:20],
    }


def inbound_payload(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "mo",
        "id": record["id"],
        "source_addr": record["sender"],
        "destination_addr": record["recipient"],
        "text": record["body"],
    }


def deliver_pdu(payload: dict[str, Any]) -> Pdu:
    """The deliver_sm a queued receipt or inbound payload becomes."""
    if payload.get("type") == "receipt":
        dest_ton, dest_npi = _ton_npi(payload["destination_addr"])
        src_ton, src_npi = _ton_npi(payload["source_addr"])
        return receipt_pdu(
            payload["message_id"], State(payload["state"]),
            source_addr=payload["source_addr"], destination_addr=payload["destination_addr"],
            submit_at_ms=payload["submit_at"], done_at_ms=payload["done_at"], err=payload["err"],
            text=payload.get("text", ""), source_ton=src_ton, source_npi=src_npi,
            dest_ton=payload["dest_ton"] if payload.get("dest_ton") is not None else dest_ton,
            dest_npi=payload["dest_npi"] if payload.get("dest_npi") is not None else dest_npi,
        )
    text = payload.get("text") or ""
    if encoding.detect_encoding(text) == encoding.GSM7:
        body, dc = encoding.encode_part(text, encoding.GSM7), 0x00
    else:
        body, dc = encoding.encode_part(text, encoding.UCS2), 0x08
    src_ton, src_npi = _ton_npi(payload["source_addr"])
    dest_ton, dest_npi = _ton_npi(payload["destination_addr"])
    fields: dict[str, Any] = {
        "source_addr_ton": src_ton, "source_addr_npi": src_npi, "source_addr": payload["source_addr"],
        "dest_addr_ton": dest_ton, "dest_addr_npi": dest_npi, "destination_addr": payload["destination_addr"],
        "esm_class": 0, "data_coding": dc, "short_message": b"",
    }
    tlvs: dict[int, Any] = {}
    if len(body) > 254:
        tlvs[TAG_MESSAGE_PAYLOAD] = body
    else:
        fields["short_message"] = body
    return Pdu(DELIVER_SM, 0, 0, fields, tlvs)


callbacks.register(
    DIALECT,
    callbacks.Format(
        dlr=dlr_payload,
        inbound=inbound_payload,
        # A customer without a receiver bind is woken on its next bind
        # (SmppGateway._wake), so the schedule only covers binds that refuse.
        retry_delays={
            "dlr": tuple(min(5 * 2**i, 600) for i in range(160)),  # about a day
            "inbound": tuple(min(5 * 2**i, 600) for i in range(160)),
        },
    ),
)


# --- the gateway: SmppServer <-> services -----------------------------------------------


@dataclass
class Customer:
    """What a bind is authenticated as; SmppServer reads id, max_binds and tps."""

    id: str
    system_id: str
    max_binds: int
    tps: float | None
    account: Account
    loaded_at: float


class SmppGateway:
    """Runs the SmppServer for customers and is the ``smpp:`` callback transport."""

    def __init__(
        self, platform: Any, host: str = "127.0.0.1", port: int = 2775, *,
        max_in_flight: int = 5000, deliver_timeout_s: float = 10.0, account_ttl_s: float = 5.0,
    ) -> None:
        self.platform = platform
        self.max_in_flight = max_in_flight
        self.deliver_timeout_s = deliver_timeout_s
        self.account_ttl_s = account_ttl_s
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.server = SmppServer(
            host, port, authenticate=self.authenticate, on_submit=self.on_submit, on_request=self.on_request,
        )

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()
        for task in list(self._tasks):
            task.cancel()

    # --- binds ---

    async def authenticate(self, system_id: str, password: str, system_type: str, mode: str, peer: Any) -> Customer | None:
        # Per system_id, not per address: an ESME reconnecting in a loop with a
        # stale password must not lock out the other system_ids on its host.
        keys = (f"smpp:{system_id.lower()}",)
        limiter = self.platform.accounts.limiter
        try:
            limiter.check(*keys)
        except RateLimited:
            return None
        row = await smpp_credentials.verify(self.platform.store, system_id, password)
        if row is None:
            limiter.failed(*keys)
            return None
        limiter.succeeded(*keys)
        account = await self.platform.accounts.get(row["account_id"])
        customer = Customer(account.id, system_id, row["max_binds"], row["tps"], account, time.monotonic())
        if mode in ("receiver", "transceiver"):
            # Runs after this bind is registered (the server sets it up without
            # awaiting once we return), so what is woken finds the new bind.
            self._spawn(self._wake(account.id))
        return customer

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wake(self, account_id: str) -> None:
        """Receipts and MOs that waited for this customer are due now, not at their next retry."""

        try:
            await self.platform.callback_log.due_now(smpp_url(account_id))
        except Exception:
            log.exception("waking queued deliveries for %s failed; they go at their next retry", account_id)

    async def _fresh(self, customer: Customer) -> Account:
        # Re-read now and then: a region change or a disabled account must show
        # on binds that stay up for weeks.
        if time.monotonic() - customer.loaded_at > self.account_ttl_s:
            customer.account = await self.platform.accounts.get(customer.id)
            customer.loaded_at = time.monotonic()
        return customer.account

    # --- submits ---

    async def on_submit(self, session: SmppSession, customer: Customer, pdu: Pdu) -> str:
        if self._in_flight >= self.max_in_flight:
            raise SmppError(ESME_RTHROTTLED, "too many submits waiting for the store")
        self._in_flight += 1
        try:
            return await self._submit(customer, pdu)
        finally:
            self._in_flight -= 1

    async def _submit(self, customer: Customer, pdu: Pdu) -> str:
        account = await self._fresh(customer)
        if not account.active:
            raise SmppError(ESME_RSUBMITFAIL, "account disabled")
        text, unicode = submitted_text(pdu)
        destination = str(pdu.fields.get("destination_addr") or "")
        try:
            number = numbers.normalize(destination, account.region)
        except numbers.InvalidNumber:
            raise SmppError(ESME_RINVDSTADR) from None
        send_at, validity_s = _schedule(pdu)
        source = str(pdu.fields.get("source_addr") or "")
        registered = int(pdu.fields.get("registered_delivery", 0)) & 0x03
        wants_receipt = registered in (1, 2)
        meta: dict[str, Any] = {
            "registered_delivery": registered,
            "source_ton": int(pdu.fields.get("source_addr_ton", 0)),
            "source_npi": int(pdu.fields.get("source_addr_npi", 0)),
            "system_id": customer.system_id,
        }
        request = SendRequest(
            recipients=[number.e164], text=text, sender=source or None, dialect=DIALECT,
            callback_url=smpp_url(account.id) if wants_receipt else None, unicode=unicode, message_meta=meta,
            send_at=send_at, validity_s=validity_s,
        )
        try:
            result = await self.platform.messaging.send(account, request)
        except UjumbeError as exc:
            log.info("submit from %s refused: %s", customer.system_id, exc.message)
            raise SmppError(_error_status(exc), exc.message) from None
        except Exception:
            log.exception("submit from %s failed", customer.system_id)
            raise SmppError(ESME_RSYSERR) from None
        recipient = result.recipients[0]
        if recipient.message_id is None or recipient.state == State.REJECTED.value:
            # a per-recipient policy refused it (kept as a rejected message, like in /v1)
            status = ESME_RINVSRCADR if "sender" in (recipient.error_code or "") else ESME_RINVDSTADR
            raise SmppError(status, recipient.error or "")
        return str(recipient.message_id)

    # --- other requests ---

    async def on_request(self, session: SmppSession, customer: Customer, pdu: Pdu) -> Pdu | None:
        if pdu.command_id == QUERY_SM:
            return await self._query(customer, pdu)
        return None  # the server refuses the rest with their own statuses

    async def _query(self, customer: Customer, pdu: Pdu) -> Pdu:
        message_id = str(pdu.fields.get("message_id") or "").strip()
        if not message_id.isdigit():
            return pdu.response(ESME_RINVMSGID)
        try:
            msg = await self.platform.messaging.message(customer.id, int(message_id), with_events=False)
        except NotFound:
            return pdu.response(ESME_RQUERYFAIL)  # another account's ids look the same as unknown ones
        source = str(pdu.fields.get("source_addr") or "")
        if source and msg.get("sender") and source != msg["sender"]:
            return pdu.response(ESME_RQUERYFAIL)  # section 4.8.1: it must match the original's
        state = State(msg["state"])
        code = (msg.get("error_code") or "").strip()
        return pdu.response(
            message_id=message_id,
            final_date=absolute_time(msg["done_at"]) if state.final and msg.get("done_at") else "",
            message_state=STATE_TO_SMPP_STAT[state][1],
            error_code=int(code) if code.isdigit() and int(code) < 256 else 0,
        )

    # --- the smpp: callback transport ---

    async def deliver(self, row: dict[str, Any]) -> bool:
        """Send one queued receipt/MO to the account's receiver binds on this
        server; True only when the customer acknowledged it."""
        account_id = row["url"][len(URL_PREFIX):]
        if account_id != row["account_id"]:
            log.warning("callback %s: %s is not its account's SMPP target", row["id"], row["url"])
            return False
        receivers = [
            s for s in self.server.bound_sessions(account_id) if s.bound in ("receiver", "transceiver") and s.is_open
        ]
        if not receivers:
            return False
        pdu = deliver_pdu(json.loads(row["payload"]))
        session = min(receivers, key=lambda s: s.outstanding)  # a slow bind must not hold up the others
        try:
            resp = await session.request(pdu, timeout=self.deliver_timeout_s)
        except (SessionClosed, RequestTimeout):
            return False
        if resp.status != ESME_ROK:
            log.info("%s answered deliver_sm with status 0x%X", account_id, resp.status)
        return resp.status == ESME_ROK
