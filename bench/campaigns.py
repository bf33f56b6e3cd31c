"""Campaigns: a 100,000-row xlsx import, a 100,000-number campaign sent at
full pace, and the report export, each timed, with the process's peak memory.

    .venv/bin/python bench/campaigns.py            # SQLite
    .venv/bin/python bench/campaigns.py --pg [URL] # PostgreSQL (throwaway database)
    .venv/bin/python bench/campaigns.py --rows 20000 --rate 2000

In one process (API services and workers, the built-in operator simulator
with 20-80 ms receipts), as a test's platform runs, unlike the other
benchmarks (no HTTP load here: the import, the run and the report are
worker work). Each number gets its own
text (a tag in the message), so the send is 100,000 single-recipient sends.
Peak memory is the process's VmHWM after each step (it only grows).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openpyxl  # noqa: E402

from ujumbe.config import Settings  # noqa: E402
from ujumbe.runtime import Platform  # noqa: E402


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def workbook(rows: int) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["number", "tags_name", "tags_age"])
    n = 0
    i = 100_000
    while n < rows:
        i += 1
        if 1 <= i % 10_000 <= 7:  # the simulator fails numbers ending 0001-0007 on purpose
            continue
        sheet.append([float(f"70{i:07d}"), f"name{i}", 20 + i % 50])
        n += 1
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


async def database(pg: str | None) -> str | None:
    if pg is None:
        return None
    import asyncpg

    name = "bench_campaigns_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(pg)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return pg.rsplit("/", 1)[0] + "/" + name


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", nargs="?", const="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rate", type=int, default=100_000, help="the campaign's messages/s (default: unpaced)")
    args = ap.parse_args()
    t = time.perf_counter()
    data = workbook(args.rows)
    print(f"xlsx of {args.rows} rows: {len(data) / 1e6:.1f} MB, made in {time.perf_counter() - t:.1f} s", flush=True)
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=tmp, database_url=await database(args.pg), simulator=True,
                        sim_receipt_delay_ms=(20, 80), secret_key="bench-" + uuid.uuid4().hex)
    platform = Platform(settings)
    await platform.start("all")
    try:
        made = await platform.accounts.create(name="Bench", email="bench@example.com", password="bench password 1",
                                              username="bench", credits=str(args.rows * 2))
        account = await platform.accounts.get(made["account_id"])
        camp, _ = await platform.campaigns.create(account, name="Bench", services="SMS",
                                                  message="Habari {tags_name}, umri {tags_age}", rate=args.rate)
        base = peak_mb()
        t = time.perf_counter()
        job = await platform.jobs.start_import(account, camp["id"], "numbers.xlsx", data)
        job = await platform.jobs.wait(account, job["id"], 600)
        took = time.perf_counter() - t
        assert job["status"] == "done", job
        print(f"import: {job['result']['imported']} numbers in {took:.1f} s "
              f"({job['result']['imported'] / took:,.0f} rows/s), peak RSS {peak_mb():.0f} MB (before: {base:.0f})",
              flush=True)

        t = time.perf_counter()
        run = await platform.campaigns.begin(account, camp["id"])
        print(f"begin: {run['hold_note']} in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        last = 0.0
        while True:
            s = await platform.campaigns.summary(account, camp["id"])
            out = s["numbers"] - s["by_status"]["scheduled"]
            if time.perf_counter() - last > 5:
                print(f"  {time.perf_counter() - t:5.1f} s: {out} sent, {s['by_status']['completed']} completed",
                      flush=True)
                last = time.perf_counter()
            if s["status"] == "completed":
                break
            await asyncio.sleep(0.5)
        took = time.perf_counter() - t
        print(f"send: {s['by_status']['completed']} completed ({s['by_status']['failed']} failed) in {took:.1f} s "
              f"({s['numbers'] / took:,.0f} numbers/s), credits consumed {s['credit_consumed']}, on hold "
              f"{s['credits_on_hold']}, peak RSS {peak_mb():.0f} MB", flush=True)

        t = time.perf_counter()
        job = await platform.jobs.start_report(account, camp["id"])
        job = await platform.jobs.wait(account, job["id"], 600)
        assert job["status"] == "done", job
        _, xlsx_bytes, _ = await platform.jobs.file(account, job["id"], "xlsx")
        _, csv_bytes, _ = await platform.jobs.file(account, job["id"], "csv")
        print(f"report: {job['result']['rows']} rows in {time.perf_counter() - t:.1f} s "
              f"(xlsx {len(xlsx_bytes) / 1e6:.1f} MB, csv {len(csv_bytes) / 1e6:.1f} MB), peak RSS {peak_mb():.0f} MB",
              flush=True)
    finally:
        await platform.stop()
        if args.pg:
            import asyncpg

            conn = await asyncpg.connect(args.pg)
            await conn.execute(f"DROP DATABASE IF EXISTS {settings.database_url.rsplit('/', 1)[1]}")
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
