"""One SMPP connection, either side: framing, windowing, keepalive, dispatch.

Built on ``asyncio.Protocol`` rather than streams: ``data_received`` decodes
straight out of the socket buffer and writes are coalesced into one
``transport.write`` per loop tick, which is what lets a single bind do tens of
thousands of PDUs a second (see bench/smpp_submit.py).

* Outgoing requests get a sequence number (1..0x7FFFFFFF, wrapping) and wait for
  the response with that number. At most ``window`` requests are outstanding;
  the rest wait on a semaphore, so a slow peer applies back-pressure instead of
  an unbounded queue building up.
* Every request has a deadline; one timer sweeps the pending table (bounded by
  the window, so the scan is cheap) instead of one timer per request.
* enquire_link is answered here and sent after ``enquire_link_s`` of silence;
  an unanswered one closes the link so the owner can reconnect.
* Unparseable input is answered with generic_nack; a stream whose framing is
  lost is closed. Nothing the peer sends can raise out of ``data_received``.
* Other incoming requests go to ``handler(session, pdu)``, run as a task; its
  return value is the response (``None``: it answered itself or none is due,
  ``SmppError(status)``: answer with that status).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .pdu import (
    ALERT_NOTIFICATION,
    BIND_RECEIVER,
    BIND_TRANSCEIVER,
    BIND_TRANSMITTER,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_ROK,
    ESME_RSYSERR,
    GENERIC_NACK,
    LAYOUTS,
    MAX_SEQUENCE,
    OUTBIND,
    RESP_BIT,
    UNBIND,
    UNBIND_RESP,
    Pdu,
    PduError,
    PduReader,
    SmppError,
    encode,
)

log = logging.getLogger("ujumbe.smpp")

MIN_WINDOW = 32  # below this a 20 ms link cannot reach the throughput we promise
BIND_COMMANDS = {
    "transmitter": BIND_TRANSMITTER,
    "receiver": BIND_RECEIVER,
    "transceiver": BIND_TRANSCEIVER,
}

Handler = Callable[["SmppSession", Pdu], Awaitable[Pdu | None]]


class SessionClosed(ConnectionError):
    """The link went away; requests that were outstanding may or may not have arrived."""


class RequestTimeout(TimeoutError):
    """No response within the request timeout."""


class SmppSession(asyncio.Protocol):
    def __init__(
        self,
        handler: Handler | None = None,
        *,
        window: int = 64,
        request_timeout: float = 10.0,
        enquire_link_s: float | None = 30.0,
        name: str = "smpp",
        on_close: Callable[[SmppSession], None] | None = None,
    ) -> None:
        self.handler = handler
        self.window = max(MIN_WINDOW, window)
        self.request_timeout = request_timeout
        self.enquire_link_s = enquire_link_s
        self.name = name
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.bound: str | None = None  # "transmitter" | "receiver" | "transceiver"
        self.context: Any = None  # the owner's state, e.g. the server's account
        self.last_rx = 0.0
        self._loop = asyncio.get_running_loop()
        self._reader = PduReader()
        self._seq = 0
        self._pending: dict[int, tuple[asyncio.Future[Pdu], float]] = {}
        self._sem = asyncio.Semaphore(self.window)
        self._wbuf: list[bytes] = []
        self._flush_scheduled = False
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # --- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; trust the protocol.
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.last_rx = self._loop.time()
        self._sweeper = self._loop.call_later(self._sweep_every(), self._sweep)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.bound = None
        err = SessionClosed(f"{self.name}: connection lost" + (f": {exc}" if exc else ""))
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(err)
        for w in self._drain_waiters:
            if not w.done():
                w.set_exception(err)
        self._drain_waiters.clear()
        if self._sweeper:
            self._sweeper.cancel()
        if self._keepalive and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_close:
            try:
                self.on_close(self)
            except Exception:
                log.exception("%s: on_close failed", self.name)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._drain_waiters.clear()

    def data_received(self, data: bytes) -> None:
        self.last_rx = self._loop.time()
        reader = self._reader
        reader.feed(data)
        while True:
            try:
                pdu = reader.next()
            except PduError as exc:
                self._on_bad_pdu(exc)
                if exc.fatal:
                    return
                continue
            if pdu is None:
                return
            if pdu.command_id & RESP_BIT:
                entry = self._pending.pop(pdu.sequence, None)
                if entry is not None:
                    if not entry[0].done():
                        entry[0].set_result(pdu)
                elif pdu.command_id == GENERIC_NACK:
                    log.warning("%s: peer sent generic_nack status=0x%X seq=%d", self.name, pdu.status, pdu.sequence)
                else:
                    log.debug("%s: unmatched %s seq=%d", self.name, pdu.name, pdu.sequence)
            else:
                self._on_request(pdu)

    # --- incoming -------------------------------------------------------------

    def _on_bad_pdu(self, exc: PduError) -> None:
        log.warning("%s: bad PDU from %s: %s", self.name, self.peer, exc)
        if exc.command_id & RESP_BIT:
            # A response we cannot read: fail its request rather than leave it to time out.
            entry = self._pending.pop(exc.sequence, None)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(exc)
            if not exc.fatal:
                return
        if exc.command_id in LAYOUTS and exc.status not in (ESME_RINVCMDID, ESME_RINVCMDLEN):
            # A known request with a bad field: its own resp carries the status.
            self.send(Pdu(exc.command_id | RESP_BIT, exc.sequence, exc.status))
        else:
            self.send(Pdu(GENERIC_NACK, exc.sequence, exc.status))
        if exc.fatal:
            self._flush()
            self.close()

    def _on_request(self, pdu: Pdu) -> None:
        cid = pdu.command_id
        if cid == ENQUIRE_LINK:
            self.send(Pdu(ENQUIRE_LINK_RESP, pdu.sequence))
            return
        if cid == UNBIND:
            self.send(Pdu(UNBIND_RESP, pdu.sequence))
            self.bound = None
            self._flush()
            self.close()
            return
        if self.handler is None:
            if cid not in (OUTBIND, ALERT_NOTIFICATION):  # these have no response
                self.send(Pdu(GENERIC_NACK, pdu.sequence, ESME_RINVCMDID))
            return
        task = self._loop.create_task(self._run_handler(pdu))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_handler(self, pdu: Pdu) -> None:
        assert self.handler is not None
        try:
            resp = await self.handler(self, pdu)
        except SmppError as exc:
            resp = pdu.response(exc.status)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: handler failed on %s", self.name, pdu.name)
            resp = pdu.response(ESME_RSYSERR)
        if resp is not None and not self._closing:
            self.send(resp)

    # --- outgoing -------------------------------------------------------------

    def send(self, pdu: Pdu) -> None:
        """Queue one PDU (a response, or a request whose sequence is already set)."""
        if self._closing:
            return
        self._wbuf.append(encode(pdu))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._wbuf and self.transport is not None and not self.transport.is_closing():
            data = b"".join(self._wbuf) if len(self._wbuf) > 1 else self._wbuf[0]
            self._wbuf.clear()
            self.transport.write(data)

    def _next_seq(self) -> int:
        seq = self._seq + 1
        if seq > MAX_SEQUENCE:
            seq = 1
        while seq in self._pending:  # only after a wrap with an ancient request still out
            seq = seq + 1 if seq < MAX_SEQUENCE else 1
        self._seq = seq
        return seq

    @property
    def is_open(self) -> bool:
        return not self._closing and self.transport is not None

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    async def acquire_slot(self) -> None:
        """Wait for room in the window (and in the socket buffer). Pair with ``start_request``."""
        await self._sem.acquire()
        if self._paused and not self._closing:
            w: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(w)
            try:
                await w
            except BaseException:
                self._sem.release()
                raise

    def start_request(self, pdu: Pdu, timeout: float | None = None) -> asyncio.Future[Pdu]:
        """Send a request holding a slot from ``acquire_slot``; the slot frees when
        the returned future resolves (response, timeout or disconnect)."""
        fut: asyncio.Future[Pdu] = self._loop.create_future()
        fut.add_done_callback(self._release)
        if self._closing:
            fut.set_exception(SessionClosed(f"{self.name}: not connected"))
            return fut
        seq = self._next_seq()
        pdu.sequence = seq
        self._pending[seq] = (fut, self._loop.time() + (timeout or self.request_timeout))
        try:
            self.send(pdu)
        except Exception as exc:  # a value that cannot be encoded
            del self._pending[seq]
            fut.set_exception(exc)
        return fut

    def _release(self, _fut: asyncio.Future[Pdu]) -> None:
        self._sem.release()

    def release_slot(self) -> None:
        """Give back a slot taken with ``acquire_slot`` but not used."""
        self._sem.release()

    async def request(self, pdu: Pdu, timeout: float | None = None) -> Pdu:
        """Send a request and return its response (whatever its status).
        Raises SessionClosed or RequestTimeout."""
        if self._closing:
            raise SessionClosed(f"{self.name}: not connected")
        await self.acquire_slot()
        return await self.start_request(pdu, timeout)

    def _sweep_every(self) -> float:
        return min(1.0, max(0.05, self.request_timeout / 4))

    def _sweep(self) -> None:
        if self._closing:
            return
        now = self._loop.time()
        expired = [seq for seq, (_, deadline) in self._pending.items() if deadline <= now]
        for seq in expired:
            fut, _ = self._pending.pop(seq)
            if not fut.done():
                fut.set_exception(RequestTimeout(f"{self.name}: no response to seq {seq}"))
        self._sweeper = self._loop.call_later(self._sweep_every(), self._sweep)

    # --- life cycle -------------------------------------------------------------

    async def bind(
        self,
        mode: str,
        system_id: str,
        password: str,
        system_type: str = "",
        *,
        interface_version: int = 0x34,
        addr_ton: int = 0,
        addr_npi: int = 0,
        address_range: str = "",
    ) -> Pdu:
        """ESME side: bind and return the bind_*_resp; SmppError on a refusal."""
        req = Pdu(
            BIND_COMMANDS[mode],
            0,
            0,
            {
                "system_id": system_id,
                "password": password,
                "system_type": system_type,
                "interface_version": interface_version,
                "addr_ton": addr_ton,
                "addr_npi": addr_npi,
                "address_range": address_range,
            },
        )
        resp = await self.request(req)
        if resp.status != ESME_ROK:
            raise SmppError(resp.status)
        self.bound = mode
        return resp

    def start_keepalive(self) -> None:
        if self.enquire_link_s and self._keepalive is None and not self._closing:
            self._keepalive = self._loop.create_task(self._keepalive_loop(self.enquire_link_s))

    async def _keepalive_loop(self, every: float) -> None:
        while not self._closing:
            await asyncio.sleep(every)
            if self._loop.time() - self.last_rx < every * 0.9:
                continue  # traffic proves the link; no need to ask
            try:
                await self.request(Pdu(ENQUIRE_LINK), timeout=min(self.request_timeout, every))
            except (RequestTimeout, SessionClosed) as exc:
                if not self._closing:
                    log.warning("%s: enquire_link failed (%s); closing", self.name, exc)
                    self.abort()
                return

    async def unbind(self, timeout: float = 2.0) -> None:
        """Polite close: unbind, wait briefly for unbind_resp, then close."""
        if self.is_open:
            try:
                await asyncio.wait_for(self.request(Pdu(UNBIND), timeout=timeout), timeout + 0.5)
            except (RequestTimeout, SessionClosed, TimeoutError, SmppError):
                pass
        self.close()
        await self.wait_closed(timeout)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()  # flushes what is buffered, then connection_lost

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.abort()


def now_ms() -> int:
    return int(time.time() * 1000)
