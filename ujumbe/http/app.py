"""The ASGI application: every dialect's routes on one Starlette app."""

from __future__ import annotations

import contextlib
import inspect
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from ujumbe import dialects
from ujumbe.dialects import messangi, native
from ujumbe.http import admin, dashboard
from ujumbe.http import health as health_checks
from ujumbe.http import exchanges  # noqa: F401  (registers GET /v1/messages/{id}/exchanges)
from ujumbe import metrics
from ujumbe.http import metrics as metrics_http
from ujumbe.http.common import JSON
from ujumbe.http.openapi import docs_page
from ujumbe.logs import request_id_var
from ujumbe.runtime import Platform


# The send endpoints, looked up first: Starlette tries routes in order, with a
# regular expression each, and sends are most of the traffic. Messangi's one
# route (every method, parsed by the dialect) was the 65th of ~160 and
# TingTing's code send the 100th: 117 and 182 us of matching per request
# (a slow machine's figures; /v1/messages, first, 4 us).
HOT_PATHS = ("/v1/messages", "/api/v2/engagement", "/sms/v3/sendsms", messangi.BASE + "{rest:path}",
             "/api/system/send/otp/", "/api/system/send/otp")


access_log = logging.getLogger("ujumbe.http")


class RequestLog:
    """One INFO line per request: client, method, path, status, milliseconds.

    The path only, never the query string (Tilil's ``api_key`` travels there)
    nor any header. It also counts the request for /metrics (ujumbe.metrics),
    by route template and status. Pure ASGI and skipped entirely when INFO and
    metrics are off: the send endpoints are the hot path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or (not (logged := access_log.isEnabledFor(logging.INFO)) and not metrics.ENABLED):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before answering, the error handler outside answers 500
        # every line logged while this request is handled carries its id (ujumbe.logs)
        request_id_var.set(secrets.token_hex(8))

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if metrics.ENABLED:  # by route template (set by the router on a match), never the path
                metrics.http_request(scope["method"], scope.get("route"), status)
            if logged:
                client = scope.get("client")
                raw = scope.get("raw_path")  # as sent (still %-encoded, so no line breaks), without the query
                path = raw.decode("ascii", "backslashreplace") if raw else scope["path"]
                access_log.info("%s %s %s %d %.1fms", client[0] if client else "-", scope["method"], path, status,
                                (time.perf_counter() - started) * 1000)


def _static_prefix(path: str) -> str:
    return path.split("{", 1)[0]


def _may_overlap(earlier: BaseRoute, path: str) -> bool:
    """Whether ``earlier`` could match a request meant for the route ``path``:
    for a path without parameters, its regular expression says; with them,
    unless their fixed beginnings differ (neither starts the other), assume so."""
    if not isinstance(earlier, Route):
        return True  # a Mount, a WebSocket route: not worth the reasoning
    if "{" not in path:
        return bool(earlier.path_regex.match(path))
    mine, theirs = _static_prefix(path), _static_prefix(earlier.path)
    return mine.startswith(theirs) or theirs.startswith(mine)


def hot_first(routes: list[BaseRoute], paths: tuple[str, ...]) -> list[BaseRoute]:
    """``routes`` with those for ``paths`` moved to the front, each only if no
    route before it could match its requests (so no request goes elsewhere)."""
    hot = []
    for path in paths:
        for i, route in enumerate(routes):
            if isinstance(route, Route) and route.path == path:
                if not any(_may_overlap(r, path) for r in routes[:i]):
                    hot.append(route)
                break
    return hot + [r for r in routes if r not in hot]


class HotRoutes:
    """The send routes' requests straight to their endpoints, past Starlette's
    ExceptionMiddleware, Router and request_response (two wrappers of ``send``
    each, a few frames each): ~5 % of a send's CPU. Pure ASGI, inside
    RequestLog. What the router would do is done here for a full match of a
    hot route (each looked up in the router's order, first); anything else,
    a partial match (another method) included, goes the ordinary way.

    Every hot endpoint answers its own errors (``handles_errors``, or its
    own ``except Exception``), so the exception middleware never has work on
    these routes; an HTTPException still gets its handler's answer here."""

    def __init__(self, app: Any, routes: list[Route], on_http_error: Any) -> None:
        self.app = app
        self.routes = routes
        self.on_http_error = on_http_error

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    if "router" not in scope:
                        scope["router"] = scope["app"].router  # as the router sets it (url_for reads it)
                    scope["route"] = route
                    scope.update(child_scope)
                    request = Request(scope, receive, send)
                    try:
                        response = await route.endpoint(request)
                    except HTTPException as exc:
                        response = await self.on_http_error(request, exc)
                    await response(scope, receive, send)
                    return
                if match is Match.PARTIAL:
                    break
        await self.app(scope, receive, send)


def hot_routes(routes: list[BaseRoute], paths: tuple[str, ...]) -> list[Route]:
    """The routes at the front of ``routes`` (see ``hot_first``) for ``paths``
    that HotRoutes may call directly: plain async endpoints, no route middleware."""
    hot = []
    for route in routes:
        if not (isinstance(route, Route) and route.path in paths):
            break
        plain = getattr(route.app, "__qualname__", "").startswith("request_response.")  # no route middleware
        if not (plain and inspect.iscoroutinefunction(route.endpoint)):
            break  # this one and those after it keep to the router, in order
        hot.append(route)
    return hot


def create_app(platform: Platform, *, role: str = "all", manage_platform: bool = True) -> Starlette:
    document = native.api.document()

    async def openapi(_: Request) -> Response:
        return JSON(document)

    async def health(_: Request) -> Response:
        return JSON({"status": "ok", "role": platform.role, "database": platform.store.dialect})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "error")
        message = {404: f"No such endpoint: {request.url.path}", 405: f"{request.method} is not allowed here"}.get(
            status, "Something went wrong"
        )
        return JSON({"error": {"code": code, "message": message}}, status_code=status)

    async def server_error(request: Request, exc: Exception) -> Response:
        return JSON({"error": {"code": "internal_error", "message": "Something went wrong on our side"}}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_platform:
            await platform.start(role)
        try:
            yield
        finally:
            if manage_platform:
                await platform.stop()

    routes = [
        Route("/health", health),
        *health_checks.routes(),  # /healthz and /readyz
        *metrics_http.routes(),  # /metrics, behind the admin token
        Route("/openapi.json", openapi),
        Route("/docs", docs_page),
        *(route for module in dialects.MODULES for route in module.routes()),
        *admin.routes(),  # platform admin (/admin/v1)
        *dashboard.routes(),  # the web dashboard (/dashboard)
    ]
    routes = hot_first(routes, HOT_PATHS)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # the metrics address first (UJUMBE_METRICS_LISTEN): its scrapes are not API requests
        middleware=[*([Middleware(metrics_http.MetricsPort, platform=platform,
                                  port=metrics_http.parse_listen(platform.settings.metrics_listen)[1])]
                      if platform.settings.metrics_listen else []),
                    Middleware(RequestLog),
                    Middleware(HotRoutes, routes=hot_routes(routes, HOT_PATHS), on_http_error=not_found)],
        exception_handlers={HTTPException: not_found, 500: server_error},
    )
    app.state.platform = platform
    return app
