"""HTTP accept: single-message sends per second on POST /v1/messages.

    .venv/bin/python bench/accept.py                 # SQLite (the embedded default)
    .venv/bin/python bench/accept.py --pg            # PostgreSQL, throwaway database on the default server
    .venv/bin/python bench/accept.py --pg postgresql://user@host:5432/postgres

Each answer comes only after the message is durable (SQLite: fsync'd group
commit; PostgreSQL: committed). The server is ``ujumbe serve --role api`` (no
workers: accept measured alone), then ``--role all`` (workers dispatching
to the built-in simulator at the same time, in the same process), then
``api+worker``: the same work as ``all`` split into an API process and a
worker process, so each gets a core. The
ceiling is a trivial handler on the same stack (Starlette + uvicorn, same
settings) answering a small JSON, measured in the same run. Load comes from
``wrk`` (one thread, its own process) with a Lua script POSTing one distinct
recipient per request.

``--profile`` samples the api server with py-spy during its run and prints
the top functions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_PG,
    UJUMBE,
    Proc,
    create_account,
    database,
    free_port,
    need_wrk,
    py_spy,
    serve_trivial,
    serve_ujumbe,
    today,
    top_of_profile,
    wrk,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", nargs="?", const=DEFAULT_PG, default=None, help="run on PostgreSQL (admin URL)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--roles", nargs="+", default=["api", "all", "api+worker"], choices=["api", "all", "api+worker"])
    ap.add_argument("--profile", action="store_true", help="py-spy the api server during its run")
    args = ap.parse_args()
    need_wrk()

    port = free_port()
    trivial = serve_trivial(port)
    try:
        wrk(port, "x", 2, args.connections, path="/")
        cpu0 = trivial.cpu_seconds()
        ceiling = wrk(port, "x", args.seconds, args.connections, path="/")
        ceiling_cpu = (trivial.cpu_seconds() - cpu0) / max(ceiling.requests, 1) * 1e6
    finally:
        trivial.stop()

    rows = []
    with database(args.pg) as db:
        account = create_account(db)
        for role in args.roles:
            port = free_port()
            # receipts quickly, so --role all also records them while accepting
            fast_receipts = {"UJUMBE_SIM_RECEIPT_DELAY_MS": "10-50"}
            server = serve_ujumbe(db, role.split("+")[0], port, fast_receipts)
            # api+worker: the same work as --role all, in two processes (two cores)
            worker = (
                Proc([*UJUMBE, "serve", "--role", "worker"], dict(db.env, **fast_receipts), log=db.data_dir / "serve-worker.log")
                if role == "api+worker" else None
            )
            try:
                wrk(port, account["api_key"], 2, args.connections)  # warm-up: caches, JIT-free but page cache
                spy = None
                raw = Path(tempfile.gettempdir()) / f"ujumbe-accept-{role}.raw"
                if args.profile and role == "api":
                    spy = py_spy(server.pid, args.seconds, raw)
                cpu0 = server.cpu_seconds()
                r = wrk(port, account["api_key"], args.seconds, args.connections)
                cpu_us = (server.cpu_seconds() - cpu0) / max(r.requests, 1) * 1e6
                if spy is not None:
                    spy.wait()
                rows.append((role, r, cpu_us))
                if r.non2xx or r.errors:
                    print(f"!! role {role}: {r.non2xx} non-2xx answers, {r.errors} socket errors; see "
                          f"{server.log}", file=sys.stderr)
                if spy is not None:
                    print(top_of_profile(raw))
            finally:
                server.stop()
                if worker is not None:
                    worker.stop()

    print(f"\naccept on {db.label}, {args.connections} connections, wrk 1 thread, {args.seconds:g} s runs, {today()}")
    print(f"{'name':<28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu us/req':>11}{'ceiling/s':>11}{'ratio':>8}")
    print(f"{'trivial Starlette handler':<28}{ceiling.rate:>9.0f}{ceiling.p50_ms:>9.2f}{ceiling.p99_ms:>9.2f}"
          f"{ceiling_cpu:>11.0f}{ceiling.rate:>11.0f}{1:>8.2f}")
    for role, r, cpu_us in rows:
        print(f"{f'POST /v1/messages role={role}':<28}{r.rate:>9.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
              f"{cpu_us:>11.0f}{ceiling.rate:>11.0f}{r.rate / ceiling.rate:>8.2f}")
    print("cpu us/req: CPU time of the server process (all its threads) per request; steadier than req/s on a "
          "shared machine")


if __name__ == "__main__":
    main()
