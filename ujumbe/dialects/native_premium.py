"""Native ``/v1`` endpoints for sender names, premium services and their
subscribers. They join the native API (same ``api`` object, so they are in
``/openapi.json``); importing this module registers them."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ujumbe.core.errors import Invalid
from ujumbe.dialects.native import account_of, iso, route
from ujumbe.http.common import JSON, path_id, read_json, services
from ujumbe.services.premium import Service, Subscription
from ujumbe.services.senders import Sender


class SenderBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    networks: list[str] | None = None  # e.g. ["Safaricom"]; none: every network


class SenderOut(msgspec.Struct):
    name: str
    networks: list[str] | None
    created_at: str
    status: str  # pending (awaiting the operator) | approved (usable) | rejected
    reason: str | None = None  # the operator's, on a rejection


class ServiceBody(msgspec.Struct, forbid_unknown_fields=True):
    shortcode: str
    type: str  # subscription | on-demand
    keywords: list[str] = []
    name: str | None = None
    api_token: str | None = None  # the token your endpoints expect in our pushes
    service_id: int | None = None  # keep the id your clients already send; else the next free one


class ServicePatch(msgspec.Struct, forbid_unknown_fields=True):
    keywords: list[str] | None = None
    name: str | None = None
    api_token: str | None = None


class ServiceOut(msgspec.Struct):
    service_id: int
    shortcode: str
    name: str
    type: str
    keywords: list[str]
    api_token_set: bool
    created_at: str


class SubscriberOut(msgspec.Struct):
    mobile: str
    subscriber_ref: int
    active: bool
    keyword: str | None
    source: str
    created_at: str
    updated_at: str


def sender_out(s: Sender) -> SenderOut:
    return SenderOut(s.name, list(s.networks) if s.networks else None, iso(s.created_at) or "", s.status, s.reason)


def service_out(s: Service) -> ServiceOut:
    return ServiceOut(s.id, s.shortcode, s.name, s.kind, list(s.keywords), s.api_token_set, iso(s.created_at) or "")


def subscriber_out(s: Subscription) -> SubscriberOut:
    return SubscriberOut(s.mobile, s.ref, s.active, s.keyword, s.source, iso(s.created_at) or "",
                         iso(s.updated_at) or "")


# --- sender names ---


@route("GET", "/v1/senders", summary="This account's sender names and their status", tag="senders",
       response=list[SenderOut])
async def list_senders(request: Request) -> Response:
    account = await account_of(request)
    return JSON([sender_out(s) for s in await services(request).senders.list(account.id)])


@route("POST", "/v1/senders", summary="Ask for a sender name, optionally only for some networks: it is pending "
       "until the operator approves it (a name another account holds is 409 sender_taken)", tag="senders",
       body=SenderBody, response=SenderOut, status=201)
async def add_sender(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, SenderBody)
    sender = await services(request).senders.request(account.id, body.name, body.networks)
    return JSON(sender_out(sender), 201)


@route("DELETE", "/v1/senders/{name}", summary="Remove a sender name", tag="senders", status=204)
async def remove_sender(request: Request) -> Response:
    account = await account_of(request)
    await services(request).senders.remove(account.id, request.path_params["name"])
    return Response(status_code=204)


# --- premium services ---


@route("GET", "/v1/premium-services", summary="Premium short-code services", tag="premium",
       response=list[ServiceOut])
async def list_services(request: Request) -> Response:
    account = await account_of(request)
    return JSON([service_out(s) for s in await services(request).premium.list(account.id)])


@route("POST", "/v1/premium-services", summary="Register a premium service on a short code the operator "
       "granted this account (`ujumbe numbers add`); its inbound messages come here", tag="premium", body=ServiceBody, response=ServiceOut, status=201)
async def create_service(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, ServiceBody)
    service = await services(request).premium.create(
        account.id, shortcode=body.shortcode, kind=body.type, keywords=body.keywords, name=body.name,
        api_token=body.api_token, service_id=body.service_id, granted_only=True,
    )
    return JSON(service_out(service), 201)


@route("GET", "/v1/premium-services/{id:id}", summary="One premium service", tag="premium", response=ServiceOut)
async def get_service(request: Request) -> Response:
    account = await account_of(request)
    return JSON(service_out(await services(request).premium.get(account.id, _service_id(request))))


@route("PATCH", "/v1/premium-services/{id:id}", summary="Change a service's keywords, name or api_token "
       "(an empty api_token clears it)", tag="premium", body=ServicePatch, response=ServiceOut)
async def patch_service(request: Request) -> Response:
    account = await account_of(request)
    body = await read_json(request, ServicePatch)
    service = await services(request).premium.update(
        account.id, _service_id(request), keywords=body.keywords, name=body.name,
        api_token=body.api_token or None, clear_token=body.api_token == "",
    )
    return JSON(service_out(service))


@route("GET", "/v1/premium-services/{id:id}/subscribers", summary="Subscribers of a service",
       tag="premium", response=list[SubscriberOut], query={"all": "1 to include deactivated subscribers"})
async def list_subscribers(request: Request) -> Response:
    account = await account_of(request)
    everyone = request.query_params.get("all") in ("1", "true")
    subs = await services(request).premium.subscribers(account.id, _service_id(request),
                                                              active_only=not everyone)
    return JSON([subscriber_out(s) for s in subs])


@route("PUT", "/v1/premium-services/{id:id}/subscribers/{mobile}", summary="Activate a subscriber",
       tag="premium", response=SubscriberOut)
async def activate_subscriber(request: Request) -> Response:
    account = await account_of(request)
    sub, _ = await services(request).premium.subscribe(
        account.id, _service_id(request), _mobile(request), region=account.region
    )
    return JSON(subscriber_out(sub))


@route("DELETE", "/v1/premium-services/{id:id}/subscribers/{mobile}", summary="Deactivate a subscriber",
       tag="premium", status=204)
async def deactivate_subscriber(request: Request) -> Response:
    account = await account_of(request)
    await services(request).premium.unsubscribe(
        account.id, _service_id(request), _mobile(request), region=account.region
    )
    return Response(status_code=204)


def _service_id(request: Request) -> int:
    return path_id(request, "premium service", code="service_not_found")


def _mobile(request: Request) -> str:
    mobile = request.path_params["mobile"].strip()
    if not mobile:
        raise Invalid("No mobile number in the path", code="invalid_number")
    return mobile
