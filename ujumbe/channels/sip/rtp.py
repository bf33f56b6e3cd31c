"""RTP for a call (RFC 3550): G.711 out in 20 ms packets, RFC 4733 events in.

Pacing: one ``RtpClock`` per event loop ticks every 20 ms for all streams at
once (one timer wake-up per tick, however many calls), scheduling tick n at
t0 + n x 20 ms on the loop's monotonic clock, so lateness never accumulates:
a late tick sends every packet that is due (the receiver's jitter buffer
orders them by timestamp) and the next tick is still on the grid.

Symmetric RTP: a call sends from the socket it receives on, and (``latch``)
moves its destination to where the callee's RTP actually comes from, which
is what a callee behind NAT needs.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import Callable

from ujumbe.channels.sip import g711

PTIME = 0.020
SAMPLES = 160  # 20 ms at 8 kHz
_HDR = struct.Struct("!BBHII")
DTMF_DIGITS = "0123456789*#ABCD"
_MAX_CATCHUP = 10  # after a stall longer than 200 ms, skip ahead instead of bursting


class RtpClock:
    """The shared 20 ms tick. Streams join with ``add`` and leave with ``discard``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = PTIME) -> None:
        self.loop = loop
        self.period = period
        self.streams: set[RtpStream] = set()
        self.tick = 0  # the index of the last tick run
        self._t0 = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.late_ticks = 0

    def add(self, stream: RtpStream) -> int:
        """Join; returns the tick at which the stream's first packet goes out."""
        if self._handle is None:
            self._t0 = self.loop.time()
            self.tick = 0
            self.streams.add(stream)
            self._handle = self.loop.call_at(self._t0 + self.period, self._run)
            return 1
        self.streams.add(stream)
        return self.tick + 1

    def discard(self, stream: RtpStream) -> None:
        self.streams.discard(stream)
        if not self.streams and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        due = int((self.loop.time() - self._t0) / self.period)
        if due > self.tick + 1:
            self.late_ticks += 1
        self.tick = max(due, self.tick + 1)
        for stream in list(self.streams):
            stream.pump(self.tick)
        if self.streams:
            self._handle = self.loop.call_at(self._t0 + (self.tick + 1) * self.period, self._run)
        else:
            self._handle = None


_clocks: dict[int, RtpClock] = {}


def clock_for(loop: asyncio.AbstractEventLoop) -> RtpClock:
    clock = _clocks.get(id(loop))
    if clock is None or clock.loop is not loop:
        clock = _clocks[id(loop)] = RtpClock(loop)
    return clock


def bind_port(host: str, port_range: tuple[int, int], tries: int = 64) -> socket.socket:
    """A UDP socket on a free even port in ``port_range`` (RTP's convention; odd is RTCP's)."""
    lo, hi = port_range
    lo += lo % 2
    last: OSError | None = None
    for _ in range(tries):
        port = random.randrange(lo, max(lo + 2, hi), 2)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setblocking(False)
        return sock
    raise OSError(f"no free RTP port in {port_range}: {last}")


class RtpStream(asyncio.DatagramProtocol):
    """One call's media: sends the audio once, receives the callee's packets."""

    def __init__(self, *, on_dtmf: Callable[[str], None] | None = None,
                 on_done: Callable[[], None] | None = None, latch: bool = True) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.local_port = 0
        self.remote: tuple[str, int] | None = None
        self.on_dtmf = on_dtmf
        self.on_done = on_done
        self.latch = latch
        self._latched = False
        self.ssrc = int.from_bytes(os.urandom(4), "big")
        self._seq0 = random.randrange(0, 1 << 16)
        self._ts0 = random.randrange(0, 1 << 32)
        self.pt = 8
        self.dtmf_pt = 101
        self.frames: list[bytes] = []
        self.index = 0  # the next frame to send
        self.sent = 0  # frames sent
        self.skipped = 0  # frames skipped after a stall of the event loop
        self.done = False
        self._first_tick = 0
        self._clock: RtpClock | None = None
        # receive side
        self.received = 0
        self.last_rx = 0.0  # loop time of the last packet from the callee
        self.dtmf: list[str] = []
        self._dtmf_seen: dict[int, bool] = {}  # event timestamp -> recorded
        self._dtmf_open: tuple[int, int] | None = None  # (timestamp, event) not yet ended

    @classmethod
    async def open(cls, host: str, port_range: tuple[int, int], **kw: object) -> RtpStream:
        loop = asyncio.get_running_loop()
        sock = bind_port(host, port_range)
        _, proto = await loop.create_datagram_endpoint(lambda: cls(**kw), sock=sock)  # type: ignore[arg-type]
        proto.local_port = sock.getsockname()[1]
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    # --- sending ---

    def start(self, remote: tuple[str, int], *, codec: str, pt: int, dtmf_pt: int | None, audio: bytes) -> None:
        """Encode the audio once and begin sending it on the shared clock."""
        self.remote = remote
        self.pt = pt
        if dtmf_pt is not None:
            self.dtmf_pt = dtmf_pt
        self.last_rx = asyncio.get_running_loop().time()
        encoded = g711.encode(audio, codec)
        tail = len(encoded) % SAMPLES
        if tail:
            encoded += bytes([g711.SILENCE[codec]]) * (SAMPLES - tail)
        self.frames = [encoded[i : i + SAMPLES] for i in range(0, len(encoded), SAMPLES)]
        if not self.frames:
            self._finish()
            return
        self._clock = clock_for(asyncio.get_running_loop())
        self._first_tick = self._clock.add(self)

    def pump(self, tick: int) -> None:
        """Send every packet due by ``tick`` (one, unless the loop was late).

        After a stall of more than ``_MAX_CATCHUP`` packets the frames too late
        to matter are skipped: the timestamp jumps (the media clock stays
        true) while the sequence number stays consecutive (nothing was lost
        on the way), as RFC 3550 has a sender do; skipped frames are not
        counted as played."""
        due = min(tick - self._first_tick + 1, len(self.frames))
        if due - self.index > _MAX_CATCHUP:
            self.skipped += due - 1 - self.index
            self.index = due - 1
        transport, remote = self.transport, self.remote
        while self.index < due:
            n = self.index
            header = _HDR.pack(0x80, self.pt | (0x80 if self.sent == 0 else 0), (self._seq0 + self.sent) & 0xFFFF,
                               (self._ts0 + n * SAMPLES) & 0xFFFFFFFF, self.ssrc)
            if transport is not None and remote is not None and not transport.is_closing():
                transport.sendto(header + self.frames[n], remote)
            self.index += 1
            self.sent += 1
        if self.index >= len(self.frames):
            self._finish()

    def _finish(self) -> None:
        if self._clock is not None:
            self._clock.discard(self)
        if not self.done:
            self.done = True
            if self.on_done is not None:
                self.on_done()

    def stop(self) -> None:
        """Stop sending (hang-up); what was sent stays counted."""
        if self._clock is not None:
            self._clock.discard(self)
            self._clock = None

    def close(self) -> None:
        self.stop()
        if self.transport is not None:
            self.transport.close()

    # --- receiving ---

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return  # not RTP (STUN, garbage)
        pt = data[1] & 0x7F
        if 72 <= pt <= 76:
            return  # RTCP on the RTP port (rtcp-mux)
        self.received += 1
        self.last_rx = self._loop.time() if self._loop is not None else 0.0
        if self.latch and not self._latched and self.remote is not None:
            self._latched = True
            if addr[:2] != self.remote:
                self.remote = (addr[0], addr[1])
        if pt == self.dtmf_pt:
            self._event(data)

    def _event(self, data: bytes) -> None:
        """RFC 4733: every packet of one key press carries the same timestamp;
        the end bit marks the last (sent three times). A digit is recorded
        once per timestamp: at its first end packet, or, when all three end
        packets were lost, when the next press begins."""
        cc = data[0] & 0x0F
        off = 12 + 4 * cc
        if data[0] & 0x10:  # header extension
            if len(data) < off + 4:
                return
            off += 4 + 4 * int.from_bytes(data[off + 2 : off + 4], "big")
        if len(data) < off + 4:
            return
        ts = int.from_bytes(data[4:8], "big")
        event, flags = data[off], data[off + 1]
        if event >= len(DTMF_DIGITS) or ts in self._dtmf_seen:
            return
        if self._dtmf_open is not None and self._dtmf_open[0] != ts:
            self._record(*self._dtmf_open)
        if flags & 0x80:
            self._record(ts, event)
        else:
            self._dtmf_open = (ts, event)

    def _record(self, ts: int, event: int) -> None:
        self._dtmf_open = None
        if ts in self._dtmf_seen:
            return
        self._dtmf_seen[ts] = True
        if len(self._dtmf_seen) > 64:
            self._dtmf_seen.pop(next(iter(self._dtmf_seen)))
        digit = DTMF_DIGITS[event]
        self.dtmf.append(digit)
        if self.on_dtmf is not None:
            self.on_dtmf(digit)

    def flush_dtmf(self) -> None:
        """At hang-up: a press whose end packets never came still counts."""
        if self._dtmf_open is not None:
            self._record(*self._dtmf_open)
