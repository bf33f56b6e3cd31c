"""The ASGI application: every dialect's routes on one Starlette app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ujumbe import dialects
from ujumbe.dialects import native
from ujumbe.http import admin, dashboard
from ujumbe.http.common import JSON
from ujumbe.http.openapi import docs_page
from ujumbe.runtime import Platform


# The send endpoints, looked up first: Starlette tries routes in order, with a
# regular expression each, and sends are most of the traffic.
HOT_PATHS = ("/v1/messages", "/api/v2/engagement", "/sms/v3/sendsms")


def hot_first(routes: list[BaseRoute], paths: tuple[str, ...]) -> list[BaseRoute]:
    """``routes`` with those for ``paths`` moved to the front, each only if no
    route before it could match its path (so no request goes elsewhere)."""
    hot = []
    for path in paths:
        for i, route in enumerate(routes):
            if isinstance(route, Route) and route.path == path:
                if not any(isinstance(r, Route) and r.path_regex.match(path) for r in routes[:i]):
                    hot.append(route)
                break
    return hot + [r for r in routes if r not in hot]


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
        Route("/openapi.json", openapi),
        Route("/docs", docs_page),
        *(route for module in dialects.MODULES for route in module.routes()),
        *admin.routes(),  # platform admin (/admin/v1)
        *dashboard.routes(),  # the web dashboard (/dashboard)
    ]
    app = Starlette(
        routes=hot_first(routes, HOT_PATHS),
        lifespan=lifespan,
        exception_handlers={HTTPException: not_found, 500: server_error},
    )
    app.state.platform = platform
    return app
