"""GET /metrics: Prometheus' text format, behind the admin token, or
without it on a listen address of its own (UJUMBE_METRICS_LISTEN).

The counters and histograms are ujumbe.metrics' (every process's with
``serve --processes N``); the queue figures are read from the store at scrape
time with indexed queries, so they hold for the whole cluster whichever
process answers. No admin token configured: 404 on the API's port, like the
admin API. The metrics address answers /metrics, /healthz and /readyz and
nothing else: it is meant for a private interface, and a worker process (no
API port) is scraped and checked there.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ujumbe import metrics
from ujumbe.core.errors import UjumbeError
from ujumbe.dialects.native import error_response
from ujumbe.http.admin import admin_only
from ujumbe.http import health
from ujumbe.http.common import JSON, services
from ujumbe.store import now_ms


async def _queue(tx: Any) -> dict[str, Any]:
    # count(*) over the queues only (rows leave them once done); min(due_at) by index
    outbox = await tx.fetchrow("SELECT count(*) AS n, min(due_at) AS due FROM outbox")
    callbacks = await tx.fetchrow("SELECT count(*) AS n, min(due_at) AS due FROM callbacks WHERE status = 'pending'")
    return {"outbox": outbox, "callbacks": callbacks}


def _gauges(figures: dict[str, Any]) -> str:
    now = now_ms()
    lines = []
    for name, row, help_ in (
        ("ujumbe_queue_depth", figures["outbox"], "Messages waiting to be sent (outbox rows)"),
        ("ujumbe_callbacks_pending", figures["callbacks"], "Callbacks waiting to be sent"),
    ):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {row['n']}"]
    for name, row, help_ in (
        ("ujumbe_queue_oldest_due_age_seconds", figures["outbox"], "How long the longest-due message has waited"),
        ("ujumbe_callbacks_oldest_due_age_seconds", figures["callbacks"], "How long the longest-due callback has waited"),
    ):
        age = max(0, now - row["due"]) / 1000 if row["due"] is not None else 0
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {age:.3f}"]
    return "\n".join(lines) + "\n"


async def scrape(request: Request) -> Response:
    try:
        await admin_only(request)
    except UjumbeError as exc:
        return error_response(exc)
    return await _exposition(request)


async def _exposition(request: Request) -> Response:
    figures = await services(request).store.read(_queue)
    return Response(metrics.exposition(_gauges(figures)), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[Route]:
    return [Route("/metrics", scrape)]


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6), or ValueError naming the form."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the metrics listen address must be HOST:PORT, e.g. 127.0.0.1:9464, not {text!r} "
                         "(--metrics-listen or UJUMBE_METRICS_LISTEN)")
    return host, int(port)


def listener_app(platform: Any) -> Any:
    """What the metrics address answers: /metrics without a token, /healthz, /readyz."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException

    async def not_here(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return JSON({"error": {"code": "not_found", "message": f"The metrics address serves /metrics, /healthz and "
                                                               f"/readyz only, not {request.url.path}"}}, status)

    app = Starlette(routes=[Route("/metrics", _exposition), *health.routes()],
                    exception_handlers={HTTPException: not_here})
    app.state.platform = platform
    return app


class MetricsPort:
    """Pure ASGI, outermost: a connection that came in on the metrics port
    (``scope["server"]``, the local address) goes to ``listener_app``; the
    API's routes are never reachable there, nor /metrics' open form on the API's port."""

    def __init__(self, app: Any, platform: Any, port: int) -> None:
        self.app = app
        self.port = port
        self.metrics_app = listener_app(platform)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan" and (scope.get("server") or ("", None))[1] == self.port:
            await self.metrics_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)

