"""A SIP trunk that places calls (a user agent client, RFC 3261) and plays audio over RTP.

One ``SipTrunk`` per carrier trunk: a socket (UDP) or connection (TCP) to
it, a limit on concurrent calls and on call attempts per second, and the
transactions and dialogs of its calls. ``call`` places one call, plays the
audio once it is answered and reports what happened as a ``CallResult``
(core/calls.py). docs/voice.md describes what each SIP answer becomes.

Transactions (RFC 3261 17.1): INVITE client transactions retransmit on
Timer A over UDP (T1, doubling) until a provisional answer, and give up at
Timer B (64 x T1 = 32 s) without one; non-INVITE ones (CANCEL, BYE)
retransmit on Timer E (T1 doubling to T2, then T2) until Timer F (32 s). A
non-2xx final answer is ACKed by the transaction (same branch, hop by hop)
and re-ACKed when it is retransmitted; a 2xx is ACKed by the call, as a new
transaction sent along the route set, and re-ACKed while the 200 repeats.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ujumbe.channels.sip import digest, sdp
from ujumbe.channels.sip.message import NameAddr, SipMessage, SipParseError, Uri, parse, response_to, split_commas
from ujumbe.channels.sip.rtp import RtpStream
from ujumbe.channels.sip.transport import TcpTransport, TransportError, UdpTransport
from ujumbe.channels.smpp.ratelimit import TokenBucket
from ujumbe.core.calls import LOST_GRACE_MS, CallResult, reason_for_status

log = logging.getLogger("ujumbe.channels.sip")

EventHook = Callable[[str, dict[str, Any]], None]
ExchangeHook = Callable[[str, str, str], None]  # direction "out"/"in", first line, whole message (redacted)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
_DIAL = re.compile(r"^\+?[0-9A-Za-z*#._\-]{1,64}$")
_LINGER_S = 32.0  # how long an ended call still answers retransmissions (64 x T1)
MAX_AUTH_TRIES = 3  # credentials sent at most this often per call: a trunk that calls every nonce stale would loop


@dataclass(slots=True)
class TrunkConfig:
    host: str
    port: int = 5060
    transport: str = "udp"  # "udp" | "tcp"
    username: str = ""  # digest credentials, used when the trunk challenges (401/407)
    password: str = field(default="", repr=False)  # never in a repr, a log or a traceback
    from_user: str = "ujumbe"  # the From user when a call names no caller
    from_domain: str | None = None  # the From/To host (default: host)
    local_host: str = "127.0.0.1"  # the address we bind and advertise
    max_calls: int = 30  # concurrent calls; more wait for a free slot
    cps: float = 10.0  # call attempts (INVITEs) per second; 0 = unlimited
    ring_timeout_s: float = 30.0  # CANCEL after this long without an answer
    max_duration_s: float = 600.0  # BYE after this long answered (0 = no limit)
    rtp_inactivity_s: float = 0.0  # BYE when the callee sends no RTP for this long (0 = off)
    codecs: tuple[str, ...] = ("PCMA", "PCMU")  # offered in this order
    rtp_port_range: tuple[int, int] = (20000, 30000)
    # optional
    local_port: int = 0  # UDP: the SIP port to bind (0 = any free port)
    auth_username: str = ""  # the digest user when it differs from username
    rtp_host: str | None = None  # the address in our SDP (default local_host)
    user_agent: str = "Ujumbe"
    t1_s: float = 0.5  # RFC 3261 T1; Timers B and F are 64 x T1
    t2_s: float = 4.0
    dtmf_pt: int = 101  # the telephone-event payload type we offer
    rtp_latch: bool = True  # send RTP to where the callee's RTP comes from (symmetric RTP, NAT)

    def __post_init__(self) -> None:
        self.transport = self.transport.lower()
        if self.transport not in ("udp", "tcp"):
            raise ValueError(f"transport must be udp or tcp, not {self.transport!r}")
        self.codecs = tuple(c.upper() for c in self.codecs)
        unknown = [c for c in self.codecs if c not in sdp.STATIC]
        if unknown or not self.codecs:
            raise ValueError(f"codecs must be PCMA and/or PCMU, not {unknown or 'none'}")
        if self.max_calls < 1:
            raise ValueError("max_calls must be at least 1")


def _token(n: int = 8) -> str:
    return os.urandom(n).hex()


def _now_ms() -> int:
    return int(time.time() * 1000)


def q850_cause(msg: SipMessage) -> int | None:
    """``Reason: Q.850;cause=N`` (RFC 3326), when the message carries one."""
    for value in msg.get_all("reason"):
        for item in split_commas(value):
            proto, _, params = item.partition(";")
            if proto.strip().upper() == "Q.850":
                m = re.search(r"cause\s*=\s*(\d+)", params, re.I)
                if m:
                    return int(m.group(1))
    return None


class _ClientTx:
    """One client transaction; hands every response to ``deliver``."""

    def __init__(self, trunk: SipTrunk, msg: SipMessage, dest: tuple[str, int],
                 deliver: Callable[[_ClientTx, SipMessage | None], None]) -> None:
        self.trunk = trunk
        self.msg = msg
        self.dest = dest
        self.deliver = deliver
        self.invite = msg.method == "INVITE"
        self.branch = msg.top_via.branch
        self.key = (self.branch, msg.method)
        self.data = msg.encode()
        self.final: SipMessage | None = None
        self.ack: bytes | None = None
        self.provisional = False
        self._interval = trunk.cfg.t1_s
        self._retransmit: asyncio.TimerHandle | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self._cleanup: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.trunk._txs[self.key] = self
        try:
            await self.trunk._send(self.msg, self.dest, self.data)
        except TransportError:
            self.close()
            raise
        if not self.trunk.transport.reliable:
            self._retransmit = loop.call_later(self._interval, self._again)
        # Timer B (INVITE, until a provisional) or F (non-INVITE, until a final)
        self._timeout = loop.call_later(64 * self.trunk.cfg.t1_s, self._expired)

    def _again(self) -> None:
        if self.final is not None:
            return
        try:
            self.trunk._send_now(self.msg, self.dest, self.data, retransmit=True)
        except TransportError:
            return
        if self.invite:
            self._interval *= 2  # Timer A doubles until Timer B
        else:
            self._interval = min(self._interval * 2, self.trunk.cfg.t2_s)
        self._retransmit = asyncio.get_running_loop().call_later(self._interval, self._again)

    def _expired(self) -> None:
        self._timeout = None
        if self.final is None:
            self.close()
            self.deliver(self, None)

    def on_response(self, resp: SipMessage) -> None:
        if resp.status < 200:
            if self.final is not None:
                return
            if not self.provisional:
                self.provisional = True
                if self.invite:  # Proceeding: no more retransmissions, Timer B is off
                    self._cancel_timers()
                elif self._retransmit is not None:  # Timer E continues at T2
                    self._interval = self.trunk.cfg.t2_s
            self.deliver(self, resp)
            return
        if self.final is not None:
            if self.invite and resp.status >= 300 and self.ack is not None:
                self.trunk._send_now(None, self.dest, self.ack, retransmit=True)  # re-ACK
            elif self.invite and resp.status < 300:
                self.deliver(self, resp)  # a retransmitted 200: the call re-ACKs
            return
        self.final = resp
        self._cancel_timers()
        if self.invite and resp.status >= 300:
            ack = _ack_for_failure(self.msg, resp)
            self.ack = ack.encode()
            self.trunk._send_now(ack, self.dest, self.ack)
        if not (self.invite and resp.status < 300):
            # Timer D / K: keep absorbing retransmissions for a while (UDP)
            linger = 0 if self.trunk.transport.reliable else _LINGER_S
            self._cleanup = asyncio.get_running_loop().call_later(linger, self.close)
        self.deliver(self, resp)

    def _cancel_timers(self) -> None:
        for h in (self._retransmit, self._timeout):
            if h is not None:
                h.cancel()
        self._retransmit = self._timeout = None

    def close(self) -> None:
        self._cancel_timers()
        if self._cleanup is not None:
            self._cleanup.cancel()
            self._cleanup = None
        if self.trunk._txs.get(self.key) is self:
            del self.trunk._txs[self.key]


def _ack_for_failure(invite: SipMessage, resp: SipMessage) -> SipMessage:
    """RFC 3261 17.1.1.3: the ACK to a non-2xx answer belongs to the INVITE's
    transaction: its Request-URI, top Via (same branch), From, Call-ID and
    Route, the answer's To (with its tag)."""
    headers = [("via", invite.get_all("via")[0]), ("max-forwards", "70"), ("from", invite.get("from")),
               ("to", resp.get("to")), ("call-id", invite.call_id), ("cseq", f"{invite.cseq[0]} ACK")]
    headers += _route(invite.get_all("route"))
    return SipMessage(method="ACK", uri=invite.uri, headers=headers)


def _route(routes: list[str]) -> list[tuple[str, str]]:
    """The route set as one Route header, in order (one line reads the same to every parser)."""
    return [("route", ", ".join(routes))] if routes else []


class SipTrunk:
    def __init__(self, cfg: TrunkConfig, *, on_exchange: ExchangeHook | None = None) -> None:
        self.cfg = cfg
        self.on_exchange = on_exchange  # every message of the trunk, beside each call's own hook
        self.transport: UdpTransport | TcpTransport
        self._txs: dict[tuple[str, str], _ClientTx] = {}
        self._calls: dict[str, _Call] = {}  # Call-ID -> call, while active and a while after
        self._active: set[_Call] = set()
        self._slots = asyncio.Semaphore(cfg.max_calls)
        self._bucket = TokenBucket(cfg.cps) if cfg.cps and cfg.cps > 0 else None
        self._responses: dict[tuple[str, str, str], tuple[bytes, float]] = {}  # server-side retransmissions
        self._background: set[asyncio.Task[Any]] = set()
        self._dns: dict[tuple[str, int], tuple[str, int]] = {}
        self._trunk_addr: tuple[str, int] = (cfg.host, cfg.port)
        self._public: tuple[str, int] | None = None  # what the trunk says our address is (received/rport)
        self._started = False
        self._stopping = False

    @property
    def longest_call_ms(self) -> int | None:
        """From placed to ended, at most (ring timeout, then the longest answered
        call); None without a max_duration_s: a call may then last any time."""
        if self.cfg.max_duration_s <= 0:
            return None
        return int((self.cfg.ring_timeout_s + self.cfg.max_duration_s) * 1000) + LOST_GRACE_MS

    # --- life cycle ---

    async def start(self) -> None:
        self._trunk_addr = await self._resolve(self.cfg.host, self.cfg.port)
        if self.cfg.transport == "tcp":
            self.transport = TcpTransport(self._on_message, *self._trunk_addr)
        else:
            self.transport = UdpTransport(self._on_message)
        await self.transport.open(self.cfg.local_host, self.cfg.local_port)
        self._started = True
        self._stopping = False

    async def stop(self) -> None:
        """End every call (BYE or CANCEL, reason ``shutdown``) and close the socket."""
        self._stopping = True
        calls = list(self._active)
        for call in calls:
            call.post(("shutdown",))
        if calls:
            await asyncio.wait([c.finished for c in calls], timeout=10)
        if self._background:
            await asyncio.wait(list(self._background), timeout=2)
            for task in list(self._background):
                task.cancel()
        for tx in list(self._txs.values()):
            tx.close()
        if self._started:
            self.transport.close()
        self._started = False

    @property
    def active_calls(self) -> int:
        return len(self._active)

    # --- placing calls ---

    async def call(self, to: str, caller: str, audio: bytes, stop: asyncio.Event | None = None,
                   on_event: EventHook | None = None, on_exchange: ExchangeHook | None = None) -> CallResult:
        """Call ``to`` from ``caller`` (digits), play ``audio`` (PCM16, 8 kHz, mono) once answered."""
        if not _DIAL.match(to or ""):
            raise ValueError(f"not a number to dial: {to!r}")
        if caller and not _DIAL.match(caller):
            raise ValueError(f"not a caller number: {caller!r}")
        call = _Call(self, to, caller or self.cfg.from_user, audio, stop, on_event, on_exchange)
        if self._stopping or not self._started:
            return call.result("shutdown")
        async with self._slots:
            if self._bucket is not None:
                await self._bucket.take()
            if self._stopping:
                return call.result("shutdown")
            self._active.add(call)
            try:
                return await call.run()
            finally:
                self._active.discard(call)
                if not call.finished.done():
                    call.finished.set_result(None)

    # --- sending ---

    async def _resolve(self, host: str, port: int) -> tuple[str, int]:
        try:
            ipaddress.ip_address(host)
            return host, port
        except ValueError:
            pass
        key = (host, port)
        if key not in self._dns:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=2)  # SOCK_DGRAM
            self._dns[key] = infos[0][4][:2]
        return self._dns[key]

    async def _dest_for(self, uri: str) -> tuple[str, int]:
        if self.transport.reliable:
            return self._trunk_addr  # everything goes over the one connection
        u = Uri.parse(uri)
        return await self._resolve(*u.addr())

    def _exchange(self, direction: str, msg: SipMessage | None, data: bytes) -> None:
        if msg is None:
            try:
                msg = parse(data)
            except SipParseError:
                return
        call = self._calls.get(msg.call_id)
        hooks = [h for h in (self.on_exchange, call.on_exchange if call else None) if h is not None]
        if hooks or log.isEnabledFor(logging.DEBUG):
            text = msg.redacted()
            log.debug("SIP %s %s", direction, msg.first_line())
            for hook in hooks:
                try:
                    hook(direction, msg.first_line(), text)
                except Exception:  # a logging hook must never break a call
                    log.exception("SIP exchange hook failed")

    async def _send(self, msg: SipMessage | None, dest: tuple[str, int], data: bytes | None = None) -> None:
        data = data if data is not None else msg.encode()  # type: ignore[union-attr]
        await self.transport.send(data, dest)
        self._exchange("out", msg, data)

    def _send_now(self, msg: SipMessage | None, dest: tuple[str, int], data: bytes | None = None,
                  *, retransmit: bool = False) -> None:
        data = data if data is not None else msg.encode()  # type: ignore[union-attr]
        try:
            self.transport.send_now(data, dest)
        except TransportError as exc:
            log.debug("SIP send failed: %s", exc)
            if not retransmit:
                raise
            return
        self._exchange("out", msg, data)

    def via_sent_by(self) -> tuple[str, int]:
        return self._public or self.transport.local

    def _respond(self, req: SipMessage, source: tuple[str, int], status: int, reason: str, **kw: Any) -> None:
        resp = response_to(req, status, reason, source=source if not self.transport.reliable else None, **kw)
        data = resp.encode()
        try:
            via = req.top_via
            self._responses[(via.branch, req.method, req.call_id)] = (data, time.monotonic() + _LINGER_S)
        except SipParseError:
            pass
        try:
            self._send_now(resp, source, data)
        except TransportError:
            pass

    # --- receiving ---

    def _on_message(self, msg: SipMessage, source: tuple[str, int]) -> None:
        try:
            self._exchange("in", msg, b"")
            if msg.is_request:
                self._on_request(msg, source)
            else:
                self._on_response(msg)
        except (SipParseError, ValueError, IndexError) as exc:
            log.debug("dropped a SIP message that does not parse: %s", exc)

    def _on_response(self, resp: SipMessage) -> None:
        via = resp.top_via
        num, method = resp.cseq
        if not self.transport.reliable and ("received" in via.params or via.params.get("rport")):
            # RFC 3581: our address as the trunk sees it, for the Via and Contact of later requests
            host = via.params.get("received") or via.host
            port = int(via.params["rport"]) if via.params.get("rport", "").isdigit() else (via.port or 5060)
            if (host, port) != self.transport.local:
                self._public = (host, port)
        tx = self._txs.get((via.branch, method))
        if tx is not None:
            tx.on_response(resp)
            return
        call = self._calls.get(resp.call_id)
        if call is not None and method == "INVITE" and 200 <= resp.status < 300:
            call._deliver(None, resp)  # a 200 after its transaction ended: re-ACK, or ACK and BYE

    def _on_request(self, req: SipMessage, source: tuple[str, int]) -> None:
        now = time.monotonic()
        for key in [k for k, (_, exp) in self._responses.items() if exp < now]:
            del self._responses[key]
        via = req.top_via
        cached = self._responses.get((via.branch, req.method, req.call_id))
        if cached is not None:  # a retransmitted request: the same answer again
            try:
                self._send_now(None, source, cached[0], retransmit=True)
            except TransportError:
                pass
            return
        if req.method == "ACK":
            return
        call = self._calls.get(req.call_id)
        in_dialog = call is not None and call.matches(req)
        if req.method == "OPTIONS":
            self._respond(req, source, 200, "OK", to_tag=_token(4),
                          extra=[("allow", ALLOW), ("accept", "application/sdp")])
        elif req.method == "BYE":
            if in_dialog and call is not None:
                self._respond(req, source, 200, "OK")
                call.post(("bye", req))
            else:
                self._respond(req, source, 481, "Call/Transaction Does Not Exist")
        elif req.method == "INFO" and in_dialog and call is not None:
            self._respond(req, source, 200, "OK")
            m = re.search(rb"Signal\s*=\s*([0-9*#A-Da-d])", req.body)
            if m and "dtmf" in req.get("content-type").lower():
                call.post(("dtmf", m.group(1).decode().upper()))
        elif req.method == "INVITE" and in_dialog and call is not None:
            # A re-INVITE (session refresh): keep the session as it is, answer with our SDP.
            self._respond(req, source, 200, "OK", extra=[("contact", call.contact), ("allow", ALLOW)],
                          body=call.offer, content_type="application/sdp")
        elif req.method == "INVITE":
            self._respond(req, source, 603, "Decline", to_tag=_token(4))  # we place calls, we take none
        elif req.method == "CANCEL":
            self._respond(req, source, 481, "Call/Transaction Does Not Exist")
        else:
            self._respond(req, source, 501 if in_dialog else 481,
                          "Not Implemented" if in_dialog else "Call/Transaction Does Not Exist")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class _Call:
    """One outgoing call: the INVITE transaction, then the dialog and its media."""

    def __init__(self, trunk: SipTrunk, to: str, caller: str, audio: bytes, stop: asyncio.Event | None,
                 on_event: EventHook | None, on_exchange: ExchangeHook | None) -> None:
        cfg = trunk.cfg
        self.trunk = trunk
        self.cfg = cfg
        self.audio = audio
        self.stop_event = stop
        self.on_event = on_event
        self.on_exchange = on_exchange
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        domain = cfg.from_domain or cfg.host
        self.call_id = f"{_token(12)}@{cfg.local_host}"
        self.local_tag = _token(6)
        tcp = ";transport=tcp" if cfg.transport == "tcp" else ""
        self.ruri = f"sip:{to}@{cfg.host}:{cfg.port}{tcp}"
        self.from_hdr = f"<sip:{caller}@{domain}>;tag={self.local_tag}"
        self.to_hdr = f"<sip:{to}@{domain}>"
        self.contact = ""
        self.offer = b""
        self.cseq = 0
        self.remote_tag = ""
        self.remote_target = ""
        self.route_set: list[str] = []
        self.auth_headers: list[tuple[str, str]] = []
        self.ack: tuple[bytes, tuple[str, int]] | None = None
        self.rtp: RtpStream | None = None
        self.invite: SipMessage | None = None
        self.result_: CallResult | None = None
        self.audio_ms = len(audio) // 16  # 16 bytes per ms at 8 kHz, 16-bit
        self.started_at = _now_ms()
        self.t_start = 0.0
        self.t_answer: float | None = None
        self.t_final: float | None = None  # the INVITE's final answer (or when we gave up on one)
        self.answered_at: int | None = None
        self.q850: int | None = None
        self.status: int | None = None
        self.phrase = ""
        self.detail: dict[str, str] = {}
        self.extra_dtmf: list[str] = []
        self._late = False  # a 200 came after the call was over: being ACKed and hung up

    # --- plumbing ---

    def post(self, item: tuple[Any, ...]) -> None:
        self.inbox.put_nowait(item)

    def emit(self, name: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(name, data)
            except Exception:
                log.exception("call event hook failed")

    def matches(self, req: SipMessage) -> bool:
        """An in-dialog request: our tag in To, theirs in From."""
        try:
            return req.to.tag == self.local_tag and (not self.remote_tag or req.from_.tag == self.remote_tag)
        except SipParseError:
            return False

    def _request(self, method: str, *, cseq: int | None = None, branch: str | None = None,
                 in_dialog: bool = False, extra: list[tuple[str, str]] | None = None,
                 body: bytes = b"", ctype: str = "") -> SipMessage:
        host, port = self.trunk.via_sent_by()
        via = f"SIP/2.0/{self.trunk.transport.kind} {host}:{port};branch=z9hG4bK{branch or _token(10)};rport"
        uri, routes = self.ruri, []
        to = self.to_hdr
        if in_dialog:
            to = f"{self.to_hdr};tag={self.remote_tag}" if self.remote_tag else self.to_hdr
            uri = self.remote_target or self.ruri
            routes = list(self.route_set)
            if routes and "lr" not in Uri.parse(NameAddr.parse(routes[0]).uri).params:
                # strict routing (RFC 3261 12.2.1.1): the first route becomes the Request-URI
                uri = NameAddr.parse(routes[0]).uri
                routes = routes[1:] + [f"<{self.remote_target}>"]
        headers = [("via", via), ("max-forwards", "70"), ("from", self.from_hdr), ("to", to),
                   ("call-id", self.call_id), ("cseq", f"{cseq if cseq is not None else self.cseq} {method}")]
        headers += _route(routes)
        headers += extra or []
        headers.append(("user-agent", self.cfg.user_agent))
        if body:
            headers.append(("content-type", ctype))
        return SipMessage(method=method, uri=uri, headers=headers, body=body)

    async def _dialog_dest(self) -> tuple[str, int]:
        if self.route_set:
            return await self.trunk._dest_for(NameAddr.parse(self.route_set[0]).uri)
        return await self.trunk._dest_for(self.remote_target or self.ruri)

    def result(self, reason: str) -> CallResult:
        now = time.monotonic()
        ended = _now_ms()
        rtp = self.rtp
        if rtp is not None:
            rtp.flush_dtmf()
        dtmf = (rtp.dtmf if rtp is not None else []) + self.extra_dtmf
        frames = rtp.sent if rtp is not None and self.t_answer is not None else 0
        if rtp is not None and rtp.skipped:
            self.detail["rtp_skipped_frames"] = str(rtp.skipped)  # the event loop stalled
        res = CallResult(
            call_id=self.call_id, reason=reason, sip_status=self.status, sip_phrase=self.phrase,
            q850=self.q850, started_at=self.started_at, answered_at=self.answered_at, ended_at=ended,
            ring_ms=int(((self.t_final or now) - self.t_start) * 1000) if self.t_start else 0,
            duration_ms=int((now - self.t_answer) * 1000) if self.t_answer is not None else 0,
            playback_ms=min(frames * 20, self.audio_ms), audio_ms=self.audio_ms,
            dtmf="".join(dtmf), detail=self.detail,
        )
        self.result_ = res
        return res

    # --- the call ---

    async def run(self) -> CallResult:
        trunk = self.trunk
        stop_task = None
        if self.stop_event is not None:
            stop_task = asyncio.ensure_future(self._watch_stop(self.stop_event))
        try:
            try:
                self.rtp = await RtpStream.open(
                    self.cfg.local_host, self.cfg.rtp_port_range, latch=self.cfg.rtp_latch,
                    on_dtmf=lambda d: self.emit("dtmf", {"digit": d}),
                    on_done=lambda: self.post(("played",)))
            except OSError as exc:
                self.detail["error"] = str(exc)
                return self.result("network_error")
            trunk._calls[self.call_id] = self
            host, port = trunk.via_sent_by()
            tcp = ";transport=tcp" if self.cfg.transport == "tcp" else ""
            self.contact = f"<sip:{self.cfg.from_user}@{host}:{port}{tcp}>"
            self.offer = sdp.offer(host=self.cfg.rtp_host or self.cfg.local_host, port=self.rtp.local_port,
                                   codecs=self.cfg.codecs, session_id=int(time.time()), dtmf_pt=self.cfg.dtmf_pt)
            return await self._run()
        finally:
            if stop_task is not None:
                stop_task.cancel()
            if self.rtp is not None:
                self.rtp.close()
            loop = asyncio.get_running_loop()
            if trunk._calls.get(self.call_id) is self:  # answer retransmissions for a while, then forget
                loop.call_later(_LINGER_S, self._forget)

    def _forget(self) -> None:
        if self.trunk._calls.get(self.call_id) is self:
            del self.trunk._calls[self.call_id]
        if self.invite_tx is not None:
            self.invite_tx.close()

    invite_tx: _ClientTx | None = None

    async def _watch_stop(self, event: asyncio.Event) -> None:
        await event.wait()
        self.post(("stop",))

    def _deliver(self, tx: _ClientTx | None, resp: SipMessage | None) -> None:
        if self.result_ is not None:  # the call is over: only a late answer still matters
            if resp is not None and 200 <= resp.status < 300:
                if self.ack is not None:
                    self.stray_2xx(resp)
                elif not self._late:
                    self._late = True
                    self.trunk._spawn(self._late_answer(resp))
            return
        self.post(("resp", tx, resp))

    async def _late_answer(self, resp: SipMessage) -> None:
        """A 200 after we gave up on the call (our CANCEL went unanswered, or
        shutdown): RFC 3261 15 has the caller ACK it and hang up at once, or
        the callee's side would stay up, and be billed."""
        self.remote_tag = resp.to.tag
        contacts = resp.get_all("contact")
        self.remote_target = NameAddr.parse(contacts[0]).uri if contacts else self.ruri
        self.route_set = list(reversed(resp.get_all("record-route")))
        await self._ack_2xx(resp)
        self.cseq += 1
        await self._bye(self._request("BYE", in_dialog=True, extra=[("reason", "Q.850;cause=16")]))

    async def _send_invite(self) -> _ClientTx:
        self.cseq += 1
        invite = self._request("INVITE", extra=[("contact", self.contact), ("allow", ALLOW),
                                                *self.auth_headers],
                               body=self.offer, ctype="application/sdp")
        self.invite = invite
        if self.invite_tx is not None:
            self.invite_tx.close()
        tx = _ClientTx(self.trunk, invite, self.trunk._trunk_addr, self._deliver)
        self.invite_tx = tx
        await tx.start()
        return tx

    async def _run(self) -> CallResult:
        loop = asyncio.get_running_loop()
        self.t_start = time.monotonic()
        self.started_at = _now_ms()
        try:
            tx = await self._send_invite()
        except TransportError as exc:
            self.detail["error"] = str(exc)
            return self.result("network_error")
        ring_deadline = loop.time() + self.cfg.ring_timeout_s
        cancel_why: str | None = None  # "ring" | "stopped" | "shutdown": why we want the call to end
        cancel_sent = False
        cancel_deadline = 0.0
        auth_tries = 0  # a challenge marked stale is answered again, but not forever
        early_sdp: sdp.Answer | None = None
        while True:
            deadlines = []
            if cancel_why is None:
                deadlines.append(ring_deadline)
            if cancel_why is not None:
                deadlines.append(cancel_deadline)
            timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
            try:
                item = await asyncio.wait_for(self.inbox.get(), timeout)
            except TimeoutError:
                if cancel_why is None:  # the ring timeout
                    cancel_why = "ring"
                    cancel_deadline = loop.time() + 64 * self.cfg.t1_s
                    if tx.provisional:
                        cancel_sent = await self._cancel(tx)
                    continue
                # CANCEL unanswered by a final answer (or never sendable): give up on the INVITE
                tx.close()
                self._ring_end()
                return self.result({"ring": "no_answer"}.get(cancel_why, cancel_why)
                                   if cancel_sent or cancel_why != "ring" else "timeout")
            kind = item[0]
            if kind in ("stop", "shutdown"):
                if cancel_why is None or cancel_why == "ring":
                    cancel_why = "stopped" if kind == "stop" else "shutdown"
                    # at shutdown we wait briefly for the 487; a stopped campaign can wait
                    cancel_deadline = loop.time() + (2.0 if kind == "shutdown" else 64 * self.cfg.t1_s)
                    if tx.provisional and not cancel_sent:
                        cancel_sent = await self._cancel(tx)
                continue
            if kind == "dtmf":
                self.extra_dtmf.append(item[1])
                self.emit("dtmf", {"digit": item[1]})
                continue
            if kind != "resp" or item[1] is not self.invite_tx:
                continue
            resp: SipMessage | None = item[2]
            if resp is None:  # Timer B: not even a provisional answer
                self._ring_end()
                self.detail["error"] = "no answer to the INVITE within Timer B"
                return self.result(cancel_why if cancel_why in ("stopped", "shutdown") else "timeout")
            status = resp.status
            if status < 200:
                if status == 100:
                    self.emit("trying", {"status": 100})
                else:
                    answer = sdp.parse_answer(resp.body) if resp.body else None
                    if answer is not None:
                        early_sdp = answer
                        self.detail["early_media"] = str(status)
                        self.emit("early_media", {"status": status, "phrase": resp.reason})
                    else:
                        self.emit("ringing", {"status": status, "phrase": resp.reason})
                if cancel_why is not None and not cancel_sent:
                    cancel_sent = await self._cancel(tx)
                continue
            if status < 300:
                return await self._answered(resp, early_sdp, cancel_why)
            self.q850 = q850_cause(resp) or self.q850
            if status in (401, 407) and cancel_why is None:
                challenge = resp.get("www-authenticate" if status == 401 else "proxy-authenticate")
                stale = "stale=true" in challenge.replace(" ", "").lower()
                if challenge and self.cfg.password and (auth_tries == 0 or (stale and auth_tries < MAX_AUTH_TRIES)):
                    auth_tries += 1
                    try:
                        value = digest.authorization(
                            digest.parse_challenge(challenge), method="INVITE", uri=self.ruri,
                            username=self.cfg.auth_username or self.cfg.username, password=self.cfg.password)
                    except digest.DigestError as exc:
                        self.detail["error"] = str(exc)
                    else:
                        name = "authorization" if status == 401 else "proxy-authorization"
                        self.auth_headers = [h for h in self.auth_headers if h[0] != name] + [(name, value)]
                        try:
                            tx = await self._send_invite()
                        except TransportError as exc:
                            self.detail["error"] = str(exc)
                            return self._final(resp, "network_error")
                        continue
                return self._final(resp, "auth_failed")
            if cancel_why in ("stopped", "shutdown") and status in (401, 407, 487):
                return self._final(resp, cancel_why)  # we ended it (a challenge is not answered then)
            return self._final(resp, reason_for_status(status, after_cancel=cancel_why == "ring" and cancel_sent))

    def _ring_end(self) -> None:
        if self.t_final is None:
            self.t_final = time.monotonic()

    def _final(self, resp: SipMessage, reason: str) -> CallResult:
        self._ring_end()
        self.status, self.phrase = resp.status, resp.reason
        return self.result(reason)

    async def _cancel(self, tx: _ClientTx) -> bool:
        """CANCEL the INVITE (RFC 3261 9.1): its Request-URI, Call-ID, From, To,
        Route and CSeq number, and its top Via (same branch)."""
        inv = tx.msg
        headers = [("via", inv.get_all("via")[0]), ("max-forwards", "70"), ("from", inv.get("from")),
                   ("to", inv.get("to")), ("call-id", inv.call_id), ("cseq", f"{inv.cseq[0]} CANCEL")]
        headers += _route(inv.get_all("route"))
        headers.append(("user-agent", self.cfg.user_agent))
        cancel = SipMessage(method="CANCEL", uri=inv.uri, headers=headers)

        def on_cancel_answer(_tx: _ClientTx, resp: SipMessage | None) -> None:
            if resp is not None and resp.status >= 200:
                self.q850 = q850_cause(resp) or self.q850

        ctx = _ClientTx(self.trunk, cancel, tx.dest, on_cancel_answer)
        try:
            await ctx.start()
        except TransportError as exc:
            self.detail["error"] = str(exc)
            return False
        return True

    async def _ack_2xx(self, resp: SipMessage) -> None:
        """ACK a 2xx: a transaction of its own (new branch), along the route set,
        with the INVITE's credentials; kept to re-ACK retransmitted 200s."""
        ack = self._request("ACK", cseq=resp.cseq[0], in_dialog=True, extra=list(self.auth_headers))
        dest = await self._dialog_dest()
        data = ack.encode()
        self.ack = (data, dest)
        try:
            await self.trunk._send(ack, dest, data)
        except TransportError as exc:
            self.detail["error"] = str(exc)

    def stray_2xx(self, resp: SipMessage) -> None:
        """A 200 to our INVITE after its transaction ended: re-ACK it."""
        if self.ack is not None and resp.to.tag == self.remote_tag:
            self.trunk._send_now(None, self.ack[1], self.ack[0], retransmit=True)

    async def _answered(self, resp: SipMessage, early: sdp.Answer | None, cancel_why: str | None) -> CallResult:
        loop = asyncio.get_running_loop()
        self.t_answer = time.monotonic()
        self.answered_at = _now_ms()
        self._ring_end()
        self.status, self.phrase = resp.status, resp.reason
        self.remote_tag = resp.to.tag
        contacts = resp.get_all("contact")
        self.remote_target = NameAddr.parse(contacts[0]).uri if contacts else self.ruri
        self.route_set = list(reversed(resp.get_all("record-route")))  # RFC 3261 12.1.2
        await self._ack_2xx(resp)
        answer = (sdp.parse_answer(resp.body) if resp.body else None) or early
        chosen = answer.codec(self.cfg.codecs) if answer is not None and answer.port else None
        if cancel_why in ("stopped", "shutdown"):
            return await self._hangup(cancel_why)
        if answer is None or chosen is None:
            self.detail["error"] = "the answer has no audio codec we offered"
            return await self._hangup("codec", q850=88)  # 88: incompatible destination
        assert self.rtp is not None
        codec, pt = chosen
        self.detail["codec"] = codec
        self.rtp.start((answer.host or self.trunk._trunk_addr[0], answer.port), codec=codec, pt=pt,
                       dtmf_pt=answer.dtmf_pt(), audio=self.audio)
        self.emit("answered", {"status": resp.status, "codec": codec})
        max_deadline = loop.time() + self.cfg.max_duration_s if self.cfg.max_duration_s > 0 else None
        inactivity = self.cfg.rtp_inactivity_s
        while True:
            deadlines = [d for d in (max_deadline,) if d is not None]
            if inactivity > 0:
                deadlines.append(self.rtp.last_rx + inactivity)
            timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
            try:
                item = await asyncio.wait_for(self.inbox.get(), timeout)
            except TimeoutError:
                now = loop.time()
                if max_deadline is not None and now >= max_deadline:
                    return await self._hangup("max_duration")
                if inactivity > 0 and now >= self.rtp.last_rx + inactivity:
                    return await self._hangup("no_media")
                continue
            kind = item[0]
            if kind == "played":
                return await self._hangup("played_to_end")
            if kind == "bye":
                self.rtp.stop()
                self.q850 = q850_cause(item[1]) or self.q850
                return self.result("played_to_end" if self.rtp.done else "callee_hangup")
            if kind in ("stop", "shutdown"):
                return await self._hangup("stopped" if kind == "stop" else "shutdown")
            if kind == "dtmf":
                self.extra_dtmf.append(item[1])
                self.emit("dtmf", {"digit": item[1]})
            elif kind == "resp" and item[2] is not None and 200 <= item[2].status < 300:
                self.stray_2xx(item[2])  # the 200 again: our ACK was lost

    async def _hangup(self, reason: str, q850: int | None = None) -> CallResult:
        """BYE (its transaction finishes in the background: the outcome no longer depends on it)."""
        if self.rtp is not None:
            self.rtp.stop()
        result = self.result(reason)
        self.cseq += 1
        cause = q850 or 16  # 16: normal call clearing
        bye = self._request("BYE", in_dialog=True, extra=[("reason", f"Q.850;cause={cause}")])
        self.trunk._spawn(self._bye(bye))
        return result

    async def _bye(self, bye: SipMessage) -> None:
        done: asyncio.Future[SipMessage | None] = asyncio.get_running_loop().create_future()
        for attempt in range(2):
            def deliver(_tx: _ClientTx, resp: SipMessage | None, fut: asyncio.Future = done) -> None:
                if (resp is None or resp.status >= 200) and not fut.done():
                    fut.set_result(resp)
            try:
                tx = _ClientTx(self.trunk, bye, await self._dialog_dest(), deliver)
                await tx.start()
            except TransportError:
                return
            resp = await done
            if resp is None or resp.status not in (401, 407) or attempt or not self.cfg.password:
                return
            challenge = resp.get("www-authenticate" if resp.status == 401 else "proxy-authenticate")
            try:
                value = digest.authorization(digest.parse_challenge(challenge), method="BYE", uri=bye.uri,
                                             username=self.cfg.auth_username or self.cfg.username,
                                             password=self.cfg.password)
            except digest.DigestError:
                return
            self.cseq += 1
            name = "authorization" if resp.status == 401 else "proxy-authorization"
            bye = self._request("BYE", in_dialog=True, extra=[("reason", bye.get("reason")), (name, value)])
            done = asyncio.get_running_loop().create_future()
