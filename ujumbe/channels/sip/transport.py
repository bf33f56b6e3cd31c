"""SIP over UDP or TCP to one trunk.

UDP: one socket for everything; requests and responses arrive from wherever
the peer sends them, responses to its requests go back to the source address
(RFC 3581). TCP: one connection to the trunk, reopened on demand when it
drops; the peer sends its requests (BYE, OPTIONS) back over it (we do not
listen for TCP connections), and every request, in a dialog or not, goes
over it. CRLF keep-alives (RFC 5626) are answered and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ujumbe.channels.sip.message import SipMessage, SipParseError, frame_length, parse

log = logging.getLogger("ujumbe.channels.sip")

MAX_FRAME = 65_535

Handler = Callable[[SipMessage, tuple[str, int]], None]


class TransportError(OSError):
    pass


class UdpTransport(asyncio.DatagramProtocol):
    kind = "UDP"
    reliable = False

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)

    async def open(self, local_host: str, local_port: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(local_host, local_port))
        assert self.transport is not None
        self.local = self.transport.get_extra_info("sockname")[:2]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # keep-alive
        try:
            msg = parse(data)
        except (SipParseError, ValueError) as exc:
            log.debug("dropped a malformed SIP datagram from %s: %s", addr, exc)
            return
        self.handler(msg, addr[:2])

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP socket error: %s", exc)  # ICMP unreachable; Timer B/F report it

    async def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.send_now(data, addr)

    def send_now(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError("the SIP socket is closed")
        self.transport.sendto(data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpTransport:
    kind = "TCP"
    reliable = True

    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self.handler = handler
        self.peer = (host, port)
        self.local: tuple[str, int] = ("", 0)
        self._local_host = ""
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def open(self, local_host: str, local_port: int) -> None:
        self._local_host = local_host
        await self._connect()

    async def _connect(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.peer[0], self.peer[1], local_addr=(self._local_host, 0)), 10)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to {self.peer[0]}:{self.peer[1]}: {exc}") from exc
        self._writer = writer
        self.local = writer.get_extra_info("sockname")[:2]
        self._reader_task = asyncio.create_task(self._read(reader, writer))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    stripped = len(buf) - len(buf.lstrip(b"\r\n"))
                    if stripped:
                        if buf[:4] == b"\r\n\r\n":
                            writer.write(b"\r\n")  # RFC 5626 keep-alive pong
                        del buf[:stripped]
                    n = frame_length(buf)
                    if n is None:
                        if len(buf) > MAX_FRAME:
                            log.warning("SIP TCP frame over %d bytes from %s: closing", MAX_FRAME, self.peer)
                            return
                        break
                    frame = bytes(buf[:n])
                    del buf[:n]
                    try:
                        msg = parse(frame)
                    except (SipParseError, ValueError) as exc:
                        log.debug("dropped a malformed SIP message from %s: %s", self.peer, exc)
                        continue
                    self.handler(msg, self.peer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()

    async def send(self, data: bytes, addr: tuple[str, int]) -> None:
        async with self._lock:
            if self._closed:
                raise TransportError("the SIP connection is closed")
            if self._writer is None or self._writer.is_closing():
                await self._connect()
            assert self._writer is not None
            self._writer.write(data)

    def send_now(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._writer is None or self._writer.is_closing():
            raise TransportError("the SIP connection is closed")
        self._writer.write(data)

    def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
