"""Emails/s through the SMTP connector, beside aiosmtplib-to-aiosmtpd raw as the ceiling.

    .venv/bin/python bench/email_send.py [--messages 2000] [--pool 4]

The relay (aiosmtpd, accepting everything) runs in a subprocess so it does
not share the client's event loop. In one run it measures:

* ``raw, 1 connection``: aiosmtplib ``sendmail`` of one pre-built message, back to back;
* ``connector, 1 connection``: ``SmtpConnector.send()`` with pool=1: MIME
  building, DKIM signing (RSA-2048) and the SMTP exchange per message;
* ``raw, N connections`` and ``connector, pool N``: the same over N sessions.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Not named email.py: bench/ is first on every benchmark's sys.path, and a
# file of that name there hid the standard library's email package from them all.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import aiosmtplib  # noqa: E402

from ujumbe.channels.base import Outbound  # noqa: E402
from ujumbe.channels.email.dkim import DomainKey, generate_key  # noqa: E402
from ujumbe.channels.email.mime import build  # noqa: E402
from ujumbe.channels.email.smtp import SmtpConnector  # noqa: E402

RELAY = """
import asyncio, sys
from aiosmtpd.smtp import SMTP
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
async def main():
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(Sink()), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

TEXT = "Habari Wanjiru, oda yako 17 iko tayari. Asante kwa kununua kutoka Duka. " * 4


class NoEvents:
    async def receipt(self, receipt: object) -> None: ...
    async def inbound(self, message: object) -> None: ...


def outbound(n: int) -> Outbound:
    return Outbound(str(n), "acc", "orders@duka.co.ke", f"user{n}@example.org", TEXT, "utf-8", 1,
                    meta={"subject": "Oda yako iko tayari"})


async def raw(port: int, n: int, sessions: int) -> float:
    data = build(outbound(0)).data
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) for _ in range(sessions)]
    for c in clients:
        await c.connect()
        await c.ehlo()
    per = n // sessions

    async def run(c: aiosmtplib.SMTP) -> None:
        for i in range(per):
            await c.sendmail("bounce@duka.co.ke", [f"user{i}@example.org"], data)

    started = time.perf_counter()
    await asyncio.gather(*(run(c) for c in clients))
    elapsed = time.perf_counter() - started
    for c in clients:
        await c.quit()
    return per * sessions / elapsed


async def connector(port: int, n: int, pool: int) -> float:
    pem, _ = generate_key()
    key = DomainKey("duka.co.ke", "uj", pem)

    async def keys(domain: str) -> DomainKey:
        return key

    c = SmtpConnector("127.0.0.1", port, pool=pool, concurrency=pool, keys=keys)
    await c.start(NoEvents())
    await c.send(outbound(0))  # open the first session before timing
    sem = asyncio.Semaphore(pool * 2)

    async def one(i: int) -> None:
        async with sem:
            await c.send(outbound(i))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - started
    await c.stop()
    return n / elapsed


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--pool", type=int, default=4)
    args = ap.parse_args()
    relay = subprocess.Popen([sys.executable, "-c", RELAY], stdout=subprocess.PIPE, text=True)
    try:
        port = int(relay.stdout.readline())  # type: ignore[union-attr]
        results = [
            ("raw aiosmtplib, 1 connection", await raw(port, args.messages, 1)),
            ("connector (MIME + DKIM), 1 connection", await connector(port, args.messages, 1)),
            (f"raw aiosmtplib, {args.pool} connections", await raw(port, args.messages, args.pool)),
            (f"connector (MIME + DKIM), pool {args.pool}", await connector(port, args.messages, args.pool)),
        ]
    finally:
        relay.terminate()
        relay.wait()
    for label, rate in results:
        print(f"{label:42s} {rate:8.0f} emails/s")


if __name__ == "__main__":
    asyncio.run(main())
