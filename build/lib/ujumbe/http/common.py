"""HTTP plumbing every dialect shares: fast JSON, body decoding, auth, errors.

Dialects differ in their envelopes and status codes, so each catches
``UjumbeError`` itself and answers in its own format; what is here is only
what they have in common.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ujumbe.core.errors import Invalid, UjumbeError, Unauthorized

T = TypeVar("T")

_encoder = msgspec.json.Encoder()

STATUS_BY_KIND = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payment": 402,
    "rate_limited": 429,
    "unavailable": 422,
    "down": 503,
}


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def services(request: Request) -> Any:
    """The running platform, set on the app at start (see ``ujumbe.runtime``)."""
    return request.app.state.platform


async def read_json(request: Request, type_: type[T]) -> T:
    """Decode and validate the body; errors name the field at fault."""
    return decode_json(await request.body(), type_)


def decode_json(body: bytes, type_: type[T]) -> T:
    if not body.strip():
        raise Invalid("The request body is empty; a JSON object was expected", code="invalid_json")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise Invalid(f"Invalid request: {exc}", code="validation_error") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"The body is not valid JSON: {exc}", code="invalid_json") from None


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send a bearer token in the Authorization header", code="missing_token")
    return token.strip()


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def error_status(exc: UjumbeError) -> int:
    return STATUS_BY_KIND.get(exc.kind, 400)


Handler = Callable[[Request], Awaitable[Response]]


def handles_errors(handler: Handler, on_error: Callable[[UjumbeError], Response]) -> Handler:
    """Answer a use-case error in the dialect's own format (``on_error``)
    rather than letting it become a 500."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except UjumbeError as exc:
            return on_error(exc)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped
