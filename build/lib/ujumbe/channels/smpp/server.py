"""The SMSC side: accepts binds from ESMEs (our customers, or our own tests).

The server owns binds, not business: ``authenticate`` decides who may bind and
returns an account object, ``on_submit`` takes each submit_sm/data_sm and
returns the message id (or raises ``SmppError(status)``). Anything the account
object carries is read with ``getattr`` so any class fits:

* ``id`` (str): the key binds, limits and queued deliveries share (defaults to the system_id)
* ``max_binds`` (int | None): concurrent binds allowed (default: the server's)
* ``tps`` (float | None): submits per second over all its binds (default: unlimited)

Status choices: wrong credentials -> ESME_RBINDFAIL (never INVPASWD/INVSYSID,
which would tell a prober which half was right); too many binds ->
ESME_RALYBND, the closest 3.4 status ("already bound") and the one Jasmin and
most SMSCs use for it, so operators can tell it apart from a bad password.

``push(account_id, pdu)`` sends a deliver_sm (receipt or MO) to the account's
receiver/transceiver binds, spreading load over the least busy one. With no
such bind the PDU waits in a bounded per-account queue and goes out on the next
bind; a PDU in flight on a bind that drops goes back to the head of the queue.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .pdu import (
    BIND_RECEIVER,
    BIND_TRANSCEIVER,
    BIND_TRANSMITTER,
    CANCEL_SM,
    DATA_SM,
    ESME_RALYBND,
    ESME_RBINDFAIL,
    ESME_RCANCELFAIL,
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_ROK,
    ESME_RQUERYFAIL,
    ESME_RREPLACEFAIL,
    ESME_RTHROTTLED,
    GENERIC_NACK,
    QUERY_SM,
    REPLACE_SM,
    SUBMIT_SM,
    TAG_SC_INTERFACE_VERSION,
    Pdu,
)
from .ratelimit import TokenBucket
from .session import RequestTimeout, SessionClosed, SmppSession

log = logging.getLogger("ujumbe.smpp.server")

Authenticate = Callable[[str, str, str, str, Any], Awaitable[Any | None]]
OnSubmit = Callable[[SmppSession, Any, Pdu], Awaitable[str]]
OnRequest = Callable[[SmppSession, Any, Pdu], Awaitable[Pdu | None]]

_BIND_MODES = {BIND_TRANSMITTER: "transmitter", BIND_RECEIVER: "receiver", BIND_TRANSCEIVER: "transceiver"}
_RECEIVES = ("receiver", "transceiver")


class _Account:
    def __init__(self, key: str, account: Any, limit: int, tps: float | None, queue_limit: int) -> None:
        self.key = key
        self.account = account
        self.limit = limit
        self.bucket = TokenBucket(tps) if tps else None
        self.sessions: list[SmppSession] = []
        self.queue: deque[Pdu] = deque()
        self.queue_limit = queue_limit
        self.wake = asyncio.Event()
        self.pump: asyncio.Task[None] | None = None

    def receivers(self) -> list[SmppSession]:
        return [s for s in self.sessions if s.bound in _RECEIVES and s.is_open]


class SmppServer:
    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 2775,
        *,
        authenticate: Authenticate,
        on_submit: OnSubmit,
        on_request: OnRequest | None = None,
        system_id: str = "ujumbe",
        window: int = 64,
        request_timeout: float = 10.0,
        enquire_link_s: float | None = 60.0,
        bind_timeout_s: float = 30.0,
        max_binds: int = 10,
        queue_limit: int = 10_000,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self.authenticate = authenticate
        self.on_submit = on_submit
        self.on_request = on_request
        self.system_id = system_id
        self.window = window
        self.request_timeout = request_timeout
        self.enquire_link_s = enquire_link_s
        self.bind_timeout_s = bind_timeout_s
        self.max_binds = max_binds
        self.queue_limit = queue_limit
        self.tls = tls
        self.accounts: dict[str, _Account] = {}
        self.sessions: set[SmppSession] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, self.host, self._port, ssl=self.tls)
        log.info("SMPP server listening on %s:%d", self.host, self.port)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        sessions = list(self.sessions)
        await asyncio.gather(*(s.unbind(timeout=1.0) for s in sessions), return_exceptions=True)
        for acct in self.accounts.values():
            if acct.pump:
                acct.pump.cancel()
        if self._server:
            await self._server.wait_closed()
            self._server = None

    # --- sessions ----------------------------------------------------------------

    def _new_session(self) -> SmppSession:
        sess = SmppSession(
            self._handle,
            window=self.window,
            request_timeout=self.request_timeout,
            enquire_link_s=self.enquire_link_s,
            name="smpp-server",
            on_close=self._closed,
        )
        self.sessions.add(sess)
        loop = asyncio.get_running_loop()
        loop.call_later(self.bind_timeout_s, self._bind_deadline, sess)
        return sess

    def _bind_deadline(self, sess: SmppSession) -> None:
        if sess.bound is None and sess.is_open:
            log.info("closing %s: no bind within %.0f s", sess.peer, self.bind_timeout_s)
            sess.close()

    def _closed(self, sess: SmppSession) -> None:
        self.sessions.discard(sess)
        acct: _Account | None = sess.context
        if acct is not None and sess in acct.sessions:
            acct.sessions.remove(sess)

    def bound_sessions(self, account_id: str) -> list[SmppSession]:
        acct = self.accounts.get(account_id)
        return list(acct.sessions) if acct else []

    async def _handle(self, sess: SmppSession, pdu: Pdu) -> Pdu | None:
        cid = pdu.command_id
        if cid in _BIND_MODES:
            return await self._bind(sess, pdu, _BIND_MODES[cid])
        acct: _Account | None = sess.context
        if sess.bound is None or acct is None:
            return pdu.response(ESME_RINVBNDSTS)
        if cid in (SUBMIT_SM, DATA_SM):
            if sess.bound == "receiver":
                return pdu.response(ESME_RINVBNDSTS)
            if acct.bucket is not None and not acct.bucket.try_take():
                return pdu.response(ESME_RTHROTTLED)
            message_id = await self.on_submit(sess, acct.account, pdu)
            return pdu.response(message_id=message_id)
        if cid in (QUERY_SM, CANCEL_SM, REPLACE_SM) and sess.bound == "receiver":
            return pdu.response(ESME_RINVBNDSTS)  # section 4: only transmitters ask about their messages
        if self.on_request is not None:
            resp = await self.on_request(sess, acct.account, pdu)
            if resp is not None:
                return resp
        if cid == QUERY_SM:
            return pdu.response(ESME_RQUERYFAIL)
        if cid == CANCEL_SM:
            return pdu.response(ESME_RCANCELFAIL)
        if cid == REPLACE_SM:
            return pdu.response(ESME_RREPLACEFAIL)
        return Pdu(GENERIC_NACK, pdu.sequence, ESME_RINVCMDID)

    async def _bind(self, sess: SmppSession, pdu: Pdu, mode: str) -> Pdu:
        def refuse(status: int) -> Pdu:
            return pdu.response(status, system_id=self.system_id)

        if sess.bound is not None:
            return refuse(ESME_RALYBND)
        system_id = pdu.get("system_id")
        account = await self.authenticate(system_id, pdu.get("password"), pdu.get("system_type"), mode, sess.peer)
        if account is None:
            log.info("bind refused for %r from %s", system_id, sess.peer)
            return refuse(ESME_RBINDFAIL)
        if not sess.is_open:
            return refuse(ESME_RBINDFAIL)
        key = str(getattr(account, "id", None) or system_id)
        acct = self.accounts.get(key)
        limit = getattr(account, "max_binds", None) or self.max_binds
        tps = getattr(account, "tps", None)
        if acct is None:
            acct = self.accounts[key] = _Account(key, account, limit, tps, self.queue_limit)
        else:
            # Credentials and limits may have changed since the last bind.
            acct.account, acct.limit = account, limit
            if (acct.bucket.rate if acct.bucket else None) != tps:
                acct.bucket = TokenBucket(tps) if tps else None
        # No await between this check and the append: two binds cannot both squeeze in.
        if len([s for s in acct.sessions if s.is_open]) >= acct.limit:
            log.info("bind refused for %r: %d binds already", key, acct.limit)
            return refuse(ESME_RALYBND)
        sess.bound = mode
        sess.context = acct
        acct.sessions.append(sess)
        sess.start_keepalive()
        if mode in _RECEIVES:
            if acct.pump is None or acct.pump.done():
                acct.pump = asyncio.get_running_loop().create_task(self._pump(acct))
            acct.wake.set()
        resp = pdu.response(ESME_ROK, system_id=self.system_id)
        resp.tlvs[TAG_SC_INTERFACE_VERSION] = 0x34
        return resp

    # --- server -> ESME ------------------------------------------------------------

    def push(self, account_id: str, pdu: Pdu) -> bool:
        """Queue a deliver_sm/data_sm for the account; False when its queue is full."""
        acct = self.accounts.get(account_id)
        if acct is None:
            # Never bound yet: keep it for its first bind.
            acct = self.accounts[account_id] = _Account(account_id, None, self.max_binds, None, self.queue_limit)
        if len(acct.queue) >= acct.queue_limit:
            log.warning("delivery queue full for %s; dropping %s", account_id, pdu.name)
            return False
        acct.queue.append(pdu)
        acct.wake.set()
        if acct.pump is None or acct.pump.done():
            acct.pump = asyncio.get_running_loop().create_task(self._pump(acct))
        return True

    def queued(self, account_id: str) -> int:
        acct = self.accounts.get(account_id)
        return len(acct.queue) if acct else 0

    async def _pump(self, acct: _Account) -> None:
        while True:
            receivers = acct.receivers()
            if not acct.queue or not receivers:
                acct.wake.clear()
                await acct.wake.wait()
                continue
            # The least busy bind: a slow one must not hold up the others.
            sess = min(receivers, key=lambda s: s.outstanding)
            try:
                await sess.acquire_slot()
            except SessionClosed:
                continue
            if not acct.queue:
                sess.release_slot()
                continue
            pdu = acct.queue.popleft()
            fut = sess.start_request(pdu)
            fut.add_done_callback(lambda f, p=pdu: self._delivered(acct, p, f))

    def _delivered(self, acct: _Account, pdu: Pdu, fut: asyncio.Future[Pdu]) -> None:
        exc = fut.exception()
        if exc is not None:
            if isinstance(exc, (SessionClosed, RequestTimeout)):
                # Not acknowledged: send again (a duplicate receipt is harmless, a lost one is not).
                acct.queue.appendleft(pdu)
                acct.wake.set()
            else:
                log.warning("deliver to %s failed: %s", acct.key, exc)
            return
        resp = fut.result()
        if resp.status != ESME_ROK:
            log.warning("%s refused %s with status 0x%X", acct.key, pdu.name, resp.status)
