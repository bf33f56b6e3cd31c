"""One-time codes: send a code, check it, and keep SMS pumping out.

A verification is one code sent to one number. The code itself is never
stored, logged or put in an event or callback: the store keeps its keyed hash,
the message's stored text shows it masked, and the text with the code goes to
the dispatcher sealed (services/sealing.py). Limits (core/otp.Limits) hold per
account: checks per code, codes per number, codes per number range, and a
burst to ranges the account never used before (what pumping fraud looks like).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ujumbe.core import numbers, otp
from ujumbe.core.errors import ChannelUnavailable, Invalid, NotFound, RateLimited
from ujumbe.services.accounts import Account
from ujumbe.services.messaging import Messaging, SendRequest, SendResult
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import verifications as q

log = logging.getLogger("ujumbe.verifications")

CHANNELS = ("sms", "voice")
DEFAULT_TEXT = "Your verification code is {otp}"
SETTINGS_TTL_S = 5.0  # as long as accounts and sender names are cached


@dataclass(slots=True)
class Started:
    verification: dict[str, Any]
    code: str  # for the dialects whose documents return it (Messangi, TingTing), once
    send: SendResult


@dataclass(slots=True)
class Checked:
    verification: dict[str, Any]
    result: str  # approved | wrong_code | expired | too_many_attempts | canceled | already_approved
    attempts_left: int


class _Refused(Exception):
    """The guard refused a code inside the send's transaction (undoing it)."""

    def __init__(self, refused: tuple[str, str]) -> None:
        super().__init__(refused[0])
        self.refused = refused


class Verifications:
    def __init__(self, store: Store, messaging: Messaging, secret: str) -> None:
        self.store = store
        self.messaging = messaging
        self._key = hmac.new(secret.encode(), b"ujumbe/otp-codes/v1", hashlib.sha256).digest()
        self._limits: dict[str, tuple[float, otp.Limits]] = {}  # account id: (when read, its limits)
        self._changes = 0

    async def limits(self, account_id: str) -> otp.Limits:
        raw = await self.store.read(lambda tx: q.settings(tx, account_id))
        return otp.Limits.merged(json.loads(raw) if raw else None)

    async def _cached_limits(self, account_id: str) -> otp.Limits:
        """For a new code: cached like accounts and sender names (SETTINGS_TTL_S),
        a read per code otherwise. A change made through this process is seen
        at once; one made through another, within the TTL."""
        hit = self._limits.get(account_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < SETTINGS_TTL_S:
            return hit[1]
        changes = self._changes
        limits = await self.limits(account_id)
        if changes == self._changes:  # not read before a change made meanwhile
            if len(self._limits) > 10_000:
                self._limits.clear()
            self._limits[account_id] = (now, limits)
        return limits

    async def set_limits(self, account_id: str, changes: dict[str, Any]) -> otp.Limits:
        current = (await self.limits(account_id)).as_dict()
        unknown = sorted(set(changes) - set(current))
        if unknown:
            raise Invalid(f"Unknown setting(s): {', '.join(unknown)}", code="invalid_settings")
        limits = otp.Limits.merged({**current, **changes})
        try:
            limits.validate()
        except otp.OtpError as exc:
            raise Invalid(str(exc), code=exc.code) from None
        await self.store.run(lambda tx: q.put_settings(tx, account_id, json.dumps(limits.as_dict()), now_ms()))
        self._changes += 1
        self._limits.pop(account_id, None)
        return limits

    async def start(
        self, account: Account, *, to: str, channel: str = "sms", length: int | None = None,
        code: str | None = None, text: str | None = None, template: str | None = None,
        params: dict[str, Any] | None = None, sender: str | None = None, expires_in: int | None = None,
        callback_url: str | None = None, dialect: str = "native", append_code: bool = False,
    ) -> Started:
        if channel not in CHANNELS:
            raise Invalid(f"'channel' is one of {', '.join(CHANNELS)}", code="invalid_channel")
        if channel not in self.messaging.channels:
            raise ChannelUnavailable(
                f"The {channel} channel is not configured on this server; send the code by sms",
                code="channel_not_configured",
            )
        try:
            number = numbers.normalize(str(to).strip(), account.region)
        except numbers.InvalidNumber as exc:
            raise Invalid(f"'{to}' is not a phone number: {exc.reason}", code="invalid_number") from None
        try:
            if code is not None:
                code = otp.check_supplied(str(code))
            else:
                code = otp.generate(otp.DEFAULT_LENGTH if length is None else length)
        except otp.OtpError as exc:
            raise Invalid(str(exc), code=exc.code) from None
        limits = await self._cached_limits(account.id)
        ttl = limits.ttl_s if expires_in is None else expires_in
        if not isinstance(ttl, int) or not 30 <= ttl <= 86_400:
            raise Invalid("'expires_in' is 30 to 86400 seconds", code="invalid_expiry")
        real, masked = await self._texts(account, code, channel, text, template, params, append_code)

        vid = "ver_" + secrets.token_hex(12)
        prefix = otp.prefix_of(number.e164, number.country_code, limits.prefix_digits)
        now = now_ms()
        row = {
            "id": vid, "account_id": account.id, "recipient": number.e164, "prefix": prefix, "channel": channel,
            "code_hash": otp.digest(self._key, vid, code), "length": len(code), "status": "pending",
            "attempts": 0, "max_attempts": limits.max_checks, "message_id": None, "dialect": dialect,
            "created_at": now, "expires_at": now + ttl * 1000, "updated_at": now,
        }

        async def guard(tx: Tx) -> tuple[str, str] | None:
            await q.lock_destination(tx, account.id, number.e164)
            sent = await q.prefix_sent(tx, account.id, prefix)
            counts = otp.Counts(
                to_destination=await q.count_to(tx, account.id, number.e164, now - limits.destination_window_s * 1000),
                to_prefix=await q.count_prefix(tx, account.id, prefix, now - 3_600_000, sent),
                prefix_known=sent is not None,
                new_prefixes=await q.new_prefixes_since(tx, account.id, now - 3_600_000),
            )
            refused = otp.refusal(limits, counts)
            if refused is not None:
                return refused
            await q.cancel_pending(tx, account.id, number.e164, now)  # a new code replaces the old one
            await q.insert(tx, {**row, "prefix_seq": await q.remember_prefix(tx, account.id, prefix, now)})
            return None

        async def stored(tx: Tx, recipients: list[Any]) -> None:
            # The guard in the send's own transaction: one commit per code. A
            # refusal undoes the send (the message was never stored).
            row["message_id"] = recipients[0].message_id if recipients else None
            refused = await guard(tx)
            if refused is not None:
                raise _Refused(refused)

        async def alone(tx: Tx) -> tuple[str, str] | None:
            # The guard before the send, as its own transaction (the send failed):
            # the same refusal, or the code's row, as if the guard had come first.
            if await q.get(tx, account.id, vid) is not None:
                return None  # already stored (the send failed after its commit)
            row["message_id"] = None
            refused = await guard(tx)
            if refused is not None:
                await q.add_refusal(tx, account.id, number.e164, prefix, refused[0], now)
            return refused

        def refuse(refused: tuple[str, str]) -> RateLimited:
            log.warning("code to %s refused for account %s: %s", number.e164, account.id, refused[0])
            return RateLimited(refused[1], code=refused[0], prefix=prefix)

        try:
            result = await self.messaging.send(account, SendRequest(
                recipients=[number.e164], text=real, masked_text=masked, conceal=True, sender=sender,
                callback_url=callback_url, channel=channel, dialect=dialect, validity_s=ttl,
                # a call says the code digit by digit, twice (channels/voice otp_code): its length, never it
                message_meta={"verification": vid, **({"otp_length": len(code)} if channel == "voice" else {})},
                stored=stored,
            ))
        except _Refused as exc:
            await self.store.run(lambda tx: q.add_refusal(tx, account.id, number.e164, prefix, exc.refused[0], now))
            raise refuse(exc.refused) from None
        except Exception:
            refused = await self.store.run(alone)
            if refused is not None:
                raise refuse(refused) from None
            await self.store.run(lambda tx: q.set_status(tx, vid, "failed", now_ms()))
            raise
        sent = result.recipients[0] if result.recipients else None
        message_id = sent.message_id if sent else None
        if sent is None or sent.error_code:
            await self.store.run(lambda tx: q.set_status(tx, vid, "failed", now_ms()))
            row["status"] = "failed"
        row["message_id"] = message_id
        return Started(public(row), code, result)

    async def _texts(
        self, account: Account, code: str, channel: str, text: str | None, template: str | None,
        params: dict[str, Any] | None, append_code: bool,
    ) -> tuple[str, str]:
        """The text with the code, and the same text masked (what is stored)."""
        mask = otp.MASK_CHAR * len(code)
        say = code  # a call says it digit by digit, twice: services/speech's code=, given by channels/voice
        if template:
            real, _ = await self.messaging.resolve_text(account, SendRequest(
                recipients=[], template_key=template, params={**(params or {}), "otp": say}, channel=channel))
            masked, _ = await self.messaging.resolve_text(account, SendRequest(
                recipients=[], template_key=template, params={**(params or {}), "otp": mask}, channel=channel))
            if real == masked:
                raise Invalid(f"The template '{template}' has no {{otp}} placeholder for the code",
                              code="missing_placeholder")
            return real, masked
        try:
            return (otp.render(text or DEFAULT_TEXT, say, append=append_code),
                    otp.render(text or DEFAULT_TEXT, mask, append=append_code))
        except otp.OtpError as exc:
            raise Invalid(str(exc), code=exc.code) from None

    async def check(self, account: Account, verification_id: str, code: str) -> Checked:
        row = await self._get(account.id, verification_id)
        now = now_ms()
        status = row["status"]
        if status == "approved":
            return Checked(public(row), "already_approved", 0)
        if status == "canceled":
            return Checked(public(row), "canceled", 0)
        if status == "pending" and now >= row["expires_at"]:
            await self.store.run(lambda tx: q.set_status(tx, verification_id, "expired", now))
            return Checked(public({**row, "status": "expired"}), "expired", 0)
        if status == "expired":
            return Checked(public(row), "expired", 0)
        counted = None if status != "pending" else await self.store.run(lambda tx: q.count_attempt(tx, verification_id, now))
        if counted is None:
            if status == "pending":
                await self.store.run(lambda tx: q.set_status(tx, verification_id, "failed", now))
            return Checked(public({**row, "status": "failed"}), "too_many_attempts", 0)
        attempts, most = counted[0], counted[1]
        if otp.matches(self._key, verification_id, str(code), row["code_hash"]):
            await self.store.run(lambda tx: q.set_status(tx, verification_id, "approved", now))
            return Checked(public({**row, "status": "approved", "attempts": attempts}), "approved", most - attempts)
        new_status = "pending"
        if attempts >= most:
            new_status = "failed"
            await self.store.run(lambda tx: q.set_status(tx, verification_id, "failed", now))
        return Checked(public({**row, "status": new_status, "attempts": attempts}), "wrong_code", most - attempts)

    async def _get(self, account_id: str, verification_id: str) -> dict[str, Any]:
        row = await self.store.read(lambda tx: q.get(tx, account_id, verification_id))
        if row is None:
            raise NotFound(f"No verification {verification_id}", code="verification_not_found")
        return dict(row)

    async def get(self, account: Account, verification_id: str) -> dict[str, Any]:
        row = await self._get(account.id, verification_id)
        if row["status"] == "pending" and now_ms() >= row["expires_at"]:
            row["status"] = "expired"
        return public(row)

    async def list(self, account: Account, *, limit: int, before: int | None, to: str | None) -> list[dict[str, Any]]:
        if to is not None:
            try:
                to = numbers.normalize(to, account.region).e164
            except numbers.InvalidNumber as exc:
                raise Invalid(f"'{to}' is not a phone number: {exc.reason}", code="invalid_number") from None
        now = now_ms()
        rows = await self.store.read(lambda tx: q.page(tx, account.id, limit=limit, before=before, to=to))
        out = []
        for r in rows:
            r = dict(r)
            if r["status"] == "pending" and now >= r["expires_at"]:
                r["status"] = "expired"
            out.append(public(r))
        return out

    async def refusals(self, account: Account, *, limit: int, before: int | None) -> list[dict[str, Any]]:
        rows = await self.store.read(lambda tx: q.refusals(tx, account.id, limit=limit, before=before))
        return [dict(r) for r in rows]


def public(row: dict[str, Any]) -> dict[str, Any]:
    """What any answer may show of a verification: never the hash, never the code."""
    return {k: row[k] for k in (
        "id", "recipient", "channel", "status", "attempts", "max_attempts", "length", "message_id", "dialect",
        "created_at", "expires_at",
    )}
