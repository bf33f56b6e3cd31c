"""Operator connectors and routing: which channel carries a message.

Connectors (SMPP binds to operators) and routes live in the database, so every
worker process runs the same set and an operator changes them without a
restart. ``Routing`` is the use case that manages them (the admin API and the
CLI call it); ``Router`` is what the dispatcher asks for a channel; it also
runs the connectors and reloads them when the version in the database moves.

The rules, in order:

1. routes of the message's account, then routes for everyone;
2. within each: ``prefix`` routes (longest prefix first), then ``network``
   (the carrier the number was detected on), then ``default``; equal ones by
   ``priority`` (lower first);
3. the first of those whose connector has a bind up carries the message: the
   next one is the failover;
4. no route matches at all: any configured connector of the message's kind
   (SMPP for SMS, SMTP for email; by name), or, when none of that kind is
   configured, the built-in channel of that kind (a simulator); routes only
   take messages of their connector's kind;
5. candidates exist but none is up: a transient ``SendError``, so the message
   waits with backoff instead of failing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from ujumbe.channels.base import Channel, ChannelEvents, SendError
from ujumbe.core.errors import Conflict, Invalid, NotFound
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import routing as q
from ujumbe.store.accounts import account_exists

log = logging.getLogger("ujumbe.routing")

BUILTIN_NAMES = frozenset({"simulator", "email-simulator", "smtp-relay", "voice-simulator"})  # routes may name the built-in simulator; connectors may not take it
ROUTE_KINDS = ("prefix", "network", "default")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CHOICES: dict[str, tuple[str, ...]] = {
    "bind_mode": ("transceiver", "transmitter", "receiver"),
    "data_coding": ("gsm7", "latin1"),
    "long_messages": ("udh", "udh16", "payload", "sar"),
}
CONNECTOR_DEFAULTS: dict[str, Any] = {
    "kind": "smpp", "system_id": "", "system_type": "", "bind_mode": "transceiver", "binds": 1, "window_size": 64, "tps": None,
    "tls": False, "data_coding": "gsm7", "long_messages": "udh", "enabled": True,
}
# What a connector is made of; a change to any of these restarts it.
_CONFIG_FIELDS = (
    "host", "port", "system_id", "password_enc", "system_type", "bind_mode", "binds", "window_size", "tps", "tls",
    "data_coding", "long_messages", "kind", "options",
)
CHANNEL_KINDS = {"smpp": "sms", "smtp": "email", "sip": "voice"}  # connector kind -> the channel kind it carries


class PasswordBox:
    """Encrypts operator passwords at rest with a key derived from the server secret.

    They cannot be hashed: the server must present them when it binds.
    """

    def __init__(self, server_secret: str, purpose: bytes = b"ujumbe/connector-passwords/v1") -> None:
        # one key per purpose (e.g. premium api tokens use their own)
        key = hmac.new(server_secret.encode(), purpose, hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, password: str) -> str:
        return self._fernet.encrypt(password.encode()).decode()

    def open(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()


def public_connector(row: dict[str, Any]) -> dict[str, Any]:
    """A connector as the API and CLI show it: never the password, not even encrypted."""
    out = {k: v for k, v in row.items() if k != "password_enc"}
    out["password_set"] = bool(row.get("password_enc"))
    return out


def _check_connector(c: dict[str, Any]) -> None:
    if not isinstance(c.get("name"), str) or not _NAME.match(c["name"]):
        raise Invalid("A connector name is 1-64 letters, digits, '.', '_' or '-'", code="invalid_connector")
    if c["name"].lower() in BUILTIN_NAMES:
        raise Invalid(f"'{c['name']}' is the built-in simulator's name", code="invalid_connector")
    if c.get("kind", "smpp") == "smtp":
        from ujumbe.services.emails import check_smtp_connector

        return check_smtp_connector(c)
    if c.get("kind") == "sip":
        from ujumbe.services.voice import check_sip_connector

        return check_sip_connector(c)
    if c.get("kind", "smpp") != "smpp":
        raise Invalid("A connector's kind is 'smpp', 'smtp' or 'sip'", code="invalid_connector")
    if not isinstance(c.get("host"), str) or not c["host"].strip() or len(c["host"]) > 255:
        raise Invalid("'host' is required", code="invalid_connector")
    if not isinstance(c.get("port"), int) or not 1 <= c["port"] <= 65535:
        raise Invalid("'port' must be 1-65535", code="invalid_connector")
    if not isinstance(c.get("system_id"), str) or not 1 <= len(c["system_id"]) <= 15:
        raise Invalid("'system_id' is required (SMPP allows 15 characters)", code="invalid_connector")
    if len(c.get("system_type") or "") > 12:
        raise Invalid("'system_type' is at most 12 characters", code="invalid_connector")
    for field, choices in _CHOICES.items():
        if c.get(field) not in choices:
            raise Invalid(f"'{field}' must be one of {', '.join(choices)}", code="invalid_connector")
    if not isinstance(c.get("binds"), int) or not 1 <= c["binds"] <= 64:
        raise Invalid("'binds' must be 1-64", code="invalid_connector")
    if not isinstance(c.get("window_size"), int) or not 1 <= c["window_size"] <= 4096:
        raise Invalid("'window' must be 1-4096", code="invalid_connector")
    tps = c.get("tps")
    if tps is not None and (not isinstance(tps, (int, float)) or not 0 < tps <= 100_000):
        raise Invalid("'tps' must be a positive number (or null for no limit)", code="invalid_connector")


def _check_password(password: Any, kind: str = "smpp") -> str:
    if kind in ("smtp", "sip"):  # no length limit; a relay or trunk may need none (allowed by address)
        if password is not None and (not isinstance(password, str) or len(password) > 1024):
            raise Invalid("'password' is at most 1024 characters", code="invalid_connector")
        return password or ""
    if not isinstance(password, str) or not 1 <= len(password) <= 8:
        # SMPP 3.4 carries at most 8 characters; a longer one would be cut at the operator.
        raise Invalid("'password' is required, 1-8 characters (SMPP 3.4)", code="invalid_connector")
    return password


def _check_route(kind: str, value: str, priority: Any, kinds: tuple[str, ...] = ROUTE_KINDS) -> str:
    """The route's value as stored; Invalid (invalid_route) when the route cannot be."""
    if kind not in kinds:
        raise Invalid(f"'kind' must be one of {', '.join(kinds)}", code="invalid_route")
    value = (value or "").strip()
    if kind == "prefix":
        value = value.lstrip("+")
        if not value.isdigit() or len(value) > 15:
            raise Invalid("A prefix is 1-15 digits in international form, e.g. 2547", code="invalid_route")
    elif kind == "network":
        if not value or len(value) > 64:
            raise Invalid("A network route needs the carrier name, e.g. Safaricom", code="invalid_route")
    elif value:
        raise Invalid("A default route takes no value", code="invalid_route")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1_000_000:
        raise Invalid("'priority' must be a whole number 0-1000000", code="invalid_route")
    return value


async def _connector_exists(tx: Tx, connector: str) -> None:
    """A route names a configured connector or a built-in one."""
    if connector not in BUILTIN_NAMES and await q.get_connector(tx, connector) is None:
        raise NotFound(f"No connector named '{connector}'", code="connector_not_found")


class Routing:
    """Manage connectors and routes. Every change bumps the routing version
    and notifies ``routing`` in the same transaction, so workers reload."""

    def __init__(self, store: Store, box: PasswordBox) -> None:
        self.store = store
        self.box = box

    # --- connectors ---

    async def list_connectors(self) -> list[dict[str, Any]]:
        return [public_connector(c) for c in await self.store.read(q.list_connectors)]

    async def get_connector(self, name: str) -> dict[str, Any]:
        row = await self.store.read(lambda tx: q.get_connector(tx, name))
        if row is None:
            raise NotFound(f"No connector named '{name}'", code="connector_not_found")
        return public_connector(row)

    async def add_connector(self, fields: dict[str, Any]) -> dict[str, Any]:
        c = {**CONNECTOR_DEFAULTS, **{k: v for k, v in fields.items() if v is not None}}
        _check_connector(c)
        c["password_enc"] = self.box.seal(_check_password(fields.get("password"), c["kind"]))
        c.pop("password", None)
        c["created_at"] = c["updated_at"] = now_ms()

        async def unit(tx: Tx) -> dict[str, Any]:
            if await q.get_connector(tx, c["name"]) is not None:
                raise Conflict(f"A connector named '{c['name']}' exists", code="connector_exists")
            await q.insert_connector(tx, c)
            await q.bump_version(tx)
            row = await q.get_connector(tx, c["name"])
            assert row is not None
            return row

        return public_connector(await self.store.run(unit))

    async def update_connector(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change the given fields (``enabled``, ``tps``, ``password`` ...); the rest stay."""
        changes = dict(changes)
        changes.pop("name", None)
        password = changes.pop("password", None)

        async def unit(tx: Tx) -> dict[str, Any]:
            row = await q.get_connector(tx, name)
            if row is None:
                raise NotFound(f"No connector named '{name}'", code="connector_not_found")
            if "options" in changes:  # the options given change, the others stay
                changes["options"] = {**(row.get("options") or {}), **(changes["options"] or {})}
            merged = {**row, **changes}
            _check_connector(merged)
            fields = dict(changes)
            if password is not None:
                fields["password_enc"] = self.box.seal(_check_password(password, merged["kind"]))
            fields["updated_at"] = now_ms()
            await q.update_connector(tx, name, fields)
            await q.bump_version(tx)
            out = await q.get_connector(tx, name)
            assert out is not None
            return out

        return public_connector(await self.store.run(unit))

    async def remove_connector(self, name: str) -> None:
        async def unit(tx: Tx) -> None:
            using = await q.routes_using(tx, name)
            if using:
                raise Conflict(
                    f"Routes {', '.join(map(str, using))} send to '{name}'; remove them first",
                    code="connector_in_use", routes=using,
                )
            if not await q.delete_connector(tx, name):
                raise NotFound(f"No connector named '{name}'", code="connector_not_found")
            await q.bump_version(tx)

        await self.store.run(unit)

    # --- routes ---

    async def list_routes(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """Every route, or (``account_id``) only that account's own."""
        if account_id is None:
            return await self.store.read(q.list_routes)
        return await self.store.read(lambda tx: q.list_routes(tx, account_id, everyone=False))

    async def add_route(
        self, *, kind: str, connector: str, value: str = "", priority: int = 100, account_id: str | None = None,
        kinds: tuple[str, ...] = ROUTE_KINDS,
    ) -> dict[str, Any]:
        value = _check_route(kind, value, priority, kinds)
        route = {
            "account_id": account_id, "kind": kind, "value": value, "connector": connector, "priority": priority,
            "created_at": now_ms(),
        }

        async def unit(tx: Tx) -> dict[str, Any]:
            await _connector_exists(tx, connector)
            if account_id is not None and not await account_exists(tx, account_id):
                raise NotFound(f"No account {account_id}", code="account_not_found")
            route_id = await q.insert_route(tx, route)
            await q.bump_version(tx)
            return {"id": route_id, **route}

        return await self.store.run(unit)

    async def update_route(self, route_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a route's kind, value, connector or priority (the operator's
        pages), checked as a new route is."""

        async def unit(tx: Tx) -> dict[str, Any]:
            row = await q.get_route(tx, route_id)
            if row is None:
                raise NotFound(f"No route {route_id}", code="route_not_found")
            merged = {**row, **{k: v for k, v in changes.items() if k in ("kind", "value", "connector", "priority")}}
            merged["value"] = _check_route(merged["kind"], merged["value"] or "", merged["priority"])
            await _connector_exists(tx, merged["connector"])
            await q.update_route(tx, route_id, merged)
            await q.bump_version(tx)
            return merged

        return await self.store.run(unit)

    async def remove_route(self, route_id: int, *, account_id: str | None = None) -> None:
        """Remove a route; with ``account_id``, only if it is that account's own."""

        async def unit(tx: Tx) -> None:
            row = await q.get_route(tx, route_id)
            if row is None or (account_id is not None and row["account_id"] != account_id):
                raise NotFound(f"No route {route_id}", code="route_not_found")
            await q.delete_route(tx, route_id)
            await q.bump_version(tx)

        await self.store.run(unit)


# --- choosing and running channels ---


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    account_id: str | None
    kind: str
    value: str
    connector: str
    priority: int

    def matches(self, recipient: str, network: str | None) -> bool:
        if self.kind == "prefix":
            return recipient.startswith(self.value)
        if self.kind == "network":
            return network is not None and network.casefold() == self.value.casefold()
        return self.kind == "default"

    def order(self) -> tuple[int, int, int, int, int]:
        tier = {"prefix": 0, "network": 1}.get(self.kind, 2)
        return (0 if self.account_id else 1, tier, -len(self.value) if self.kind == "prefix" else 0, self.priority, self.id)


class _Rate:
    """Events per second over the last 10 whole seconds, in a ring of
    one-second counters (constant memory whatever the rate)."""

    __slots__ = ("secs", "counts", "total")

    def __init__(self) -> None:
        self.secs = [0] * 11
        self.counts = [0] * 11
        self.total = 0

    def add(self, now_s: int) -> None:
        i = now_s % 11
        if self.secs[i] != now_s:
            self.secs[i], self.counts[i] = now_s, 0
        self.counts[i] += 1
        self.total += 1

    def per_s(self, now_s: int) -> float:
        return sum(c for t, c in zip(self.secs, self.counts) if now_s - 10 <= t < now_s) / 10


class Meter:
    """What one channel did in this process, for the operator's board:
    submits, receipts and send errors, with the last error."""

    def __init__(self) -> None:
        self.submits = _Rate()
        self.receipts = _Rate()
        self.errors = _Rate()
        self.last_error: str | None = None
        self.last_error_at: int | None = None

    def snapshot(self) -> dict[str, Any]:
        now_s = int(time.time())
        return {
            "submits": self.submits.total, "submits_per_s": self.submits.per_s(now_s),
            "receipts": self.receipts.total, "receipts_per_s": self.receipts.per_s(now_s),
            "errors": self.errors.total, "errors_per_s": self.errors.per_s(now_s),
            "last_error": self.last_error, "last_error_at": self.last_error_at,
        }


class _CountedEvents:
    """The channels' events, counting each receipt on its channel's meter."""

    def __init__(self, events: ChannelEvents, meter: Any) -> None:
        self.events = events
        self.meter = meter

    async def receipt(self, receipt: Any) -> None:
        self.meter(receipt.channel).receipts.add(int(time.time()))
        await self.events.receipt(receipt)

    async def inbound(self, message: Any) -> None:
        await self.events.inbound(message)


def _sendable(channel: Channel) -> bool:
    return getattr(channel, "bind_mode", "") != "receiver"


def _up(channel: Channel) -> bool:
    binds_up = getattr(channel, "binds_up", None)  # channels without binds (the simulator) are always up
    return binds_up is None or binds_up > 0


class Router:
    """Chooses the channel for each message and runs the database's connectors."""

    def __init__(
        self, builtin: dict[str, Channel], *, store: Store | None = None, box: PasswordBox | None = None,
        connector_options: dict[str, Any] | None = None, drain_s: float = 30.0,
    ) -> None:
        self.builtin = builtin
        self.store = store
        self.box = box
        self.connector_options = connector_options or {}
        self.email_keys: Any = None  # DKIM key lookup for SMTP connectors (services.emails.SendingDomains.key)
        self.speech: Any = None  # text-to-speech and uploaded audio for SIP connectors (services.speech.Speech)
        self.bounce_domain: str | None = None  # the VERP domain of SMTP connectors without their own
        self.drain_s = drain_s
        self.connectors: dict[str, Channel] = {}
        self.rules: list[Rule] = []
        self.version = -1
        self.configured = False  # any enabled SMPP connector in the database
        self.kinds: dict[str, str] = {}  # enabled connector name -> the channel kind it carries
        self.route_kinds: dict[str, str] = {}  # the same for every connector, enabled or not
        self._configs: dict[str, tuple[Any, ...]] = {}
        self._in_flight: dict[Channel, int] = {}
        self._idle: dict[Channel, asyncio.Event] = {}
        self._events: ChannelEvents | None = None
        self._meters: dict[str, Meter] = {}
        self._lock = asyncio.Lock()

    @property
    def channels(self) -> dict[str, Channel]:
        return {**self.builtin, **self.connectors}

    def channel(self, name: str) -> Channel | None:
        """The channel of that name, a connector before a built-in (as ``channels``), without building the dict."""
        return self.connectors.get(name) or self.builtin.get(name)

    # --- choosing ---

    def candidates(self, msg: dict[str, Any]) -> list[str]:
        recipient, network, account = msg["recipient"], msg.get("network"), msg["account_id"]
        kind = msg.get("channel") or "sms"
        builtin = {n: c.kind for n, c in self.builtin.items()}
        names = [
            r.connector for r in self.rules
            if (r.account_id is None or r.account_id == account) and r.matches(recipient, network)
            # an SMS connector's route never takes email (unknown names are SMS, as before email existed)
            and (self.route_kinds.get(r.connector) or builtin.get(r.connector) or "sms") == kind
        ]
        if not names:
            # connectors of the message's kind if any is configured, else the built-in channel of that kind
            configured = sorted({n for n, k in self.kinds.items() if k == kind}
                                | {n for n, c in self.connectors.items() if c.kind == kind})
            names = configured or sorted(n for n, c in self.builtin.items() if c.kind == kind)
        return list(dict.fromkeys(names))

    def route(self, msg: dict[str, Any]) -> Channel:
        """The channel to send ``msg`` on, or ``SendError``: permanent when
        nothing could ever carry it, transient when its connectors are down."""
        kind = msg["channel"]
        names = self.candidates(msg)
        channels = self.channels
        usable = [c for n in names if (c := channels.get(n)) is not None and c.kind == kind and _sendable(c)]
        for channel in usable:
            if _up(channel):
                return channel
        if not names and not any(c.kind == kind for c in channels.values()):
            raise SendError(f"no channel carries {kind} messages", transient=False, code="no_route")
        raise SendError(f"no connector up for this message (tried {', '.join(names) or 'none'})",
                        transient=True, code="no_connector_up")

    @contextlib.contextmanager
    def sending(self, channel: Channel) -> Iterator[None]:
        """Count a send in flight on ``channel``, so a connector being removed
        can let it finish before it unbinds."""
        self._in_flight[channel] = self._in_flight.get(channel, 0) + 1
        meter = self.meter(channel.name)
        try:
            yield
        except SendError as exc:
            meter.errors.add(int(time.time()))
            meter.last_error, meter.last_error_at = str(exc), now_ms()
            raise
        else:
            meter.submits.add(int(time.time()))
        finally:
            left = self._in_flight[channel] = self._in_flight[channel] - 1
            if left <= 0:
                del self._in_flight[channel]
                idle = self._idle.pop(channel, None)
                if idle is not None:
                    idle.set()

    def meter(self, name: str) -> Meter:
        """The channel's counters in this process (kept across a connector's restarts)."""
        found = self._meters.get(name)
        if found is None:
            found = self._meters[name] = Meter()
        return found

    def counted(self, events: ChannelEvents) -> ChannelEvents:
        """``events`` counting receipts per channel, for a channel to start with."""
        return _CountedEvents(events, self.meter)

    def in_flight(self, channel: Channel) -> int:
        """Sends on ``channel`` not yet answered."""
        return self._in_flight.get(channel, 0)

    def status(self, name: str) -> dict[str, Any] | None:
        """What this process knows of a connector it runs (None: not running here)."""
        channel = self.connectors.get(name)
        if channel is None:
            return None
        return {"running": True, "binds_up": getattr(channel, "binds_up", None),
                "in_flight": self._in_flight.get(channel, 0)}

    # --- running connectors ---

    async def start(self, events: ChannelEvents) -> None:
        """Load the database's connectors and routes and start the connectors."""
        self._events = self.counted(events)
        await self.reload()

    async def reload(self) -> bool:
        """Bring the running connectors and the rules in line with the database.
        Returns whether anything was read (the version had moved)."""
        if self.store is None:
            return False
        async with self._lock:

            async def read(tx: Tx) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
                return await q.version(tx), await q.list_connectors(tx), await q.list_routes(tx)

            version, connectors, routes = await self.store.read(read)
            if version == self.version:
                return False
            self.rules = sorted(
                (Rule(r["id"], r["account_id"], r["kind"], r["value"], r["connector"], r["priority"]) for r in routes),
                key=Rule.order,
            )
            wanted = {c["name"]: c for c in connectors if c["enabled"] and c["kind"] in CHANNEL_KINDS}
            self.kinds = {n: CHANNEL_KINDS[c["kind"]] for n, c in wanted.items()}
            self.route_kinds = {c["name"]: CHANNEL_KINDS.get(c["kind"], "sms") for c in connectors}
            self.configured = "sms" in self.kinds.values()
            work = []
            for name in list(self._configs):
                if name not in wanted:
                    work.append(self._replace(name, None))
            for name, row in wanted.items():
                if self._configs.get(name) != tuple(row[f] for f in _CONFIG_FIELDS):
                    work.append(self._replace(name, row))
            if work:
                await asyncio.gather(*work)
            self.version = version
            log.info("routing version %d: %d connectors, %d routes", version, len(self.connectors), len(self.rules))
            return True

    async def _replace(self, name: str, row: dict[str, Any] | None) -> None:
        """Stop the running connector ``name`` (after its sends finish) and
        start ``row`` in its place. Stop first: operators cap the binds per account."""
        old = self.connectors.pop(name, None)
        self._configs.pop(name, None)
        if old is not None:
            await self._drain_and_stop(old)
        if row is None:
            return
        try:
            channel = self._build(row)
        except (InvalidToken, ValueError) as exc:
            # A changed server secret makes the stored password unreadable: say so, keep the rest running.
            log.error("connector %s not started: %s", name, "password cannot be decrypted (server secret changed?)"
                      if isinstance(exc, InvalidToken) else exc)
            return
        assert self._events is not None
        await channel.start(self._events)
        self.connectors[name] = channel
        self._configs[name] = tuple(row[f] for f in _CONFIG_FIELDS)
        log.info("connector %s started (%s:%d, %d binds up)", name, row["host"], row["port"],
                 getattr(channel, "binds_up", 0))

    def _build(self, row: dict[str, Any]) -> Channel:
        if row["kind"] == "sip":
            return self._build_sip(row)
        if row["kind"] == "smtp":
            from ujumbe.channels.email.smtp import SmtpConnector

            assert self.box is not None
            opts = row.get("options") or {}
            return SmtpConnector(
                row["host"], int(row["port"]), name=row["name"], username=row["system_id"] or None,
                password=self.box.open(row["password_enc"]) or None, tls=bool(row["tls"]),
                starttls=bool(opts.get("starttls")), verify=opts.get("verify", True), pool=int(row["binds"]),
                concurrency=int(row["window_size"]), tps=float(row["tps"]) if row["tps"] else None,
                keys=self.email_keys, bounce_domain=opts.get("bounce_domain") or self.bounce_domain,
            )
        from ujumbe.channels.smpp.client import SmppConnector

        assert self.box is not None
        return SmppConnector(
            row["host"], int(row["port"]), row["system_id"], self.box.open(row["password_enc"]),
            row["system_type"] or "", row["bind_mode"], int(row["binds"]), int(row["window_size"]),
            float(row["tps"]) if row["tps"] else None, ssl.create_default_context() if row["tls"] else None,
            name=row["name"], data_coding=row["data_coding"], long_messages=row["long_messages"],
            **self.connector_options,
        )

    def _build_sip(self, row: dict[str, Any]) -> Channel:
        """A SIP trunk wrapped in the voice channel; it fails over to the next trunk the routes give."""
        import dataclasses

        from ujumbe.channels.sip import SipTrunk, TrunkConfig
        from ujumbe.channels.voice import VoiceChannel
        from ujumbe.services.voice import trunk_settings

        assert self.box is not None
        settings = trunk_settings(row, self.box.open(row["password_enc"]))
        known = {f.name for f in dataclasses.fields(TrunkConfig)}
        trunk = SipTrunk(TrunkConfig(**{k: v for k, v in settings.items() if k in known}))
        channel = VoiceChannel(trunk, name=row["name"], speech=self.speech, max_calls=settings["max_calls"])
        channel.alternatives = lambda out, ch=channel: self.fails_over(out, ch)
        return channel

    def fails_over(self, out: Any, channel: Channel) -> bool:
        """Whether a call ``channel`` could not place has another channel that is up to go to."""
        msg = {"recipient": out.recipient, "network": out.network, "account_id": out.account_id,
               "channel": channel.kind}
        try:
            return self.route(msg) is not channel
        except SendError:
            return False

    async def _drain_and_stop(self, channel: Channel) -> None:
        if self._in_flight.get(channel):
            idle = self._idle.setdefault(channel, asyncio.Event())
            try:
                await asyncio.wait_for(idle.wait(), self.drain_s)
            except TimeoutError:
                # What is still in flight fails as "connection lost" and is retried elsewhere.
                log.warning("connector %s: %d sends still in flight after %.0f s; stopping anyway",
                            channel.name, self._in_flight.get(channel, 0), self.drain_s)
        await channel.stop()
        log.info("connector %s stopped", channel.name)

    async def close(self) -> None:
        async with self._lock:
            await asyncio.gather(*(self._replace(name, None) for name in list(self.connectors)))


class RoutingWatcher:
    """Reloads the router when routing changes: at once on a ``routing``
    notification (this process, or any process on PostgreSQL), and by polling
    the version for changes made by other processes on SQLite (the CLI)."""

    def __init__(self, store: Store, router: Router, *, poll_s: float = 5.0) -> None:
        self.store = store
        self.router = router
        self.poll_s = poll_s
        self.wake = store.listener("routing")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            waiters = {asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())}
            try:
                await asyncio.wait(waiters, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            if stop.is_set():
                return
            self.wake.clear()
            try:
                await self.router.reload()
            except Exception:
                log.exception("reloading connectors and routes failed; retrying at the next poll")
