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
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec
from cryptography.fernet import Fernet, InvalidToken

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


_JSON = msgspec.json.Encoder()


def encode(payload: Any) -> str:
    # msgspec: compact, UTF-8 kept, as json.dumps(separators=(",", ":"),
    # ensure_ascii=False) writes it, at a tenth of the cost (~1 against ~10 µs
    # a delivery report; every message has two or more)
    return payload if isinstance(payload, str) else _JSON.encode(payload).decode()


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

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_TEREDO = ipaddress.ip_network("2001::/32")


def public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a callback may go to ``address``: a global unicast address,
    judged by the IPv4 address an IPv6 form carries where it carries one
    (``is_global`` calls some of those forms global)."""
    if address.version == 6:
        assert isinstance(address, ipaddress.IPv6Address)
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d
            return public_address(address.ipv4_mapped)
        if address in _TEREDO or address in _NAT64_LOCAL:
            return False  # the IPv4 end is hidden (Teredo) or site-chosen (local NAT64)
        low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in _NAT64 or int(address) >> 32 == 0:  # 64:ff9b::a.b.c.d, and ::a.b.c.d (with :: and ::1)
            return public_address(low)
        if address.sixtofour is not None:  # 2002:aabb:ccdd::/48 is a.b.c.d's 6to4 network
            return public_address(address.sixtofour)
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` spells, in any form the C resolver reads as one
    (``2130706433``, ``0x7f.1``, ``0177.0.0.1``), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None


def masked(url: str | None) -> str | None:
    """``url`` as an answer or a log may show it: any password is ``***``."""
    if not url:
        return url
    head, password, tail = _split_password(url)
    return url if password is None else head + "***" + tail


_SECRET_QUERY = re.compile(r"key|token|secret|pass|sig|auth", re.I)


def redacted(url: str) -> str:
    """``url`` as the client's pages show it and each attempt keeps it: without its
    password (sealed or not) or the values of secret-looking query parameters."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
        query = urlencode([(k, "***" if _SECRET_QUERY.search(k) else v) for k, v in parse_qsl(parts.query, True)],
                          safe="*")
        return parts._replace(netloc=netloc, query=query).geturl()
    except ValueError:
        return "(unreadable URL)"


_SEALED = "ujumbe-sealed."


class CallbackUrls:
    """Seals the password a client puts in a callback URL
    (``https://user:secret@host/``) before it is stored, and opens it to send.

    Only the password is replaced, by a Fernet token: the stored URL keeps its
    scheme and host, so the queue can still be filtered by scheme and a row
    read by an operator shows where it goes, not how to get in.
    """

    def __init__(self, server_secret: str) -> None:
        key = hmac.new(server_secret.encode(), b"ujumbe/callback-url-passwords/v1", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self._opened: dict[str, str] = {}

    def seal(self, url: str | None) -> str | None:
        if not url:
            return url
        head, password, tail = _split_password(url)
        if password is None or password.startswith(_SEALED):
            return url
        return head + _SEALED + self._fernet.encrypt(password.encode()).decode() + tail

    def open(self, url: str) -> str:
        """The URL as the client gave it; an unsealed URL (stored before
        sealing existed) as it is."""
        if _SEALED not in url:
            return url
        hit = self._opened.get(url)
        if hit is None:
            head, password, tail = _split_password(url)
            try:
                assert password is not None
                hit = head + self._fernet.decrypt(password.removeprefix(_SEALED).encode()).decode() + tail
            except (AssertionError, InvalidToken):
                hit = url  # not ours after all: a client's password that merely looks sealed
            if len(self._opened) > 10_000:
                self._opened.clear()
            self._opened[url] = hit
        return hit


def _split_password(url: str) -> tuple[str, str | None, str]:
    """(everything before the password, the password as written, the rest)."""
    scheme, sep, rest = url.partition("://")
    end = len(rest)
    for stop in "/?#":
        i = rest.find(stop)
        if i != -1:
            end = min(end, i)
    userinfo, at, _ = rest[:end].rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url, None, ""
    start = len(scheme) + len(sep) + userinfo.index(":") + 1
    stop = len(scheme) + len(sep) + len(userinfo)
    return url[:start], url[start:stop], url[stop:]


def check_target(url: str, *, allow_private: bool) -> str:
    """Refuse URLs a client could use to make us call our own network (SSRF).

    A literal private address, or a name that resolves to one, is refused
    here. A name that does not resolve (yet, or from this machine) is
    accepted: its callbacks fail and retry like any unreachable receiver's.
    The sender checks again every address it connects to, so a name that
    later resolves elsewhere gains nothing.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port out of range or not a number)
    except ValueError as exc:
        raise Invalid(f"'{masked(url)}' is not a valid URL: {exc}", code="invalid_callback_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"'{masked(url)}' is not an http(s) URL", code="invalid_callback_url")
    if any(c in parts.hostname for c in "\x00 \t\r\n") or len(parts.hostname) > 253:
        raise Invalid(f"'{masked(url)}' does not have a valid host name", code="invalid_callback_url")
    if allow_private:
        return url
    literal = literal_address(parts.hostname)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError, ValueError):  # gaierror; a name IDNA cannot encode
            return url  # does not resolve now: accepted, and retried when sent
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not public_address(address):
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
