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
import logging
import re
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import InvalidToken

from ujumbe.core import numbers
from ujumbe.core.errors import Conflict, Forbidden, Invalid, NotFound
from ujumbe.core.numbers import PhoneNumber
from ujumbe.services import callbacks, reports
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import premium as q
from ujumbe.store.accounts import account_exists

log = logging.getLogger("ujumbe.premium")

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
    # sealed with the server secret (``Premium.token`` opens it): the partner's
    # credential is never in the database in clear
    api_token_enc: str | None
    created_at: int

    @property
    def api_token_set(self) -> bool:
        return bool(self.api_token_enc)


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


def _service(r: Any) -> Service:
    return Service(
        int(r["id"]), r["account_id"], r["shortcode"], r["name"], r["kind"], tuple(json.loads(r["keywords"])),
        r["api_token_enc"], r["created_at"],
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
    def __init__(self, store: Store, box: Any) -> None:
        self.store = store
        self.box = box  # a routing.PasswordBox: seals api tokens at rest

    async def token(self, account_id: str, service_id: int) -> str | None:
        """The service's api_token in clear, for a push to the partner."""
        row = await self.store.read(lambda tx: q.service(tx, account_id, service_id))
        if row is None or not row["api_token_enc"]:
            return None
        try:
            return str(self.box.open(row["api_token_enc"]))
        except InvalidToken:
            # sealed under another server secret (UJUMBE_SECRET_KEY changed)
            log.error("the api_token of premium service %s cannot be opened with this server secret; "
                      "set it again (PATCH /v1/premium-services/%s)", service_id, service_id)
            return None

    async def seal_plaintext_tokens(self, batch: int = 500) -> int:
        """Encrypt api tokens stored in clear before migration 0011, a batch
        per transaction; returns how many were sealed. The Tilil pushes
        queued meanwhile lose their copy of the token first (so an
        interrupted run does both again at the next start)."""
        if not await self.store.read(lambda tx: q.plaintext_tokens(tx, 1)):
            return 0
        await self._scrub_queued_tokens(batch)
        sealed = 0
        while True:
            rows = await self.store.read(lambda tx: q.plaintext_tokens(tx, batch))
            if not rows:
                return sealed

            async def unit(tx: Tx, rows: Any = rows) -> None:
                for r in rows:
                    await q.seal_token(tx, int(r["id"]), r["api_token"], self.box.seal(r["api_token"]))

            await self.store.run(unit)
            sealed += len(rows)

    # --- services ---

    async def _scrub_queued_tokens(self, batch: int) -> None:
        after = 0
        while True:
            rows = await self.store.read(lambda tx, after=after: q.callbacks_with_tokens(tx, after, batch))
            if not rows:
                return
            after = int(rows[-1]["id"])
            changes = []
            for r in rows:
                try:
                    payload = json.loads(r["payload"])
                except ValueError:
                    continue
                if isinstance(payload, dict) and payload.get("api_token"):
                    payload["api_token"] = ""  # added again when sent (Format.prepare)
                    changes.append((int(r["id"]), callbacks.encode(payload)))

            async def unit(tx: Tx, changes: Any = changes) -> None:
                for cid, body in changes:
                    await q.set_callback_payload(tx, cid, body)

            if changes:
                await self.store.run(unit)

    async def create(
        self, account_id: str, *, shortcode: str, kind: str, keywords: list[str] | None = None,
        name: str | None = None, api_token: str | None = None, service_id: int | None = None,
        dialect: str = "tilil", granted_only: bool = False,
    ) -> Service:
        """Register a service and claim its short code for the account. With
        ``granted_only`` (an account asking for itself) the short code must be
        one the operator already gave it: short codes are granted, not taken."""
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
            if not await account_exists(tx, account_id):
                raise NotFound(f"No account {account_id}")
            owner = await q.number_owner(tx, shortcode)
            if owner is not None and owner != account_id:
                raise Conflict(f"Short code {shortcode} belongs to another account", code="shortcode_taken")
            if owner is None and granted_only:
                raise Forbidden(
                    f"Short code {shortcode} is not yours yet: the operator grants short codes "
                    f"(`ujumbe numbers add ACCOUNT {shortcode}`, or `ujumbe services add`)",
                    code="shortcode_not_granted",
                )
            taken = await q.keywords_on(tx, shortcode) & set(words)
            if taken:
                raise Conflict(
                    f"Keyword {', '.join(sorted(taken))} is already used on {shortcode}", code="keyword_taken"
                )
            sid = service_id
            if sid is None:
                sid = await q.next_service_id(tx)
            elif await q.service_id_taken(tx, sid):
                raise Conflict(f"Service id {sid} is taken", code="service_id_taken")
            await q.insert_service(tx, (
                sid, account_id, shortcode, (name or "").strip() or f"{shortcode} {kind}", kind,
                json.dumps(words), self.box.seal(api_token) if api_token else None, now,
            ))
            if owner is None:
                await q.claim_shortcode(tx, shortcode, account_id, dialect, now)
            return sid

        return await self.get(account_id, await self.store.run(unit))

    async def get(self, account_id: str, service_id: int) -> Service:
        row = await self.store.read(lambda tx: q.service(tx, account_id, service_id))
        if row is None:
            raise NotFound(f"No premium service {service_id}", code="service_not_found")
        return _service(row)

    async def notice_target(
        self, *, service_id: int | None = None, shortcode: str | None = None, account_id: str | None = None,
    ) -> Service:
        """The service a simulated network (de)activation notice is for, by id
        or by short code (its only or first service); ``account_id`` limits
        it to that account's services. NotFound(unknown_service) otherwise."""
        if service_id is None and not shortcode:
            raise Invalid("Give the service_id or the shortcode of the service", code="invalid_request")

        async def unit(tx: Tx) -> list[Any]:
            if service_id is not None and not 0 < service_id < 2**53:
                return []  # no service has such an id (and the database would refuse it)
            if service_id is not None:
                return [r for r in await q.services_by_id(tx, service_id)
                        if not shortcode or r["shortcode"] == shortcode]
            return await q.services_on(tx, str(shortcode))

        rows = [r for r in await self.store.read(unit) if account_id is None or r["account_id"] == account_id]
        if not rows:
            what = f"service {service_id}" if service_id is not None else f"short code {shortcode}"
            raise NotFound(f"No premium service for {what}" + (" on this account" if account_id else "")
                           + ": register one with `ujumbe services add` or POST /v1/premium-services",
                           code="unknown_service")
        return _service(rows[0])

    async def list(self, account_id: str) -> list[Service]:
        return [_service(r) for r in await self.store.read(lambda tx: q.services(tx, account_id))]

    async def update(
        self, account_id: str, service_id: int, *, keywords: list[str] | None = None, name: str | None = None,
        api_token: str | None = None, clear_token: bool = False,
    ) -> Service:
        current = await self.get(account_id, service_id)
        words = _keywords(keywords) if keywords is not None else list(current.keywords)

        async def unit(tx: Tx) -> None:
            taken = await q.keywords_on(tx, current.shortcode, except_id=service_id) & set(words)
            if taken:
                raise Conflict(f"Keyword {', '.join(sorted(taken))} is already used on {current.shortcode}",
                               code="keyword_taken")
            token = None if clear_token else (self.box.seal(api_token) if api_token else current.api_token_enc)
            await q.update_service(tx, account_id, service_id, words, (name or "").strip() or current.name, token)

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
        rows = await self.store.read(lambda tx: q.subscriptions(tx, account_id, service_id, active_only=active_only))
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
            active = await q.is_active(tx, service.id, number.e164)
            link = bool(link_id) and await q.link_issued(tx, service.id, link_id or "", number.e164, now - LINK_TTL_MS)
            return active, link

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
    row = await q.subscription(tx, service_id, mobile)
    if row is None:
        if not active:
            return Subscription(0, service_id, mobile, False, None, source, now, now), False
        await q.insert_subscription(tx, service_id, account_id, mobile, keyword, source, now)
    elif bool(row["active"]) == active:
        return _subscription(row), False
    else:
        await q.set_subscription_active(tx, service_id, mobile, active, keyword, source, now)
    return _subscription(await q.subscription(tx, service_id, mobile)), True


# --- inbound: keywords, STOP, network notices, link ids ---


async def on_inbound(tx: Tx, record: dict[str, Any]) -> bool:
    """A ``reports.INBOUND_HOOKS`` hook; True when the message was a subscription change."""
    services = [_service(r) for r in await q.services(tx, record["account_id"], record["recipient"])]
    if not services:
        return False
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
    # (The service's api_token is added to the push only when it is sent:
    # callbacks.Format.prepare, so the queued callback holds no credential.)
    record["service_id"] = service.id
    if record.get("link_id"):
        await q.remember_link(tx, service.id, record["link_id"], record["sender"], record["received_at"])
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
        # A deactivation names the keyword the subscriber joined with (Tilil:
        # "the exact keyword a user used when subscribing"), never STOP.
        if not active:
            keyword = sub.keyword or ("" if keyword.upper() in STOP_WORDS else keyword)
        await _push_subscription(tx, service, sub, record, keyword)
    return changed


async def _push_subscription(
    tx: Tx, service: Service, sub: Subscription, record: dict[str, Any], keyword: str,
) -> None:
    target = await q.subscription_target(tx, service.account_id, service.shortcode)
    if target is None or not target["subscription_url"]:
        return
    dialect = target["dialect"] or "native"
    event = {
        "subscriber_ref": sub.ref, "service_id": service.id, "shortcode": service.shortcode,
        "mobile": sub.mobile, "update_type": "activation" if sub.active else "deactivation",
        "keyword": keyword, "network": record.get("network") or numbers.carrier_name(sub.mobile),
        "at": record["received_at"], "account_id": service.account_id,
    }
    fmt = callbacks.FORMATS.get(dialect)
    if fmt is not None and fmt.subscription is not None:
        payload = fmt.subscription(event)
    else:
        payload = {"type": "subscription." + event["update_type"],
                   "data": {k: v for k, v in event.items() if k != "account_id"}}
    await callbacks.enqueue(
        tx, account_id=service.account_id, kind="subscription", dialect=dialect,
        url=target["subscription_url"], payload=payload,
    )


if on_inbound not in reports.INBOUND_HOOKS:
    reports.INBOUND_HOOKS.append(on_inbound)
