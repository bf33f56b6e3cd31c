"""A small HTTP/1.1 client for callbacks: POST, keep-alive, a pool per origin.

Every message costs two callbacks or more, so the client's own CPU per
request is a large share of a worker's: aiohttp spent ~100 us per callback
(request and response objects, header multidicts, timers, tracing hooks),
this ~20 us. It does only what callbacks need: one POST with a body, the
status and up to ``max_body`` bytes of the answer, no redirects, no cookies,
no proxies; responses are parsed by httptools (uvicorn's parser).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import quote, unquote, urlsplit

import httptools


# Headers the client writes itself: a caller's own are left out.
_OURS = frozenset({"host", "content-length", "user-agent"})


class HttpError(OSError):
    """The exchange failed: refused, reset, malformed answer. (Timeouts raise TimeoutError.)"""


class Refused(HttpError):
    """The host resolved to an address callbacks may not go to."""


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses to try, in order
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class _Stale(HttpError):
    """A kept-alive connection closed before any byte of the answer: safe to send again."""


class _Connection(asyncio.Protocol):
    __slots__ = ("transport", "parser", "waiter", "status", "body", "got_bytes", "closed", "max_body", "complete",
                 "deadline")

    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.status = 0
        self.body: list[bytes] = []
        self.got_bytes = False
        self.closed = False
        self.complete = False
        self.max_body = max_body
        self.deadline = 0.0  # loop time the running exchange times out

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"malformed answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        if self.status and not self.complete and self.parser.should_keep_alive() is False:
            # an answer without a length ends when the server closes
            self._finish(keep=False)
        elif self.got_bytes:
            self._fail(HttpError("connection closed in the middle of the answer"))
        else:
            self._fail(_Stale("connection closed before the answer"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if sum(map(len, self.body)) < self.max_body:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self._finish(keep=self.parser.should_keep_alive())

    def _finish(self, keep: bool) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.status, b"".join(self.body)[: self.max_body], keep))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def send(self, data: bytes, deadline: float) -> asyncio.Future[tuple[int, bytes, bool]]:
        """The answer to ``data``; the client fails it with TimeoutError when
        it is not whole by ``deadline`` (loop time, see WebhookClient._sweep)."""
        assert self.transport is not None
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        self.status, self.body, self.got_bytes, self.complete = 0, [], False, False
        self.parser = httptools.HttpResponseParser(self)
        self.deadline = deadline
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class WebhookClient:
    def __init__(self, *, limit: int = 200, timeout_s: float = 10.0, user_agent: str = "Ujumbe-Webhooks/1",
                 max_body: int = 64 * 1024, allow_address: Callable[[Address], bool] | None = None,
                 resolver: Resolver = resolve, tls: ssl.SSLContext | None = None) -> None:
        self.timeout_s = timeout_s
        # A name is resolved once per new connection, every address is
        # checked, and the connection goes to a checked address: resolving
        # again to connect would let DNS rebinding swap in another one.
        self.allow_address = allow_address  # None: any address
        self.resolver = resolver
        self.user_agent = user_agent
        self.max_body = max_body
        self._slots = asyncio.Semaphore(limit)  # connections in use at once
        self._limit = limit
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._targets: dict[str, tuple[bool, tuple[str, str, int], str, str]] = {}  # URL -> see _target
        # Exchanges under way, failed by one sweep a few times a second once
        # past their deadline: a timer (or an asyncio.timeout) per request
        # costs several µs of each of a message's callbacks; this is late by
        # at most a sweep.
        self._busy: set[_Connection] = set()
        self._sweep_s = min(0.25, timeout_s / 4)
        self._sweeper: asyncio.TimerHandle | None = None
        self._tls = tls  # None: the system's trusted CAs, made on first use

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, the first ``max_body`` bytes of the answer)."""
        target = self._targets.get(url)
        if target is None:
            target = self._target(url)
        tls, key, before, after = target
        head = "".join([f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in _OURS])
        request = f"{before}Content-Length: {len(body)}\r\n{after}{head}\r\n".encode("latin-1") + body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        slots = self._slots
        if slots.locked():  # all connections busy: the wait counts against the timeout too
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        else:
            await slots.acquire()  # at once
        try:
            conn = self._take_idle(key)
            if conn is not None:
                try:
                    return await self._exchange(key, conn, request, deadline)
                except _Stale:
                    pass  # the server dropped it while idle: once more on a new connection
            async with asyncio.timeout_at(deadline):
                conn = await self._connect(tls, key[1], key[2])
            return await self._exchange(key, conn, request, deadline)
        finally:
            slots.release()

    def _target(self, url: str) -> tuple[bool, tuple[str, str, int], str, str]:
        """(TLS?, pool key, the request's head before and after Content-Length)
        of ``url``, kept: a worker posts to the same few URLs all day."""
        try:
            tls, key, host_header, target, credentials = _parse(url)
        except ValueError as exc:  # a bad port, a host IDNA cannot encode (no URL here: it may hold a password)
            raise HttpError(f"bad URL: {exc}") from None
        before = f"POST {target} HTTP/1.1\r\nHost: {host_header}\r\n"
        after = f"User-Agent: {self.user_agent}\r\n"
        if credentials:
            after += f"Authorization: Basic {credentials}\r\n"
        if len(self._targets) >= 10_000:
            self._targets.clear()
        found = self._targets[url] = (tls, key, before, after)
        return found

    async def _exchange(
        self, key: tuple[str, str, int], conn: _Connection, request: bytes, deadline: float,
    ) -> tuple[int, bytes]:
        busy = self._busy
        busy.add(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_s, self._sweep)
        try:
            status, answer, keep = await conn.send(request, deadline)
        except BaseException:
            conn.close()
            raise
        finally:
            busy.discard(conn)
        idle = self._idle.setdefault(key, [])
        if keep and not conn.closed and len(idle) < self._limit:
            idle.append(conn)
        else:
            conn.close()
        return status, answer

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self, tls: bool, host: str, port: int) -> _Connection:
        if tls and self._tls is None:
            self._tls = ssl.create_default_context()
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        addresses = [host] if literal is not None else await self.resolver(host, port)
        if self.allow_address is not None:
            for address in addresses:
                if not self.allow_address(ipaddress.ip_address(address)):
                    raise Refused(f"{host} resolves to a private or loopback address ({address}); callbacks do not go there")
        if not addresses:
            raise HttpError(f"{host} resolves to no address")
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for address in addresses:
            try:
                # the checked address, with the host name for SNI and the
                # certificate check (the Host header names it too)
                _, conn = await loop.create_connection(
                    lambda: _Connection(self.max_body), address, port, ssl=self._tls if tls else None,
                    server_hostname=host if tls else None,
                )
                return conn
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in [c for c in self._busy if c.deadline <= now]:
            conn._fail(TimeoutError())
        self._sweeper = loop.call_later(self._sweep_s, self._sweep) if self._busy else None

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _parse(url: str) -> tuple[bool, tuple[str, str, int], str, str, str | None]:
    """(TLS?, pool key, Host header, request target, Basic credentials) of ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    tls = parts.scheme == "https"
    host = parts.hostname
    port = parts.port or (443 if tls else 80)
    # a client's URL goes on the request line: quote anything that could break it
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    host_header = host if host.isascii() else host.encode("idna").decode()
    if ":" in host_header:
        host_header = f"[{host_header}]"  # IPv6 literal
    if parts.port:
        host_header += f":{port}"
    # https://user:secret@host/... is how many clients protect their callback URL
    credentials = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        credentials = base64.b64encode(pair.encode()).decode()
    return tls, (parts.scheme, host, port), host_header, target, credentials
