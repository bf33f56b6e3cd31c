"""Health checks for load balancers and orchestrators.

``GET /healthz``: the process is alive and its event loop answers (touches
nothing else, so it is cheap enough to poll every second). ``GET /readyz``:
this process can do its job: the store answers, every migration this code
ships is applied, and in worker roles every supervised worker is running. It
answers 503 with the reasons otherwise, so a balancer takes the process out
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
from ujumbe.store.base import load_migrations

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
    if platform.role in ("worker", "all"):
        for name, state in sorted(platform.workers_not_running().items()):
            problems.append(f"worker {name}: {state}")
    return problems


async def readyz(request: Request) -> Response:
    platform = services(request)
    problems = await readiness(platform)
    body = {"status": "ready" if not problems else "not ready", "role": platform.role}
    if problems:
        body["problems"] = problems  # type: ignore[assignment]
    return JSON(body, status_code=503 if problems else 200)


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]
