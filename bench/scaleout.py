"""Scale-out on PostgreSQL: one worker process vs two draining the same backlog.

    .venv/bin/python bench/scaleout.py [--pg URL] [--messages 50000]

For each of 1 and 2 workers, in a fresh throwaway database: queue
``--messages`` messages with the API alone (``ujumbe serve --role api``,
requests of 1,000 recipients), stop it, then start the worker processes
(``ujumbe serve --role worker``, each with the built-in operator simulator,
receipts after 10-50 ms) and time the drain: from the first submit to the
last, read from the messages' own ``submitted_at``. The figure is the ratio
of the two throughputs.

This machine has 2 cores, shared by the workers AND PostgreSQL, so two
workers cannot have a core each: the ratio shows how much of the second core
a second worker turns into throughput, not the linear scaling a cluster
with a core per worker (and PostgreSQL elsewhere) would show.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_PG,
    UJUMBE,
    Proc,
    create_account,
    database,
    free_port,
    serve_ujumbe,
    today,
)


def queue_backlog(db: object, account: dict[str, str], n: int) -> None:
    port = free_port()
    api = serve_ujumbe(db, "api", port)  # type: ignore[arg-type]
    try:
        with httpx.Client(timeout=300) as client:
            for start in range(0, n, 1000):
                to = [f"2547{10 + (i // 10000) % 20:02d}{i % 10000:04d}99" for i in range(start, min(n, start + 1000))]
                r = client.post(f"http://127.0.0.1:{port}/v1/messages", json={"to": to, "text": "Scale-out test"},
                                headers={"Authorization": f"Bearer {account['api_key']}"})
                r.raise_for_status()
    finally:
        api.stop()


async def progress(url: str) -> tuple[int, int | None, int | None]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT COUNT(submitted_at), MIN(submitted_at), MAX(submitted_at) FROM messages")
        return int(row[0]), row[1], row[2]
    finally:
        await conn.close()


def drain(pg: str, workers: int, n: int, timeout: float) -> tuple[float, float]:
    with database(pg) as db:
        assert db.url is not None
        account = create_account(db)
        queue_backlog(db, account, n)
        env = dict(db.env, UJUMBE_SIM_RECEIPT_DELAY_MS="10-50")
        procs = [Proc([*UJUMBE, "serve", "--role", "worker", "--port", str(free_port())], env,
                      log=db.data_dir / f"worker{i}.log") for i in range(workers)]
        t0 = time.perf_counter()
        cpu = 0.0
        try:
            while True:
                done, first, last = asyncio.run(progress(db.url))
                if done >= n or time.perf_counter() - t0 > timeout:
                    break
                time.sleep(0.5)
            cpu = sum(p.cpu_seconds() for p in procs)
        finally:
            for p in procs:
                p.stop()
        if done < n:
            raise SystemExit(f"{workers} worker(s) submitted only {done}/{n} in {timeout:g} s")
        span = max((last or 0) - (first or 0), 1) / 1000
        return n / span, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL admin URL (a throwaway database is made)")
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    one, cpu1 = drain(args.pg, 1, args.messages, args.timeout)
    two, cpu2 = drain(args.pg, 2, args.messages, args.timeout)
    print(f"\nscale-out on postgres: drain {args.messages} queued messages, built-in simulator, {today()}")
    print(f"{'workers':<10}{'msg/s':>9}{'worker CPU s':>14}")
    print(f"{'1':<10}{one:>9.0f}{cpu1:>14.1f}")
    print(f"{'2':<10}{two:>9.0f}{cpu2:>14.1f}")
    print(f"ratio 2/1: {two / one:.2f} (ceiling: 2.00 with a free core per worker; this machine has 2 cores "
          "for both workers and PostgreSQL)")


if __name__ == "__main__":
    main()
