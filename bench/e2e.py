"""End to end: HTTP accept -> SMPP submit -> delivery receipt -> callback delivered.

    .venv/bin/python bench/e2e.py                 # SQLite, 60 s of load per layout
    .venv/bin/python bench/e2e.py --quick         # 10 s per layout: a smoke run
    .venv/bin/python bench/e2e.py --pg [URL]      # PostgreSQL (throwaway database)
    .venv/bin/python bench/e2e.py --layouts split # one layout only

Processes, each on its own: the SMSC simulator (``ujumbe.channels.smpp.sim``,
0 ms latency, receipts at once); Ujumbe (``ujumbe serve``), with an SMPP
connector to the simulator provisioned in the database by ``ujumbe connectors
add`` as an operator would; a callback receiver answering 200
(``bench/_receiver.py``); wrk POSTing one message per request for
``--seconds``. Then it waits until every accepted message has had its final
callback.

Layouts (each in a fresh database): ``all``, one ``ujumbe serve --role all``
process doing everything on one core; ``split``, ``--role api`` beside
``--role worker`` (dispatch, receipts and callbacks), one process per core.

Figures: accepted/s during the load; submitted/s, delivered/s and callbacks/s
during the load; and end to end: messages / time from the first request to
the last final callback. Ceiling, same run: the simulator's own submit_sm/s
taken by a raw pre-encoded blaster (bench/smpp_submit.py's). CPU per
message of each process (and, with --pg, of the database's PostgreSQL
backends) is also printed as a multiple of the trivial Starlette handler's
CPU per request (bench/_trivial.py), measured for 5 s before and after the
layouts: the unit that stays comparable when the machine's speed varies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH,
    DEFAULT_PG,
    PY,
    UJUMBE,
    Database,
    Proc,
    add_connector,
    create_account,
    database,
    free_port,
    need_wrk,
    pg_backend_cpu,
    py_spy,
    serve_ujumbe,
    serve_worker,
    today,
    top_of_profile,
    trivial_cpu_us,
    wait_http,
    wrk,
)
from smpp_submit import run_ceiling


def start_line_port(cmd: list[str], log: Path) -> tuple[Proc, int]:
    proc = Proc(cmd, stdout=subprocess.PIPE, log=log)
    assert proc.p.stdout is not None
    line = proc.p.stdout.readline().decode()
    if ":" not in line:
        raise SystemExit(f"{cmd[1:3]} did not start: {log.read_text()[-2000:]}")
    return proc, int(line.rsplit(":", 1)[1])


def stage_counts(db: Database) -> dict[str, int]:
    """Messages per stage, straight from the database."""
    sql = ("SELECT COUNT(*), SUM(CASE WHEN submitted_at IS NOT NULL THEN 1 ELSE 0 END), "
           "SUM(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END) FROM messages")
    if db.url:
        import asyncpg

        async def q() -> Any:
            conn = await asyncpg.connect(db.url)
            try:
                return await conn.fetchrow(sql)
            finally:
                await conn.close()

        row = asyncio.run(q())
    else:
        conn = sqlite3.connect(f"file:{db.data_dir / 'ujumbe.db'}?mode=ro", uri=True, timeout=30)
        row = conn.execute(sql).fetchone()
        conn.close()
    return {"accepted": int(row[0] or 0), "submitted": int(row[1] or 0), "delivered": int(row[2] or 0)}


def receiver_counts(port: int) -> dict[str, int]:
    return dict(httpx.get(f"http://127.0.0.1:{port}/count", timeout=5).json())


def run_layout(args: argparse.Namespace, layout: str, smpp_port: int) -> dict[str, Any]:
    """One layout in a fresh database, with its own callback receiver."""
    receiver, rport = start_line_port([PY, str(BENCH / "_receiver.py")], Path("/tmp/ujumbe-bench-receiver.log"))
    procs: dict[str, Proc] = {}
    try:
        with database(args.pg) as db:
            db.env = dict(db.env, UJUMBE_ALLOW_PRIVATE_CALLBACKS="1")
            account = create_account(db)
            if not args.no_callbacks:
                subprocess.run([*UJUMBE, "callbacks", "set", account["account_id"], "--dlr-url",
                                f"http://127.0.0.1:{rport}/dlr"], env=db.env, check=True, capture_output=True)
            add_connector(db, "smsc", smpp_port, binds=args.binds, window=args.window)
            port = free_port()
            if layout == "all":
                procs["all"] = serve_ujumbe(db, "all", port)
            else:
                procs["worker"] = serve_worker(db)
                procs["api"] = serve_ujumbe(db, "api", port)
            time.sleep(1.5)  # the connector binds
            spies = {}
            if args.profile:
                for name, proc in procs.items():
                    raw = Path(tempfile.gettempdir()) / f"ujumbe-e2e-{layout}-{name}.raw"
                    spies[name] = (py_spy(proc.pid, args.seconds, raw), raw)
            cpu0 = {name: proc.cpu_seconds() for name, proc in procs.items()}
            pg0 = pg_backend_cpu(db.url) if db.url else {}
            t0 = time.perf_counter()
            load = wrk(port, account["api_key"], args.seconds, args.connections)
            t_load = time.perf_counter() - t0
            at_load_end = stage_counts(db)
            cb_load_end = receiver_counts(rport)
            total = at_load_end["accepted"]
            last_progress, last_final = time.perf_counter(), -1
            t_done = None
            profiles = {}
            for name, (spy, raw) in spies.items():
                if spy is not None:
                    spy.wait()
                    profiles[name] = top_of_profile(raw, 40)
            while True:
                counts = stage_counts(db)
                total = counts["accepted"]
                got = counts["delivered"] if args.no_callbacks else receiver_counts(rport)["final_ids"]
                now = time.perf_counter()
                if got >= total:
                    t_done = now - t0
                    break
                if got != last_final:
                    last_final, last_progress = got, now
                if now - last_progress > 30 or now - t0 > args.seconds + args.drain_timeout:
                    break
                time.sleep(0.2)
            final = stage_counts(db)
            cbs = receiver_counts(rport)
            cpu = {name: proc.cpu_seconds() - cpu0[name] for name, proc in procs.items()}
            pg1 = pg_backend_cpu(db.url, pg0) if db.url else {}
            pg_cpu = sum(pg1[p] - pg0.get(p, 0.0) for p in pg1) if db.url else None
            rss = {name: proc.peak_rss_mb() for name, proc in procs.items()}
            for proc in procs.values():
                if proc.p.poll() is not None and proc.log:
                    print(proc.log.read_text()[-3000:], file=sys.stderr)
            label = db.label
    finally:
        for proc in procs.values():
            proc.stop()
        receiver.stop()
    return {"layout": layout, "db": label, "load": load, "t_load": t_load, "at_load_end": at_load_end,
            "cb_load_end": cb_load_end, "total": total, "t_done": t_done, "final": final, "cbs": cbs, "cpu": cpu,
            "rss": rss, "profiles": profiles, "pg_cpu": pg_cpu}


def report(args: argparse.Namespace, r: dict[str, Any], ceiling: float, trivial_us: float) -> None:
    load, t_load, total, t_done = r["load"], r["t_load"], r["total"], r["t_done"]
    at_load_end, cb_load_end, final, cbs = r["at_load_end"], r["cb_load_end"], r["final"], r["cbs"]
    for name, text in r["profiles"].items():
        print(f"\n--- profile of the {name} process ---\n{text}")
    procs = "one process, --role all" if r["layout"] == "all" else "--role api + --role worker"
    print(f"\nend to end on {r['db']}{' WITHOUT callbacks' if args.no_callbacks else ''}, layout {r['layout']} "
          f"({procs}): wrk {args.connections} connections for {args.seconds:g} s, SMPP sim 0 ms, "
          f"connector {args.binds} bind(s) x window {args.window}, {today()}")
    if load.non2xx or load.errors:
        print(f"!! {load.non2xx} non-2xx answers and {load.errors} socket errors during the load")
    print(f"{'stage (during the load)':<34}{'count':>9}{'msg/s':>9}")
    print(f"{'accepted (HTTP 202)':<34}{at_load_end['accepted']:>9}{at_load_end['accepted'] / t_load:>9.0f}")
    print(f"{'submitted to the SMSC':<34}{at_load_end['submitted']:>9}{at_load_end['submitted'] / t_load:>9.0f}")
    print(f"{'delivered (receipt recorded)':<34}{at_load_end['delivered']:>9}{at_load_end['delivered'] / t_load:>9.0f}")
    print(f"{'final callbacks received':<34}{cb_load_end['final_ids']:>9}{cb_load_end['final_ids'] / t_load:>9.0f}")
    complete = (args.no_callbacks or cbs["final_ids"] >= total) and final["delivered"] >= total
    e2e = total / t_done if t_done else float("nan")
    print(f"{'end to end (all ' + str(total) + ' done)':<34}{'' if complete else 'INCOMPLETE':>9}{e2e:>9.0f}"
          f"   in {t_done or float('nan'):.1f} s")
    print(f"receipts recorded {final['delivered']}/{total}; callbacks: {json.dumps(cbs)}")
    print(f"SMPP peer ceiling (raw blaster, same simulator): {ceiling:.0f} submit_sm/s;"
          f" e2e/ceiling = {e2e / ceiling:.2f}")
    def per_msg(cpu: float) -> str:
        us = cpu / total * 1e6 if total else 0.0
        return f"{us:.0f} us per message = {us / trivial_us:.1f}x trivial"

    for name, cpu in r["cpu"].items():
        print(f"ujumbe {name} process: {cpu:.1f} s CPU ({per_msg(cpu)}), peak RSS {r['rss'][name]:.0f} MB")
    all_cpu = sum(r["cpu"].values())
    print(f"all ujumbe processes: {per_msg(all_cpu)}; accept p50 {load.p50_ms:.1f} ms p99 {load.p99_ms:.1f} ms")
    if r["pg_cpu"] is not None:
        print(f"PostgreSQL backends of the database: {r['pg_cpu']:.1f} s CPU ({per_msg(r['pg_cpu'])})")
    print(f"(trivial: the trivial Starlette handler's {trivial_us:.0f} us CPU per request in this run; "
          f"the target's 300 us per message was ~9x its 34 us)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", nargs="?", const=DEFAULT_PG, default=None, help="run on PostgreSQL (admin URL)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long wrk sends")
    ap.add_argument("--quick", action="store_true", help="10 s of load: a smoke run")
    ap.add_argument("--layouts", default="all,split", help="comma-separated: all (one process), split (api + worker)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--binds", type=int, default=1, help="SMPP binds of the connector")
    ap.add_argument("--window", type=int, default=64, help="SMPP window per bind")
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument("--profile", action="store_true", help="py-spy every Ujumbe process during the load")
    ap.add_argument("--no-callbacks", action="store_true",
                    help="no callback URL: done at the receipt (shows what the callbacks cost)")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 10.0
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    if not layouts or set(layouts) - {"all", "split"}:
        ap.error("--layouts takes all and/or split")
    need_wrk()
    smsc, smpp_port = start_line_port(
        [PY, "-m", "ujumbe.channels.smpp.sim", "--port", "0", "--latency-ms", "0", "--receipt-delay-ms", "0",
         "--log-level", "WARNING", "--window", "256", "--uvloop"], Path("/tmp/ujumbe-bench-smsc.log"))
    try:
        ceiling = asyncio.run(run_ceiling(smpp_port, 3.0))
        # the unit of CPU per message: measured before and after the layouts, their mean used
        t_before, tr_before = trivial_cpu_us(5.0, args.connections)
        results = [run_layout(args, layout, smpp_port) for layout in layouts]
        t_after, tr_after = trivial_cpu_us(5.0, args.connections)
        trivial_us = (t_before + t_after) / 2
        print(f"trivial Starlette handler, wrk {args.connections} connections, 5 s before and after: "
              f"{t_before:.0f} / {t_after:.0f} us CPU per request ({tr_before.rate:.0f} / {tr_after.rate:.0f} req/s)")
        for r in results:
            report(args, r, ceiling, trivial_us)
    finally:
        smsc.stop()


if __name__ == "__main__":
    main()
