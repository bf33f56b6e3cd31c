"""HTTP plumbing every dialect shares: fast JSON, body decoding, auth, errors.

Dialects differ in their envelopes and status codes, so each catches
``UjumbeError`` itself and answers in its own format; what is here is only
what they have in common.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ujumbe.core.errors import Invalid, NotFound, TooLarge, UjumbeError, Unauthorized

T = TypeVar("T")
log = logging.getLogger("ujumbe.http")

# What a request may carry. No real request comes near; each limit keeps a
# hostile one from costing memory or CPU, or failing later in the store.
MAX_BODY = 4 * 1024 * 1024  # bytes: a send to 100,000 recipients (the most one takes) fits
MAX_DEPTH = 32  # JSON nesting levels
MAX_ID = 2**63 - 1  # ids are signed 64-bit integers in SQLite and PostgreSQL

_encoder = msgspec.json.Encoder()

STATUS_BY_KIND = {
    "invalid": 400,
    "too_large": 413,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payment": 402,
    "rate_limited": 429,
    "unavailable": 422,
    "down": 503,
    "internal": 500,
}


class InternalError(UjumbeError):
    """A fault of ours, not the client's."""

    code = "internal_error"
    kind = "internal"


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def services(request: Request) -> Any:
    """The running platform, set on the app at start (see ``ujumbe.runtime``)."""
    return request.app.state.platform


async def read_body(request: Request, limit: int = MAX_BODY, too_large: Callable[[], TooLarge] | None = None) -> bytes:
    """The body, refused (``TooLarge``, or ``too_large()``) once it passes
    ``limit``: the rest is not read, and the server drops it with the
    connection kept."""
    cached = getattr(request, "_body", None)
    if cached is not None:
        return cached
    refuse = too_large or _too_large
    declared = header(request, b"content-length") or ""
    if declared.isascii() and declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise refuse()
    # Starlette's Request.stream() without its async generator (a send's body
    # is one message): the same messages read the same way, the same errors.
    if request._stream_consumed:
        raise RuntimeError("Stream consumed")
    chunks, size = [], 0
    while not request._stream_consumed:
        message = await request._receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                request._stream_consumed = True
            size += len(chunk)
            if size > limit:
                raise refuse()
            if chunk:
                chunks.append(chunk)
        elif message["type"] == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
    body = b"".join(chunks)
    request._body = body  # where Starlette's own request.body() keeps it
    return body


def _too_large() -> TooLarge:
    return TooLarge(f"The request body is larger than {MAX_BODY // (1024 * 1024)} MiB", code="body_too_large")


async def read_json(request: Request, type_: type[T]) -> T:
    """Decode and validate the body; errors name the field at fault."""
    return decode_json(await read_body(request), type_)


def decode_json(body: bytes, type_: type[T]) -> T:
    if not body.strip():
        raise Invalid("The request body is empty; a JSON object was expected", code="invalid_json")
    try:
        value = msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise Invalid(f"Invalid request: {exc}", code="validation_error") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"The body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise _too_deep() from None
    # Only a body with many brackets can nest deeply, and only one with an
    # escaped NUL can hold one, so an ordinary body skips the walk.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH or b"\\u0000" in body:
        check_value(value)
    return value


def check_value(value: Any) -> None:
    """Refuse JSON nested deeper than ``MAX_DEPTH`` (it is kept and encoded
    again later, where Python's recursion limit would fail it) and text with
    NUL characters (PostgreSQL cannot store them)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise _nul()
            continue
        if isinstance(item, msgspec.Struct):
            children: Any = [getattr(item, name) for name in item.__struct_fields__]
        elif isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= MAX_DEPTH:
            raise _too_deep()
        stack.extend((child, depth + 1) for child in children)


def _too_deep() -> Invalid:
    return Invalid(f"The JSON is nested deeper than {MAX_DEPTH} levels", code="json_too_deep")


def _nul() -> Invalid:
    return Invalid("Text may not contain the NUL character (\\u0000 or %00)", code="invalid_character")


def parse_id(raw: str) -> int | None:
    """``raw`` as a stored id, or None: ASCII digits only (``str.isdigit``
    and ``int`` also take '²' or '٣'), at most ``MAX_ID``."""
    if not (raw.isascii() and raw.isdigit()):
        return None
    digits = raw.lstrip("0") or "0"
    if len(digits) > 19:  # also keeps int() from its 4,300-digit ValueError
        return None
    value = int(digits)
    return value if value <= MAX_ID else None


def path_id(request: Request, thing: str, code: str = "not_found") -> int:
    """The ``{id:id}`` path parameter; an id that cannot exist is not found."""
    raw = request.path_params["id"]
    value = parse_id(raw)
    if value is None:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise NotFound(f"No {thing} {shown}", code=code)
    return value


class IdConvertor(Convertor[str]):
    """``{id:id}``: any path segment, read by the handler with ``path_id``
    and documented as an integer. Starlette's ``int`` converts in the router,
    where a 5,000-digit id raised (a 500) and a huge one reached the store."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())


def header(request: Request, name: bytes) -> str | None:
    """``request.headers.get(name)`` for a lowercase ``name``, read from the
    scope without building Starlette's Headers (the send paths read one or two)."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def bearer(request: Request) -> str:
    scheme, _, token = (header(request, b"authorization") or "").partition(" ")
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
            # PostgreSQL cannot store or compare text with NUL in it.
            if "\x00" in request.scope["path"] or b"%00" in request.scope["query_string"]:
                raise _nul()
            return await handler(request)
        except UjumbeError as exc:
            return on_error(exc)
        except Exception:
            # Still a 500, but in the dialect's shape and on a connection kept
            # open: an exception left to the server would drop it.
            log.exception("%s %s failed", request.method, request.url.path)
            return on_error(InternalError("Something went wrong on our side"))

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped
