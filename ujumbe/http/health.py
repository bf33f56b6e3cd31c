"""Health checks for load balancers and orchestrators.

``GET /healthz``: the process is alive and its event loop answers (touches
nothing else, so it is cheap enough to poll every second). ``GET /readyz``:
this process can do its job: the store answers, every migration this code
ships is applied, in worker roles every supervised worker is running, and in
an API process that expects workers elsewhere (``Settings.ready_workers``)
enough dispatch workers beat in ``dispatch_workers`` (workers/dispatch.py):
that is how an API process tells a stopped worker process from a healthy one,
whatever machine it runs on. It answers 503 with the reasons otherwise, so a balancer takes the process out
of rotation and an orchestrator restarts it. Neither needs a credential and
neither says more than which check failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ujumbe.http.common import JSON, services
from ujumbe.store import now_ms
from ujumbe.store.base import load_migrations
from ujumbe.store.messages import workers

STORE_TIMEOUT_S = 2.0  # a store slower than this to answer a one-row query is not ready


async def healthz(_: Request) -> Response:
    return JSON({"status": "ok"})


async def readiness(platform: Any) -> list[str]:
    """Why ``platform`` is not ready; empty when it is."""
    problems: list[str] = []
    try:
        rows = await asyncio.wait_for(
            platform.store.read(lambda tx: tx.fetch("SELECT version FROM schema_migrations")), STORE_TIMEOUT_S
        )
    except TimeoutError:
        problems.append(f"store: no answer within {STORE_TIMEOUT_S:g} s")
    except Exception as exc:  # noqa: BLE001  (whatever the driver raises, the answer is "not ready")
        problems.append(f"store: unreachable ({type(exc).__name__})")
    else:
        missing = sorted({v for v, _, _ in load_migrations()} - {r[0] for r in rows})
        if missing:
            problems.append("migrations not applied: " + ", ".join(f"{v:04d}" for v in missing))
        expected = platform.settings.ready_workers
        if platform.role == "api" and expected > 0 and not missing:
            problems += await _worker_beats(platform, expected)
    if platform.role in ("worker", "all"):
        for name, state in sorted(platform.workers_not_running().items()):
            problems.append(f"worker {name}: {state}")
    return problems


async def _worker_beats(platform: Any, expected: int) -> list[str]:
    """Fewer than ``expected`` dispatch workers beating: which, and since when."""
    try:
        beats = await asyncio.wait_for(platform.store.read(workers), STORE_TIMEOUT_S)
    except Exception:  # noqa: BLE001  (the store check above has answered; this one says the same)
        return ["store: no answer about the workers"]
    now, dead_s = now_ms(), platform.settings.worker_dead_s
    fresh = [owner for owner, at in beats if now - at <= dead_s * 1000]
    if len(fresh) >= expected:
        return []
    stale = sorted(((now - at) / 1000, owner) for owner, at in beats if owner not in fresh)
    seen = "; ".join(f"{owner} last beat {age:.0f} s ago" for age, owner in stale[:3]) or "none registered"
    return [f"workers: {len(fresh)} dispatch worker(s) beating in the last {dead_s:g} s, {expected} expected "
            f"(UJUMBE_READY_WORKERS); {seen}"]


async def readyz(request: Request) -> Response:
    platform = services(request)
    problems = await readiness(platform)
    body = {"status": "ready" if not problems else "not ready", "role": platform.role}
    if problems:
        body["problems"] = problems  # type: ignore[assignment]
    return JSON(body, status_code=503 if problems else 200)


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]
