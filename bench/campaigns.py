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

Each step prints a ceiling measured in the same run:

* import: openpyxl's bare read-only read of the same xlsx (every cell, nothing
  done with it);
* send: the same count through one bulk request (``Messaging.send`` of 100,000
  recipients, each with its own text, for another account), until every
  message is final, so the same dispatcher, simulator and receipts;
* report: csv.writer alone of the same rows (already in memory), and for
  reference openpyxl's write-only workbook of them (the writer reports had).

Every step also prints this process's CPU (all threads) per row, number or
message: the figure to compare on a shared machine.

``--skip-ceilings`` leaves them out (e.g. under a profiler).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openpyxl  # noqa: E402

from ujumbe.config import Settings  # noqa: E402
from ujumbe.runtime import Platform  # noqa: E402


def cpu_s() -> float:
    """This process's CPU seconds (every thread): on a shared machine, the figure to compare."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


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


def bare_read(data: bytes) -> int:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    cells = 0
    for row in book.worksheets[0].iter_rows(values_only=True):
        cells += len(row)
    book.close()
    return cells


async def bulk_ceiling(platform: Platform, rows: int) -> None:
    from ujumbe.services.messaging import SendRequest

    made = await platform.accounts.create(name="Bulk", email="bulk@example.com", password="bench password 1",
                                          username="bulk", credits=str(rows * 2))
    account = await platform.accounts.get(made["account_id"])
    numbers, i = [], 300_000
    while len(numbers) < rows:
        i += 1
        if 1 <= i % 10_000 <= 7:
            continue
        numbers.append(f"+2547{i:08d}")
    texts = [f"Habari name{i}, umri {20 + i % 50}" for i in range(rows)]
    t, c = time.perf_counter(), cpu_s()
    await platform.messaging.send(account, SendRequest(recipients=numbers, texts=texts))
    accepted = time.perf_counter() - t
    final = "('delivered', 'undelivered', 'failed', 'rejected', 'expired')"
    while True:
        done = int(await platform.store.read(lambda tx: tx.fetchval(
            f"SELECT count(*) FROM messages WHERE account_id = ? AND state IN {final}", account.id)))
        if done >= rows:
            break
        await asyncio.sleep(0.5)
    took = time.perf_counter() - t
    print(f"  ceiling: the same count as one bulk request: accepted in {accepted:.1f} s, every message final in "
          f"{took:.1f} s ({rows / took:,.0f} msg/s), {(cpu_s() - c) * 1e6 / rows:.0f} us CPU a message, peak RSS {peak_mb():.0f} MB", flush=True)


async def report_rows(platform: Platform, cid: int) -> list[list[object]]:
    rows: list[list[object]] = []
    after = 0
    while True:
        page = await platform.store.read(lambda tx, a=after: tx.fetch(
            "SELECT id, number, status, credit_consumed, duration, playback, message_id, error, tags "
            "FROM campaign_numbers WHERE campaign_id = ? AND id > ? ORDER BY id LIMIT 5000", cid, a))
        if not page:
            return rows
        rows.extend([r[0], r[1], "Bench", r[2], str(r[3]), r[4], r[5], r[6], r[7], *json.loads(r[8]).values()]
                    for r in page)
        after = page[-1][0]


def bare_csv(rows: list[list[object]]) -> int:
    import csv

    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return len(out.getvalue().encode())


def bare_openpyxl(rows: list[list[object]]) -> int:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("report")
    for r in rows:
        sheet.append(r)
    buf = io.BytesIO()
    book.save(buf)
    return len(buf.getvalue())


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
    ap.add_argument("--skip-ceilings", action="store_true")
    ap.add_argument("--steps", default="import,send,report", help="stop after the last of these (to profile one)")
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
        if not args.skip_ceilings:
            t, c = time.perf_counter(), cpu_s()
            cells = bare_read(data)
            print(f"  ceiling: openpyxl read-only read of the same xlsx: {cells:,} cells in "
                  f"{time.perf_counter() - t:.1f} s, {(cpu_s() - c) * 1e6 / args.rows:.0f} us CPU a row", flush=True)
        base = peak_mb()
        t, c = time.perf_counter(), cpu_s()
        job = await platform.jobs.start_import(account, camp["id"], "numbers.xlsx", data)
        job = await platform.jobs.wait(account, job["id"], 600)
        took = time.perf_counter() - t
        assert job["status"] == "done", job
        print(f"import: {job['result']['imported']} numbers in {took:.1f} s "
              f"({job['result']['imported'] / took:,.0f} rows/s), {(cpu_s() - c) * 1e6 / args.rows:.0f} us CPU a row, "
              f"peak RSS {peak_mb():.0f} MB (before: {base:.0f})",
              flush=True)

        if "send" in args.steps:
            await send(platform, account, camp, args)
        if "report" in args.steps:
            await report(platform, account, camp, args)
    finally:
        await platform.stop()
        if args.pg:
            import asyncpg

            conn = await asyncpg.connect(args.pg)
            await conn.execute(f"DROP DATABASE IF EXISTS {settings.database_url.rsplit('/', 1)[1]}")
            await conn.close()


async def send(platform: Platform, account: object, camp: dict, args: argparse.Namespace) -> None:
    t = time.perf_counter()
    run = await platform.campaigns.begin(account, camp["id"])
    print(f"begin: {run['hold_note']} in {time.perf_counter() - t:.1f} s", flush=True)
    t, c = time.perf_counter(), cpu_s()
    last = time.perf_counter()
    while True:
        # the status alone twice a second: the summary's counts (a GROUP BY over every
        # number) took a fifth of this one process's CPU at that pace
        if (await platform.campaigns.get(account, camp["id"]))["status"] == "completed":
            break
        if time.perf_counter() - last > 5:
            s = await platform.campaigns.summary(account, camp["id"])
            out = s["numbers"] - s["by_status"]["scheduled"]
            print(f"  {time.perf_counter() - t:5.1f} s: {out} sent, {s['by_status']['completed']} completed",
                  flush=True)
            last = time.perf_counter()
        await asyncio.sleep(0.5)
    s = await platform.campaigns.summary(account, camp["id"])
    took = time.perf_counter() - t
    print(f"send: {s['by_status']['completed']} completed ({s['by_status']['failed']} failed) in {took:.1f} s "
          f"({s['numbers'] / took:,.0f} numbers/s), {(cpu_s() - c) * 1e6 / s['numbers']:.0f} us CPU a number, credits consumed {s['credit_consumed']}, on hold "
          f"{s['credits_on_hold']}, peak RSS {peak_mb():.0f} MB", flush=True)
    if not args.skip_ceilings:
        await bulk_ceiling(platform, args.rows)


async def report(platform: Platform, account: object, camp: dict, args: argparse.Namespace) -> None:
    t, c = time.perf_counter(), cpu_s()
    job = await platform.jobs.start_report(account, camp["id"])
    job = await platform.jobs.wait(account, job["id"], 600)
    assert job["status"] == "done", job
    _, xlsx_bytes, _ = await platform.jobs.file(account, job["id"], "xlsx")
    _, csv_bytes, _ = await platform.jobs.file(account, job["id"], "csv")
    print(f"report: {job['result']['rows']} rows in {time.perf_counter() - t:.1f} s, {cpu_s() - c:.1f} s CPU "
          f"(xlsx {len(xlsx_bytes) / 1e6:.1f} MB, csv {len(csv_bytes) / 1e6:.1f} MB), peak RSS {peak_mb():.0f} MB",
          flush=True)
    if not args.skip_ceilings:
        rows = await report_rows(platform, camp["id"])
        t, c = time.perf_counter(), cpu_s()
        size = bare_csv(rows)
        print(f"  ceiling: csv.writer alone of the same {len(rows)} rows: {time.perf_counter() - t:.1f} s, "
              f"{cpu_s() - c:.2f} s CPU ({size / 1e6:.1f} MB)", flush=True)
        t, c = time.perf_counter(), cpu_s()
        size = bare_openpyxl(rows)
        print(f"  reference: openpyxl write-only of the same rows: {time.perf_counter() - t:.1f} s, "
              f"{cpu_s() - c:.2f} s CPU ({size / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
