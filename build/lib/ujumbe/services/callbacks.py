"""Push notifications to clients: formats by dialect, signing, target checks.

Each dialect registers how its clients expect to be told about a message
(``Format``); the life cycle enqueues a callback row in the same transaction
as the state change, so a change is never recorded without its notification.
The callback worker delivers rows, retrying until the client acknowledges.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ujumbe.core.errors import Invalid, NotFound
from ujumbe.store import Tx, now_ms
from ujumbe.store import callbacks as callbacks_q


@dataclass(frozen=True, slots=True)
class Event:
    state: str
    at: int
    error_code: str | None = None
    reason: str | None = None
    # refused while accepting the request: the client's answer already said
    # so, and a dialect may not want to repeat it in a callback
    at_accept: bool = False


@dataclass(slots=True)
class Format:
    """How one dialect notifies its clients."""

    # message dict + event -> JSON-able payload, or None when this dialect does
    # not report that state
    dlr: Callable[[dict[str, Any], Event], Any | None] | None = None
    inbound: Callable[[dict[str, Any]], Any] | None = None
    subscription: Callable[[dict[str, Any]], Any] | None = None
    # (HTTP status, body) -> whether the client acknowledged
    acknowledged: Callable[[int, str], bool] = lambda status, body: 200 <= status < 300
    # seconds to wait before each retry; its length is the number of retries
    retry_delays: dict[str, tuple[int, ...]] = field(default_factory=dict)
    content_type: str = "application/json"
    # (services, callback row, status, body): act on what the client answered,
    # e.g. Tilil's ``result_message`` reply to an inbound message
    after_ack: Callable[[Any, dict[str, Any], int, str], Awaitable[None]] | None = None
    # (services, callback row) -> the body to send, when it needs what is not
    # stored in the row, e.g. Tilil's api_token (kept encrypted, added at send)
    prepare: Callable[[Any, dict[str, Any]], Awaitable[str]] | None = None


# Exponential backoff: 10 s doubling to an hour, about a day of tries.
DEFAULT_RETRIES = tuple(min(10 * 2**i, 3600) for i in range(30))

FORMATS: dict[str, Format] = {}


def register(dialect: str, fmt: Format) -> None:
    FORMATS[dialect] = fmt


def retry_delays(dialect: str, kind: str) -> tuple[int, ...]:
    fmt = FORMATS.get(dialect)
    return (fmt.retry_delays.get(kind) if fmt else None) or DEFAULT_RETRIES


def encode(payload: Any) -> str:
    return payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def callback_row(
    *, account_id: str, kind: str, dialect: str, url: str, payload: Any, message_id: int | None = None,
) -> tuple[Any, ...]:
    """One row for ``insert_callbacks``."""
    now = now_ms()
    return (account_id, message_id, kind, dialect, url, encode(payload), now, now)


async def insert_callbacks(tx: Tx, rows: list[tuple[Any, ...]]) -> None:
    """Queue callbacks built by ``callback_row``/``dlr_row``, in this order."""
    await callbacks_q.insert(tx, rows)
    tx.notify("callbacks")


async def enqueue(
    tx: Tx, *, account_id: str, kind: str, dialect: str, url: str, payload: Any, message_id: int | None = None,
) -> None:
    await insert_callbacks(tx, [callback_row(
        account_id=account_id, kind=kind, dialect=dialect, url=url, payload=payload, message_id=message_id,
    )])


def dlr_row(msg: dict[str, Any], event: Event) -> tuple[Any, ...] | None:
    """The callback row reporting ``event`` of ``msg``, or None when its
    client asked for no report (or its dialect has none for this state)."""
    url = msg.get("callback_url") or msg.get("dlr_url")
    if not url:
        return None
    fmt = FORMATS.get(msg["dialect"]) or FORMATS.get("native")
    if fmt is None or fmt.dlr is None:
        return None
    payload = fmt.dlr(msg, event)
    if payload is None:
        return None
    return callback_row(
        account_id=msg["account_id"], kind="dlr", dialect=msg["dialect"], url=url, payload=payload,
        message_id=msg["id"],
    )


async def enqueue_dlr(tx: Tx, msg: dict[str, Any], event: Event) -> None:
    """Queue a delivery report for ``msg`` if its client asked for one."""
    row = dlr_row(msg, event)
    if row is not None:
        await insert_callbacks(tx, [row])


# --- Standard Webhooks signatures (https://www.standardwebhooks.com) ---


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, callback_id: int, body: str, content_type: str) -> dict[str, str]:
    ts = int(time.time())
    msg_id = f"msg_{callback_id}"
    return {
        "content-type": content_type,
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
        "user-agent": "Ujumbe-Webhooks/1",
    }


# --- where callbacks may go ---


def check_target(url: str, *, allow_private: bool) -> str:
    """Refuse URLs a client could use to make us call our own network (SSRF)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"'{url}' is not an http(s) URL", code="invalid_callback_url")
    if allow_private:
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise Invalid(f"The host of '{url}' does not resolve", code="invalid_callback_url") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise Invalid(
                f"Callbacks to private or loopback addresses ({address}) are refused; "
                "set UJUMBE_ALLOW_PRIVATE_CALLBACKS=1 to allow them",
                code="private_callback_url",
            )
    return url


class CallbackLog:
    """Callbacks as the client sees them: listed, and replayed on request."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def list(self, account_id: str, status: str | None, limit: int, before: int | None) -> list[dict[str, Any]]:
        return await self.store.read(lambda tx: callbacks_q.page(tx, account_id, status, limit, before))

    async def due_now(self, url: str) -> None:
        """Pending callbacks to ``url`` go now rather than at their next retry
        (e.g. when an SMPP customer binds again)."""

        async def unit(tx: Tx) -> None:
            await callbacks_q.due_now(tx, url, now_ms())
            tx.notify("callbacks")

        await self.store.run(unit)

    async def retry(self, account_id: str, callback_id: int) -> None:
        async def unit(tx: Tx) -> bool:
            found = await callbacks_q.send_again(tx, account_id, callback_id, now_ms())
            if found:
                tx.notify("callbacks")
            return found

        if not await self.store.run(unit):
            raise NotFound(f"No callback {callback_id}")
