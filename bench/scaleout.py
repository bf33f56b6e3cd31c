"""Scale-out on PostgreSQL: 1, 2 and 4 worker processes draining the same
backlog, each worker held to a CPU quota, PostgreSQL unconstrained.

    .venv/bin/python bench/scaleout.py [--pg URL] [--messages 40000] [--quota 0.3] [--workers 1 2 4]
                                       [--weight 8] [--repeat 1] [--no-sample]

The backlog is queued once with the API (``ujumbe serve --role api``,
requests of 1,000 recipients) into a template database, held (``due_at`` far
ahead), and each run gets a copy of it (``CREATE DATABASE ... TEMPLATE``).
The workers (``ujumbe serve --role worker``, each with the built-in operator
simulator, receipts after 10-50 ms) start against the held backlog, each in
a cgroup of its own with ``--quota`` of a core (cgroup v1 ``cpu.cfs_quota_us``
or v2 ``cpu.max``, ``bench/_cpuquota.py``); once they are up and idle the
backlog is released at once. The figure is messages done per second (each
submitted and its receipt applied: release to the last message final), and
its ratio to one worker's beside the ideal (2.00, 4.00). (The submit rate
alone, first to last ``submitted_at``, flatters a worker whose receipts lag:
they are still being applied after the last submit.)

Why quotas: on this 2-core machine the workers and PostgreSQL share the
cores, and without a quota the ratio measures the cores (one worker and its
backends kept ~1.45 of the 2 busy). With each worker held to 0.3 of a core,
four need 1.2 cores and PostgreSQL has the rest: what the ratio then
measures is what the design shares (claims, row locks, hot rows). The run
checks that each worker was held to its quota (CPU seconds ÷ wall ≈ quota:
then the worker, not the database, set its pace) and samples
``pg_stat_activity`` and ``pg_locks`` every 50 ms during each drain: what
PostgreSQL's backends were doing or waiting on, and any lock waits. When the
machine itself runs out of cores (PostgreSQL + workers + everyone else ≈ 2),
the script says so: that is no longer the design's limit.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _cpuquota
from _common import (
    DEFAULT_PG,
    UJUMBE,
    Database,
    cpu_of,
    create_account,
    database,
    free_port,
    serve_ujumbe,
    serve_worker,
    today,
)

HOLD_DUE = 9_000_000_000_000_000  # a due_at no worker reaches: the backlog waits for the release
IDEAL_TARGETS = {2: 1.9, 4: 3.6}


def queue_backlog(db: Database, account: dict[str, str], n: int) -> None:
    port = free_port()
    api = serve_ujumbe(db, "api", port)
    try:
        with httpx.Client(timeout=300) as client:
            for start in range(0, n, 1000):
                to = [f"2547{10 + (i // 10000) % 20:02d}{i % 10000:04d}99" for i in range(start, min(n, start + 1000))]
                r = client.post(f"http://127.0.0.1:{port}/v1/messages", json={"to": to, "text": "Scale-out test"},
                                headers={"Authorization": f"Bearer {account['api_key']}"})
                r.raise_for_status()
    finally:
        api.stop()


async def _sql(url: str, sql: str, *args: Any) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def sql(url: str, query: str, *args: Any) -> Any:
    return asyncio.run(_sql(url, query, *args))


@contextlib.contextmanager
def backlog(pg: str, n: int, callback_url: str | None = None) -> Any:
    """A template database holding ``n`` queued messages, held; yields its
    Database. With ``callback_url``, the account's delivery reports go there."""
    with database(pg) as db:
        assert db.url is not None
        if callback_url:
            db.env = dict(db.env, UJUMBE_ALLOW_PRIVATE_CALLBACKS="1")
        account = create_account(db)
        if callback_url:
            subprocess.run([*UJUMBE, "callbacks", "set", account["account_id"], "--dlr-url", callback_url],
                           env=db.env, check=True, capture_output=True)
        queue_backlog(db, account, n)
        sql(db.url, "UPDATE outbox SET due_at = $1", HOLD_DUE)
        # statistics as a database in service has them (autovacuum would not
        # have come round yet): plans are then the ones a cluster gets
        sql(db.url, "ANALYZE")
        yield db


@contextlib.contextmanager
def copy_of(template: Database) -> Any:
    """A fresh database with the template's contents (and its held backlog)."""
    assert template.admin_url and template.name
    name = f"ujumbe_bench_{uuid.uuid4().hex[:10]}"
    sql(template.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template.name}"')
    base, _, _ = template.admin_url.rpartition("/")
    db = Database(dict(template.env, UJUMBE_DATABASE_URL=f"{base}/{name}"), template.data_dir, f"{base}/{name}",
                  template.admin_url, name)
    try:
        yield db
    finally:
        with contextlib.suppress(Exception):
            sql(template.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores, everyone's)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    workers: int
    n: int
    rate: float = 0.0  # messages final per second: release to the last one final (or its last callback)
    submit_rate: float = 0.0  # first to last submit
    wall: float = 0.0  # release to the last message final (or the last callback)
    worker_cpu: list[float] = field(default_factory=list)  # each, over ``wall``
    throttled: list[float] = field(default_factory=list)  # share of periods each was throttled
    pg_cpu: float = 0.0
    others: float = 0.0  # the rest of the machine, cores
    samples: int = 0
    backends: collections.Counter[str] = field(default_factory=collections.Counter)
    locks: collections.Counter[str] = field(default_factory=collections.Counter)
    queries: collections.Counter[str] = field(default_factory=collections.Counter)  # active backends' statements


SAMPLE_SQL = """
SELECT pid, state, coalesce(wait_event_type, ''), coalesce(wait_event, ''), left(regexp_replace(query, '\\s+', ' ', 'g'), 60)
FROM pg_stat_activity WHERE datname = current_database() AND pid <> ALL($1::int[])
"""
LOCKS_SQL = """
SELECT l.locktype, coalesce(c.relname, ''), l.mode, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 60)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid LEFT JOIN pg_class c ON c.oid = l.relation
WHERE NOT l.granted AND a.datname = current_database()
"""


async def watch(db: Database, run: Run, procs: list[Any], groups: list[Any], *, timeout: float, sample: bool,
                done_sql: str, receiver: int | None, pg_group: Any = None) -> None:
    import asyncpg

    assert db.url is not None
    mon = await asyncpg.connect(db.url)
    smp = await asyncpg.connect(db.url)
    mine = [mon.get_server_pid(), smp.get_server_pid()]
    try:
        # the workers are up: registered, and their start-up CPU spent
        deadline = time.monotonic() + 120
        while await mon.fetchval("SELECT count(*) FROM dispatch_workers") < run.workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"the {run.workers} workers did not register within 120 s")
            await asyncio.sleep(0.2)
        last = [p.cpu_seconds() for p in procs]
        while True:
            await asyncio.sleep(0.5)
            now = [p.cpu_seconds() for p in procs]
            if max(b - a for a, b in zip(last, now)) < 0.05:
                break
            last = now
        pg_pids: dict[int, float] = {}

        async def pg_cpu_now() -> dict[int, float]:
            rows = await mon.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND pid <> ALL($1::int[])", mine)
            if pg_group is not None:
                for r in rows:
                    if r[0] not in pg_pids:
                        with contextlib.suppress(OSError):
                            pg_group.add(r[0])  # (the backend may have ended meanwhile)
            return {r[0]: cpu_of(r[0]) for r in rows}

        pg0 = await pg_cpu_now()
        cpu0 = [p.cpu_seconds() for p in procs]
        thr0 = [g.throttled() for g in groups]
        t0, busy0, released = time.perf_counter(), machine_busy(), time.time() * 1000
        await mon.execute("UPDATE outbox SET due_at = 0; SELECT pg_notify('ujumbe', 'outbox')")

        async def sampler() -> None:
            while True:
                for r in await smp.fetch(SAMPLE_SQL, mine):
                    _, state, wtype, wevent, query = r
                    if state == "idle" and wtype == "Client":
                        key = "idle (between transactions)"
                    elif state == "idle in transaction":
                        key = f"idle in transaction: {wtype}:{wevent} (waiting for the worker)"
                    else:
                        key = f"{state}: {wtype}:{wevent}" if wtype else f"{state}: on CPU"
                        # what it runs: a poor man's profile of the database's side
                        run.queries[f"{wtype + ':' + wevent if wtype else 'CPU'}  {query}"] += 1
                    run.backends[key] += 1
                for r in await smp.fetch(LOCKS_SQL):
                    run.locks[f"{r[0]} {r[1]} {r[2]}: {r[3]}"] += 1
                run.samples += 1
                await asyncio.sleep(0.05)

        task = asyncio.create_task(sampler()) if sample else None
        try:
            while True:
                pg_pids.update(await pg_cpu_now())
                if time.perf_counter() - t0 > timeout:
                    raise SystemExit(f"{run.workers} worker(s) did not finish {run.n} messages in {timeout:g} s")
                if receiver is not None:
                    done = receiver_counts(receiver)["final_ids"] >= run.n
                else:
                    done = not await mon.fetchval("SELECT EXISTS (SELECT 1 FROM outbox)") and not await mon.fetchval(done_sql)
                if done:
                    break
                await asyncio.sleep(0.1)
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        run.wall = time.perf_counter() - t0
        cpu1 = [p.cpu_seconds() for p in procs]
        run.worker_cpu = [b - a for a, b in zip(cpu0, cpu1)]
        for g, (p0, n0, _) in zip(groups, thr0):
            p1, n1, _ = g.throttled()
            run.throttled.append((n1 - n0) / max(p1 - p0, 1))
        pg_pids.update(await pg_cpu_now())
        run.pg_cpu = sum(c - pg0.get(pid, 0.0) for pid, c in pg_pids.items())
        run.others = max(machine_busy() - busy0 - sum(run.worker_cpu) - run.pg_cpu, 0.0) / run.wall
        row = await mon.fetchrow("SELECT count(submitted_at), min(submitted_at), max(submitted_at), max(done_at) "
                                 "FROM messages")
        if row[0] < run.n:
            raise SystemExit(f"only {row[0]}/{run.n} submitted")
        run.submit_rate = run.n / (max(row[2] - row[1], 1) / 1000)
        # to the last message's own done_at (or its last callback's
        # delivered_at), not to when this loop saw it
        end = row[3] if receiver is None else await mon.fetchval("SELECT max(delivered_at) FROM callbacks")
        run.rate = run.n / (max((end or 0) - released, 1) / 1000)
    finally:
        await mon.close()
        await smp.close()


def receiver_counts(port: int) -> dict[str, int]:
    import json

    with httpx.Client(timeout=5) as c:
        return dict(json.loads(c.get(f"http://127.0.0.1:{port}/count").text))


def drain(template: Database, workers: int, n: int, quota: float | None, *, timeout: float, sample: bool,
          env: Callable[[Database], dict[str, str]] | None = None, receiver: int | None = None,
          weight: int = 0) -> Run:
    """One run: ``workers`` worker processes on a fresh copy of the template;
    ``env(db)`` adds to their environment (e.g. another database URL);
    with ``receiver`` (a _receiver.py port) done at the last final callback."""
    run = Run(workers, n)
    with copy_of(template) as db, contextlib.ExitStack() as stack:
        groups = (stack.enter_context(_cpuquota.groups(workers, quota, f"w{workers}", max(weight, 1)))
                  if quota or weight else [])
        pg_group = stack.enter_context(_cpuquota.groups(1, None, f"pg{workers}", weight))[0] if weight else None
        extra = {"UJUMBE_SIM_RECEIPT_DELAY_MS": "10-50", **(env(db) if env else {})}
        procs = [serve_worker(db, extra, f"{workers}-{i}", groups[i].procs_file() if groups else None)
                 for i in range(workers)]
        try:
            asyncio.run(watch(db, run, procs, groups, timeout=timeout, sample=sample, receiver=receiver, pg_group=pg_group,
                              done_sql="SELECT EXISTS (SELECT 1 FROM messages WHERE state = 'submitted')"))
        finally:
            for p in procs:
                p.stop()
    return run


def print_waits(run: Run, top: int = 8) -> None:
    if not run.samples:
        return
    total = sum(run.backends.values())
    print(f"  {run.workers} worker(s): {run.samples} samples of pg_stat_activity, {total / run.samples:.1f} "
          "backends on average; their time by state and wait:")
    for key, c in run.backends.most_common(top):
        print(f"    {100 * c / total:5.1f}%  {c / run.samples:5.2f} backends  {key}")
    active = sum(run.queries.values())
    if active:
        print("  active backends by statement (share of active samples):")
        for key, c in run.queries.most_common(top):
            print(f"    {100 * c / active:5.1f}%  {key}")
    if run.locks:
        print("  lock waits (pg_locks not granted; samples in which each was seen):")
        for key, c in run.locks.most_common(5):
            print(f"    {c:6d}  {key}")
    else:
        print("  lock waits: none seen in any sample")


def report(runs: list[Run], quota: float | None, kind: str, cores: int, weight: int = 0) -> None:
    n = runs[0].n
    held = f"each worker held to {quota:.2f} of a core (cgroup {kind})" if quota else "no CPU quota"
    if weight:
        held += f", workers and PostgreSQL's backends weighted {weight}x an ordinary process"
    print(f"\nscale-out on postgres: drain {n} queued messages, built-in simulator, receipts 10-50 ms, {held}, "
          f"PostgreSQL unconstrained; {today()}; load {os.getloadavg()[0]:.1f}")
    print(f"{'workers':<8}{'msg/s':>8}{'ratio':>7}{'ideal':>7}{'submit/s':>9}  {'worker CPU ÷ wall, each':<28}{'throttled':>10}"
          f"{'µs/msg worker':>15}{'µs/msg PG':>11}{'PG cores':>10}{'rest':>7}{'idle':>7}")
    one = next((r for r in runs if r.workers == 1), runs[0])
    for r in runs:
        shares = " ".join(f"{c / r.wall:.2f}" for c in r.worker_cpu)
        thr = (f"{100 * sum(r.throttled) / len(r.throttled):.0f}%" if r.throttled else "-")
        idle = cores - sum(r.worker_cpu) / r.wall - r.pg_cpu / r.wall - r.others
        print(f"{r.workers:<8}{r.rate:>8.0f}{r.rate / one.rate:>7.2f}{r.workers / one.workers:>7.2f}{r.submit_rate:>9.0f}  {shares:<28}"
              f"{thr:>10}{sum(r.worker_cpu) / n * 1e6:>15.0f}{r.pg_cpu / n * 1e6:>11.0f}{r.pg_cpu / r.wall:>10.2f}"
              f"{r.others:>7.2f}{idle:>7.2f}")
    for w, target in IDEAL_TARGETS.items():
        r = next((r for r in runs if r.workers == w), None)
        if r is not None and one.workers == 1:
            ratio = r.rate / one.rate
            print(f"{w} workers: {ratio:.2f}x one (ideal {w:.2f}, target >= {target:.2f}): "
                  f"{'met' if ratio >= target else 'NOT met'}")
    for r in runs:
        if r is one or not one.worker_cpu:
            continue
        # at the same CPU per message, throughput follows the CPU the workers got
        got = (sum(r.worker_cpu) / r.wall) / (sum(one.worker_cpu) / one.wall)
        per = (sum(one.worker_cpu) / n) / (sum(r.worker_cpu) / n)
        print(f"  {r.workers} workers: got {got:.2f}x one worker's CPU, at {per:.2f}x its messages per CPU second: "
              f"{got * per:.2f}x expected from CPU alone ({r.rate / one.rate:.2f}x measured)")
    if quota:
        for r in runs:
            low = [c / r.wall for c in r.worker_cpu if c / r.wall < 0.85 * quota]
            if low:
                print(f"  {r.workers} workers: {len(low)} worker(s) used less than 85% of the quota "
                      f"({' '.join(f'{x:.2f}' for x in low)}): they waited on something else than their own CPU")
        for r in runs:
            idle = cores - sum(r.worker_cpu) / r.wall - r.pg_cpu / r.wall - r.others
            if idle < 0.15:
                print(f"  {r.workers} workers: the machine had {max(idle, 0):.2f} cores idle: PostgreSQL competed for "
                      "cores with everyone (a machine limit, not the design's)")
    print("columns: msg/s: messages submitted and their receipt applied, per second from the release to the last "
          "one final (the ratio is of these); submit/s: first to last submit; worker CPU ÷ wall is each worker's CPU over release → last message final (≈ quota: it was "
          "held by its quota); throttled: share of its cgroup's periods in which it hit the quota; PG cores: "
          "the database's backends; rest: everyone else on the machine; idle: cores left")
    print("PostgreSQL during each drain:")
    for r in runs:
        print_waits(r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL admin URL (throwaway databases are made)")
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--quota", type=float, default=0.3, help="cores per worker (0: no quota)")
    ap.add_argument("--repeat", type=int, default=1, help="run the whole series this many times")
    ap.add_argument("--weight", type=int, default=8,
                    help="CPU weight of each worker's cgroup and of one holding this run's PostgreSQL backends, in "
                         "ordinary processes: on a machine others load, the workers still get their quota and "
                         "PostgreSQL the cores it asks for (0: none, the backends compete as everyone does)")
    ap.add_argument("--no-sample", action="store_true", help="do not sample pg_stat_activity / pg_locks")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    quota = args.quota or None
    kind = ""
    if quota:
        try:
            kind, where = _cpuquota.detect()
        except _cpuquota.Unavailable as exc:
            raise SystemExit(f"cannot hold workers to a CPU quota: {exc}. Run with --quota 0 to measure without "
                             "(then the ratio measures this machine's cores, not the design)") from None
        print(f"CPU quota: cgroup {kind} at {where}, {quota:.2f} of a core per worker")
    cores = os.cpu_count() or 2
    with backlog(args.pg, args.messages) as template:
        for _ in range(args.repeat):
            runs = [drain(template, w, args.messages, quota, timeout=args.timeout, sample=not args.no_sample,
                          weight=args.weight) for w in args.workers]
            report(runs, quota, kind, cores, args.weight)


if __name__ == "__main__":
    main()
