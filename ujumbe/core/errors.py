"""Errors the use cases raise. Each has a stable ``code`` clients can switch
on and a ``kind`` that entry points map to their own status codes."""

from __future__ import annotations


class UjumbeError(Exception):
    code = "error"
    kind = "invalid"  # invalid | too_large | unauthorized | forbidden | not_found | conflict | payment | rate_limited | unavailable | down

    def __init__(self, message: str, *, code: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details


class Invalid(UjumbeError):
    code = "invalid_request"


class TooLarge(UjumbeError):
    """A request body over the size an entry point reads."""

    code = "body_too_large"
    kind = "too_large"


class Unauthorized(UjumbeError):
    code = "unauthorized"
    kind = "unauthorized"


class Forbidden(UjumbeError):
    """Known, but not this caller's to do (e.g. a short code the operator has not granted it)."""

    code = "forbidden"
    kind = "forbidden"


class NotFound(UjumbeError):
    code = "not_found"
    kind = "not_found"


class Conflict(UjumbeError):
    code = "conflict"
    kind = "conflict"


class InsufficientCredit(UjumbeError):
    code = "insufficient_credit"
    kind = "payment"


class RateLimited(UjumbeError):
    code = "rate_limited"
    kind = "rate_limited"


class ChannelUnavailable(UjumbeError):
    code = "channel_not_configured"
    kind = "unavailable"


class StoreUnavailable(UjumbeError):
    """The database cannot be reached; nothing was done, the client may retry."""

    code = "database_unavailable"
    kind = "down"
