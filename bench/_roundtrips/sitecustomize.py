"""Counts PostgreSQL round trips in a benchmarked server (bench/accept.py --round-trips).

Put on PYTHONPATH only by the benchmark: Python imports ``sitecustomize`` at
start-up, before ``ujumbe serve`` opens its pool. Each call below is one
round trip through asyncpg (a statement, a pipelined executemany, a
transaction's BEGIN/COMMIT, the pool's reset on release); the counts go to
``$UJUMBE_BENCH_ROUND_TRIPS/<pid>.json`` every 0.2 s (``serve --processes``
forks its children, so each child starts its own writer).
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time

_DIR = os.environ.get("UJUMBE_BENCH_ROUND_TRIPS")


def _install() -> None:
    import asyncpg.connection

    counts: collections.Counter[str] = collections.Counter()

    def label(query: object) -> str:
        text = " ".join(str(query).split())
        return text[:60]

    def wrap(name: str) -> None:
        original = getattr(asyncpg.connection.Connection, name)

        async def counted(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
            counts[f"{name}: {label(query)}"] += 1
            return await original(self, query, *args, **kwargs)

        setattr(asyncpg.connection.Connection, name, counted)

    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        wrap(name)

    def writer() -> None:
        path = os.path.join(_DIR, f"{os.getpid()}.json")  # type: ignore[arg-type]
        while True:
            time.sleep(0.2)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(dict(counts), f)
            os.replace(tmp, path)

    def start() -> None:
        counts.clear()
        threading.Thread(target=writer, daemon=True, name="round-trips").start()

    os.register_at_fork(after_in_child=start)
    start()


if _DIR:
    _install()
