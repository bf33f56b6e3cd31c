"""The dashboard's pages with 1,000,000 messages in the store.

    .venv/bin/python bench/dashboard.py [--pg [URL]] [--messages 1000000] [--days 30] [--requests 30]

Fills a fresh store with one account's messages by bulk insert (spread
evenly over the last ``--days`` days, 90 % delivered, 5 % undelivered, 3 %
rejected, 2 % submitted, three networks), then serves the app on a real
socket and times each page over HTTP after logging in, as a browser would.
The figures' 2-second cache is turned off, so every request reads the store:
the first look at the figures reads the 24-hour window once (in chunks, the
event loop serving others between them), later ones only what settled or
changed since (services/dashboard.py, ``Tally``); "first" is that first look.
``--days 1`` puts all the messages in the main page's 24-hour window, its
worst case. Ceiling beside it: ``/health``, the same app's cheapest answer.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DEFAULT_PG, SECRET, database, free_port  # noqa: E402

PASSWORD = "bench password 123"
NETWORKS = ("Safaricom", "Airtel", "Telkom")


def when(days_ago: float) -> str:
    """A datetime-local value (UTC) that many days ago."""
    import datetime as dt

    t = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_ago)
    return t.strftime("%Y-%m-%dT%H:%M")


def states(i: int) -> tuple[str, str | None, str | None]:
    r = i % 100
    if r < 90:
        return "delivered", None, None
    if r < 95:
        return "undelivered", "001", "absent_subscriber"
    if r < 98:
        return "rejected", "006", "blacklisted"
    return "submitted", None, None


async def fill(p: Any, account_id: str, n: int, days: float) -> float:
    from ujumbe.store import messages as mq

    now = int(time.time() * 1000)
    span = int(days * 86_400_000) - 60_000
    per_request = 1000
    started = time.perf_counter()
    chunk = 20_000
    for base in range(0, n, chunk):
        rows, reqs = [], []
        for i in range(base, min(n, base + chunk)):
            created = now - span + (span * i) // n  # ids grow with time, as they do
            if i % per_request == 0:
                reqs.append((f"req-{i // per_request}", account_id, None, "native", "sms", None, None, None,
                             per_request, per_request, per_request * 10_000, None, created))
            state, code, reason = states(i)
            done = created + 1500 + (i * 7919) % 6000 if state != "submitted" else None
            rows.append((i + 1, f"req-{i // per_request}", account_id, "sms", "native", None,
                         f"2547{(i * 7) % 100_000_000:08d}", NETWORKS[i % 3], "Habari, your order is on its way",
                         "gsm7", 1, 10_000, "settled", state, code, reason, None, None, created,
                         done or created, done, created + 172_800_000))

        async def unit(tx: Any, rows: list[Any] = rows, reqs: list[Any] = reqs) -> None:
            await mq.many(tx, mq.INSERT_REQUEST, reqs, mq._INSERT_REQUESTS)
            await mq.many(tx, mq.INSERT_MESSAGE, rows, mq._INSERT_MESSAGES)

        await p.store.run(unit)
    if p.store.dialect == "postgres":
        await p.store.run(lambda tx: tx.execute(f"SELECT setval('message_ids', {n})"))
    # what autovacuum (PostgreSQL) or a long-running server would have by now
    await p.store.run(lambda tx: tx.execute("ANALYZE"))
    return time.perf_counter() - started


async def timed(client: Any, path: str, count: int) -> tuple[float, float, int]:
    times = []
    status = 0
    for _ in range(count):
        t = time.perf_counter()
        r = await client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        status = r.status_code
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", nargs="?", const=DEFAULT_PG, default=None)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--requests", type=int, default=30, help="timed requests per page")
    args = ap.parse_args()
    with database(args.pg) as db:  # outside the event loop: it makes and drops the database itself
        asyncio.run(run(args, db))


async def run(args: argparse.Namespace, db: Any) -> None:
    import httpx
    import uvicorn

    from ujumbe.config import Settings
    from ujumbe.http.app import create_app
    from ujumbe.runtime import Platform

    settings = Settings(data_dir=db.data_dir, database_url=db.url, secret_key=SECRET)
    p = Platform(settings)
    await p.start("api")  # no workers: nothing moves while we measure
    try:
        acc = await p.accounts.create(name="Bench", email="bench@example.com", password=PASSWORD, credits="10")
        loaded = await fill(p, acc["account_id"], args.messages, args.days)
        window = min(1.0, 1 / args.days) * args.messages
        print(f"{db.label}: {args.messages:,} messages inserted in {loaded:.1f} s "
              f"(~{window:,.0f} in the last 24 h)", flush=True)
        p.dashboard.cache_s = 0  # every request reads the store
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(p, manage_platform=False), host="127.0.0.1",
                                               port=port, log_level="warning"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
                page = await c.get("/dashboard/login")
                token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
                r = await c.post("/dashboard/login", data={"csrf": token, "login": "bench", "password": PASSWORD})
                assert r.status_code == 303, r.text
                some = f"2547{(args.messages // 2 * 7) % 100_000_000:08d}"
                pages = [
                    ("/health (ceiling)", "/health"),
                    ("today at a glance (main page)", "/dashboard/today"),
                    ("today's figures (live refresh)", "/dashboard/today/figures"),
                    ("messages, newest 50", "/dashboard/messages"),
                    ("messages by number", f"/dashboard/messages?to={some}"),
                    ("messages, state=rejected", "/dashboard/messages?state=rejected"),
                    ("messages, older page", f"/dashboard/messages?cursor={args.messages // 2}"),
                ("messages since a time", f"/dashboard/messages?since={when(args.days * 0.9)}"),
                ("messages until a time", f"/dashboard/messages?until={when(args.days * 0.5)}"),
                ("messages in an hour, rejected",
                 f"/dashboard/messages?since={when(args.days * 0.5)}&until={when(args.days * 0.5 - 1 / 24)}"
                 "&state=rejected"),
                    ("one message", f"/dashboard/messages/{args.messages // 2}"),
                    ("account", "/dashboard/account"),
                ]
                for label, path in pages:
                    t = time.perf_counter()
                    await c.get(path)  # the first look (today's figures: the window is read once, in chunks)
                    first = (time.perf_counter() - t) * 1000
                    median, p95, status = await timed(c, path, args.requests)
                    assert status == 200, (path, status)
                    print(f"  {label:34} median {median:8.1f} ms   p95 {p95:8.1f} ms   first {first:8.1f} ms",
                          flush=True)
        finally:
            server.should_exit = True
            await task
    finally:
        await p.stop()


if __name__ == "__main__":
    main()
