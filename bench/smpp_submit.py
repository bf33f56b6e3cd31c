"""submit_sm/s through ONE bind of SmppConnector, against our simulator in another process.

    .venv/bin/python bench/smpp_submit.py [--seconds 10] [--concurrency 512] [--uvloop]
    .venv/bin/python bench/smpp_submit.py --pipeline [--pg [URL]] [--messages 20000]

For each peer latency (0 ms and 20 ms) it measures:

* ``connector``: ``SmppConnector.send()`` with plenty of concurrent callers,
  one bind, the default window of 64;
* ``raw window 64``: a minimal raw-asyncio client keeping exactly 64
  pre-encoded submit_sm outstanding: what one bind can carry at this peer's
  real latency (its own scheduling included), with no client code at all;
* ``ceiling``: the same raw client with a 4096 window: what the peer itself
  can take.

With a latency, ``of w/lat`` is the rate against window ÷ latency (64 / 20 ms
= 3,200/s), the issue's measure for one bind.

``--pipeline`` adds the connector as the platform uses it: ``ujumbe serve
--role all`` with one SMPP bind (window 64) provisioned to the simulator at
each latency (receipts on), draining one request of ``--messages``
recipients; the rate is taken between 10 % and 90 % of them submitted. The
dispatcher keeps a send's window slot until its outcome is durable (a crash
repeats at most one window), so by Little's law each send holds its slot for
window ÷ rate: latency plus the wait for its outcome's commit, printed as
``hold``.

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


async def run_connector(port: int, seconds: float, concurrency: int) -> tuple[float, float]:
    """(sends/s, this process's CPU µs per send: the connector and its callers)."""
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
    t0, cpu0 = time.perf_counter(), time.process_time()
    stop_at = t0 + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = done / (time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / max(done, 1) * 1e6
    await c.stop()
    return rate, cpu


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


WINDOW = 64


def of_window(rate: float, lat: float) -> str:
    return f"{rate / (WINDOW / (lat / 1000)):>9.3f}" if lat > 0 else f"{'':>9}"


async def main_async(args: argparse.Namespace) -> None:
    per = args.seconds / (3 * len(args.latencies))
    print(f"loop={'uvloop' if args.uvloop else 'asyncio'}  one bind, window {WINDOW}, {args.concurrency} concurrent "
          f"senders, {per:.1f} s per run, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"{'name':<22}{'msgs/s':>10}{'of w/lat':>9}{'of raw 64':>10}{'ceiling msgs/s':>16}{'ratio':>8}"
          f"{'cpu us/send':>12}")
    for lat in args.latencies:
        proc, port = start_peer(lat, args.uvloop)
        try:
            ours, cpu = await run_connector(port, per, args.concurrency)
            raw64 = await run_ceiling(port, per, WINDOW)
            ceiling = await run_ceiling(port, per)
        finally:
            proc.terminate()
            proc.wait()
        print(f"{f'connector {lat:g} ms peer':<22}{ours:>10.0f}{of_window(ours, lat)}{ours / raw64:>10.3f}"
              f"{ceiling:>16.0f}{ours / ceiling:>8.2f}{cpu:>12.0f}", flush=True)
        print(f"{f'raw window 64, {lat:g} ms':<22}{raw64:>10.0f}{of_window(raw64, lat)}{'':>10}{ceiling:>16.0f}"
              f"{raw64 / ceiling:>8.2f}", flush=True)


def run_pipeline(args: argparse.Namespace, lat: float) -> None:
    """One bind as the platform drives it: serve --role all draining one request."""
    import httpx

    from _common import PY, add_connector, create_account, database, free_port, serve_ujumbe
    from e2e import stage_counts, start_line_port

    n = args.messages
    numbers = [f"2547{10 + (i // 10000) % 20:02d}{i % 10000:04d}{10 + (i // 200000) % 90:02d}" for i in range(n)]
    smsc, port = start_line_port(
        [PY, "-m", "ujumbe.channels.smpp.sim", "--port", "0", "--latency-ms", str(lat), "--receipt-delay-ms", "0",
         "--log-level", "WARNING", "--window", "256"], Path("/tmp/ujumbe-bench-smsc.log"))
    server = None
    try:
        raw64 = asyncio.run(run_ceiling(port, 2.0, WINDOW))
        with database(args.pg) as db:
            account = create_account(db)
            add_connector(db, "smsc", port, binds=1, window=WINDOW)
            http_port = free_port()
            server = serve_ujumbe(db, "all", http_port)
            time.sleep(1.0)
            api = f"http://127.0.0.1:{http_port}/v1/messages"
            r = httpx.post(api, json={"to": numbers, "sender": "DUKA", "text": "Habari! Your order is on its way."},
                           headers={"Authorization": f"Bearer {account['api_key']}"}, timeout=600)
            if r.status_code != 202:
                raise SystemExit(f"send failed: {r.status_code} {r.text[:300]}")
            del r
            cpu0 = server.cpu_seconds()
            marks: dict[float, tuple[float, int]] = {}
            deadline = time.perf_counter() + 600
            while time.perf_counter() < deadline:
                done = stage_counts(db)["submitted"]
                t = time.perf_counter()
                for f in (0.1, 0.9):
                    if f not in marks and done >= f * n:
                        marks[f] = (t, done)
                if 0.9 in marks:
                    break
                time.sleep(0.1)
            cpu = server.cpu_seconds() - cpu0
            label = db.label
    finally:
        if server is not None:
            server.stop()
        smsc.stop()
    (t1, n1), (t2, n2) = marks[0.1], marks[0.9]
    rate = (n2 - n1) / (t2 - t1)
    hold = (WINDOW / rate - lat / 1000) * 1000
    print(f"{f'pipeline {lat:g} ms ({label})':<22}{rate:>10.0f}{of_window(rate, lat)}{rate / raw64:>10.3f}"
          f"   hold per send {hold:.1f} ms beyond the latency; raw window 64: {raw64:.0f}/s; "
          f"serve CPU {cpu * 1e6 / n:.0f} us per message (accept excluded)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="total measuring time (split over the runs)")
    ap.add_argument("--concurrency", type=int, default=512)
    ap.add_argument("--latencies", type=float, nargs="+", default=[0.0, 20.0])
    ap.add_argument("--uvloop", action="store_true", help="client and peer on uvloop")
    ap.add_argument("--pipeline", action="store_true", help="also the bind as ujumbe serve drives it")
    ap.add_argument("--pipeline-only", action="store_true", help="only the pipeline rows")
    ap.add_argument("--messages", type=int, default=20_000, help="recipients of the pipeline's request")
    ap.add_argument("--pg", nargs="?", const="postgresql://postgres@127.0.0.1:5432/postgres", default=None,
                    help="pipeline on PostgreSQL (admin URL)")
    args = ap.parse_args()
    if not args.pipeline_only:
        if args.uvloop:
            import uvloop

            uvloop.run(main_async(args))
        else:
            asyncio.run(main_async(args))
    if args.pipeline or args.pipeline_only:
        sys.path.insert(0, str(ROOT / "bench"))
        for lat in args.latencies:
            run_pipeline(args, lat)


if __name__ == "__main__":
    main()
