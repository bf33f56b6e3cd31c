"""Platform administration over HTTP: operator connectors and routes.

``/admin/v1/...`` is for whoever runs the platform, not for tenants: it needs
the admin token (``UJUMBE_ADMIN_TOKEN``) as a bearer token, and answers 404
when no admin token is configured, as if it did not exist. ``/v1/routes`` lets
an account pin its own traffic to a connector. Errors are the native
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ujumbe.core.errors import Invalid, NotFound, Unauthorized
from ujumbe.dialects.native import error_response
from ujumbe.dialects.native import route as native_route
from ujumbe.http.common import Handler, JSON, bearer, client_address, handles_errors, read_json, services
from ujumbe.services.routing import ROUTE_KINDS


# API names that differ from the columns they are stored in.
_TO_DB = {"bind": "bind_mode", "window": "window_size"}
_FROM_DB = {v: k for k, v in _TO_DB.items()}


class ConnectorBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    bind: str = "transceiver"
    binds: int = 1
    window: int = 64
    tps: float | None = None
    tls: bool = False
    data_coding: str = "gsm7"
    long_messages: str = "udh"
    enabled: bool = True


class ConnectorPatch(msgspec.Struct, forbid_unknown_fields=True):
    host: str | msgspec.UnsetType = msgspec.UNSET
    port: int | msgspec.UnsetType = msgspec.UNSET
    system_id: str | msgspec.UnsetType = msgspec.UNSET
    password: str | msgspec.UnsetType = msgspec.UNSET
    system_type: str | msgspec.UnsetType = msgspec.UNSET
    bind: str | msgspec.UnsetType = msgspec.UNSET
    binds: int | msgspec.UnsetType = msgspec.UNSET
    window: int | msgspec.UnsetType = msgspec.UNSET
    tps: float | None | msgspec.UnsetType = msgspec.UNSET
    tls: bool | msgspec.UnsetType = msgspec.UNSET
    data_coding: str | msgspec.UnsetType = msgspec.UNSET
    long_messages: str | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class RouteBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    connector: str
    value: str = ""
    priority: int = 100
    account_id: str | None = None


class AccountRouteBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    connector: str
    value: str = ""
    priority: int = 100


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connector_out(c: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {_FROM_DB.get(k, k): v for k, v in c.items()}
    out["created_at"], out["updated_at"] = _iso(c.get("created_at")), _iso(c.get("updated_at"))
    out["status"] = status  # null when this process does not run the connector (an API-only process)
    return out


def route_out(r: dict[str, Any]) -> dict[str, Any]:
    return {**r, "created_at": _iso(r.get("created_at"))}


def _fields(body: msgspec.Struct) -> dict[str, Any]:
    return {
        _TO_DB.get(k, k): v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET
    }


def _require_admin(request: Request) -> None:
    token = services(request).settings.admin_token
    if not token:
        raise NotFound(f"No such endpoint: {request.url.path}", code="not_found")
    # The admin token opens every account's routing: guessing it is throttled
    # per client address like a login (5 failures per 5 minutes).
    limiter, key = services(request).accounts.limiter, f"admin:{client_address(request)}"
    limiter.check(key)
    given = bearer(request)
    if not hmac.compare_digest(given.encode(), token.encode()):
        limiter.failed(key)
        raise Unauthorized("That is not the admin token", code="invalid_admin_token")


def _route_id(request: Request) -> int:
    raw = request.path_params["id"]
    if not raw.isdigit():
        raise NotFound(f"No route {raw}", code="route_not_found")
    return int(raw)


# --- /admin/v1/connectors ---


async def list_connectors(request: Request) -> Response:
    _require_admin(request)
    p = services(request)
    return JSON({"data": [connector_out(c, p.router.status(c["name"])) for c in await p.routing.list_connectors()]})


async def create_connector(request: Request) -> Response:
    _require_admin(request)
    body = await read_json(request, ConnectorBody)
    p = services(request)
    return JSON(connector_out(await p.routing.add_connector(_fields(body))), 201)


async def get_connector(request: Request) -> Response:
    _require_admin(request)
    p = services(request)
    name = request.path_params["name"]
    return JSON(connector_out(await p.routing.get_connector(name), p.router.status(name)))


async def update_connector(request: Request) -> Response:
    _require_admin(request)
    body = await read_json(request, ConnectorPatch)
    changes = _fields(body)
    if not changes:
        raise Invalid("Nothing to change", code="empty_update")
    return JSON(connector_out(await services(request).routing.update_connector(request.path_params["name"], changes)))


async def delete_connector(request: Request) -> Response:
    _require_admin(request)
    await services(request).routing.remove_connector(request.path_params["name"])
    return Response(status_code=204)


# --- /admin/v1/routes ---


async def list_routes(request: Request) -> Response:
    _require_admin(request)
    return JSON({"data": [route_out(r) for r in await services(request).routing.list_routes()]})


async def create_route(request: Request) -> Response:
    _require_admin(request)
    body = await read_json(request, RouteBody)
    route = await services(request).routing.add_route(
        kind=body.kind, connector=body.connector, value=body.value, priority=body.priority, account_id=body.account_id,
    )
    return JSON(route_out(route), 201)


async def delete_route(request: Request) -> Response:
    _require_admin(request)
    await services(request).routing.remove_route(_route_id(request))
    return Response(status_code=204)


# --- /v1/routes: an account's own overrides ---


async def _account_id(request: Request) -> str:
    account = await services(request).accounts.authenticate_bearer(bearer(request))
    return str(account.id)


# These three belong to the native API, so they are registered with it and
# appear in its OpenAPI document.
@native_route("GET", "/v1/routes", summary="This account's own routes (pinning its traffic to a connector)", tag="routes")
async def list_account_routes(request: Request) -> Response:
    account_id = await _account_id(request)
    return JSON({"data": [route_out(r) for r in await services(request).routing.list_routes(account_id)]})


@native_route("POST", "/v1/routes", summary="Pin this account's traffic (by prefix, network or default) to a connector",
              tag="routes", body=AccountRouteBody, status=201)
async def create_account_route(request: Request) -> Response:
    account_id = await _account_id(request)
    body = await read_json(request, AccountRouteBody)
    route = await services(request).routing.add_route(
        kind=body.kind, connector=body.connector, value=body.value, priority=body.priority, account_id=account_id,
        kinds=ROUTE_KINDS,
    )
    return JSON(route_out(route), 201)


@native_route("DELETE", "/v1/routes/{id}", summary="Remove one of this account's routes", tag="routes", status=204)
async def delete_account_route(request: Request) -> Response:
    account_id = await _account_id(request)
    await services(request).routing.remove_route(_route_id(request), account_id=account_id)
    return Response(status_code=204)


def routes() -> list[Route]:
    def h(handler: Handler) -> Handler:
        return handles_errors(handler, error_response)

    return [
        Route("/admin/v1/connectors", h(list_connectors), methods=["GET"]),
        Route("/admin/v1/connectors", h(create_connector), methods=["POST"]),
        Route("/admin/v1/connectors/{name}", h(get_connector), methods=["GET"]),
        Route("/admin/v1/connectors/{name}", h(update_connector), methods=["PATCH"]),
        Route("/admin/v1/connectors/{name}", h(delete_connector), methods=["DELETE"]),
        Route("/admin/v1/routes", h(list_routes), methods=["GET"]),
        Route("/admin/v1/routes", h(create_route), methods=["POST"]),
        Route("/admin/v1/routes/{id}", h(delete_route), methods=["DELETE"]),
    ]
