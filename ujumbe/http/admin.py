"""Platform administration over HTTP: operator connectors, routes and sender
names, and injecting what a network would send (inbound messages, subscription notices).

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
from ujumbe.http.common import (
    Handler, JSON, bearer, client_address, decode_json, handles_errors, path_id, read_body, read_json, services,
)
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
    system_id: str = ""  # SMPP system_id; an SMTP or SIP connector's username (empty: no auth)
    password: str | None = None  # required for SMPP
    kind: str = "smpp"  # smpp | smtp | sip
    # smtp: starttls, verify, bounce_domain; sip: transport, from_user, from_domain, max_calls, cps,
    # ring_timeout_s, max_duration_s (docs/voice.md)
    options: dict[str, Any] | None = None
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
    options: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


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
    options: dict[str, Any] | None = None


class DomainBody(msgspec.Struct, forbid_unknown_fields=True):
    domain: str
    selector: str | None = None


class DomainOut(msgspec.Struct):
    domain: str
    account_id: str
    selector: str
    dns_name: str  # publish a TXT record here ...
    dns_txt: str  # ... with this value
    created_at: int


class DomainList(msgspec.Struct):
    data: list[DomainOut]


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


class SenderGrantBody(msgspec.Struct, forbid_unknown_fields=True):
    account_id: str
    name: str
    networks: list[str] | None = None  # e.g. ["Safaricom"]; none: every network


class SenderRejectBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str | None = None  # shown to the account


class AdminSenderOut(msgspec.Struct):
    account_id: str
    name: str
    networks: list[str] | None
    status: str  # pending | approved | rejected
    reason: str | None
    created_at: str | None
    decided_at: str | None


class AdminSenderList(msgspec.Struct):
    data: list[AdminSenderOut]


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


async def admin_only(request: Request) -> None:
    """Let the operator's admin token through; every admin handler awaits it
    first. (It was the synchronous ``_require_admin`` before the throttle
    moved to the store: renamed so that a call left unawaited cannot pass.)"""
    token = services(request).settings.admin_token
    if not token:
        raise NotFound(f"No such endpoint: {request.url.path}", code="not_found")
    given = bearer(request)
    if hmac.compare_digest(given.encode(), token.encode()):
        return  # the right token always gets in, whatever others tried from this address
    # Wrong tokens are counted per client address in the store (all processes
    # share it); after five they are answered 429, one at a time after
    # a pause, so guesses cannot be tried at speed.
    accounts = services(request).accounts
    await accounts.refuse_credential(f"admin:{client_address(request)}", accounts.admin_attempts)
    raise Unauthorized("That is not the admin token", code="invalid_admin_token")


def _route_id(request: Request) -> int:
    return path_id(request, "route", code="route_not_found")


def admin_route(method: str, path: str, **kw: Any) -> Any:
    def register(handler: Handler) -> Handler:
        return api.route(method, path, **kw)(handles_errors(handler, error_response))

    return register


@admin_route("GET", "/admin/v1/openapi.json", summary="This document", tag="docs")
async def admin_document(request: Request) -> Response:
    await admin_only(request)
    return JSON(_document())


@functools.cache
def _document() -> dict[str, Any]:
    return api.document()


# --- /admin/v1/connectors ---


@admin_route("GET", "/admin/v1/connectors", summary="Every operator connector, with its state in this process",
             tag="connectors", response=ConnectorList)
async def list_connectors(request: Request) -> Response:
    await admin_only(request)
    p = services(request)
    return JSON({"data": [connector_out(c, p.router.status(c["name"])) for c in await p.routing.list_connectors()]})


@admin_route("POST", "/admin/v1/connectors",
             summary="Add an operator connector (SMPP, SMTP or SIP); workers start it without a restart",
             tag="connectors", body=ConnectorBody, response=ConnectorOut, status=201)
async def create_connector(request: Request) -> Response:
    await admin_only(request)
    body = await read_json(request, ConnectorBody)
    p = services(request)
    return JSON(connector_out(await p.routing.add_connector(_fields(body))), 201)


@admin_route("GET", "/admin/v1/connectors/{name}", summary="One connector", tag="connectors", response=ConnectorOut)
async def get_connector(request: Request) -> Response:
    await admin_only(request)
    p = services(request)
    name = request.path_params["name"]
    return JSON(connector_out(await p.routing.get_connector(name), p.router.status(name)))


@admin_route("PATCH", "/admin/v1/connectors/{name}",
             summary="Change a connector; running workers restart it with the new settings",
             tag="connectors", body=ConnectorPatch, response=ConnectorOut)
async def update_connector(request: Request) -> Response:
    await admin_only(request)
    body = await read_json(request, ConnectorPatch)
    changes = _fields(body)
    if not changes:
        raise Invalid("Nothing to change", code="empty_update")
    return JSON(connector_out(await services(request).routing.update_connector(request.path_params["name"], changes)))


@admin_route("DELETE", "/admin/v1/connectors/{name}", summary="Remove a connector; its sends in flight finish first",
             tag="connectors", status=204)
async def delete_connector(request: Request) -> Response:
    await admin_only(request)
    await services(request).routing.remove_connector(request.path_params["name"])
    return Response(status_code=204)


# --- /admin/v1/accounts/{id}/domains: email sending domains ---


@admin_route("POST", "/admin/v1/accounts/{account_id}/domains",
             summary="Give an account an email sending domain; generates its DKIM key (publish dns_txt at dns_name)",
             tag="email", body=DomainBody, response=DomainOut, status=201)
async def add_domain(request: Request) -> Response:
    await admin_only(request)
    body = await read_json(request, DomainBody)
    return JSON(await services(request).domains.add(request.path_params["account_id"], body.domain, selector=body.selector), 201)


@admin_route("GET", "/admin/v1/accounts/{account_id}/domains", summary="An account's sending domains", tag="email",
             response=DomainList)
async def list_domains(request: Request) -> Response:
    await admin_only(request)
    return JSON({"data": await services(request).domains.list(request.path_params["account_id"])})


@admin_route("DELETE", "/admin/v1/domains/{domain}", summary="Remove a sending domain and its key", tag="email",
             status=204)
async def delete_domain(request: Request) -> Response:
    await admin_only(request)
    await services(request).domains.remove(request.path_params["domain"])
    return Response(status_code=204)


# --- /admin/v1/routes ---


@admin_route("GET", "/admin/v1/routes", summary="Every route, the platform's and the accounts' own",
             tag="routes", response=RouteList)
async def list_routes(request: Request) -> Response:
    await admin_only(request)
    return JSON({"data": [route_out(r) for r in await services(request).routing.list_routes()]})


@admin_route("POST", "/admin/v1/routes",
             summary="Route traffic by prefix, network or default to a connector, for everyone or one account",
             tag="routes", body=RouteBody, response=RouteOut, status=201)
async def create_route(request: Request) -> Response:
    await admin_only(request)
    body = await read_json(request, RouteBody)
    route = await services(request).routing.add_route(
        kind=body.kind, connector=body.connector, value=body.value, priority=body.priority, account_id=body.account_id,
    )
    return JSON(route_out(route), 201)


@admin_route("DELETE", "/admin/v1/routes/{id:id}", summary="Remove a route", tag="routes", status=204)
async def delete_route(request: Request) -> Response:
    await admin_only(request)
    await services(request).routing.remove_route(_route_id(request))
    return Response(status_code=204)


# --- /admin/v1/phone-numbers: the inventory accounts buy from ---


class PhoneNumberBody(msgspec.Struct, forbid_unknown_fields=True):
    number: str
    rate: str | int | float  # credits charged when an account buys it
    capabilities: str = "Voice, SMS"
    sid: str | None = None  # default: a new random one
    friendly_name: str = ""


def phone_number_out(n: dict[str, Any]) -> dict[str, Any]:
    from ujumbe.core.pricing import display

    return {"number": n["number"], "sid": n["sid"], "rate": display(n["rate"]), "capabilities": n["capabilities"],
            "friendly_name": n["friendly_name"], "account_id": n["account_id"], "bought_at": iso(n["bought_at"])}


@admin_route("GET", "/admin/v1/phone-numbers", summary="Every stocked phone number and its owner", tag="phone-numbers")
async def list_phone_numbers(request: Request) -> Response:
    await admin_only(request)
    return JSON({"data": [phone_number_out(n) for n in await services(request).phone_numbers.all()]})


@admin_route("POST", "/admin/v1/phone-numbers", summary="Stock a phone number accounts may buy (409 if stocked)",
             tag="phone-numbers", body=PhoneNumberBody, status=201)
async def stock_phone_number(request: Request) -> Response:
    await admin_only(request)
    body = await read_json(request, PhoneNumberBody)
    n = await services(request).phone_numbers.stock(body.number, str(body.rate), capabilities=body.capabilities,
                                                    sid=body.sid, friendly_name=body.friendly_name)
    return JSON(phone_number_out(n), 201)


# --- /admin/v1/senders: granting sender names ---


def sender_out(s: Any) -> dict[str, Any]:
    return {
        "account_id": s.account_id, "name": s.name, "networks": list(s.networks) if s.networks else None,
        "status": s.status, "reason": s.reason, "created_at": iso(s.created_at), "decided_at": iso(s.decided_at),
    }


@admin_route("GET", "/admin/v1/senders", summary="Every account's sender names (status=pending: the requests "
             "waiting for a decision)", tag="senders", response=AdminSenderList,
             query={"status": "pending, approved or rejected (default: all)"})
async def list_senders(request: Request) -> Response:
    await admin_only(request)
    found = await services(request).senders.all(request.query_params.get("status") or None)
    return JSON({"data": [sender_out(s) for s in found]})


@admin_route("POST", "/admin/v1/senders", summary="Grant an account a sender name (approved at once; again: "
             "replaces its networks); 409 if another account holds it", tag="senders", body=SenderGrantBody,
             response=AdminSenderOut, status=201)
async def grant_sender(request: Request) -> Response:
    await admin_only(request)
    body = await read_json(request, SenderGrantBody)
    return JSON(sender_out(await services(request).senders.add(body.account_id, body.name, body.networks)), 201)


@admin_route("POST", "/admin/v1/senders/{account_id}/{name}/approve",
             summary="Approve an account's request for a sender name; 409 if another account holds it",
             tag="senders", response=AdminSenderOut)
async def approve_sender(request: Request) -> Response:
    await admin_only(request)
    p = request.path_params
    return JSON(sender_out(await services(request).senders.approve(p["account_id"], p["name"])))


@admin_route("POST", "/admin/v1/senders/{account_id}/{name}/reject",
             summary="Reject an account's request for a sender name (or withdraw a grant), with a reason",
             tag="senders", body=SenderRejectBody, response=AdminSenderOut)
async def reject_sender(request: Request) -> Response:
    await admin_only(request)
    p = request.path_params
    raw = await read_body(request)
    body = decode_json(raw, SenderRejectBody) if raw.strip() else SenderRejectBody()
    return JSON(sender_out(await services(request).senders.reject(p["account_id"], p["name"], body.reason)))


# --- /admin/v1/simulator: the operator injects what a network would send ---


@admin_route("POST", "/admin/v1/simulator/inbound",
             summary="Inject an inbound message to any account's number or short code, as if a subscriber had "
             "sent it (also with real connectors configured)", tag="simulator", body=InboundBody,
             response=Injected, status=202)
async def admin_simulate_inbound(request: Request) -> Response:
    await admin_only(request)
    body = await read_json(request, InboundBody)
    record = await reports.inject_inbound(
        services(request).store, sender=body.sender, to=body.to, text=body.text, link_id=body.link_id,
    )
    return JSON({**msgspec.structs.asdict(injected(record)), "account_id": record["account_id"]}, 202)


@admin_route("POST", "/admin/v1/simulator/subscription",
             summary="Inject a network's (de)activation of a subscriber to a premium service (by service_id "
             "or shortcode)", tag="simulator", body=SubscriptionNoticeBody, response=Injected, status=202)
async def admin_simulate_subscription(request: Request) -> Response:
    await admin_only(request)
    body = await read_json(request, SubscriptionNoticeBody)
    record = await inject_notice(request, body, None)
    return JSON({**msgspec.structs.asdict(injected(record)), "account_id": record["account_id"]}, 202)


@admin_route("GET", "/admin/v1/inbound/unassigned",
             summary="Inbound messages from operator connectors to numbers no account owned, newest first",
             tag="inbound", response=UnassignedPage, query={"limit": "1-500", "cursor": "next page"})
async def list_unassigned_inbound(request: Request) -> Response:
    await admin_only(request)
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
    account = await services(request).accounts.authenticate_bearer(bearer(request), client_address(request))
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


@native_route("DELETE", "/v1/routes/{id:id}", summary="Remove one of this account's routes", tag="routes", status=204)
async def delete_account_route(request: Request) -> Response:
    account_id = await _account_id(request)
    await services(request).routing.remove_route(_route_id(request), account_id=account_id)
    return Response(status_code=204)


def routes() -> list[Route]:
    return api.routes()
