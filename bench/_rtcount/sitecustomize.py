"""Bench only: counts a process's round trips to PostgreSQL, by stage.

Put this directory on PYTHONPATH with UJUMBE_BENCH_RTCOUNT=FILE and the
process writes {stage: round trips} to FILE at exit. Every asyncpg
``Connection`` call that goes to the server (execute, fetch*, executemany,
and so BEGIN, COMMIT and the pool's reset on release) is one round trip
(asyncpg sends a statement's Parse/Bind/Execute/Sync in one write and waits
once). The stage is the worker function the statement runs under (the
dispatcher's claim or record, receipts, callbacks, heartbeats); BEGIN, COMMIT
and the reset of a transaction go to the stage of its first statement.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import sys

_FILE = os.environ.get("UJUMBE_BENCH_RTCOUNT")

# (file suffix, function) -> stage; the innermost match on the stack wins
_STAGES = {
    ("workers/dispatch.py", "_claim"): "dispatch: claim",
    ("workers/dispatch.py", "_record"): "dispatch: record outcomes",
    ("workers/dispatch.py", "_heartbeat"): "dispatch: heartbeat",
    ("workers/dispatch.py", "_watch"): "dispatch: watch binds",
    ("workers/dispatch.py", "leave"): "dispatch: stop",
    ("services/reports.py", None): "receipts",
    ("workers/callbacks.py", None): "callbacks",
    ("services/callbacks.py", None): "callbacks",
}


def _stage() -> str:
    f = sys._getframe(2)
    outer = None
    while f is not None:
        name = f.f_code.co_filename
        if "ujumbe/" in name:
            for (suffix, func), stage in _STAGES.items():
                if name.endswith(suffix) and (func is None or f.f_code.co_name == func):
                    return stage
            if outer is None and "/store/" not in name:
                outer = f"{name.rsplit('ujumbe/', 1)[1]}:{f.f_code.co_name}"
        f = f.f_back
    return outer or "other"


if _FILE:
    import asyncpg.connection

    COUNTS: collections.Counter[str] = collections.Counter()
    DETAIL: collections.Counter[str] = collections.Counter()  # stage | statement
    _unit: dict[int, str] = {}  # connection -> stage of its open transaction
    _pending: dict[int, int] = {}  # connection -> BEGINs not attributed yet
    Connection = asyncpg.connection.Connection

    def _wrap(name: str) -> None:
        orig = getattr(Connection, name)

        async def counted(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
            key = id(self)
            q = query.lstrip()[:12].upper() if isinstance(query, str) else ""
            text = query if isinstance(query, str) else ""
            if q.startswith("BEGIN"):
                _pending[key] = _pending.get(key, 0) + 1
            elif q.startswith(("COMMIT", "ROLLBACK")) or "RESET ALL" in text:
                stage = _unit.get(key) or _stage()
                COUNTS[stage] += 1
                DETAIL[f"{stage} | {'pool reset on release' if 'RESET ALL' in text else q.split()[0]}"] += 1
                if "RESET ALL" in text:
                    _unit.pop(key, None)
            else:
                stage = _stage()
                if key in _pending:
                    COUNTS[stage] += _pending[key]
                    DETAIL[f"{stage} | BEGIN"] += _pending.pop(key)
                    _unit[key] = stage
                elif key not in _unit:
                    _unit[key] = stage
                COUNTS[stage] += 1
                DETAIL[f"{stage} | {' '.join(text.split())[:50]}"] += 1
            return await orig(self, query, *args, **kwargs)

        setattr(Connection, name, counted)

    for _n in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        _wrap(_n)

    @atexit.register
    def _write() -> None:
        for key, n in _pending.items():
            COUNTS["other"] += n
        with open(_FILE, "w") as fh:
            json.dump({"stages": dict(COUNTS), "statements": dict(DETAIL)}, fh)
