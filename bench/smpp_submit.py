"""submit_sm/s through ONE bind of SmppConnector, against our simulator in another process.

    .venv/bin/python bench/smpp_submit.py [--seconds 10] [--concurrency 512] [--uvloop]

For each peer latency (0 ms and 20 ms) it measures:

* ``connector``: ``SmppConnector.send()`` with plenty of concurrent callers,
  one bind, the default window of 64;
* ``ceiling``: a minimal raw-asyncio client blasting pre-encoded submit_sm with
  a 4096 window at the same peer — what the peer itself can take.

The peer runs in a subprocess so it does not share a core with the client.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ujumbe.channels.base import Outbound  # noqa: E402
from ujumbe.channels.smpp import pdu as P  # noqa: E402
from ujumbe.channels.smpp.client import SmppConnector  # noqa: E402


class NoEvents:
    async def receipt(self, receipt: object) -> None: ...
    async def inbound(self, message: object) -> None: ...


def start_peer(latency_ms: float, use_uvloop: bool) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-m", "ujumbe.channels.smpp.sim", "--port", "0", "--latency-ms", str(latency_ms),
           "--no-receipts", "--log-level", "WARNING", "--window", "64"]
    if use_uvloop:
        cmd.append("--uvloop")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(line.rsplit(":", 1)[1])


async def run_connector(port: int, seconds: float, concurrency: int) -> float:
    c = SmppConnector("127.0.0.1", port, "bench", "bench", binds=1, window=64, registered_delivery=False)
    await c.start(NoEvents())  # type: ignore[arg-type]
    msg = Outbound("m", "a", "Ujumbe", "254700000100", "Benchmark message body", "gsm7", 1, want_receipt=False)
    done = 0
    stop_at = 0.0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await c.send(msg)
            done += 1

    # warm-up, then the measured run
    stop_at = time.perf_counter() + min(1.0, seconds / 4)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = 0
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = done / (time.perf_counter() - t0)
    await c.stop()
    return rate


async def run_ceiling(port: int, seconds: float, window: int = 4096) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    bind = P.encode(P.Pdu.make("bind_transmitter", 1, system_id="raw", password="raw", interface_version=0x34))
    writer.write(bind)
    r = P.PduReader()
    while True:
        r.feed(await reader.read(65536))
        if r.next() is not None:
            break
    template = P.encode(P.Pdu.make("submit_sm", 0, source_addr_ton=5, source_addr="Ujumbe", dest_addr_ton=1,
                                   dest_addr_npi=1, destination_addr="254700000100",
                                   short_message=b"Benchmark message body"))
    head, body = template[:12], template[16:]
    pack = struct.Struct(">I").pack
    seq = 1
    outstanding = 0
    answered = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        n = window - outstanding
        if n > 0:
            chunks = []
            for _ in range(n):
                seq += 1
                chunks.append(head + pack(seq) + body)
            writer.write(b"".join(chunks))
            outstanding += n
        data = await reader.read(1 << 20)
        if not data:
            break
        r.feed(data)
        got = sum(1 for _ in r)
        outstanding -= got
        answered += got
    rate = answered / (time.perf_counter() - t0)
    writer.close()
    return rate


async def main_async(args: argparse.Namespace) -> None:
    per = args.seconds / (2 * len(args.latencies))
    print(f"loop={'uvloop' if args.uvloop else 'asyncio'}  one bind, window 64, {args.concurrency} concurrent senders, {per:.1f} s per run")
    print(f"{'name':<22}{'msgs/s':>10}{'ceiling msgs/s':>16}{'ratio':>8}")
    for lat in args.latencies:
        proc, port = start_peer(lat, args.uvloop)
        try:
            ours = await run_connector(port, per, args.concurrency)
            ceiling = await run_ceiling(port, per)
        finally:
            proc.terminate()
            proc.wait()
        print(f"{f'connector {lat:g} ms peer':<22}{ours:>10.0f}{ceiling:>16.0f}{ours / ceiling:>8.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="total measuring time (split over the runs)")
    ap.add_argument("--concurrency", type=int, default=512)
    ap.add_argument("--latencies", type=float, nargs="+", default=[0.0, 20.0])
    ap.add_argument("--uvloop", action="store_true", help="client and peer on uvloop")
    args = ap.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main_async(args))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
