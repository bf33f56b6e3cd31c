"""The SIP trunk against a real callee: sipp (Debian's sip-tester) as the UAS.

Each test runs one sipp scenario from tests/sip/ on 127.0.0.1 and a free
port, places one call with ``SipTrunk`` and checks the ``CallResult`` and
that sipp's scenario passed (sipp checks the Route set, the CANCEL's and
the ACK's branch, the 487's CSeq and the digest credentials itself). The
RTP is received by an independent receiver: aiortp's RTP packet parser and
G.711 decoder (PyPI), on the port sipp's SDP answer names.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from aiortp import DtmfEvent, RtpPacket, get_codec
from aiortp.dtmf import DTMF_EVENTS

from ujumbe.channels.sip import SipTrunk, TrunkConfig
from ujumbe.core.calls import Outcome

SIPP = shutil.which("sipp")
pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp is not installed (Debian/Ubuntu package sip-tester)")

SCENARIOS = Path(__file__).parent / "sip"
TO, CALLER = "9779812345678", "9779800000000"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()


def tone(seconds: float, hz: float = 440.0) -> bytes:
    n = int(8000 * seconds)
    return b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / 8000) * (0.3 + 0.7 * i / n)))
                    for i in range(n))


def _listening(port: int, tcp: bool) -> bool:
    want = f":{port:04X} "
    for name in ("/proc/net/tcp", "/proc/net/tcp6") if tcp else ("/proc/net/udp", "/proc/net/udp6"):
        try:
            for line in Path(name).read_text().splitlines()[1:]:
                cols = line.split()
                if want in cols[1] + " " and (not tcp or cols[3] == "0A"):
                    return True
        except OSError:
            pass
    return False


class Sipp:
    """One sipp UAS run of a scenario, for one call."""

    def __init__(self, tmp_path: Path, scenario: str, *, tcp: bool = False, **variables: str) -> None:
        self.port = free_port()
        self.tcp = tcp
        self.errors = tmp_path / f"{scenario}-errors.log"
        args = [SIPP or "sipp", "-sf", str(SCENARIOS / f"{scenario}.xml"), "-i", "127.0.0.1", "-p", str(self.port),
                "-m", "1", "-t", "t1" if tcp else "u1", "-timeout", "90s", "-nostdin",
                "-trace_err", "-error_file", str(self.errors)]
        for name, value in variables.items():
            args += ["-set", name, value]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=tmp_path)

    async def ready(self) -> None:
        for _ in range(200):
            if _listening(self.port, self.tcp):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"sipp exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            await asyncio.sleep(0.05)
        raise AssertionError("sipp did not start listening")

    async def passed(self) -> bool:
        rc = await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, 60)
        if rc != 0:
            err = self.errors.read_text() if self.errors.exists() else ""
            print(f"sipp exit {rc}:\n{err[-3000:]}")
        return rc == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Receiver(asyncio.DatagramProtocol):
    """The callee's media end: collects RTP (parsed by aiortp) and can send RFC 4733 events back."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, object]] = []
        self.peer: tuple[str, int] | None = None
        self.first = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append((asyncio.get_running_loop().time(), RtpPacket.parse(data)))
        self.peer = addr
        self.first.set()

    def send_digit(self, digit: str, timestamp: int, seq: int, *, ends: int = 3) -> int:
        """One key press as aiortp builds it: progress packets, then ``ends`` end packets."""
        assert self.transport is not None and self.peer is not None
        events = [DtmfEvent(DTMF_EVENTS[digit], False, 10, d) for d in (160, 320, 480)]
        events += [DtmfEvent(DTMF_EVENTS[digit], True, 10, 640)] * ends
        for i, ev in enumerate(events):
            pkt = RtpPacket(payload_type=101, marker=int(i == 0), sequence_number=seq & 0xFFFF,
                            timestamp=timestamp, ssrc=0x1234, payload=ev.serialize())
            self.transport.sendto(pkt.serialize(), self.peer)
            seq += 1
        return seq


async def receiver() -> tuple[Receiver, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    return proto, transport.get_extra_info("sockname")[1]


async def trunk_for(sipp: Sipp, **kw: object) -> SipTrunk:
    await sipp.ready()
    cfg = TrunkConfig(host="127.0.0.1", port=sipp.port, transport="tcp" if sipp.tcp else "udp", **kw)  # type: ignore[arg-type]
    trunk = SipTrunk(cfg)
    await trunk.start()
    return trunk


@pytest.fixture
def sipp_runs(tmp_path: Path):
    runs: list[Sipp] = []

    def start(scenario: str, **kw: object) -> Sipp:
        run = Sipp(tmp_path, scenario, **kw)  # type: ignore[arg-type]
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def check_stream(rx: Receiver, audio: bytes, pt: int, skipped: int = 0) -> None:
    """In order, consecutive, 160 samples apart, one SSRC, the marker on the first,
    paced (never faster than 20 ms a packet), and the audio decodes to what was sent.

    ``skipped``: frames the sender skipped after a stall of its event loop (a
    loaded machine): the sequence stays consecutive, the timestamp jumps."""
    pkts = [p for _, p in rx.packets]
    n = math.ceil(len(audio) / 320)
    assert len(pkts) == n - skipped
    assert {p.payload_type for p in pkts} == {pt}
    assert len({p.ssrc for p in pkts}) == 1
    assert [p.marker for p in pkts] == [1] + [0] * (len(pkts) - 1)
    jumps = 0
    for a, b in zip(pkts, pkts[1:]):
        assert b.sequence_number == (a.sequence_number + 1) & 0xFFFF
        step = (b.timestamp - a.timestamp) & 0xFFFFFFFF
        assert step % 160 == 0 and step >= 160
        jumps += step // 160 - 1
    assert jumps == skipped
    # Packet k leaves at t0 + k x 20 ms at the earliest: the whole stream cannot arrive faster.
    span = rx.packets[-1][0] - rx.packets[0][0]
    assert span >= (n - 1) * 0.020 * 0.9 or skipped
    codec = get_codec(pt)
    # aiortp 0.8's A-law has the sign bit inverted against ITU-T G.711 (it decodes
    # 0xD5, A-law's +0, to -8), so its PCMA output is the waveform negated.
    flip = -1 if pt == 8 and struct.unpack("<h", codec.decode(b"\xd5"))[0] < 0 else 1
    sent = struct.unpack(f"<{len(audio) // 2}h", audio)
    for p in pkts:
        k = ((p.timestamp - pkts[0].timestamp) & 0xFFFFFFFF) // 160
        got = struct.unpack("<160h", codec.decode(p.payload))
        want = sent[k * 160 : k * 160 + 160]
        assert all(abs(flip * g - w) <= max(16, abs(w) / 16) for g, w in zip(got, want))
        assert all(abs(g) <= 8 for g in got[len(want):])  # the last packet is padded with silence


async def test_answered_and_played_to_the_end(sipp_runs) -> None:
    rx, rtp_port = await receiver()
    sipp = sipp_runs("answer", rtp_ip="127.0.0.1", rtp_port=str(rtp_port))
    trunk = await trunk_for(sipp)
    events: list[str] = []
    audio = tone(1.0)
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=audio, on_event=lambda name, _d: events.append(name))
    finally:
        await trunk.stop()
    assert result.outcome is Outcome.COMPLETED and result.reason == "played_to_end"
    assert result.sip_status == 200 and result.answered
    assert result.audio_ms == 1000
    assert result.playback_ms == 1000 - 20 * int(result.detail.get("rtp_skipped_frames", 0))
    assert result.duration_ms >= 1000
    assert events[:3] == ["trying", "ringing", "answered"]
    assert await sipp.passed()  # the ACK and the BYE carried the reversed Record-Route as Route
    check_stream(rx, audio, 8, int(result.detail.get("rtp_skipped_frames", 0)))


async def test_no_common_codec(sipp_runs) -> None:
    rx, rtp_port = await receiver()
    sipp = sipp_runs("answer", rtp_ip="127.0.0.1", rtp_port=str(rtp_port))
    trunk = await trunk_for(sipp, codecs=("PCMU",))
    audio = tone(0.5, 300.0)
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=audio)
    finally:
        await trunk.stop()
    # sipp's answer lists PCMA only: no common codec, so the call is ended at once
    assert result.reason == "codec" and result.outcome is Outcome.FAILED
    assert result.playback_ms == 0 and not rx.packets
    assert await sipp.passed()


async def test_a_stalled_event_loop_skips_late_frames(sipp_runs) -> None:
    """Half a second with the loop blocked: the frames too late to matter are
    skipped (timestamps jump, sequence numbers stay consecutive), not burst."""
    rx, rtp_port = await receiver()
    sipp = sipp_runs("answer", rtp_ip="127.0.0.1", rtp_port=str(rtp_port))
    trunk = await trunk_for(sipp)
    audio = tone(1.5)

    async def stall() -> None:
        await rx.first.wait()
        await asyncio.sleep(0.2)
        time.sleep(0.5)  # blocks the event loop, as a CPU hog would

    staller = asyncio.create_task(stall())
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=audio)
    finally:
        staller.cancel()
        await trunk.stop()
    skipped = int(result.detail.get("rtp_skipped_frames", 0))
    assert result.reason == "played_to_end" and skipped >= 10
    assert result.playback_ms == 1500 - 20 * skipped
    assert await sipp.passed()
    check_stream(rx, audio, 8, skipped)


async def test_over_tcp(sipp_runs) -> None:
    rx, rtp_port = await receiver()
    sipp = sipp_runs("answer", tcp=True, rtp_ip="127.0.0.1", rtp_port=str(rtp_port))
    trunk = await trunk_for(sipp)
    audio = tone(0.6)
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=audio)
    finally:
        await trunk.stop()
    skipped = int(result.detail.get("rtp_skipped_frames", 0))
    assert result.reason == "played_to_end" and result.playback_ms == 600 - 20 * skipped
    assert await sipp.passed()
    check_stream(rx, audio, 8, skipped)


async def test_callee_hangs_up_midway(sipp_runs) -> None:
    rx, rtp_port = await receiver()
    sipp = sipp_runs("hangup", rtp_ip="127.0.0.1", rtp_port=str(rtp_port))
    trunk = await trunk_for(sipp)
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(6.0))
    finally:
        await trunk.stop()
    assert result.outcome is Outcome.HUNGUP and result.reason == "callee_hangup"
    assert result.audio_ms == 6000
    assert 1000 <= result.playback_ms < 6000  # sipp hangs up 1.5 s after our ACK
    assert 1400 <= result.duration_ms < 6000
    assert result.q850 == 16  # Reason: Q.850;cause=16 on sipp's BYE
    assert await sipp.passed()  # our 200 to its BYE
    assert 0 < len(rx.packets) < 300


async def test_busy(sipp_runs) -> None:
    sipp = sipp_runs("busy")
    trunk = await trunk_for(sipp)
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(1.0))
    finally:
        await trunk.stop()
    assert result.outcome is Outcome.UNANSWERED and result.reason == "busy"
    assert result.sip_status == 486 and result.sip_phrase == "Busy Here" and result.q850 == 17
    assert not result.answered and result.playback_ms == 0 and result.duration_ms == 0
    assert await sipp.passed()  # and sipp got our ACK


async def test_ring_timeout_cancels(sipp_runs) -> None:
    sipp = sipp_runs("ring")
    trunk = await trunk_for(sipp, ring_timeout_s=1.0)
    events: list[str] = []
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(1.0), on_event=lambda n, _d: events.append(n))
    finally:
        await trunk.stop()
    assert result.outcome is Outcome.UNANSWERED and result.reason == "no_answer"
    assert result.sip_status == 487 and not result.answered
    assert result.q850 == 19  # Reason: Q.850;cause=19 on the 487
    assert result.ring_ms >= 1000
    assert "answered" not in events
    # sipp checked: CANCEL on the INVITE's branch, the 487 with the INVITE's CSeq, the ACK on the INVITE's branch
    assert await sipp.passed()


async def test_stop_before_answer_cancels(sipp_runs) -> None:
    sipp = sipp_runs("ring")
    trunk = await trunk_for(sipp)
    stop = asyncio.Event()

    def on_event(name: str, _data: dict) -> None:
        if name == "ringing":
            stop.set()

    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(1.0), stop=stop, on_event=on_event)
    finally:
        await trunk.stop()
    assert result.outcome is Outcome.TERMINATED and result.reason == "stopped"
    assert not result.answered
    assert await sipp.passed()


async def test_service_unavailable(sipp_runs) -> None:
    sipp = sipp_runs("unavailable")
    trunk = await trunk_for(sipp)
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(1.0))
    finally:
        await trunk.stop()
    assert result.outcome is Outcome.FAILED and result.reason == "network_error" and result.sip_status == 503
    assert await sipp.passed()


@pytest.mark.parametrize("qop", ["", ', qop="auth"'], ids=["plain", "qop-auth"])
async def test_digest_auth(sipp_runs, qop: str) -> None:
    rx, rtp_port = await receiver()
    challenge = f'Digest realm="sipp.test", nonce="4e1c0e5f0b1d9a"{qop}'
    sipp = sipp_runs("auth", rtp_ip="127.0.0.1", rtp_port=str(rtp_port), user="alice", **{"pass": "s3cret"},
                     challenge=challenge)
    trunk = await trunk_for(sipp, username="alice", password="s3cret")
    seen: list[tuple[str, str, str]] = []
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(0.4),
                                  on_exchange=lambda d, s, t: seen.append((d, s, t)))
    finally:
        await trunk.stop()
    assert result.reason == "played_to_end", result
    assert await sipp.passed()  # sipp's verifyauth accepted the credentials
    invites = [t for d, s, t in seen if d == "out" and s.startswith("INVITE")]
    assert len(invites) == 2 and "Authorization: Digest" in invites[1]
    assert "response=" not in invites[1] and "[redacted]" in invites[1]  # the exchange log hides credentials
    assert [s for d, s, _ in seen if d == "in"][:1] == ["SIP/2.0 401 Unauthorized"]


async def test_digest_auth_wrong_password(sipp_runs) -> None:
    sipp = sipp_runs("auth", rtp_ip="127.0.0.1", rtp_port="9", user="alice", **{"pass": "s3cret"},
                     challenge='Digest realm="sipp.test", nonce="4e1c0e5f0b1d9a", qop="auth"')
    trunk = await trunk_for(sipp, username="alice", password="wrong")
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(0.4))
    finally:
        await trunk.stop()
    # challenged again after sending credentials: the trunk refused them
    assert result.outcome is Outcome.FAILED and result.reason == "auth_failed" and result.sip_status == 401
    assert await sipp.passed()


async def test_early_media_is_never_an_answer(sipp_runs) -> None:
    rx, rtp_port = await receiver()
    sipp = sipp_runs("early", rtp_ip="127.0.0.1", rtp_port=str(rtp_port))
    trunk = await trunk_for(sipp)
    events: list[str] = []
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(1.0), on_event=lambda n, _d: events.append(n))
    finally:
        await trunk.stop()
    assert result.outcome is Outcome.UNANSWERED and result.reason == "no_answer" and result.sip_status == 480
    assert not result.answered and result.playback_ms == 0
    assert "early_media" in events and "answered" not in events
    assert not rx.packets
    assert await sipp.passed()


async def test_dtmf_from_the_callee(sipp_runs) -> None:
    rx, rtp_port = await receiver()
    sipp = sipp_runs("answer", rtp_ip="127.0.0.1", rtp_port=str(rtp_port))
    trunk = await trunk_for(sipp)
    digits: list[str] = []

    async def press() -> None:
        await rx.first.wait()
        seq, ts = 100, 5000
        for digit in "12#":
            seq = rx.send_digit(digit, ts, seq)
            ts += 800
            await asyncio.sleep(0.05)
        # a press whose end packets were all lost, then a repeat of "9" (two presses, two digits)
        seq = rx.send_digit("5", ts, seq, ends=0)
        ts += 800
        for _ in range(2):
            seq = rx.send_digit("9", ts, seq)
            ts += 800

    presser = asyncio.create_task(press())
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(1.0),
                                  on_event=lambda n, d: digits.append(d["digit"]) if n == "dtmf" else None)
    finally:
        presser.cancel()
        await trunk.stop()
    assert result.reason == "played_to_end"
    assert result.dtmf == "12#599"
    assert "".join(digits) == "12#599"
    assert await sipp.passed()


async def test_shutdown_ends_an_answered_call(sipp_runs) -> None:
    """trunk.stop() ends an answered call with BYE: terminated/shutdown."""
    rx, rtp_port = await receiver()
    sipp = sipp_runs("answer", rtp_ip="127.0.0.1", rtp_port=str(rtp_port))
    trunk = await trunk_for(sipp, max_calls=1)
    call = asyncio.create_task(trunk.call(to=TO, caller=CALLER, audio=tone(20.0)))
    await rx.first.wait()
    assert trunk.active_calls == 1
    await trunk.stop()
    result = await call
    assert result.outcome is Outcome.TERMINATED and result.reason == "shutdown" and result.answered
    assert 0 < result.playback_ms < 20000
    assert trunk.active_calls == 0
    assert await sipp.passed()


@pytest.mark.parametrize(("kw", "reason"), [({"max_duration_s": 0.5}, "max_duration"),
                                            ({"rtp_inactivity_s": 0.5}, "no_media")])
async def test_we_end_long_or_silent_calls(sipp_runs, kw: dict, reason: str) -> None:
    rx, rtp_port = await receiver()
    sipp = sipp_runs("answer", rtp_ip="127.0.0.1", rtp_port=str(rtp_port))  # sipp sends no RTP
    trunk = await trunk_for(sipp, **kw)
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=tone(10.0))
    finally:
        await trunk.stop()
    assert result.reason == reason and result.answered
    assert 200 <= result.playback_ms < 10000
    assert await sipp.passed()  # our BYE


# --- a scripted peer on a raw UDP socket: what sipp's scenarios do not cover ---


class RawPeer(asyncio.DatagramProtocol):
    """A callee that answers by hand, with the texts a test writes."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[str, tuple[str, int], float]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait((data.decode(), addr, asyncio.get_running_loop().time()))

    async def next(self, start: str) -> tuple[str, tuple[str, int], float]:
        while True:
            text, addr, at = await asyncio.wait_for(self.inbox.get(), 10)
            if text.startswith(start):
                return text, addr, at

    def send(self, text: str, addr: tuple[str, int]) -> None:
        head, _, body = text.partition("\r\n\r\n")
        assert self.transport is not None
        self.transport.sendto(head.replace("LEN", str(len(body.encode()))).encode() + b"\r\n\r\n" + body.encode(),
                              addr)


def header(text: str, *names: str) -> str:
    for line in text.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() in names:
            return value.strip()
    raise AssertionError(f"no {names} in {text!r}")


async def raw_peer() -> tuple[RawPeer, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    return proto, transport.get_extra_info("sockname")[1]


def reply(req: str, status: str, *, to_tag: str = "uas1", extra: str = "", body: str = "") -> str:
    """A response in compact header forms (v, f, t, i, m, c, l)."""
    lines = [f"SIP/2.0 {status}", f"v: {header(req, 'via', 'v')}", f"f: {header(req, 'from', 'f')}",
             f"t: {header(req, 'to', 't')};tag={to_tag}", f"i: {header(req, 'call-id', 'i')}",
             f"CSeq: {header(req, 'cseq')}"]
    if extra:
        lines.append(extra)
    if body:
        lines.append("c: application/sdp")
    lines.append("l: LEN")
    return "\r\n".join(lines) + "\r\n\r\n" + body


async def test_compact_headers_reack_options_and_rport() -> None:
    peer, port = await raw_peer()
    rx, rtp_port = await receiver()
    trunk = SipTrunk(TrunkConfig(host="127.0.0.1", port=port))
    await trunk.start()
    call = asyncio.create_task(trunk.call(to=TO, caller=CALLER, audio=tone(5.0)))
    try:
        invite, addr, _ = await peer.next("INVITE ")
        assert ";rport" in header(invite, "via") and "RTP/AVP 8 0 101" in invite  # PCMA first, then PCMU, events
        sdp_body = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                    f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
        ok = reply(invite, "200 OK", extra=f"m: <sip:uas@127.0.0.1:{port}>", body=sdp_body)
        ok = ok.replace(";rport", ";rport=5999;received=10.9.9.9", 1)  # as a carrier behind NAT sees us
        peer.send(ok, addr)
        ack, _, _ = await peer.next("ACK ")
        assert ack.startswith(f"ACK sip:uas@127.0.0.1:{port} SIP/2.0")  # the 200's Contact is the remote target
        assert header(ack, "cseq") == f"{header(invite, 'cseq').split()[0]} ACK"
        ack_branch = header(ack, "via").split("branch=")[1].split(";")[0]
        assert ack_branch != header(invite, "via").split("branch=")[1].split(";")[0]  # a 2xx ACK is its own transaction
        peer.send(ok, addr)  # the 200 again, as if our ACK was lost
        again, _, _ = await peer.next("ACK ")
        assert header(again, "via").split("branch=")[1].split(";")[0] == ack_branch
        await rx.first.wait()
        assert rx.packets[0][1].payload_type == 0  # the answer chose PCMU
        # a keep-alive OPTIONS from the carrier, outside the dialog
        peer.send(f"OPTIONS sip:{addr[0]}:{addr[1]} SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKopt1\r\n"
                  f"f: <sip:carrier@127.0.0.1>;tag=c1\r\nt: <sip:ujumbe@127.0.0.1>\r\ni: keepalive-1\r\n"
                  f"CSeq: 7 OPTIONS\r\nMax-Forwards: 70\r\nl: LEN\r\n\r\n", addr)
        pong, _, _ = await peer.next("SIP/2.0 200")
        assert header(pong, "call-id", "i") == "keepalive-1" and "INVITE" in header(pong, "allow")
        # the callee hangs up (compact forms again)
        callid = header(invite, "call-id", "i")
        peer.send(f"BYE {header(invite, 'contact', 'm').strip('<>')} SIP/2.0\r\n"
                  f"v: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbye1\r\n"
                  f"f: {header(invite, 'to', 't')};tag=uas1\r\nt: {header(invite, 'from', 'f')}\r\ni: {callid}\r\n"
                  f"CSeq: 1 BYE\r\nReason: SIP;cause=200, Q.850;cause=31\r\nl: LEN\r\n\r\n", addr)
        bye_ok, _, _ = await peer.next("SIP/2.0 200")
        assert header(bye_ok, "cseq") == "1 BYE"
        result = await call
        assert result.reason == "callee_hangup" and result.q850 == 31
        # the trunk's Via said rport=5999 received=10.9.9.9: later requests use that address
        second = asyncio.create_task(trunk.call(to=TO, caller=CALLER, audio=tone(1.0)))
        invite2, addr2, _ = await peer.next("INVITE ")
        assert "10.9.9.9:5999" in header(invite2, "via") and "10.9.9.9:5999" in header(invite2, "contact", "m")
        peer.send(reply(invite2, "603 Decline"), addr2)
        assert (await second).reason == "declined"
    finally:
        call.cancel()
        await trunk.stop()


async def test_call_limit_and_calls_per_second() -> None:
    peer, port = await raw_peer()
    trunk = SipTrunk(TrunkConfig(host="127.0.0.1", port=port, max_calls=1, cps=4.0))
    await trunk.start()
    calls = [asyncio.create_task(trunk.call(to=TO, caller=CALLER, audio=b"")) for _ in range(3)]
    try:
        first, addr, t1 = await peer.next("INVITE ")
        peer.send(reply(first, "180 Ringing"), addr)
        await asyncio.sleep(0.3)
        assert trunk.active_calls == 1 and peer.inbox.empty()  # the second waits for a free slot
        peer.send(reply(first, "486 Busy Here"), addr)
        stamps = [t1]
        for _ in range(2):
            inv, addr, at = await peer.next("INVITE ")
            stamps.append(at)
            peer.send(reply(inv, "404 Not Found"), addr)
        reasons = [(await c).reason for c in calls]
        assert reasons == ["busy", "bad_number", "bad_number"]
        # 4 calls a second: the third INVITE cannot leave sooner than 0.5 s after the first
        assert stamps[2] - stamps[0] >= 0.45
    finally:
        for c in calls:
            c.cancel()
        await trunk.stop()


def branch_of(text: str) -> str:
    return header(text, "via", "v").split("branch=")[1].split(";")[0]


async def test_timer_a_retransmits_and_timer_b_gives_up() -> None:
    peer, port = await raw_peer()  # receives, never answers
    trunk = SipTrunk(TrunkConfig(host="127.0.0.1", port=port, t1_s=0.02))  # Timer B = 64 x T1 = 1.28 s
    await trunk.start()
    try:
        result = await trunk.call(to=TO, caller=CALLER, audio=b"")
    finally:
        await trunk.stop()
    assert result.outcome is Outcome.FAILED and result.reason == "timeout" and result.sip_status is None
    invites = []
    while not peer.inbox.empty():
        text, _, _ = peer.inbox.get_nowait()
        invites.append(text)
    assert len(invites) >= 3 and all(t.startswith("INVITE ") for t in invites)
    assert len({branch_of(t) for t in invites}) == 1  # retransmissions of one transaction


async def test_an_answer_after_we_gave_up_is_acked_and_hung_up() -> None:
    peer, port = await raw_peer()
    # the CANCEL is never answered; 64 x T1 later the call is given up
    trunk = SipTrunk(TrunkConfig(host="127.0.0.1", port=port, t1_s=0.05, ring_timeout_s=0.3))
    await trunk.start()
    try:
        call = asyncio.create_task(trunk.call(to=TO, caller=CALLER, audio=tone(1.0)))
        invite, addr, _ = await peer.next("INVITE ")
        peer.send(reply(invite, "180 Ringing"), addr)
        cancel, _, _ = await peer.next("CANCEL ")
        assert branch_of(cancel) == branch_of(invite)
        assert header(cancel, "cseq") == f"{header(invite, 'cseq').split()[0]} CANCEL"
        result = await call
        assert result.reason == "no_answer" and not result.answered
        # ... and then the callee picks up after all
        peer.send(reply(invite, "200 OK", extra=f"m: <sip:uas@127.0.0.1:{port}>"), addr)
        ack, _, _ = await peer.next("ACK ")
        bye, _, _ = await peer.next("BYE ")
        assert ack.startswith(f"ACK sip:uas@127.0.0.1:{port} ") and bye.startswith(f"BYE sip:uas@127.0.0.1:{port} ")
        assert ";tag=uas1" in header(bye, "to", "t")
        peer.send(reply(bye, "200 OK", to_tag="uas1"), addr)
    finally:
        await trunk.stop()


async def test_proxy_challenge_407() -> None:
    peer, port = await raw_peer()
    trunk = SipTrunk(TrunkConfig(host="127.0.0.1", port=port, username="alice", password="s3cret"))
    await trunk.start()
    try:
        call = asyncio.create_task(trunk.call(to=TO, caller=CALLER, audio=b""))
        first, addr, _ = await peer.next("INVITE ")
        peer.send(reply(first, "407 Proxy Authentication Required",
                        extra='Proxy-Authenticate: Digest realm="proxy.test", nonce="n0nce", qop="auth"'), addr)
        ack, _, _ = await peer.next("ACK ")
        assert branch_of(ack) == branch_of(first)  # the ACK to a failure is hop by hop, same transaction
        second, _, _ = await peer.next("INVITE ")
        assert header(second, "call-id", "i") == header(first, "call-id", "i")
        assert header(second, "cseq") == "2 INVITE" and branch_of(second) != branch_of(first)
        creds = header(second, "proxy-authorization")
        assert 'username="alice"' in creds and 'realm="proxy.test"' in creds and "qop=auth" in creds
        peer.send(reply(second, "486 Busy Here"), addr)
        assert (await call).reason == "busy"
    finally:
        await trunk.stop()
