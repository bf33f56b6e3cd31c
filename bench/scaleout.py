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
import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_PG,
    backend_pids,
    cpu_of,
    create_account,
    database,
    free_port,
    serve_ujumbe,
    serve_worker,
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


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores, everyone's)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def drain(pg: str, workers: int, n: int, timeout: float) -> tuple[float, float, float, float, float]:
    with database(pg) as db:
        assert db.url is not None
        account = create_account(db)
        queue_backlog(db, account, n)
        procs = [serve_worker(db, {"UJUMBE_SIM_RECEIPT_DELAY_MS": "10-50"}, str(i)) for i in range(workers)]
        t0, busy0 = time.perf_counter(), machine_busy()
        cpu = pg_cpu = 0.0
        pg_pids: set[int] = set()
        try:
            while True:
                done, first, last = asyncio.run(progress(db.url))
                # backends come and go with the pools: remember each one seen
                pg_pids.update(asyncio.run(backend_pids(db.url)))
                if done >= n or time.perf_counter() - t0 > timeout:
                    break
                time.sleep(0.5)
            cpu = sum(p.cpu_seconds() for p in procs)
            pg_cpu = sum(cpu_of(pid) for pid in pg_pids)
            # what the rest of the machine (other users included) took meanwhile
            wall = time.perf_counter() - t0
            others = machine_busy() - busy0 - cpu - pg_cpu
        finally:
            for p in procs:
                p.stop()
        if done < n:
            raise SystemExit(f"{workers} worker(s) submitted only {done}/{n} in {timeout:g} s")
        span = max((last or 0) - (first or 0), 1) / 1000
        return n / span, cpu, pg_cpu, max(others, 0.0), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL admin URL (a throwaway database is made)")
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    one, cpu1, pg1, other1, wall1 = drain(args.pg, 1, args.messages, args.timeout)
    two, cpu2, pg2, other2, wall2 = drain(args.pg, 2, args.messages, args.timeout)
    n = args.messages
    print(f"\nscale-out on postgres: drain {n} queued messages, built-in simulator, {today()}")
    print(f"{'workers':<10}{'msg/s':>9}{'worker CPU s':>14}{'PG backends CPU s':>19}{'us/msg worker+PG':>18}"
          f"{'rest of machine':>17}")
    for w, rate, c, p, o, wall in ((1, one, cpu1, pg1, other1, wall1), (2, two, cpu2, pg2, other2, wall2)):
        print(f"{w:<10}{rate:>9.0f}{c:>14.1f}{p:>19.1f}{(c + p) / n * 1e6:>18.0f}{o / wall:>12.2f} cores")
    # With the workers and PostgreSQL sharing the machine's cores, throughput
    # cannot exceed cores / (CPU per message, worker + PostgreSQL).
    bound = 2 / ((cpu2 + pg2) / n)
    print(f"bound from CPU per message on 2 cores: {bound:.0f} msg/s; 2 workers reached {two / bound:.2f} of it")
    # One worker already keeps (its CPU + PostgreSQL's) per message x rate cores
    # busy; on 2 cores a second can add at most what is left.
    busy1 = (cpu1 + pg1) / n * one
    print(f"ratio 2/1: {two / one:.2f}; bound on 2 cores: {2 / busy1:.2f} (one worker and its PostgreSQL backends "
          f"kept {busy1:.2f} cores busy); 2.00 only with a free core per worker and PostgreSQL elsewhere")


if __name__ == "__main__":
    main()
