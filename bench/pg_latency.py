"""One worker with PostgreSQL a network hop away: 1 ms of round trip
against loopback, and the round trips each message costs, by stage.

    .venv/bin/python bench/pg_latency.py [--pg URL] [--messages 20000] [--rtt-ms 1] [--repeat 2]
                                         [--quota 0] [--no-callbacks]

A backlog of ``--messages`` messages (API-queued once into a template
database, as in ``bench/scaleout.py``), whose account has a delivery-report
URL on a callback receiver (``bench/_receiver.py``): one worker process
(``ujumbe serve --role worker``, built-in simulator, receipts after 10-50 ms)
submits each, applies its receipt and delivers its two callbacks. The figure
is messages done per second, release to the last callback delivered, with
the worker connecting to PostgreSQL directly (loopback) and through
``bench/_pgdelay.py`` adding ``--rtt-ms`` of round trip, alternating, each
on a fresh copy of the backlog; the target keeps >= 70 % of loopback.

Round trips: the proxy counts request/response turns (all connections of
the worker, its LISTEN connection too); the worker, with
``bench/_rtcount`` on its PYTHONPATH (bench only: it wraps asyncpg's
Connection), counts its statements by stage (dispatch claim, dispatch record,
receipts, callbacks, heartbeats), BEGIN, COMMIT and the pool's reset on
release included. Both per message.

The worker, PostgreSQL's backends and the proxy each run in a cgroup
weighted ``--weight`` ordinary processes (bench/_cpuquota.py), so that a
machine other people load does not decide the figure; ``--quota`` also caps
the worker (0: no cap).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _cpuquota
import scaleout
from _common import BENCH, DEFAULT_PG, PY, ROOT, Database, Proc, free_port, today


def start_receiver(port: int) -> Proc:
    proc = Proc([PY, str(BENCH / "_receiver.py"), "--port", str(port)], stdout=subprocess.PIPE,
                log=Path(f"/tmp/ujumbe-bench-receiver-{port}.log"))
    assert proc.p.stdout is not None
    if ":" not in proc.p.stdout.readline().decode():
        raise SystemExit("the callback receiver did not start")
    return proc


def start_proxy(pg: str, rtt_ms: float, stats: Path, cgroup: str | None) -> tuple[Proc, int]:
    from urllib.parse import urlsplit

    u = urlsplit(pg)
    proc = Proc([PY, str(BENCH / "_pgdelay.py"), "--upstream", f"{u.hostname}:{u.port or 5432}",
                 "--rtt-ms", str(rtt_ms), "--stats", str(stats)], stdout=subprocess.PIPE,
                log=Path(f"/tmp/ujumbe-bench-pgdelay-{os.getpid()}.log"), cgroup_procs=cgroup)
    assert proc.p.stdout is not None
    line = proc.p.stdout.readline().decode()
    if ":" not in line:
        raise SystemExit("the delaying proxy did not start")
    return proc, int(line.rsplit(":", 1)[1])


def read_stats(path: Path) -> dict[str, int]:
    time.sleep(0.3)  # the proxy rewrites it every 0.2 s
    return dict(json.loads(path.read_text())) if path.exists() else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=DEFAULT_PG)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rtt-ms", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=2, help="pairs of runs (loopback, delayed), alternating")
    ap.add_argument("--quota", type=float, default=0.0, help="cores the worker may use (0: no cap)")
    ap.add_argument("--weight", type=int, default=8)
    ap.add_argument("--no-callbacks", action="store_true", help="no delivery-report URL: done at the receipt")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    n = args.messages
    rport = free_port()
    callback = None if args.no_callbacks else f"http://127.0.0.1:{rport}/dlr"
    tmp = Path(f"/tmp/ujumbe-bench-pglat-{os.getpid()}")
    tmp.mkdir(exist_ok=True)
    stats = tmp / "proxy.json"
    results: list[tuple[str, scaleout.Run, dict[str, int], dict[str, int], float]] = []
    with _cpuquota.groups(1, None, "proxy", max(args.weight, 1)) as (pgroup,), \
            scaleout.backlog(args.pg, n, callback) as template:
        proxy, pport = start_proxy(args.pg, args.rtt_ms, stats, pgroup.procs_file())
        try:
            for rep in range(args.repeat):
                for mode in ("loopback", "delayed"):
                    counts = tmp / f"rt-{rep}-{mode}.json"

                    def env(db: Database, mode: str = mode, counts: Path = counts) -> dict[str, str]:
                        url = db.url if mode == "loopback" else f"postgresql://postgres@127.0.0.1:{pport}/{db.name}"
                        assert url is not None
                        return {"UJUMBE_DATABASE_URL": url, "UJUMBE_BENCH_RTCOUNT": str(counts),
                                "PYTHONPATH": f"{BENCH / '_rtcount'}{os.pathsep}{ROOT}"}

                    receiver = start_receiver(rport) if callback else None
                    before = read_stats(stats)
                    cpu0 = proxy.cpu_seconds()
                    t = time.strftime("%H:%M:%S", time.gmtime())
                    load = os.getloadavg()[0]
                    try:
                        run = scaleout.drain(template, 1, n, args.quota or None, timeout=args.timeout, sample=False,
                                             env=env, receiver=rport if callback else None, weight=args.weight)
                    finally:
                        if receiver is not None:
                            receiver.stop()
                    after = read_stats(stats)
                    turns = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                    rts = json.loads(counts.read_text()) if counts.exists() else {}
                    results.append((mode, run, turns, rts, proxy.cpu_seconds() - cpu0))
                    print(f"{t} UTC load {load:.1f}: {mode:<8} {run.rate:7.0f} msg/s", flush=True)
        finally:
            proxy.stop()
    report(results, args, n, callback is not None)


def report(results: list, args: argparse.Namespace, n: int, callbacks: bool) -> None:  # type: ignore[type-arg]
    what = "submit, receipt and 2 callbacks" if callbacks else "submit and receipt"
    print(f"\none worker, PostgreSQL at loopback vs +{args.rtt_ms:g} ms round trip (bench/_pgdelay.py): {n} messages, "
          f"{what} each; {today()}; "
          f"{'worker capped at ' + format(args.quota, '.2f') + ' core' if args.quota else 'no CPU cap'}")
    print(f"{'run':<10}{'msg/s':>8}{'÷ loopback':>12}{'worker µs/msg':>15}{'PG µs/msg':>11}{'turns/msg':>11}"
          f"{'proxy CPU s':>13}")
    loop_rates = [r.rate for m, r, *_ in results if m == "loopback"]
    base = sum(loop_rates) / len(loop_rates)
    for mode, run, turns, _, pcpu in results:
        per = f"{turns.get('turns', 0) / n:.3f}" if mode == "delayed" else "-"
        print(f"{mode:<10}{run.rate:>8.0f}{run.rate / base:>12.2f}{sum(run.worker_cpu) / n * 1e6:>15.0f}"
              f"{run.pg_cpu / n * 1e6:>11.0f}{per:>11}{pcpu if mode == 'delayed' else 0:>13.1f}")
    delayed = [r.rate for m, r, *_ in results if m == "delayed"]
    ratio = (sum(delayed) / len(delayed)) / base
    print(f"delayed ÷ loopback (means): {ratio:.2f}; target >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'}")
    # round trips per message by stage, from the worker's own count (each run alike: the first delayed one)
    for mode, run, turns, rts, _ in results:
        if mode != "delayed" or not rts:
            continue
        stages, statements = rts["stages"], rts["statements"]
        total = sum(stages.values())
        print(f"round trips per message, by stage (worker's count: {total / n:.3f} per message; "
              f"proxy's turns {turns.get('turns', 0) / n:.3f}):")
        for stage, c in sorted(stages.items(), key=lambda kv: -kv[1]):
            print(f"  {c / n:8.4f}  {c:8d}  {stage}")
        print("the statements among them (top 25):")
        for stmt, c in sorted(statements.items(), key=lambda kv: -kv[1])[:25]:
            print(f"  {c / n:8.4f}  {c:8d}  {stmt}")
        break


if __name__ == "__main__":
    main()
