"""Bulk: one request with 100,000 recipients, until every message is submitted.

    .venv/bin/python bench/bulk.py                 # SQLite, SMPP simulator
    .venv/bin/python bench/bulk.py --builtin       # the built-in operator simulator instead
    .venv/bin/python bench/bulk.py --pg [URL]      # PostgreSQL (throwaway database)

One POST /v1/messages with 100,000 distinct valid numbers to Ujumbe
(``--role all`` in its own process). By default the messages go over one SMPP
bind (window 64) to the SMSC simulator (``ujumbe.channels.smpp.sim``, 0 ms,
receipts on) in another process, through a connector provisioned in the
database with ``ujumbe connectors add``. Reports the time to the HTTP answer (the
request is durable), the time until every message is submitted, and the peak
RSS of the Ujumbe process (VmHWM). Ceiling, same run: the simulator's own
submit_sm/s from a raw pre-encoded blaster, as the time it would need for
the same count.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_PG,
    PY,
    add_connector,
    create_account,
    database,
    free_port,
    serve_ujumbe,
    today,
)
from e2e import stage_counts, start_line_port
from smpp_submit import run_ceiling


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", nargs="?", const=DEFAULT_PG, default=None, help="run on PostgreSQL (admin URL)")
    ap.add_argument("--recipients", type=int, default=100_000)
    ap.add_argument("--builtin", action="store_true", help="built-in simulator instead of the SMPP simulator")
    ap.add_argument("--binds", type=int, default=1)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    n = args.recipients
    # distinct valid Safaricom numbers; none ends in a simulator failure code (...0001-0007)
    numbers = [f"2547{10 + (i // 10000) % 20:02d}{i % 10000:04d}{(i // 200000) % 100:02d}" for i in range(n)]
    numbers = [x[:-2] + "99" if x.endswith(("01", "02", "03", "04", "05", "06", "07")) else x for x in numbers]
    assert len(set(numbers)) == n, "numbers must be distinct"
    smsc = None
    ceiling = float("nan")
    if not args.builtin:
        smsc, smpp_port = start_line_port(
            [PY, "-m", "ujumbe.channels.smpp.sim", "--port", "0", "--latency-ms", "0", "--receipt-delay-ms", "0",
             "--log-level", "WARNING", "--window", "256", "--uvloop"], Path("/tmp/ujumbe-bench-smsc.log"))
        ceiling = asyncio.run(run_ceiling(smpp_port, 3.0))
    server = None
    try:
        with database(args.pg) as db:
            account = create_account(db)
            if smsc is not None:
                add_connector(db, "smsc", smpp_port, binds=args.binds, window=args.window)
            port = free_port()
            server = serve_ujumbe(db, "all", port, {"UJUMBE_SIM_RECEIPT_DELAY_MS": "10-50"})
            time.sleep(1.0)
            rss_idle = server.peak_rss_mb()
            t0 = time.perf_counter()
            r = httpx.post(f"http://127.0.0.1:{port}/v1/messages",
                           json={"to": numbers, "sender": "DUKA", "text": "Habari! Your order is on its way."},
                           headers={"Authorization": f"Bearer {account['api_key']}"}, timeout=args.timeout)
            t_accept = time.perf_counter() - t0
            if r.status_code != 202:
                raise SystemExit(f"send failed: {r.status_code} {r.text[:500]}")
            rss_accept = server.peak_rss_mb()
            accepted = sum(1 for m in r.json()["messages"] if m["state"] in ("queued", "accepted"))
            del r
            t_done = None
            while time.perf_counter() - t0 < args.timeout:
                c = stage_counts(db)
                if c["submitted"] >= accepted:
                    t_done = time.perf_counter() - t0
                    break
                time.sleep(0.25)
            rss = server.peak_rss_mb()
            cpu = server.cpu_seconds()
    finally:
        if server is not None:
            server.stop()
        if smsc is not None:
            smsc.stop()
    where = "built-in simulator" if args.builtin else f"SMPP simulator, {args.binds} bind(s) x window {args.window}"
    print(f"\nbulk on {db.label}: one request, {n} recipients, {where}, {today()}")
    print(f"HTTP answer (all {accepted} accepted, durable)   {t_accept:8.1f} s")
    if t_done is None:
        print(f"every message submitted                        not within {args.timeout:g} s")
    else:
        print(f"every message submitted                        {t_done:8.1f} s   ({accepted / t_done:.0f} msg/s)")
    if not math.isnan(ceiling):
        print(f"ceiling: the simulator takes {ceiling:.0f} submit_sm/s from a raw blaster = {n / ceiling:.1f} s for "
              f"{n}; ratio {n / ceiling / t_done if t_done else float('nan'):.2f}")
    print(f"peak RSS of the Ujumbe process: {rss:.0f} MB (idle {rss_idle:.0f} MB, after the answer {rss_accept:.0f} MB); "
          f"CPU {cpu:.1f} s")


if __name__ == "__main__":
    main()
