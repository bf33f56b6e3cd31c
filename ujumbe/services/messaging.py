"""Sending: the use case every dialect's send endpoint calls.

``Messaging.send`` turns a ``SendRequest`` into one stored message per
recipient under one request, charges the account and queues the messages for
dispatch, all in one transaction. It returns only once that is durable, and a
repeated client reference returns the original request instead of sending.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ujumbe import logs, metrics
from ujumbe.core import calls, emails, encoding, numbers, templates
from ujumbe.core import speech as speech_rules
from ujumbe.core.calls import VoiceOptions
from ujumbe.core.errors import ChannelUnavailable, InsufficientCredit, Invalid, NotFound
from ujumbe.core.pricing import PriceTable, display
from ujumbe.core.states import State
from ujumbe.services.accounts import Account
from ujumbe.services.callbacks import CallbackUrls, Event, enqueue_dlr
from ujumbe.services.senders import Senders
from ujumbe.store import Charge, Store, Tx, now_ms
from ujumbe.store import accounts as accounts_q
from ujumbe.store import calls as calls_q
from ujumbe.store import messages as q

MAX_RECIPIENTS = 100_000
INSERT_CHUNK = 5_000  # a send's new rows handed to the store at a time
SEALED_BODY = "sealed_body"  # the message meta key the dispatcher opens
MASK_CHAR = "*"  # one GSM-7 septet, like a digit


def masked(value: object) -> str:
    return MASK_CHAR * len(str(value))


def new_request_id() -> str:
    """A UUID version 7: random, but ordered by time, so each new request lands
    at the end of the indexes on request ids rather than on a random page (on
    SQLite every page a commit touches is written to the WAL and fsync'd)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    h = f"{value:032x}"  # str(uuid.UUID(int=value)), without its checks: 10 -> 4 us
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class SendRequest:
    recipients: list[str]
    text: str | None = None
    template_key: str | None = None
    params: dict[str, Any] | None = None
    sender: str | None = None
    reference: str | None = None
    callback_url: str | None = None
    channel: str = "sms"
    dialect: str = "native"
    send_at: int | None = None  # epoch ms; None sends now
    validity_s: int | None = None
    meta: dict[str, Any] | None = None  # kept with the request (extraData, smsType, ...)
    message_meta: dict[str, Any] | None = None  # kept with each message (link_id, service_id, ...)
    unicode: bool = False  # force UCS-2
    # One-time codes: the text is stored with every param masked (or as
    # ``masked_text``) and reaches the dispatcher sealed (SEALED_BODY).
    conceal: bool = False
    masked_text: str | None = None
    # Email: the subject (a template's wins), an HTML alternative, and the
    # RFC 8058 one-click unsubscribe URL for bulk sends.
    subject: str | None = None
    html: str | None = None
    unsubscribe_url: str | None = None
    # Per-recipient policy (sender name networks, premium subscriptions): an
    # (error_code, reason) rejects that recipient alone; None lets it through.
    check: Callable[[numbers.PhoneNumber], Awaitable[tuple[str, str] | None]] | None = None
    # Campaigns (services/campaigns.py), in the send's own transaction: ``prepay``
    # before the charge (gives the campaign's hold back to the balance, so the
    # charge is covered), ``stored`` once the messages are (links them to the
    # campaign's numbers). Either raising undoes the whole send.
    prepay: Callable[[Tx], Awaitable[None]] | None = None
    stored: Callable[[Tx, list[Recipient]], Awaitable[None]] | None = None
    # One text per recipient, already rendered (campaigns: each from its number's
    # tags), so a batch of different texts is one request and one transaction.
    # Not with a template, params or conceal. A text too long rejects its
    # recipient alone.
    texts: list[str] | None = None
    # Voice (channel "voice"): how the text is spoken, or the uploaded audio
    # to play instead (core.calls.VoiceOptions); None: the defaults.
    voice: VoiceOptions | None = None


@dataclass(slots=True)
class Recipient:
    """What happened to one recipient of a request."""

    input: str
    to: str
    message_id: int | None
    state: str
    network: str | None = None
    parts: int = 0
    cost: int = 0
    error_code: str | None = None
    error: str | None = None


@dataclass(slots=True)
class SendResult:
    request_id: str
    reference: str | None
    duplicate: bool
    created_at: int
    cost: int
    balance: int | None
    encoding: str
    parts: int
    recipients: list[Recipient] = field(default_factory=list)

    @property
    def accepted(self) -> list[Recipient]:
        return [r for r in self.recipients if r.message_id is not None and r.state != State.REJECTED.value]


class Messaging:
    def __init__(
        self, store: Store, *, validity_s: int = 48 * 3600, channels: set[str] | None = None,
        seal: Callable[[str], str] | None = None, senders: Senders | None = None, urls: CallbackUrls | None = None,
        domains: Any = None,
    ) -> None:
        self.store = store
        self.domains = domains  # services.emails.SendingDomains: email From addresses
        self.seal = seal  # encrypts concealed texts at rest (services/sealing.py)
        # who holds which sender name: no account sends as another's
        self.senders = senders if senders is not None else Senders(store)
        self.urls = urls  # seals passwords in callback URLs before they are stored
        # kinds of channel this deployment can deliver ("sms", "email", "voice")
        self.channels = channels if channels is not None else {"sms"}
        self.validity_s = validity_s
        # (account_id, audio_id) -> the uploaded audio's length in ms, None when
        # the account has no such audio (services/speech, set by runtime)
        self.audio_ms: Callable[[str, str], Awaitable[int | None]] | None = None
        self._prices = PriceTable({})
        self._prices_loaded = 0.0

    async def prices(self) -> PriceTable:
        # Prices change rarely; re-read them at most every 30 s.
        if time.monotonic() - self._prices_loaded > 30:
            rows = await self.store.read(accounts_q.prices)
            self._prices = PriceTable({(r[0], r[1]): r[2] for r in rows},
                                      units={(r[0], r[1]): r[3] for r in rows if r[3]})
            self._prices_loaded = time.monotonic()
        return self._prices

    def forget_prices(self) -> None:
        self._prices_loaded = 0.0

    async def resolve_text(self, account: Account, req: SendRequest) -> tuple[str, str | None]:
        """The text to send: the account's template for the key, else the
        request's own text; placeholders filled only if the sender asked (a
        template, or ``params``)."""
        body, subject, templated = req.text, req.subject, False
        if req.template_key:
            tpl = await self.store.read(
                lambda tx: accounts_q.get_template(tx, account.id, req.template_key, req.channel)  # type: ignore[arg-type]
            )
            if tpl is not None:
                body, subject, templated = tpl["body"], tpl["subject"] or req.subject, True
        if body is None or body == "":
            if req.template_key:
                raise Invalid(
                    f"No template '{req.template_key}' for {req.channel} and no message text to fall back on",
                    code="template_not_found",
                )
            raise Invalid("The message text is missing", code="missing_text")
        # Placeholders are filled only when the sender asked for it (a template,
        # or params given): a plain text's braces ("Your code is {code}") are
        # its own and go out as written.
        if templated or req.params:
            try:
                body = templates.render(body, req.params or {})
                subject = templates.render(subject, req.params or {}) if subject else subject
            except templates.TemplateError as exc:
                raise Invalid(
                    f"The message needs values for: {', '.join(exc.missing)}", code="missing_params",
                    missing=exc.missing,
                ) from None
        return body, subject

    async def send(self, account: Account, req: SendRequest) -> SendResult:
        if req.channel not in self.channels:
            raise ChannelUnavailable(f"The {req.channel} channel is not configured on this server")
        if not req.recipients:
            raise Invalid("No recipients were given", code="missing_recipients")
        if len(req.recipients) > MAX_RECIPIENTS:
            raise Invalid(f"At most {MAX_RECIPIENTS} recipients per request", code="too_many_recipients")
        if req.reference is not None and not req.reference.strip():
            # An empty or blank reference is no reference: stored as one, every
            # later send with it would be answered as a duplicate and dropped.
            req.reference = None
        if req.reference is not None and len(req.reference) > 200:
            raise Invalid("The reference is longer than 200 characters", code="invalid_reference")
        if req.reference:
            # A repeat is answered from the store without re-validating: the
            # client must get its original answer even if templates changed.
            found = await self.request_by_reference(account.id, req.reference)
            if found is not None:
                return found
        if req.sender:
            await self.senders.check_use(account.id, req.sender)
        texts = req.texts
        if texts is not None and (len(texts) != len(req.recipients) or req.conceal or req.template_key or req.params
                                  or req.channel == "email"):
            raise ValueError("texts: one per recipient, for SMS, without a template, params or conceal")
        voice_call = req.channel == "voice"
        vo = await self._check_voice(account, req) if voice_call else None
        if vo is not None and vo.audio_id:
            body, subject = "", None  # the audio is the message
        else:
            body, subject = (texts[0], None) if texts else await self.resolve_text(account, req)
        email = req.channel == "email"
        html = None
        if email:
            html = await self._check_email(account, req, body, subject)
        stored_body, sealed = body, None
        if req.conceal:
            if self.seal is None:
                raise RuntimeError("Messaging was built without a sealing key")
            if req.masked_text is not None:
                stored_body = req.masked_text
            elif req.params:
                stored_body, _ = await self.resolve_text(
                    account, dataclasses.replace(req, params={k: masked(v) for k, v in req.params.items()})
                )
            sealed = self.seal(body)
        shapes: dict[str, tuple[str, int] | str] = {}  # per text: (encoding, parts), or why it cannot go

        def shape(text: str) -> tuple[str, int] | str:
            found = shapes.get(text)
            if found is None:
                try:
                    encoding.check_length(text, account.max_chars)
                    found = (encoding.UCS2, len(encoding.segment(text, force=encoding.UCS2).parts)) if req.unicode \
                        else encoding.count_parts(text)
                except encoding.MessageTooLong as exc:
                    found = f"The message has {exc.length} characters; the limit is {exc.limit}"
                shapes[text] = found
            return found

        if email:
            enc, parts = "utf-8", 1  # one message whatever its size or script
        elif vo is not None:
            enc, parts = ("audio" if vo.audio_id else "speech"), 1  # one call
            if texts is None and (why := calls.too_long_to_say(body, vo)):
                raise Invalid(why, code="message_too_long")  # per recipient with texts (below)
        else:
            try:
                if texts is None:
                    encoding.check_length(body, account.max_chars)
            except encoding.MessageTooLong as exc:
                raise Invalid(
                    f"The message has {exc.length} characters; the limit is {exc.limit}", code="message_too_long"
                ) from None
            enc, parts = (
                (encoding.UCS2, len(encoding.segment(body, force=encoding.UCS2).parts))
                if req.unicode
                else encoding.count_parts(body)
            )
        prices = await self.prices()
        now = now_ms()
        validity = req.validity_s or self.validity_s
        start = req.send_at if req.send_at and req.send_at > now else now
        request_id = new_request_id()
        recipients: list[Recipient] = []
        seen: set[str] = set()
        total = 0
        for k, raw in enumerate(req.recipients):
            raw = str(raw).strip()
            if email:
                try:
                    address = emails.normalize(raw).address
                except emails.InvalidAddress as exc:
                    recipients.append(Recipient(raw, raw, None, State.REJECTED.value, error_code="invalid_address",
                                                error=exc.reason))
                    continue
                if address in seen:
                    recipients.append(Recipient(raw, address, None, State.REJECTED.value, error_code="duplicate_recipient",
                                                error=f"{address} appears twice in this request"))
                    continue
                seen.add(address)
                cost = prices.cost(None, parts, req.channel)
                total += cost
                recipients.append(Recipient(raw, address, None, State.QUEUED.value, None, parts, cost))
                continue
            try:
                number = numbers.normalize(raw, account.region)
            except numbers.InvalidNumber as exc:
                recipients.append(Recipient(raw, raw, None, State.REJECTED.value, error_code="invalid_number", error=exc.reason))
                continue
            if number.e164 in seen:
                # the same person twice in one request gets one message
                recipients.append(
                    Recipient(raw, number.e164, None, State.REJECTED.value, number.network,
                              error_code="duplicate_recipient", error=f"{number.e164} appears twice in this request")
                )
                continue
            seen.add(number.e164)
            refused = await req.check(number) if req.check is not None else None
            if refused is not None:
                recipients.append(
                    Recipient(raw, number.e164, None, State.REJECTED.value, number.network,
                              error_code=refused[0], error=refused[1])
                )
                continue
            r_parts = parts
            if vo is not None:
                spoken = texts[k] if texts is not None else body
                if texts is not None and (why := calls.too_long_to_say(spoken, vo)):
                    recipients.append(Recipient(raw, number.e164, None, State.REJECTED.value, number.network,
                                                error_code="message_too_long", error=why))
                    continue
                cost = self._call_hold(prices, number.network, vo, spoken)
                total += cost
                recipients.append(Recipient(raw, number.e164, None, State.QUEUED.value, number.network, 1, cost))
                continue
            if texts is not None:
                shaped = shape(texts[k])
                if isinstance(shaped, str):
                    recipients.append(Recipient(raw, number.e164, None, State.REJECTED.value, number.network,
                                                error_code="message_too_long", error=shaped))
                    continue
                r_parts = shaped[1]
            cost = prices.cost(number.network, r_parts, req.channel)
            total += cost
            recipients.append(Recipient(raw, number.e164, None, State.QUEUED.value, number.network, r_parts, cost))

        meta = json.dumps(req.meta) if req.meta else None
        message_meta = dict(req.message_meta or {})
        if sealed is not None:
            message_meta[SEALED_BODY] = sealed
        if subject:
            message_meta["subject"] = subject
        if html:
            message_meta["html"] = html
        if email and req.unsubscribe_url:
            message_meta["unsubscribe_url"] = req.unsubscribe_url
        msg_meta = json.dumps(message_meta) if message_meta else None

        def voice_meta(r: Recipient) -> str:
            # per message: the price and how it counts, as held, for the settlement
            unit = prices.unit(r.network, "voice")
            meta = {**vo.as_meta(), "unit": unit, "price": prices.per_part(r.network, "voice")}  # type: ignore[union-attr]
            return json.dumps({**message_meta, "voice": meta})
        initial = State.QUEUED if start == now else State.ACCEPTED
        accepted = [r for r in recipients if r.state == State.QUEUED.value]
        for r in accepted:
            r.state = initial.value

        callback_url = self.urls.seal(req.callback_url) if self.urls is not None else req.callback_url
        request_row = {
            "id": request_id, "account_id": account.id, "reference": req.reference, "dialect": req.dialect,
            "channel": req.channel, "sender": req.sender, "template_key": req.template_key,
            "callback_url": callback_url, "recipients": len(recipients), "accepted": len(accepted),
            "cost": total, "meta": meta, "created_at": now,
        }

        async def unit(tx: Tx) -> SendResult | None:
            if not await q.insert_request(tx, request_row):
                return None  # a concurrent request with this reference won
            balance: int | None = None
            if req.prepay is not None:
                await req.prepay(tx)
            if total:
                balance = await accounts_q.charge(tx, account.id, total, request_id)
                if balance is None:
                    have = await tx.fetchval("SELECT balance FROM accounts WHERE id = ?", account.id)
                    # in credits, as GET /v1/balance shows them: the ledger's unit stays inside
                    raise InsufficientCredit(
                        f"Insufficient credit: this request costs {display(total)} and the balance is {display(have)}",
                        cost=display(total), balance=display(have),
                    )
            ids = await tx.next_ids("messages", len(recipients))
            rows, events, outbox = [], [], []
            expires = start + validity * 1000
            any_queued = False
            for k, (r, mid) in enumerate(zip(recipients, ids)):
                if len(rows) == INSERT_CHUNK:
                    # A big request's rows go to the store a slice at a time
                    # rather than all held at once (~250 bytes a recipient).
                    q.add_messages(tx, rows, events, outbox)
                    await tx.flush()
                    any_queued = any_queued or bool(outbox)
                    rows, events, outbox = [], [], []
                r.message_id = mid
                ok = r.state != State.REJECTED.value
                r_body, r_enc = stored_body, enc
                if texts is not None:
                    r_body = texts[k]
                    shaped = shape(r_body)
                    r_enc = shaped[0] if isinstance(shaped, tuple) else enc
                if vo is not None:
                    r_enc = enc
                rows.append((
                    mid, request_id, account.id, req.channel, req.dialect, req.sender, r.to, r.network, r_body,
                    r_enc, r.parts if ok else 0, r.cost, "reserved" if r.cost else "none", r.state,
                    r.error_code, r.error, callback_url, voice_meta(r) if vo is not None and ok else msg_meta,
                    now, now, None if ok else now, expires,
                ))
                events.append((mid, now, State.ACCEPTED.value if ok else State.REJECTED.value, r.error))
                if ok:
                    if initial == State.QUEUED:
                        events.append((mid, now, State.QUEUED.value, None))
                    outbox.append((mid, start))
            q.add_messages(tx, rows, events, outbox)
            any_queued = any_queued or bool(outbox)
            del rows, events, outbox
            rejected = {r.message_id: r for r in recipients if r.state == State.REJECTED.value}
            if rejected:
                # Some clients (Tingg) learn of a bad recipient only through the
                # callback; each dialect's Format decides whether to send one.
                await tx.flush()
                for msg in await q.messages_by_ids(tx, list(rejected)):
                    r = rejected[msg["id"]]
                    await enqueue_dlr(tx, msg, Event(State.REJECTED.value, now, r.error_code, r.error, at_accept=True))
            if req.stored is not None:
                await req.stored(tx, recipients)
            if any_queued:
                tx.notify("outbox")
            if balance is None:
                balance = await tx.fetchval("SELECT balance FROM accounts WHERE id = ?", account.id)
            return SendResult(request_id, req.reference, False, now, total, balance, enc, parts, recipients)

        # Safe to run again, and short unless the request is big: PostgreSQL
        # may then commit it together with other sends, their charges folded
        # into one update of the balance (a prepay must come before the charge).
        if len(recipients) <= 1000:
            unit.group = account.id  # type: ignore[attr-defined]
            if total and req.prepay is None:
                unit.charge = Charge(account.id, total, request_id)  # type: ignore[attr-defined]
        result = await self.store.run(unit)
        if result is not None:
            metrics.accepted(req.channel, req.dialect, result.recipients, result.cost)
            if logs.tracing():
                for r in result.recipients:
                    if r.message_id is not None:
                        logs.message_event(
                            r.message_id, r.state if r.state == State.REJECTED.value else "accepted",
                            f"({req.channel}, {req.dialect}, request {result.request_id}, account {account.id})",
                            send_request=result.request_id, account_id=account.id, channel=req.channel,
                            dialect=req.dialect, state=r.state, error_code=r.error_code,
                        )
        if result is None:
            found = await self.request_by_reference(account.id, req.reference or "")
            assert found is not None
            return found
        return result

    async def _check_voice(self, account: Account, req: SendRequest) -> VoiceOptions:
        """A voice message's options, checked: a text or an uploaded audio (not
        both), a voice the channel speaks, a length factor espeak accepts, a
        caller id that is a number. Sets ``req.sender`` to the caller id's E.164 form."""
        vo = req.voice or VoiceOptions()
        has_text = bool(req.text or req.template_key or req.texts)
        if vo.audio_id and has_text:
            raise Invalid("Give a text or an audio_id, not both", code="invalid_request")
        if not vo.audio_id and not has_text:
            raise Invalid("A call needs a text to speak or an audio_id to play", code="missing_text")
        try:  # the speech rules' own checks, so a call takes what the voice test takes
            speech_rules.check_voice(vo.voice)
            vo.length_factor = speech_rules.length_factor_of(vo.length_factor)
            speech_rules.check_language(vo.language)
        except speech_rules.SpeechError as exc:
            raise Invalid(str(exc), code=exc.code) from None
        if vo.audio_id:
            if self.audio_ms is None:
                raise Invalid("Uploaded audio is not available on this server", code="audio_not_found")
            length = await self.audio_ms(account.id, vo.audio_id)
            if length is None:
                raise Invalid(f"No audio {vo.audio_id} (upload it with POST /v1/audio)", code="audio_not_found")
            vo.audio_ms = length
        if req.sender:
            try:
                req.sender = numbers.normalize(req.sender, account.region).e164
            except numbers.InvalidNumber as exc:
                raise Invalid(f"The caller id ('from') is not a number: {exc.reason}", code="invalid_sender") from None
        return vo

    @staticmethod
    def _call_hold(prices: PriceTable, network: str | None, vo: VoiceOptions, text: str) -> int:
        """Credits held for one call: per_call its price; per_minute its price
        for every started minute of the audio (uploaded: its length; a text:
        an upper bound of how long it takes to say)."""
        price = prices.per_part(network, "voice")
        if prices.unit(network, "voice") == "per_call":
            return price
        length = vo.audio_ms if vo.audio_id and vo.audio_ms is not None else calls.estimated_ms(text, vo.length_factor)
        return price * calls.hold_minutes(length)

    async def _check_email(self, account: Account, req: SendRequest, body: str, subject: str | None) -> str | None:
        """Checks an email's parts and sets its From; returns the HTML alternative (filled like the text)."""
        if self.domains is None:
            raise ChannelUnavailable("The email channel is not configured on this server")
        if not subject or not subject.strip():
            raise Invalid("An email needs a subject (in the request or the template)", code="missing_subject")
        if len(subject) > emails.MAX_SUBJECT or "\n" in subject or "\r" in subject:
            raise Invalid(f"The subject must be one line of at most {emails.MAX_SUBJECT} characters",
                          code="invalid_subject")
        if len(body) > emails.MAX_TEXT:
            raise Invalid(f"The text is longer than {emails.MAX_TEXT} characters", code="message_too_long")
        html = req.html
        if html is not None:
            if len(html) > emails.MAX_HTML:
                raise Invalid(f"The HTML is longer than {emails.MAX_HTML} characters", code="message_too_long")
            if req.params:
                try:
                    html = templates.render(html, req.params)
                except templates.TemplateError as exc:
                    raise Invalid(f"The message needs values for: {', '.join(exc.missing)}",
                                  code="missing_params", missing=exc.missing) from None
        url = req.unsubscribe_url
        if url is not None and (not url.startswith("https://") or len(url) > 2000 or any(c in url for c in "<> \r\n")):
            raise Invalid("unsubscribe_url must be an https URL (RFC 8058 one-click)", code="invalid_unsubscribe_url")
        req.sender = await self.domains.sender_for(account.id, req.sender)
        return html

    async def request_by_reference(self, account_id: str, reference: str) -> SendResult | None:
        async def unit(tx: Tx) -> SendResult | None:
            req = await q.request_by_reference(tx, account_id, reference)
            return None if req is None else await _result_of(tx, req, duplicate=True)

        return await self.store.read(unit)

    async def request(self, account_id: str, request_id: str) -> SendResult:
        async def unit(tx: Tx) -> SendResult | None:
            req = await q.request_by_id(tx, account_id, request_id)
            return None if req is None else await _result_of(tx, req, duplicate=False)

        found = await self.store.read(unit)
        if found is None:
            raise NotFound(f"No request {request_id}")
        return found

    async def message(self, account_id: str, message_id: int, *, with_events: bool = True) -> dict[str, Any]:
        async def unit(tx: Tx) -> dict[str, Any] | None:
            msg = await q.message(tx, message_id, account_id)
            if msg is not None and with_events:
                msg["events"] = await q.events(tx, message_id)
            if msg is not None:
                await _with_calls(tx, [msg])
            return msg

        msg = await self.store.read(unit)
        if msg is None:
            raise NotFound(f"No message {message_id}")
        return msg

    async def messages(self, account_id: str, **filters: Any) -> list[dict[str, Any]]:
        async def unit(tx: Tx) -> list[dict[str, Any]]:
            return await _with_calls(tx, await q.list_messages(tx, account_id, **filters))

        return await self.store.read(unit)

    async def exchanges(self, account_id: str, message_id: int) -> dict[str, Any] | None:
        """What passed with the carrier and the callback URL for one message (None: not this account's)."""
        return await self.store.read(lambda tx: q.exchanges(tx, account_id, message_id))

    async def inbound(self, account_id: str, *, limit: int, before: int | None = None) -> list[dict[str, Any]]:
        """Messages subscribers sent to the account's numbers, newest first."""
        return await self.store.read(lambda tx: q.inbound_page(tx, account_id, limit=limit, before=before))

    async def inbound_search(
        self, account_id: str, *, offset: int, limit: int, **filters: Any,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Inbound messages matching ``from``, ``keyword``, ``carrier``, ``since``, ``until``, with their count."""
        return await self.store.read(lambda tx: q.inbound_search(
            tx, account_id, offset=offset, limit=limit, sender=filters.get("from"), keyword=filters.get("keyword"),
            network=filters.get("carrier"), since=filters.get("since"), until=filters.get("until"),
        ))


async def _with_calls(tx: Tx, msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Voice messages get their call (``msg["call"]``, as the API shows it) once it ended."""
    voice = [m["id"] for m in msgs if m.get("channel") == "voice"]
    if voice:
        found = await calls_q.calls_of(tx, voice)
        for m in msgs:
            row = found.get(m["id"])
            if row is not None:
                m["call"] = calls.call_view(row)
                m["sip_log"] = row["sip_log"]
    return msgs


async def _result_of(tx: Tx, req: dict[str, Any], *, duplicate: bool) -> SendResult:
    msgs = await q.messages_of_request(tx, req["id"])
    balance = await tx.fetchval("SELECT balance FROM accounts WHERE id = ?", req["account_id"])
    recipients = [
        Recipient(m["recipient"], m["recipient"], m["id"], m["state"], m["network"], m["parts"], m["cost"],
                  m["error_code"], m["error_reason"])
        for m in msgs
    ]
    first = next((m for m in msgs if m["parts"]), msgs[0] if msgs else None)
    return SendResult(
        # what the request costs now: a refunded message costs nothing
        req["id"], req["reference"], duplicate, req["created_at"], sum(m["cost"] for m in msgs), balance,
        first["encoding"] if first else encoding.GSM7, first["parts"] if first else 0, recipients,
    )
