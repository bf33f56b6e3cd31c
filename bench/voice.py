"""How many concurrent calls one worker keeps on time: RTP pacing of SipTrunk under load.

    .venv/bin/python bench/voice.py [--calls 25 50 100] [--seconds 5] [--no-uvloop] [--nice -10]

For each call count N, three processes besides this one:

* sipp (Debian's sip-tester) answers every call (tests/sip/answer.xml), its
  SDP pointing at the receiver;
* the receiver takes every RTP packet with its kernel arrival time
  (SO_TIMESTAMPNS, so its own scheduling does not count) and reports, per
  stream, the gaps between packets: p50/p99/max of |gap - 20 ms|, packets
  out of order, and how many streams it saw;
* the system under test: one asyncio process (uvloop) with one ``SipTrunk``
  placing N calls at once, each playing ``--seconds`` of audio, with the CPU
  time it used;

then the ceiling: N raw RTP streams from a bare asyncio sender (pre-built
packets, one ``call_at`` tick every 20 ms on the same drift-free schedule,
nothing else) in its own process, to the same receiver. The done-when of the
voice issue: p99 of |gap - 20 ms| within 2 ms for 100 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PTIME = 0.020


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def use_loop(uv: bool) -> None:
    if uv:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass


# --- the receiver (its own process) ---


def receiver(port: int, idle_s: float) -> None:
    """Every packet's kernel arrival time by SSRC; a JSON summary once idle."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    so_ts = getattr(socket, "SO_TIMESTAMPNS", 35)
    sock.setsockopt(socket.SOL_SOCKET, so_ts, 1)
    sock.bind(("127.0.0.1", port))
    print("ready", flush=True)
    streams: dict[int, list[tuple[int, int]]] = {}  # ssrc -> [(arrival ns, seq)]
    last = None
    while True:
        r, _, _ = select.select([sock], [], [], 0.2)
        if not r:
            if last is not None and time.monotonic() - last > idle_s:
                break
            continue
        data, anc, _, _ = sock.recvmsg(2048, 64)
        last = time.monotonic()
        ns = time.time_ns()
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == so_ts:
                sec, nsec = struct.unpack("qq", payload[:16])
                ns = sec * 1_000_000_000 + nsec
        if len(data) < 12:
            continue
        seq, _ts, ssrc = struct.unpack("!HII", data[2:12])
        streams.setdefault(ssrc, []).append((ns, seq))
    devs: list[float] = []
    disorder = 0
    packets = 0
    for pkts in streams.values():
        packets += len(pkts)
        for (t0, s0), (t1, s1) in zip(pkts, pkts[1:]):
            if s1 != (s0 + 1) & 0xFFFF:
                disorder += 1
            devs.append(abs((t1 - t0) / 1e6 - PTIME * 1000))
    devs.sort()

    def pct(p: float) -> float:
        return round(devs[min(len(devs) - 1, int(p * len(devs)))], 3) if devs else 0.0

    print(json.dumps({"streams": len(streams), "packets": packets, "out_of_order": disorder,
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(devs[-1], 3) if devs else 0.0}),
          flush=True)


# --- the system under test: one process, one SipTrunk ---


async def worker(sip_port: int, calls: int, seconds: float) -> None:
    from ujumbe.channels.sip import SipTrunk, TrunkConfig

    audio = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
                     for i in range(int(8000 * seconds)))
    trunk = SipTrunk(TrunkConfig(host="127.0.0.1", port=sip_port, max_calls=calls, cps=1000.0,
                                 max_duration_s=seconds * 4))
    await trunk.start()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    results = await asyncio.gather(*(trunk.call(to=f"97798{i:08d}", caller="9779800000000", audio=audio)
                                     for i in range(calls)))
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    await trunk.stop()
    reasons: dict[str, int] = {}
    for r in results:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    print(json.dumps({"reasons": reasons, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                      "skipped": sum(int(r.detail.get("rtp_skipped_frames", 0)) for r in results)}), flush=True)


# --- the ceiling: bare RTP streams, nothing else ---


async def raw(port: int, calls: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    frames = int(seconds / PTIME)
    payload = b"\xd5" * 160
    socks = []
    for _ in range(calls):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    dest = ("127.0.0.1", port)
    ssrcs = [int.from_bytes(os.urandom(4), "big") for _ in socks]
    done = loop.create_future()
    cpu0 = time.process_time()
    t0 = loop.time()
    state = {"n": 0}

    def tick() -> None:
        due = min(int((loop.time() - t0) / PTIME) + 1, frames)
        while state["n"] < due:
            n = state["n"]
            for s, ssrc in zip(socks, ssrcs):
                s.sendto(struct.pack("!BBHII", 0x80, 8, n & 0xFFFF, n * 160, ssrc) + payload, dest)
            state["n"] += 1
        if state["n"] >= frames:
            done.set_result(None)
        else:
            loop.call_at(t0 + state["n"] * PTIME, tick)

    loop.call_at(t0, tick)
    await done
    print(json.dumps({"cpu_s": round(time.process_time() - cpu0, 3)}), flush=True)


# --- the driver ---


def start_receiver(idle_s: float) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port), "--idle", str(idle_s)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, port


def finish(proc: subprocess.Popen[str], timeout: float) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def run_one(calls: int, seconds: float, uv: bool, nice: int = 0) -> dict:
    sipp = shutil.which("sipp")
    if sipp is None:
        sys.exit("sipp is needed (Debian/Ubuntu package sip-tester)")
    flag = ([] if uv else ["--no-uvloop"]) + (["--nice", str(nice)] if nice else [])
    # the system under test
    rx, rx_port = start_receiver(2.0)
    sip_port = free_port()
    uas = subprocess.Popen([sipp, "-sf", str(ROOT / "tests/sip/answer.xml"), "-i", "127.0.0.1", "-p", str(sip_port),
                            "-t", "u1", "-m", str(calls), "-set", "rtp_ip", "127.0.0.1", "-set", "rtp_port",
                            str(rx_port), "-nostdin", "-timeout", f"{int(seconds * 4 + 30)}s"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    sut = subprocess.Popen([sys.executable, __file__, "--worker", str(sip_port), "--calls", str(calls),
                            "--seconds", str(seconds), *flag], stdout=subprocess.PIPE, text=True)
    sut_out = finish(sut, seconds * 4 + 60)
    sut_rx = finish(rx, 30)
    uas.wait(30)
    # the ceiling
    rx, rx_port = start_receiver(1.0)
    ceil = subprocess.Popen([sys.executable, __file__, "--raw", str(rx_port), "--calls", str(calls),
                             "--seconds", str(seconds), *flag], stdout=subprocess.PIPE, text=True)
    ceil_out = finish(ceil, seconds * 4 + 30)
    ceil_rx = finish(rx, 30)
    return {"calls": calls, "sut": {**sut_out, **sut_rx}, "sipp_rc": uas.returncode,
            "ceiling": {**ceil_out, **ceil_rx}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness for the sender processes, both SipTrunk's and the bare one (negative needs root)")
    ap.add_argument("--receiver", type=int)
    ap.add_argument("--idle", type=float, default=2.0)
    ap.add_argument("--worker", type=int)
    ap.add_argument("--raw", type=int)
    args = ap.parse_args()
    uv = not args.no_uvloop
    if args.receiver:
        return receiver(args.receiver, args.idle)
    if args.nice and (args.worker or args.raw):
        os.nice(args.nice)
    if args.worker:
        use_loop(uv)
        return asyncio.run(worker(args.worker, args.calls[0], args.seconds))
    if args.raw:
        use_loop(uv)
        return asyncio.run(raw(args.raw, args.calls[0], args.seconds))
    load = os.getloadavg()
    print(f"# voice: {args.seconds:g} s of audio a call, {'uvloop' if uv else 'asyncio'}, nice {args.nice}, "
          f"load average {load[0]:.2f}, {os.cpu_count()} CPUs")
    print("| calls | SipTrunk p99 \\|gap-20ms\\| | p50 | max | calls completed | out of order | CPU % of a core "
          "| raw p99 | raw max | raw CPU % | p99 / raw p99 | CPU / raw CPU |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.calls:
        r = run_one(n, args.seconds, uv, args.nice)
        s, c = r["sut"], r["ceiling"]
        done = s.get("reasons", {}).get("played_to_end", 0)
        cpu = 100 * s.get("cpu_s", 0) / max(s.get("wall_s", 1), 1e-9)
        raw_cpu = 100 * c.get("cpu_s", 0) / args.seconds
        print(f"| {n} | {s.get('p99_ms')} ms | {s.get('p50_ms')} | {s.get('max_ms')} | {done}/{n} "
              f"| {s.get('out_of_order')} | {cpu:.1f} | {c.get('p99_ms')} ms | {c.get('max_ms')} | {raw_cpu:.1f} "
              f"| {s.get('p99_ms', 0) / max(c.get('p99_ms', 0), 0.001):.2f} | {cpu / max(raw_cpu, 0.01):.2f} |",
              flush=True)
        if s.get("streams") != n or s.get("skipped"):
            print(f"  note: receiver saw {s.get('streams')} streams; {s.get('skipped')} frames skipped; "
                  f"reasons {s.get('reasons')}; sipp exit {r['sipp_rc']}")


if __name__ == "__main__":
    main()
