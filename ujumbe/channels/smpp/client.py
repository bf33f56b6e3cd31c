"""The operator connector: Ujumbe as an ESME bound to an SMSC.

``SmppConnector`` keeps ``binds`` connections bound for as long as it runs
(reconnecting with 1 s -> 30 s backoff), submits each ``Outbound`` as one or
more submit_sm PDUs, and turns deliver_sm/data_sm into receipts and inbound
messages on ``ChannelEvents``.

Failure rules the dispatcher relies on:

* ESME_RTHROTTLED / ESME_RMSGQFUL -> ``SendError(transient=True)`` and the bind
  halves its pace for a while (``AdaptivePacer``), recovering gradually.
* The bind dropping (or a request timing out) with the request in flight ->
  ``SendError(transient=True)``: it is retried, never silently lost. A request
  that timed out may have reached the SMSC; a duplicate beats a loss.
* ESME_RX_T_APPN ("temporary application error") and ESME_RINVBNDSTS (our bind
  went bad; we rebind) are transient too, since that is what they mean.
* Any other status -> ``SendError(transient=False, state=REJECTED, code="0x%08X")``.
* For a multi-part message, a failure on part k fails the whole send; the
  retry re-sends every part (the SMSC has no "resume" for concatenation).

Receipts are always handed to ``events.receipt``; ordering against the
submit_sm_resp being stored is the store's job, not ours. A deliver_sm/data_sm
is answered once ``events`` has committed what it carried (ESME_RX_T_APPN if
that failed), never before.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ujumbe.channels.base import Channel, ChannelEvents, Inbound, Outbound, SendError, Submitted
from ujumbe.core.encoding import GSM7, UCS2, decode_part, encode_part, segment, split_units
from ujumbe.core.numbers import classify_sender
from ujumbe.core.states import State

from .pdu import (
    ALERT_NOTIFICATION,
    DATA_SM,
    DELIVER_SM,
    ESM_UDHI,
    ESME_RINVBNDSTS,
    ESME_RMSGQFUL,
    ESME_ROK,
    ESME_RTHROTTLED,
    ESME_RX_T_APPN,
    GENERIC_NACK,
    OUTBIND,
    SUBMIT_SM,
    TAG_MESSAGE_PAYLOAD,
    TAG_SAR_MSG_REF_NUM,
    TAG_SAR_SEGMENT_SEQNUM,
    TAG_SAR_TOTAL_SEGMENTS,
    Pdu,
    PduError,
    SmppError,
    status_name,
)
from .ratelimit import AdaptivePacer
from .receipts import is_receipt, receipt_from_pdu
from .session import BIND_COMMANDS, RequestTimeout, SessionClosed, SmppSession

log = logging.getLogger("ujumbe.smpp.client")

LongMode = Literal["udh", "udh16", "payload", "sar"]
_THROTTLE = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})
_TRANSIENT = frozenset({ESME_RX_T_APPN, ESME_RINVBNDSTS})

# TON/NPI by sender kind. Short codes: TON 0 (unknown) / NPI 1 (ISDN) is what
# Kannel and most operator onboarding sheets use; TON 3 (network specific) is
# "more correct" but some SMSCs reject it with ESME_RINVSRCTON. Overridable.
DEFAULT_TON_NPI: dict[str, tuple[int, int]] = {
    "alphanumeric": (5, 0),
    "shortcode": (0, 1),
    "international": (1, 1),
}


def address_ton_npi(addr: str, table: dict[str, tuple[int, int]] = DEFAULT_TON_NPI) -> tuple[int, int]:
    """TON/NPI for an address by its kind; (0, 0) for an empty one. Raises
    ValueError for a number too long to be E.164."""
    if not addr.strip():
        return 0, 0
    return table[classify_sender(addr)]


# UDH capacity with the 7-octet 16-bit-reference header: 152 septets / 66 UCS-2 units.
_UDH16_GSM7 = 152
_UDH16_UCS2 = 66


def relative_validity(seconds: int) -> str:
    """SMPP relative time ``YYMMDDhhmmss000R`` (years/months left 0; days capped at 99)."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    days = min(days, 99)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"0000{days:02d}{h:02d}{m:02d}{s:02d}000R"


def decode_sm(data: bytes, data_coding: int) -> str:
    """Text of a short message by SMPP data_coding (and GSM 03.38 DCS groups)."""
    dc = data_coding
    if dc == 0:
        return decode_part(data, GSM7)
    if dc == 8:
        return decode_part(data, UCS2)
    if dc == 1:
        return decode_part(data, "ascii")
    if 0x10 <= dc <= 0x7F or dc >= 0xF0:
        # 03.38 coding groups: bits 3-2 pick the alphabet (0xF_ uses bit 2 only).
        alpha = (dc >> 2) & (1 if dc >= 0xF0 else 3)
        if alpha == 0:
            return decode_part(data, GSM7)
        if alpha == 2:
            return decode_part(data, UCS2)
    return decode_part(data, "latin1")  # 3 (Latin-1), 2/4 (octets) and the rest


def parse_udh(data: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    """(concat (ref, total, seq) or None, body) of a short_message with UDHI set."""
    if not data:
        return None, data
    udhl = data[0]
    if 1 + udhl > len(data):
        return None, data
    ies = data[1 : 1 + udhl]
    body = data[1 + udhl :]
    i = 0
    concat = None
    while i + 2 <= len(ies):
        iei, iel = ies[i], ies[i + 1]
        val = ies[i + 2 : i + 2 + iel]
        if iei == 0x00 and iel == 3:
            concat = (val[0], val[1], val[2])
        elif iei == 0x08 and iel == 4:
            concat = ((val[0] << 8) | val[1], val[2], val[3])
        i += 2 + iel
    return concat, body


@dataclass
class _Partial:
    started: float
    data_coding: int
    parts: dict[int, bytes] = field(default_factory=dict)


class _Bind:
    def __init__(self, index: int, tps: float | None) -> None:
        self.index = index
        self.session: SmppSession | None = None
        self.pacer = AdaptivePacer(tps)
        self.task: asyncio.Task[None] | None = None
        self.attempted = asyncio.Event()  # set after the first connect attempt, good or bad
        self.binds = 0  # successful binds so far

    @property
    def up(self) -> bool:
        return self.session is not None and self.session.is_open and self.session.bound is not None


class SmppConnector(Channel):
    kind = "sms"

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        system_type: str = "",
        bind: Literal["transceiver", "transmitter", "receiver"] = "transceiver",
        binds: int = 1,
        window: int = 64,
        tps: float | None = None,
        tls: ssl.SSLContext | None = None,
        enquire_link_s: float = 30.0,
        *,
        name: str = "smpp",
        data_coding: Literal["gsm7", "latin1"] = "gsm7",
        long_messages: LongMode = "udh",
        registered_delivery: bool = True,
        service_type: str = "",
        ton_npi: dict[str, tuple[int, int]] | None = None,
        request_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        rebind_min_s: float = 1.0,
        rebind_max_s: float = 30.0,
        send_wait_s: float = 5.0,
        mo_reassembly_s: float = 300.0,
        utc_offset_s: int = 0,
    ) -> None:
        super().__init__()
        if bind not in BIND_COMMANDS:
            raise ValueError(f"bind must be one of {sorted(BIND_COMMANDS)}")
        if long_messages not in ("udh", "udh16", "payload", "sar"):
            raise ValueError("long_messages must be udh, udh16, payload or sar")
        self.name = name
        self.host = host
        self.port = port
        self.system_id = system_id
        self.password = password
        self.system_type = system_type
        self.bind_mode = bind
        if not isinstance(window, int) or window < 1:
            raise ValueError("window must be 1 or more")
        # The operator's contracted window is a hard limit: exactly this many
        # requests outstanding per bind, never more (and never silently more).
        self.window = window
        self.tps = tps
        self.tls = tls
        self.enquire_link_s = enquire_link_s
        self.data_coding = data_coding
        self.long_messages = long_messages
        self.registered_delivery = registered_delivery
        self.service_type = service_type
        self.ton_npi = {**DEFAULT_TON_NPI, **(ton_npi or {})}
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.rebind_min_s = rebind_min_s
        self.rebind_max_s = rebind_max_s
        self.send_wait_s = send_wait_s
        self.mo_reassembly_s = mo_reassembly_s
        self.utc_offset_s = utc_offset_s
        self.max_in_flight = binds * self.window
        self.binds = [_Bind(i, tps) for i in range(binds)]
        self._up = asyncio.Event()
        self._stopping = False
        self._rr = itertools.count()
        self._ref8 = random.randrange(256)
        self._ref16 = random.randrange(65536)
        self._mo: dict[tuple[str, str, int, int], _Partial] = {}
        # Operator ids of parts answered while the rest of their message is
        # still being submitted: a receipt for one may come before the send
        # returns, and must wait for its record (see Dispatcher.awaiting_record).
        self.answering: dict[str, int] = {}
        self._housekeeper: asyncio.Task[None] | None = None

    # --- life cycle ------------------------------------------------------------------

    async def start(self, events: ChannelEvents) -> None:
        await super().start(events)
        self._stopping = False
        loop = asyncio.get_running_loop()
        for b in self.binds:
            b.task = loop.create_task(self._keep_bound(b), name=f"{self.name}-bind{b.index}")
        self._housekeeper = loop.create_task(self._housekeeping())
        # Give every bind one attempt before returning so early sends find a link;
        # a dead SMSC must not block startup, so failures are only logged.
        await asyncio.wait(
            [loop.create_task(b.attempted.wait()) for b in self.binds],
            timeout=self.connect_timeout + self.request_timeout,
        )

    async def stop(self) -> None:
        self._stopping = True
        for b in self.binds:
            if b.task:
                b.task.cancel()
        if self._housekeeper:
            self._housekeeper.cancel()
        sessions = [b.session for b in self.binds if b.session is not None]
        await asyncio.gather(*(s.unbind(timeout=1.0) for s in sessions), return_exceptions=True)
        for b in self.binds:
            b.session = None
        self._up.clear()

    @property
    def binds_up(self) -> int:
        return sum(1 for b in self.binds if b.up)

    async def wait_up(self, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.binds_up < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {self.binds_up}/{count} binds up")
            await asyncio.sleep(0.02)

    def _refresh_up(self) -> None:
        if any(b.up for b in self.binds):
            self._up.set()
        else:
            self._up.clear()

    async def _keep_bound(self, b: _Bind) -> None:
        delay = self.rebind_min_s
        while not self._stopping:
            try:
                sess = await self._connect(b)
            except asyncio.CancelledError:
                raise
            except (OSError, SmppError, RequestTimeout, SessionClosed, TimeoutError) as exc:
                b.attempted.set()
                log.warning(
                    "%s bind %d to %s:%d failed: %s; retry in %.1f s",
                    self.name, b.index, self.host, self.port, exc, delay,
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # jitter: binds must not stampede
                delay = min(delay * 2, self.rebind_max_s)
                continue
            delay = self.rebind_min_s
            b.session = sess
            b.binds += 1
            self._refresh_up()
            b.attempted.set()
            log.info("%s bind %d up (%s) to %s:%d", self.name, b.index, self.bind_mode, self.host, self.port)
            try:
                await asyncio.shield(sess.closed)
            except asyncio.CancelledError:
                raise
            finally:
                if b.session is sess:
                    b.session = None
                self._refresh_up()
            if not self._stopping:
                log.warning("%s bind %d lost; rebinding", self.name, b.index)
                await asyncio.sleep(self.rebind_min_s * random.uniform(0.5, 1.0))

    async def _connect(self, b: _Bind) -> SmppSession:
        loop = asyncio.get_running_loop()
        _, sess = await asyncio.wait_for(
            loop.create_connection(
                lambda: SmppSession(
                    self._on_request,
                    window=self.window,
                    request_timeout=self.request_timeout,
                    enquire_link_s=self.enquire_link_s,
                    name=f"{self.name}#{b.index}",
                ),
                self.host,
                self.port,
                ssl=self.tls,
            ),
            self.connect_timeout,
        )
        try:
            await sess.bind(self.bind_mode, self.system_id, self.password, self.system_type)
        except BaseException:
            sess.abort()
            raise
        sess.start_keepalive()
        return sess

    # --- sending -----------------------------------------------------------------------

    async def _pick(self) -> _Bind:
        up = [b for b in self.binds if b.up]
        if not up:
            if self._stopping or self.events is None:
                raise SendError(f"{self.name}: not started", transient=True, code="unbound")
            try:
                await asyncio.wait_for(self._up.wait(), self.send_wait_s)
            except TimeoutError:
                raise SendError(f"{self.name}: no SMPP bind up", transient=True, code="unbound") from None
            up = [b for b in self.binds if b.up]
            if not up:
                raise SendError(f"{self.name}: no SMPP bind up", transient=True, code="unbound")
        if len(up) == 1:
            return up[0]
        n = next(self._rr)
        # Least outstanding first; round robin breaks ties so idle binds share.
        return min(up, key=lambda b: (b.session.outstanding if b.session else 0, (b.index - n) % len(up)))

    async def _send(self, msg: Outbound) -> Submitted:
        if self.bind_mode == "receiver":
            raise SendError(f"{self.name}: receiver-only bind cannot send", transient=False, state=State.FAILED)
        pdus = self.build_pdus(msg)
        b = await self._pick()
        ids: list[str] = []
        try:
            return await self._submit_all(b, pdus, ids)
        finally:
            for op_id in ids:  # the send has ended: its caller records what came of it
                n = self.answering.get(op_id, 0) - 1
                if n > 0:
                    self.answering[op_id] = n
                else:
                    self.answering.pop(op_id, None)

    async def _submit_all(self, b: _Bind, pdus: list[Pdu], ids: list[str]) -> Submitted:
        for pdu in pdus:
            await b.pacer.acquire()
            sess = b.session
            if sess is None or not sess.is_open:
                raise SendError(f"{self.name}: bind {b.index} lost before submit", transient=True, code="disconnected")
            try:
                resp = await sess.request(pdu)
            except SessionClosed as exc:
                raise SendError(f"{self.name}: {exc}", transient=True, code="disconnected") from None
            except RequestTimeout as exc:
                raise SendError(f"{self.name}: {exc}", transient=True, code="timeout") from None
            except PduError as exc:
                raise SendError(f"{self.name}: unreadable response: {exc}", transient=True, code="badresp") from None
            status = resp.status
            if status == ESME_ROK and resp.command_id != GENERIC_NACK:
                op_id = resp.get("message_id")
                ids.append(op_id)
                self.answering[op_id] = self.answering.get(op_id, 0) + 1
                b.pacer.accepted()
                continue
            code = f"0x{status:08X}"
            reason = f"SMSC refused: {status_name(status)}"
            if status in _THROTTLE:
                b.pacer.throttled()
                raise SendError(reason, transient=True, code=code)
            if status in _TRANSIENT:
                if status == ESME_RINVBNDSTS:
                    sess.abort()  # the SMSC no longer considers us bound: rebind
                raise SendError(reason, transient=True, code=code)
            raise SendError(reason, transient=False, code=code, state=State.REJECTED)
        return Submitted(operator_ids=ids)

    def _source(self, sender: str) -> tuple[int, int, str]:
        if not sender.strip():
            # SMPP allows a NULL source_addr: the SMSC puts the account's default sender
            return 0, 0, ""
        try:
            kind = classify_sender(sender)
        except ValueError as exc:
            raise SendError(f"bad sender: {exc}", transient=False, state=State.REJECTED) from None
        ton, npi = self.ton_npi[kind]
        addr = sender.strip()
        if kind != "alphanumeric":
            addr = addr.replace(" ", "").replace("-", "").lstrip("+")
        return ton, npi, addr

    def build_pdus(self, msg: Outbound) -> list[Pdu]:
        """The submit_sm PDUs for ``msg``, one per part (one in payload mode)."""
        force = msg.encoding if msg.encoding in (GSM7, UCS2) else None
        try:
            seg = segment(msg.body, force=force)
        except ValueError:
            seg = segment(msg.body)  # labelled gsm7 but is not: UCS-2 rather than mangle it
        ucs2 = seg.encoding == UCS2
        dc = 0
        if ucs2:
            dc = 8
            enc = lambda t: encode_part(t, UCS2)  # noqa: E731
        elif self.data_coding == "latin1" and _fits_latin1(msg.body):
            dc = 3
            enc = lambda t: t.encode("latin-1")  # noqa: E731
        else:
            enc = lambda t: encode_part(t, GSM7)  # noqa: E731
        ton, npi, src = self._source(msg.sender)
        base: dict[str, Any] = {
            "service_type": self.service_type,
            "source_addr_ton": ton,
            "source_addr_npi": npi,
            "source_addr": src,
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": msg.recipient.lstrip("+"),
            "esm_class": 0,
            "registered_delivery": 1 if (self.registered_delivery and msg.want_receipt) else 0,
            "validity_period": relative_validity(msg.validity_s) if msg.validity_s else "",
            "data_coding": dc,
        }
        parts = seg.parts
        if len(parts) == 1:
            return [Pdu(SUBMIT_SM, 0, 0, {**base, "short_message": enc(parts[0])})]
        mode = self.long_messages
        if mode == "payload":
            return [Pdu(SUBMIT_SM, 0, 0, {**base, "short_message": b""}, {TAG_MESSAGE_PAYLOAD: enc(msg.body)})]
        if mode == "udh16":
            parts = tuple(split_units(msg.body, seg.encoding, _UDH16_UCS2 if ucs2 else _UDH16_GSM7))
        total = len(parts)
        if total > 255:
            raise SendError(f"{total} parts; SMS concatenation allows 255", transient=False, state=State.REJECTED)
        out: list[Pdu] = []
        if mode == "udh":
            self._ref8 = ref = (self._ref8 + 1) & 0xFF
            for i, text in enumerate(parts, 1):
                udh = bytes((5, 0x00, 3, ref, total, i))
                out.append(Pdu(SUBMIT_SM, 0, 0, {**base, "esm_class": ESM_UDHI, "short_message": udh + enc(text)}))
        elif mode == "udh16":
            self._ref16 = ref = (self._ref16 + 1) & 0xFFFF
            for i, text in enumerate(parts, 1):
                udh = bytes((6, 0x08, 4, ref >> 8, ref & 0xFF, total, i))
                out.append(Pdu(SUBMIT_SM, 0, 0, {**base, "esm_class": ESM_UDHI, "short_message": udh + enc(text)}))
        else:  # sar
            self._ref16 = ref = (self._ref16 + 1) & 0xFFFF
            for i, text in enumerate(parts, 1):
                tl = {TAG_SAR_MSG_REF_NUM: ref, TAG_SAR_TOTAL_SEGMENTS: total, TAG_SAR_SEGMENT_SEQNUM: i}
                out.append(Pdu(SUBMIT_SM, 0, 0, {**base, "short_message": enc(text)}, tl))
        return out

    # --- receiving ----------------------------------------------------------------------

    async def _on_request(self, sess: SmppSession, pdu: Pdu) -> Pdu | None:
        cid = pdu.command_id
        if cid in (DELIVER_SM, DATA_SM):
            # Answer only once the receipt or message is committed: an SMSC
            # resends what we did not acknowledge, so a crash loses nothing.
            # Receipts are committed in groups, so the SMSC's window stays full.
            try:
                await self._incoming(pdu)
            except Exception:
                log.exception("%s: handling %s failed; not acknowledged", self.name, pdu.name)
                return pdu.response(ESME_RX_T_APPN)  # temporary: the SMSC tries again later
            return pdu.response(ESME_ROK, message_id="")
        if cid in (OUTBIND, ALERT_NOTIFICATION):
            return None  # we bind on our own schedule; alerts carry nothing we use
        return Pdu(GENERIC_NACK, pdu.sequence, 0x03)

    async def _incoming(self, pdu: Pdu) -> None:
        events = self.events
        if events is None:
            raise RuntimeError(f"{self.name}: {pdu.name} before start()")
        if is_receipt(pdu):
            r = receipt_from_pdu(pdu, self.name, utc_offset_s=self.utc_offset_s)
            if r is None:
                log.error("%s: receipt without a message id: %r", self.name, pdu)
                return
            await events.receipt(r)
            return
        mo = self._assemble(pdu)
        if mo is not None:
            await events.inbound(mo)

    def _assemble(self, pdu: Pdu) -> Inbound | None:
        f = pdu.fields
        dc = f.get("data_coding", 0)
        data = f.get("short_message") or b""
        payload = pdu.tlvs.get(TAG_MESSAGE_PAYLOAD)
        if not data and isinstance(payload, bytes):
            data = payload
        concat = None
        if f.get("esm_class", 0) & ESM_UDHI:
            concat, data = parse_udh(data)
        if concat is None and TAG_SAR_MSG_REF_NUM in pdu.tlvs:
            concat = (
                int(pdu.tlvs[TAG_SAR_MSG_REF_NUM]),
                int(pdu.tlvs.get(TAG_SAR_TOTAL_SEGMENTS, 1)),
                int(pdu.tlvs.get(TAG_SAR_SEGMENT_SEQNUM, 1)),
            )
        sender = f.get("source_addr", "")
        recipient = f.get("destination_addr", "")
        if concat is not None and concat[1] > 1:
            ref, total, seq = concat
            key = (sender, recipient, ref, total)
            partial = self._mo.get(key)
            if partial is None:
                partial = self._mo[key] = _Partial(time.monotonic(), dc)
            partial.parts[seq] = data
            if len(partial.parts) < total:
                return None
            del self._mo[key]
            # Join the octets, then decode once: a sender may split a pair we would not.
            data = b"".join(partial.parts[i] for i in sorted(partial.parts))
            dc = partial.data_coding
        return Inbound(
            channel=self.name,
            sender=sender.lstrip("+"),
            recipient=recipient.lstrip("+"),
            body=decode_sm(data, dc),
            at=int(time.time() * 1000),
        )

    async def _housekeeping(self) -> None:
        """Hand on MO messages whose missing parts never came: a partial text beats none."""
        while True:
            await asyncio.sleep(min(10.0, self.mo_reassembly_s / 2))
            now = time.monotonic()
            for key, partial in list(self._mo.items()):
                if now - partial.started < self.mo_reassembly_s:
                    continue
                del self._mo[key]
                sender, recipient, _, total = key
                data = b"".join(partial.parts[i] for i in sorted(partial.parts))
                msg = Inbound(
                    channel=self.name,
                    sender=sender.lstrip("+"),
                    recipient=recipient.lstrip("+"),
                    body=decode_sm(data, partial.data_coding),
                    at=int(time.time() * 1000),
                    meta={"partial": True, "parts_received": len(partial.parts), "parts_total": total},
                )
                if self.events is not None:
                    try:
                        await self.events.inbound(msg)
                    except Exception:
                        log.exception("%s: delivering partial MO failed", self.name)


def _fits_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
