"""GET /metrics: Prometheus' text format, behind the admin token.

The counters and histograms are ujumbe.metrics' (every process's with
``serve --processes N``); the queue figures are read from the store at scrape
time with indexed queries, so they hold for the whole cluster whichever
process answers. No admin token configured: 404, like the admin API.
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
from ujumbe.http.common import services
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
    figures = await services(request).store.read(_queue)
    return Response(metrics.exposition(_gauges(figures)), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[Route]:
    return [Route("/metrics", scrape)]

