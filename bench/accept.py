"""HTTP accept: single-message sends per second, on /v1 and on the Tingg, Tilil, Messangi and TingTing endpoints.

    .venv/bin/python bench/accept.py                 # SQLite (the embedded default)
    .venv/bin/python bench/accept.py --pg            # PostgreSQL, throwaway database on the default server
    .venv/bin/python bench/accept.py --pg postgresql://user@host:5432/postgres
    .venv/bin/python bench/accept.py --roles api --processes 2 --endpoints native   # one figure

Each answer comes only after the message is durable (SQLite: fsync'd group
commit; PostgreSQL: committed). ``POST /v1/messages`` is measured with the
server as ``ujumbe serve --role api`` (no workers: accept measured alone),
``--role all`` (workers dispatching to the built-in simulator at the same
time) and ``api+worker`` (the same work split into API processes and a worker
process), each with ``--processes`` 1 and 2 (API processes on one port). The
Tingg (``/api/v2/engagement``) and Tilil (``/sms/v3/sendsms``) sends are
measured with ``--role api``, and so are Messangi's ``GET .../sendMT/...``
(each path signed beforehand: wrk's Lua has no HMAC) and TingTing's one
single send, ``POST /api/system/send/otp/`` (a one-time code: its guard,
the send and the code's row, three transactions; the account's SMS pumping
limits lifted for the run). The ceiling is a trivial handler on the same
stack (Starlette + uvicorn, same settings, one process) answering a small
JSON, measured in the same run. Load comes from ``wrk`` (one thread, its own
process) with a Lua script POSTing one distinct recipient per request.

``--profile`` samples the server with py-spy during the first one-process
``api`` run and prints the top functions. ``--accounts N`` spreads the sends
over N accounts (wrk takes their keys in turn), so PostgreSQL's grouped
commits are measured both for one account's sends and for many accounts';
``--round-trips`` (PostgreSQL) counts the server's statements per request
(bench/_roundtrips) and prints the commonest.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_PG,
    PY,
    UJUMBE,
    Database,
    Proc,
    create_account,
    database,
    free_port,
    messangi_paths,
    need_wrk,
    pg_backend_cpu,
    py_spy,
    serve_trivial,
    serve_ujumbe,
    today,
    top_of_profile,
    wrk,
)


ENDPOINTS = {  # name: (path, wrk body, label)
    "native": ("/v1/messages", "native", "POST /v1/messages"),
    "tingg": ("/api/v2/engagement", "tingg", "Tingg /api/v2/engagement"),
    "tilil": ("/sms/v3/sendsms", "tilil", "Tilil /sms/v3/sendsms"),
    "messangi": ("/messangi_mmc/rest/api/sendMT", "messangi", "Messangi GET sendMT"),
    "tingting": ("/api/system/send/otp/", "tingting", "TingTing /send/otp"),
}


def check_send(port: int, endpoint: str, account: dict[str, str]) -> None:
    """One send before the load, so a refusal is seen here rather than hidden
    in 200 answers (Tilil answers 200 with its own status codes)."""
    import httpx

    base = f"http://127.0.0.1:{port}"
    bearer = {"authorization": f"Bearer {account['api_key']}"}
    text, to = "bench check", "254708412345"
    if endpoint == "native":
        r = httpx.post(base + "/v1/messages", headers=bearer, json={"to": to, "sender": "DUKA", "text": text})
        ok = r.status_code == 202
    elif endpoint == "tingg":
        r = httpx.post(base + "/api/v2/engagement", headers=bearer, json={
            "notificationType": "bench", "referenceID": f"check-{port}", "smsDto": {"msisdn": [to], "message": text}})
        ok = r.status_code == 200 and r.json()["statusCode"] == 200
    elif endpoint == "tilil":
        r = httpx.post(base + "/sms/v3/sendsms", json={"api_key": account["api_key"], "mobile": to,
                                                       "sender_name": "DUKA", "message": text})
        ok = r.status_code == 200 and r.json()[0]["status_code"] == "1000"
    elif endpoint == "messangi":  # always HTTP 200: the answer's <status> says
        (path,) = messangi_paths(account, 100_000_000, 1)
        r = httpx.get(base + path)
        ok = r.status_code == 200 and "<status>OK</status>" in r.text
    else:
        r = httpx.post(base + "/api/system/send/otp/", headers=bearer, json={
            "number": to, "message": "Your DUKA code is {otp}", "sms_send_options": "text"})
        ok = r.status_code == 200 and r.json()["success"] is True
    if not ok:
        raise SystemExit(f"{endpoint} send refused: {r.status_code} {r.text}")


# Many accounts in one interpreter, each as `ujumbe accounts create` and
# `ujumbe senders add ACCOUNT DUKA<n>` make it (create_account runs a process
# per account: a minute for a hundred). A sender name belongs to one account.
_CREATE_ACCOUNTS = """
import contextlib, io, json, sys, uuid
from ujumbe.cli import main
out = []
for i in range(int(sys.argv[1])):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["accounts", "create", "--name", "Bench", "--email", f"bench-{uuid.uuid4().hex[:8]}@example.com",
              "--password", "bench password 123", "--credits", "1000000000"])
    account = json.loads(buf.getvalue())
    account["sender"] = "DUKA" if i == 0 else f"DUKA{i}"
    with contextlib.redirect_stdout(io.StringIO()):
        main(["senders", "add", account["account_id"], account["sender"]])
    out.append(account)
print(json.dumps(out))
"""


def create_accounts(db: Database, n: int) -> list[dict[str, str]]:
    if n == 1:
        account = create_account(db)
        subprocess.run([*UJUMBE, "senders", "add", account["account_id"], "DUKA"], env=db.env, check=True,
                       capture_output=True)
        return [dict(account, sender="DUKA")]
    out = subprocess.run([PY, "-c", _CREATE_ACCOUNTS, str(n)], env=db.env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])


def round_trips(folder: Path) -> collections.Counter[str]:
    """Statements so far of every server process (bench/_roundtrips/sitecustomize.py)."""
    total: collections.Counter[str] = collections.Counter()
    for f in folder.glob("*.json"):
        with open(f) as fh:
            total.update(json.load(fh))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", nargs="?", const=DEFAULT_PG, default=None, help="run on PostgreSQL (admin URL)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--roles", nargs="+", default=["api", "all", "api+worker"], choices=["api", "all", "api+worker"],
                    help="server roles for POST /v1/messages (the other endpoints: api only)")
    ap.add_argument("--processes", nargs="+", type=int, default=[1, 2], help="API processes (serve --processes)")
    ap.add_argument("--endpoints", nargs="+", default=list(ENDPOINTS), choices=list(ENDPOINTS))
    ap.add_argument("--profile", action="store_true", help="py-spy the first one-process api server during its run")
    ap.add_argument("--accounts", type=int, default=1, help="spread the sends over this many accounts")
    ap.add_argument("--round-trips", action="store_true", help="PostgreSQL: count the server's statements per request")
    args = ap.parse_args()
    if args.round_trips and not args.pg:
        ap.error("--round-trips counts PostgreSQL statements: give --pg")
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

    cases = [(e, role, n) for e in args.endpoints for role in (args.roles if e == "native" else ["api"])
             for n in args.processes]
    rows = []
    profiled = False
    trips: list[tuple[str, int, collections.Counter[str]]] = []
    with database(args.pg) as db:
        accounts = create_accounts(db, args.accounts)
        account = accounts[0]
        keys, senders = [a["api_key"] for a in accounts], [a["sender"] for a in accounts]
        limits_lifted = False
        for endpoint, role, processes in cases:
            path, body, _ = ENDPOINTS[endpoint]
            port = free_port()
            # receipts quickly, so --role all also records them while accepting
            fast_receipts = {"UJUMBE_SIM_RECEIPT_DELAY_MS": "10-50", "UJUMBE_PROCESSES": str(processes)}
            counted = None
            if args.round_trips:
                counted = Path(tempfile.mkdtemp(prefix="ujumbe-trips-"))
                fast_receipts.update(UJUMBE_BENCH_ROUND_TRIPS=str(counted), PYTHONPATH=os.pathsep.join(
                    [str(Path(__file__).resolve().parent / "_roundtrips"), db.env["PYTHONPATH"]]))
            server = serve_ujumbe(db, role.split("+")[0], port, fast_receipts)
            # api+worker: the same work as --role all, the workers in a process of their own
            worker = (
                Proc([*UJUMBE, "serve", "--role", "worker"], dict(db.env, **fast_receipts), log=db.data_dir / "serve-worker.log")
                if role == "api+worker" else None
            )
            try:
                if endpoint == "tingting" and not limits_lifted:
                    # One-time codes: the SMS pumping guard would refuse a burst to
                    # many numbers of a few prefixes; lifted, the send is measured.
                    import httpx

                    for a in accounts:
                        httpx.put(f"http://127.0.0.1:{port}/v1/verification-settings",
                                  headers={"authorization": f"Bearer {a['api_key']}"},
                                  json={"sends_per_prefix_hour": 1_000_000, "new_prefixes_per_hour": 10_000}
                                  ).raise_for_status()
                    limits_lifted = True
                check_send(port, endpoint, account)
                wrk(port, keys, 2, args.connections, path=path, body=body, senders=senders,
                    account=account)  # warm-up: caches
                spy = None
                raw = Path(tempfile.gettempdir()) / f"ujumbe-accept-{endpoint}-{role}.raw"
                if args.profile and not profiled and role == "api" and processes == 1:
                    spy = py_spy(server.pid, args.seconds, raw)
                    profiled = True
                cpu0 = server.cpu_seconds(children=True)
                pg0 = pg_backend_cpu(db.url) if db.url else {}
                trips0 = round_trips(counted) if counted else None
                r = wrk(port, keys, args.seconds, args.connections, path=path, body=body, senders=senders,
                        account=account)
                if counted and trips0 is not None:
                    time.sleep(0.5)  # the counts are written every 0.2 s
                    trips.append((f"{ENDPOINTS[endpoint][2]}, {role}, {processes} process(es), {r.requests} requests",
                                  r.requests, round_trips(counted) - trips0))
                cpu_us = (server.cpu_seconds(children=True) - cpu0) / max(r.requests, 1) * 1e6
                pg1 = pg_backend_cpu(db.url, pg0) if db.url else {}
                pg_us = sum(pg1[p] - pg0.get(p, 0.0) for p in pg1) / max(r.requests, 1) * 1e6
                if spy is not None:
                    spy.wait()
                rows.append((endpoint, role, processes, r, cpu_us, pg_us))
                if r.non2xx or r.errors:
                    print(f"!! {endpoint} role {role} x{processes}: {r.non2xx} non-2xx answers, {r.errors} socket "
                          f"errors; see {server.log}", file=sys.stderr)
                if spy is not None:
                    print(top_of_profile(raw))
            finally:
                server.stop()
                if worker is not None:
                    worker.stop()

    print(f"\naccept on {db.label}, {args.connections} connections, wrk 1 thread, {args.seconds:g} s runs, "
          f"{args.accounts} account{'s' if args.accounts > 1 else ''}, {today()}")
    print(f"{'endpoint':<26}{'role':<11}{'procs':>5}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'cpu us/req':>11}"
          f"{'ceiling/s':>10}{'ratio':>7}{'cpu x':>7}" + (f"{'PG us/req':>10}" if db.url else ""))
    print(f"{'trivial Starlette handler':<26}{'':<11}{1:>5}{ceiling.rate:>8.0f}{ceiling.p50_ms:>8.2f}{ceiling.p99_ms:>8.2f}"
          f"{ceiling_cpu:>11.0f}{ceiling.rate:>10.0f}{1:>7.2f}{1:>7.2f}")
    for endpoint, role, processes, r, cpu_us, pg_us in rows:
        print(f"{ENDPOINTS[endpoint][2]:<26}{role:<11}{processes:>5}{r.rate:>8.0f}{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}"
              f"{cpu_us:>11.0f}{ceiling.rate:>10.0f}{r.rate / ceiling.rate:>7.2f}{cpu_us / ceiling_cpu:>7.2f}" + (f"{pg_us:>10.0f}" if db.url else ""))
    print("cpu us/req: CPU time of the API processes (all their threads; not the worker process of api+worker) "
          "per request; steadier than req/s on a shared machine. ratio: req/s over the ceiling's; cpu x: CPU per "
          "request as a multiple of the trivial handler's, same run")
    if db.url:
        print("PG us/req: CPU time of the PostgreSQL backends serving the benchmark's database, per request")
        print("per send, x trivial: (API processes + PostgreSQL backends) CPU per send / the trivial handler's")
        for endpoint, role, processes, r, cpu_us, pg_us in rows:
            print(f"  {ENDPOINTS[endpoint][2]}, {role}, {processes}: {(cpu_us + pg_us) / ceiling_cpu:.1f}")
    for what, requests, counts in trips:
        n = max(requests, 1)
        print(f"\nround trips per request, {what}: {sum(counts.values()) / n:.2f}")
        for statement, c in counts.most_common(12):
            print(f"  {c / n:7.3f}  {statement}")


if __name__ == "__main__":
    main()
