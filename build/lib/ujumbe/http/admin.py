"""Platform administration over HTTP: operator connectors and routes, and
injecting what a network would send (inbound messages, subscription notices).

``/admin/v1/...`` is for whoever runs the platform, not for tenants: it needs
the admin token (``UJUMBE_ADMIN_TOKEN``) as a bearer token, and answers 404
when no admin token is configured, as if it did not exist. ``/v1/routes`` lets
an account pin its own traffic to a connector. Errors are the native
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import functools
import hmac
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ujumbe.core.errors import Invalid, NotFound, Unauthorized
from ujumbe.dialects.native import (
    Injected, InboundBody, SubscriptionNoticeBody, error_response, inject_notice, injected, int_param, iso,
)
from ujumbe.dialects.native import route as native_route
from ujumbe.http.common import Handler, JSON, bearer, client_address, handles_errors, read_json, services
from ujumbe.http.openapi import Api
from ujumbe.services import reports
from ujumbe.services.routing import ROUTE_KINDS
from ujumbe.store import inbound as inbound_q

# Its own document (GET /admin/v1/openapi.json, behind the admin token): the
# native one at /openapi.json is for tenants.
api = Api("Ujumbe platform administration", "1.0", auth="The admin token (UJUMBE_ADMIN_TOKEN)")


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


class ConnectorStatus(msgspec.Struct):
    running: bool
    binds_up: int | None
    in_flight: int


class ConnectorOut(msgspec.Struct):
    name: str
    kind: str
    host: str
    port: int
    system_id: str
    system_type: str
    bind: str
    binds: int
    window: int
    tps: float | None
    tls: bool
    data_coding: str
    long_messages: str
    enabled: bool
    password_set: bool
    created_at: str | None
    updated_at: str | None
    status: ConnectorStatus | None  # null when this process does not run the connector (an API-only process)


class ConnectorList(msgspec.Struct):
    data: list[ConnectorOut]


class RouteOut(msgspec.Struct):
    id: int
    account_id: str | None
    kind: str
    value: str
    connector: str
    priority: int
    created_at: str | None


class RouteList(msgspec.Struct):
    data: list[RouteOut]


class RouteBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    connector: str
    value: str = ""
    priority: int = 100
    account_id: str | None = None


class UnassignedInbound(msgspec.Struct):
    id: int
    channel: str
    sender: str
    to: str
    text: str
    network: str | None
    link_id: str | None
    received_at: str


class UnassignedPage(msgspec.Struct):
    data: list[UnassignedInbound]
    next_cursor: str | None


class AccountRouteBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    connector: str
    value: str = ""
    priority: int = 100


def connector_out(c: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {_FROM_DB.get(k, k): v for k, v in c.items()}
    out["created_at"], out["updated_at"] = iso(c.get("created_at")), iso(c.get("updated_at"))
    out["status"] = status  # null when this process does not run the connector (an API-only process)
    return out


def route_out(r: dict[str, Any]) -> dict[str, Any]:
    return {**r, "created_at": iso(r.get("created_at"))}


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


def admin_route(method: str, path: str, **kw: Any) -> Any:
    def register(handler: Handler) -> Handler:
        return api.route(method, path, **kw)(handles_errors(handler, error_response))

    return register


@admin_route("GET", "/admin/v1/openapi.json", summary="This document", tag="docs")
async def admin_document(request: Request) -> Response:
    _require_admin(request)
    return JSON(_document())


@functools.cache
def _document() -> dict[str, Any]:
    return api.document()


# --- /admin/v1/connectors ---


@admin_route("GET", "/admin/v1/connectors", summary="Every operator connector, with its state in this process",
             tag="connectors", response=ConnectorList)
async def list_connectors(request: Request) -> Response:
    _require_admin(request)
    p = services(request)
    return JSON({"data": [connector_out(c, p.router.status(c["name"])) for c in await p.routing.list_connectors()]})


@admin_route("POST", "/admin/v1/connectors",
             summary="Add an SMPP operator connector; workers start it without a restart",
             tag="connectors", body=ConnectorBody, response=ConnectorOut, status=201)
async def create_connector(request: Request) -> Response:
    _require_admin(request)
    body = await read_json(request, ConnectorBody)
    p = services(request)
    return JSON(connector_out(await p.routing.add_connector(_fields(body))), 201)


@admin_route("GET", "/admin/v1/connectors/{name}", summary="One connector", tag="connectors", response=ConnectorOut)
async def get_connector(request: Request) -> Response:
    _require_admin(request)
    p = services(request)
    name = request.path_params["name"]
    return JSON(connector_out(await p.routing.get_connector(name), p.router.status(name)))


@admin_route("PATCH", "/admin/v1/connectors/{name}",
             summary="Change a connector; running workers restart it with the new settings",
             tag="connectors", body=ConnectorPatch, response=ConnectorOut)
async def update_connector(request: Request) -> Response:
    _require_admin(request)
    body = await read_json(request, ConnectorPatch)
    changes = _fields(body)
    if not changes:
        raise Invalid("Nothing to change", code="empty_update")
    return JSON(connector_out(await services(request).routing.update_connector(request.path_params["name"], changes)))


@admin_route("DELETE", "/admin/v1/connectors/{name}", summary="Remove a connector; its sends in flight finish first",
             tag="connectors", status=204)
async def delete_connector(request: Request) -> Response:
    _require_admin(request)
    await services(request).routing.remove_connector(request.path_params["name"])
    return Response(status_code=204)


# --- /admin/v1/routes ---


@admin_route("GET", "/admin/v1/routes", summary="Every route, the platform's and the accounts' own",
             tag="routes", response=RouteList)
async def list_routes(request: Request) -> Response:
    _require_admin(request)
    return JSON({"data": [route_out(r) for r in await services(request).routing.list_routes()]})


@admin_route("POST", "/admin/v1/routes",
             summary="Route traffic by prefix, network or default to a connector, for everyone or one account",
             tag="routes", body=RouteBody, response=RouteOut, status=201)
async def create_route(request: Request) -> Response:
    _require_admin(request)
    body = await read_json(request, RouteBody)
    route = await services(request).routing.add_route(
        kind=body.kind, connector=body.connector, value=body.value, priority=body.priority, account_id=body.account_id,
    )
    return JSON(route_out(route), 201)


@admin_route("DELETE", "/admin/v1/routes/{id}", summary="Remove a route", tag="routes", status=204)
async def delete_route(request: Request) -> Response:
    _require_admin(request)
    await services(request).routing.remove_route(_route_id(request))
    return Response(status_code=204)


# --- /admin/v1/simulator: the operator injects what a network would send ---


@admin_route("POST", "/admin/v1/simulator/inbound",
             summary="Inject an inbound message to any account's number or short code, as if a subscriber had "
             "sent it (also with real connectors configured)", tag="simulator", body=InboundBody,
             response=Injected, status=202)
async def admin_simulate_inbound(request: Request) -> Response:
    _require_admin(request)
    body = await read_json(request, InboundBody)
    record = await reports.inject_inbound(
        services(request).store, sender=body.sender, to=body.to, text=body.text, link_id=body.link_id,
    )
    return JSON({**msgspec.structs.asdict(injected(record)), "account_id": record["account_id"]}, 202)


@admin_route("POST", "/admin/v1/simulator/subscription",
             summary="Inject a network's (de)activation of a subscriber to a premium service (by service_id "
             "or shortcode)", tag="simulator", body=SubscriptionNoticeBody, response=Injected, status=202)
async def admin_simulate_subscription(request: Request) -> Response:
    _require_admin(request)
    body = await read_json(request, SubscriptionNoticeBody)
    record = await inject_notice(request, body, None)
    return JSON({**msgspec.structs.asdict(injected(record)), "account_id": record["account_id"]}, 202)


@admin_route("GET", "/admin/v1/inbound/unassigned",
             summary="Inbound messages from operator connectors to numbers no account owned, newest first",
             tag="inbound", response=UnassignedPage, query={"limit": "1-500", "cursor": "next page"})
async def list_unassigned_inbound(request: Request) -> Response:
    _require_admin(request)
    limit = int_param(request, "limit", 50, high=500) or 50
    before = int_param(request, "cursor", None)
    rows = await services(request).store.read(lambda tx: inbound_q.unassigned_page(tx, limit=limit, before=before))
    data = [
        UnassignedInbound(r["id"], r["channel"], r["sender"], r["recipient"], r["body"], r["network"], r["link_id"],
                          iso(r["received_at"]) or "")
        for r in rows
    ]
    return JSON(UnassignedPage(data, str(data[-1].id) if len(data) == limit else None))


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
    return api.routes()
