"""Premium short-code services: services, subscribers, link ids, keywords.

A premium service lives on a short code and is either ``subscription`` (the
subscriber opts in, by keyword, through the network or through the API, and
may then be sent to) or ``on-demand`` (the subscriber asks, and the answer
carries the link id the network gave with the question). Registering a
service claims its short code, so inbound messages to it reach the account.

Inbound messages pass through ``on_inbound`` (a ``reports.INBOUND_HOOKS``
hook): a service keyword activates a subscription, ``STOP`` ends it, and a
network's own (de)activation notice does either; each change is pushed to the
account's subscription URL. Other messages are tagged with their service and
their link id is remembered, so a reply can prove it answers a real question.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ujumbe.core import numbers
from ujumbe.core.errors import Conflict, Invalid, NotFound
from ujumbe.core.numbers import PhoneNumber
from ujumbe.services import callbacks, reports
from ujumbe.store import Store, Tx, now_ms

KINDS = ("subscription", "on-demand")
STOP_WORDS = frozenset({"STOP", "UNSUBSCRIBE"})
# How long a link id from an inbound message may be replied to. Operators'
# session windows vary; a day covers a human answering later the same day.
LINK_TTL_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Service:
    id: int
    account_id: str
    shortcode: str
    name: str
    kind: str
    keywords: tuple[str, ...]
    api_token: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class Subscription:
    ref: int  # subscriber_ref
    service_id: int
    mobile: str
    active: bool
    keyword: str | None
    source: str
    created_at: int
    updated_at: int


SERVICE_COLUMNS = "id, account_id, shortcode, name, kind, keywords, api_token, created_at"
SUBSCRIPTION_COLUMNS = "id, service_id, mobile, active, keyword, source, created_at, updated_at"


def _service(r: Any) -> Service:
    return Service(
        int(r["id"]), r["account_id"], r["shortcode"], r["name"], r["kind"], tuple(json.loads(r["keywords"])),
        r["api_token"], r["created_at"],
    )


def _subscription(r: Any) -> Subscription:
    return Subscription(
        int(r["id"]), int(r["service_id"]), r["mobile"], bool(r["active"]), r["keyword"], r["source"],
        r["created_at"], r["updated_at"],
    )


def _keywords(raw: list[str]) -> list[str]:
    out = []
    for word in raw:
        word = word.strip().upper()
        if not word:
            continue
        if not re.fullmatch(r"[A-Z0-9#*]+", word) or word in STOP_WORDS:
            raise Invalid(f"'{word}' cannot be a keyword: one word of letters and digits, not STOP", code="invalid_keyword")
        out.append(word)
    return sorted(set(out))


class Premium:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- services ---

    async def create(
        self, account_id: str, *, shortcode: str, kind: str, keywords: list[str] | None = None,
        name: str | None = None, api_token: str | None = None, service_id: int | None = None,
        dialect: str = "tilil",
    ) -> Service:
        """Register a service and claim its short code for the account."""
        shortcode = shortcode.strip()
        if not re.fullmatch(r"[0-9]{3,8}", shortcode):
            raise Invalid(f"'{shortcode}' is not a short code (3-8 digits)", code="invalid_shortcode")
        if kind not in KINDS:
            raise Invalid(f"The service type must be one of {', '.join(KINDS)}", code="invalid_service_type")
        words = _keywords(keywords or [])
        if service_id is not None and not 0 < service_id < 2**53:
            raise Invalid("The service id must be a positive whole number", code="invalid_service_id")
        now = now_ms()

        async def unit(tx: Tx) -> int:
            if not await tx.fetchval("SELECT 1 FROM accounts WHERE id = ?", account_id):
                raise NotFound(f"No account {account_id}")
            owner = await tx.fetchval("SELECT account_id FROM numbers WHERE number = ?", shortcode)
            if owner is not None and owner != account_id:
                raise Conflict(f"Short code {shortcode} belongs to another account", code="shortcode_taken")
            clash = await tx.fetch(
                "SELECT keywords FROM premium_services WHERE shortcode = ?", shortcode
            )
            taken = {w for r in clash for w in json.loads(r["keywords"])} & set(words)
            if taken:
                raise Conflict(
                    f"Keyword {', '.join(sorted(taken))} is already used on {shortcode}", code="keyword_taken"
                )
            sid = service_id
            if sid is None:
                sid = int(await tx.fetchval("SELECT COALESCE(MAX(id), 0) + 1 FROM premium_services"))
            elif await tx.fetchval("SELECT 1 FROM premium_services WHERE id = ?", sid):
                raise Conflict(f"Service id {sid} is taken", code="service_id_taken")
            await tx.execute(
                f"INSERT INTO premium_services ({SERVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                sid, account_id, shortcode, (name or "").strip() or f"{shortcode} {kind}", kind,
                json.dumps(words), api_token or None, now,
            )
            if owner is None:
                await tx.execute(
                    "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, 'shortcode', ?, ?)",
                    shortcode, account_id, dialect, now,
                )
            return sid

        return await self.get(account_id, await self.store.run(unit))

    async def get(self, account_id: str, service_id: int) -> Service:
        row = await self.store.read(
            lambda tx: tx.fetchrow(
                f"SELECT {SERVICE_COLUMNS} FROM premium_services WHERE id = ? AND account_id = ?", service_id, account_id
            )
        )
        if row is None:
            raise NotFound(f"No premium service {service_id}", code="service_not_found")
        return _service(row)

    async def list(self, account_id: str) -> list[Service]:
        rows = await self.store.read(
            lambda tx: tx.fetch(
                f"SELECT {SERVICE_COLUMNS} FROM premium_services WHERE account_id = ? ORDER BY id", account_id
            )
        )
        return [_service(r) for r in rows]

    async def update(
        self, account_id: str, service_id: int, *, keywords: list[str] | None = None, name: str | None = None,
        api_token: str | None = None, clear_token: bool = False,
    ) -> Service:
        current = await self.get(account_id, service_id)
        words = _keywords(keywords) if keywords is not None else list(current.keywords)

        async def unit(tx: Tx) -> None:
            others = await tx.fetch(
                "SELECT keywords FROM premium_services WHERE shortcode = ? AND id <> ?", current.shortcode, service_id
            )
            taken = {w for r in others for w in json.loads(r["keywords"])} & set(words)
            if taken:
                raise Conflict(f"Keyword {', '.join(sorted(taken))} is already used on {current.shortcode}",
                               code="keyword_taken")
            token = None if clear_token else (api_token if api_token is not None else current.api_token)
            await tx.execute(
                "UPDATE premium_services SET keywords = ?, name = ?, api_token = ? WHERE id = ? AND account_id = ?",
                json.dumps(words), (name or "").strip() or current.name, token, service_id, account_id,
            )

        await self.store.run(unit)
        return await self.get(account_id, service_id)

    # --- subscribers ---

    async def subscribe(
        self, account_id: str, service_id: int, mobile: str, *, region: str = "KE", keyword: str | None = None,
        source: str = "api",
    ) -> tuple[Subscription, PhoneNumber]:
        """Activate a subscriber; Conflict(code="user_exists") when already active."""
        await self.get(account_id, service_id)
        number = _number(mobile, region)

        async def unit(tx: Tx) -> Subscription:
            sub, changed = await _set_subscription(tx, account_id, service_id, number.e164, True, keyword, source)
            if not changed:
                raise Conflict(f"{number.e164} is already subscribed to service {service_id}", code="user_exists")
            return sub

        return await self.store.run(unit), number

    async def unsubscribe(
        self, account_id: str, service_id: int, mobile: str, *, region: str = "KE", source: str = "api",
    ) -> tuple[Subscription, PhoneNumber]:
        """Deactivate a subscriber; NotFound(code="user_not_subscribed") when not active."""
        await self.get(account_id, service_id)
        number = _number(mobile, region)

        async def unit(tx: Tx) -> Subscription:
            sub, changed = await _set_subscription(tx, account_id, service_id, number.e164, False, None, source)
            if not changed:
                raise NotFound(f"{number.e164} is not subscribed to service {service_id}", code="user_not_subscribed")
            return sub

        return await self.store.run(unit), number

    async def subscribers(self, account_id: str, service_id: int, *, active_only: bool = True) -> list[Subscription]:
        await self.get(account_id, service_id)
        sql = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE service_id = ? AND account_id = ?"
        if active_only:
            sql += " AND active = 1"
        rows = await self.store.read(lambda tx: tx.fetch(sql + " ORDER BY id", service_id, account_id))
        return [_subscription(r) for r in rows]

    # --- sending ---

    async def may_receive(self, service: Service, number: PhoneNumber, link_id: str | None) -> tuple[str, str] | None:
        """The premium rule for one recipient, as a ``SendRequest.check`` answer.

        An active subscriber may always be sent to. Anyone else only in reply
        to their own recent message: a link id we issued for this service and
        this number within ``LINK_TTL_MS``.
        """
        now = now_ms()

        async def unit(tx: Tx) -> tuple[bool, bool]:
            active = await tx.fetchval(
                "SELECT active FROM subscriptions WHERE service_id = ? AND mobile = ?", service.id, number.e164
            )
            link = False
            if link_id:
                link = bool(await tx.fetchval(
                    "SELECT 1 FROM premium_links WHERE service_id = ? AND link_id = ? AND mobile = ? AND issued_at >= ?",
                    service.id, link_id, number.e164, now - LINK_TTL_MS,
                ))
            return bool(active), link

        subscribed, linked = await self.store.read(unit)
        if subscribed or linked:
            return None
        if link_id:
            return ("invalid_link_id", f"Invalid link_id {link_id}: not issued to {number.e164} for service "
                                       f"{service.id}, or expired")
        return ("not_subscribed", f"{number.e164} is not subscribed to service {service.id}")

    def check_for(self, service: Service, link_id: str | None) -> Any:
        async def check(number: PhoneNumber) -> tuple[str, str] | None:
            return await self.may_receive(service, number, link_id)

        return check


def _number(mobile: str, region: str) -> PhoneNumber:
    try:
        return numbers.normalize(str(mobile), region)
    except numbers.InvalidNumber as exc:
        raise Invalid(exc.reason, code="invalid_number") from None


async def _set_subscription(
    tx: Tx, account_id: str, service_id: int, mobile: str, active: bool, keyword: str | None, source: str,
) -> tuple[Subscription, bool]:
    now = now_ms()
    row = await tx.fetchrow(f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE service_id = ? AND mobile = ?",
                            service_id, mobile)
    if row is None:
        if not active:
            return Subscription(0, service_id, mobile, False, None, source, now, now), False
        await tx.execute(
            "INSERT INTO subscriptions (service_id, account_id, mobile, active, keyword, source, created_at, updated_at) "
            "VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
            service_id, account_id, mobile, keyword, source, now, now,
        )
    elif bool(row["active"]) == active:
        return _subscription(row), False
    else:
        await tx.execute(
            "UPDATE subscriptions SET active = ?, keyword = COALESCE(?, keyword), source = ?, updated_at = ? "
            "WHERE service_id = ? AND mobile = ?",
            1 if active else 0, keyword, source, now, service_id, mobile,
        )
    row = await tx.fetchrow(f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE service_id = ? AND mobile = ?",
                            service_id, mobile)
    return _subscription(row), True


# --- inbound: keywords, STOP, network notices, link ids ---


async def on_inbound(tx: Tx, record: dict[str, Any]) -> bool:
    """A ``reports.INBOUND_HOOKS`` hook; True when the message was a subscription change."""
    rows = await tx.fetch(
        f"SELECT {SERVICE_COLUMNS} FROM premium_services WHERE shortcode = ? AND account_id = ? ORDER BY id",
        record["recipient"], record["account_id"],
    )
    if not rows:
        return False
    services = [_service(r) for r in rows]
    words = record["body"].strip().upper().split()
    first = words[0] if words else ""
    meta = record.get("meta") or {}
    notice = meta.get("update_type") if isinstance(meta, dict) else None

    if notice in ("activation", "deactivation"):
        # the network (de)activated the subscriber itself, e.g. from its portal
        keyword = str(meta.get("keyword") or first or "")
        service = _by_keyword(services, keyword.upper()) or _by_id(services, meta.get("service_id")) or services[0]
        await _change(tx, record, service, notice == "activation", keyword, "network")
        return True

    service = _by_keyword(services, first)
    if first in STOP_WORDS:
        service = _by_keyword(services, words[1]) if len(words) > 1 else None
        targets = [service] if service else [s for s in services if s.kind == "subscription"]
        changed = False
        for target in targets:
            changed = await _change(tx, record, target, False, first, "keyword") or changed
        if changed:
            return True
    elif service is not None and service.kind == "subscription":
        if await _change(tx, record, service, True, first, "keyword"):
            return True
    # Anything else (a question, a keyword of an active subscriber, a STOP
    # from a non-subscriber) goes to the inbox, tagged with its service.
    service = service or services[0]
    # Forwarded as an inbound message of this service; remember its link id.
    record["service_id"] = service.id
    record["api_token"] = service.api_token
    if record.get("link_id"):
        await tx.execute(
            "INSERT INTO premium_links (service_id, link_id, mobile, issued_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (service_id, link_id) DO NOTHING",
            service.id, record["link_id"], record["sender"], record["received_at"],
        )
    return False


def _by_keyword(services: list[Service], word: str) -> Service | None:
    return next((s for s in services if word and word in s.keywords), None)


def _by_id(services: list[Service], sid: Any) -> Service | None:
    return next((s for s in services if str(s.id) == str(sid)), None)


async def _change(tx: Tx, record: dict[str, Any], service: Service, active: bool, keyword: str, source: str) -> bool:
    sub, changed = await _set_subscription(
        tx, service.account_id, service.id, record["sender"], active, keyword if active else None, source
    )
    if changed:
        await _push_subscription(tx, service, sub, record, keyword)
    return changed


async def _push_subscription(
    tx: Tx, service: Service, sub: Subscription, record: dict[str, Any], keyword: str,
) -> None:
    target = await tx.fetchrow(
        "SELECT a.subscription_url, n.dialect FROM accounts a LEFT JOIN numbers n ON n.number = ? WHERE a.id = ?",
        service.shortcode, service.account_id,
    )
    if target is None or not target["subscription_url"]:
        return
    dialect = target["dialect"] or "native"
    event = {
        "subscriber_ref": sub.ref, "service_id": service.id, "shortcode": service.shortcode,
        "mobile": sub.mobile, "update_type": "activation" if sub.active else "deactivation",
        "keyword": keyword, "network": record.get("network") or numbers.carrier_name(sub.mobile),
        "at": record["received_at"], "api_token": service.api_token, "account_id": service.account_id,
    }
    fmt = callbacks.FORMATS.get(dialect)
    if fmt is not None and fmt.subscription is not None:
        payload = fmt.subscription(event)
    else:
        payload = {"type": "subscription." + event["update_type"],
                   "data": {k: v for k, v in event.items() if k not in ("api_token", "account_id")}}
    await callbacks.enqueue(
        tx, account_id=service.account_id, kind="subscription", dialect=dialect,
        url=target["subscription_url"], payload=payload,
    )


if on_inbound not in reports.INBOUND_HOOKS:
    reports.INBOUND_HOOKS.append(on_inbound)
