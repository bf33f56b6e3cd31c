"""The email connector: a Channel of kind "email" that submits to an SMTP relay (aiosmtplib).

A small pool of relay sessions is kept open and reused (connecting, TLS and
AUTH cost more than a message). Outcomes:

- 250 after DATA: ``submitted``; the Message-ID is the operator id.
- 5xx at MAIL, RCPT or DATA: failed permanently (``SendError(transient=False)``).
- 4xx, or the connection lost: transient, retried with the dispatcher's backoff.
- When the relay advertises DSN, the envelope asks for NOTIFY=SUCCESS,FAILURE:
  the success DSN (bounces.py) makes the message ``delivered``, a failure
  DSN ``undelivered``. A relay without DSN gives no later word: its
  acceptance is reported as ``delivered`` at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable

import aiosmtplib

from ujumbe.channels.base import Channel, Outbound, Receipt, SendError, Submitted
from ujumbe.channels.email.dkim import DomainKey, Signer
from ujumbe.channels.email.mime import build
from ujumbe.channels.smpp.ratelimit import TokenBucket
from ujumbe.core.states import State

log = logging.getLogger("ujumbe.email")

KeyLookup = Callable[[str], Awaitable[DomainKey | None]]


class Signers:
    """DKIM signers by sending domain, from a key lookup (services/emails.py)."""

    def __init__(self, keys: KeyLookup | None) -> None:
        self.keys = keys
        self._signers: dict[tuple[str, str], Signer] = {}

    async def sign(self, domain: str, data: bytes) -> bytes:
        if self.keys is None:
            return data
        key = await self.keys(domain)
        if key is None:
            return data  # a domain with no key (removed meanwhile): sent unsigned rather than lost
        signer = self._signers.get((key.domain, key.selector))
        if signer is None:
            signer = self._signers[(key.domain, key.selector)] = Signer(key)
        return signer.sign(data)


def classify(exc: Exception) -> SendError:
    """An aiosmtplib failure as a SendError: 5xx permanent, anything else transient."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0] if exc.recipients else None
        code, text = (first.code, first.message) if first else (451, str(exc))
        where = "RCPT"
    elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
        code, text, where = exc.code, exc.message, "MAIL"
    elif isinstance(exc, aiosmtplib.SMTPDataError):
        code, text, where = exc.code, exc.message, "DATA"
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        code, text, where = exc.code, exc.message, "SMTP"
    elif isinstance(exc, aiosmtplib.SMTPNotSupported):
        # e.g. a UTF-8 address and a relay without SMTPUTF8: trying again changes nothing
        return SendError(f"relay: {exc}"[:300], transient=False, code="smtp_not_supported")
    else:
        return SendError(f"relay connection: {type(exc).__name__}: {exc}"[:300], transient=True, code="smtp_connection")
    reason = f"{where} {code} {text}".strip()[:300]
    return SendError(reason, transient=not 500 <= code < 600, code=str(code))


class SmtpConnector(Channel):
    kind = "email"

    def __init__(
        self, host: str, port: int, *, name: str = "smtp", username: str | None = None,
        password: str | None = None, tls: bool = False, starttls: bool | None = False, verify: bool = True,
        tls_context: ssl.SSLContext | None = None, pool: int = 2, concurrency: int = 8, tps: float | None = None,
        keys: KeyLookup | None = None, bounce_domain: str | None = None, timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.name = name
        self.host, self.port = host, port
        self.username, self.password = username or None, password or None
        self.tls, self.starttls, self.verify, self.tls_context = tls, starttls, verify, tls_context
        self.pool_size = pool
        self.max_in_flight = concurrency
        self.bucket = TokenBucket(tps) if tps else None
        self.signers = Signers(keys)
        self.bounce_domain = bounce_domain
        self.timeout = timeout
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(pool)  # sessions open or opening, at most pool
        self._open: set[aiosmtplib.SMTP] = set()
        self.sent = 0

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, use_tls=self.tls, start_tls=self.starttls,
            validate_certs=self.verify, tls_context=self.tls_context, timeout=self.timeout,
        )
        await client.connect()
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()  # now, not lazily at the first send: DSN support is read from it
        if self.username:
            await client.login(self.username, self.password or "")
        self._open.add(client)
        return client

    async def _session(self) -> aiosmtplib.SMTP:
        await self._slots.acquire()
        try:
            while not self._idle.empty():
                client = self._idle.get_nowait()
                if client.is_connected:
                    return client
                self._open.discard(client)
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    def _give_back(self, client: aiosmtplib.SMTP, *, healthy: bool) -> None:
        if healthy and client.is_connected:
            self._idle.put_nowait(client)
        else:
            self._open.discard(client)
            client.close()
        self._slots.release()

    async def _send(self, msg: Outbound) -> Submitted:
        built = build(msg, bounce_domain=self.bounce_domain)
        data = await self.signers.sign(msg.sender.rpartition("@")[2], built.data)
        if self.bucket is not None:
            await self.bucket.take()
        try:
            client = await self._session()
        except Exception as exc:
            # connecting, TLS or AUTH failed: the connector's fault, not the message's, so retried
            # even on a 5xx (a wrong relay password must not fail every message for good)
            err = classify(exc)
            raise SendError(f"relay session: {err.reason}"[:300], transient=True, code=err.code) from exc
        healthy = True
        try:
            dsn = client.supports_extension("dsn")
            await client.sendmail(
                built.return_path, [msg.recipient], data,
                mail_options=["RET=HDRS", f"ENVID={built.message_id}"] if dsn else [],
                rcpt_options=["NOTIFY=SUCCESS,FAILURE"] if dsn else [],
            )
        except aiosmtplib.SMTPResponseException as exc:
            with_rset = await self._reset(client)
            healthy = with_rset
            raise classify(exc) from exc
        except Exception as exc:
            healthy = False
            raise classify(exc) from exc
        finally:
            self._give_back(client, healthy=healthy)
        self.sent += 1
        if not dsn and self.events is not None:
            # no DSN from this relay: its acceptance is as far as we will ever know
            receipt = Receipt(self.name, built.message_id, State.DELIVERED, int(time.time() * 1000),
                              raw="relay accepted (no DSN)")
            asyncio.get_running_loop().call_soon(asyncio.ensure_future, self.events.receipt(receipt))
        return Submitted([built.message_id])

    async def _reset(self, client: aiosmtplib.SMTP) -> bool:
        """After a refused message the session is reused if RSET works."""
        try:
            await client.rset()
            return True
        except Exception:
            return False

    async def stop(self) -> None:
        for client in list(self._open):
            try:
                await asyncio.wait_for(client.quit(), 2)
            except Exception:
                client.close()
        self._open.clear()


RELAY_NAME = "smtp-relay"  # the embedded default's relay (UJUMBE_SMTP_URL / --smtp)


def smtp_from_url(url: str, *, keys: KeyLookup | None = None, bounce_domain: str | None = None) -> SmtpConnector:
    """``smtp://user:pass@host:587`` (STARTTLS when the relay offers it) or
    ``smtps://...:465`` (implicit TLS); ``?verify=0`` skips certificate checks,
    ``?pool=N`` pooled sessions, ``?tps=N`` a rate limit."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("UJUMBE_SMTP_URL must look like smtp://user:pass@host:587 or smtps://host:465")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    implicit = parts.scheme == "smtps"
    return SmtpConnector(
        parts.hostname, parts.port or (465 if implicit else 587), name=RELAY_NAME,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=implicit, starttls=None if not implicit else False,  # type: ignore[arg-type]  (None: when offered)
        verify=query.get("verify", "1") not in ("0", "false", "no"), pool=int(query.get("pool", 2)),
        concurrency=int(query.get("concurrency", 8)), tps=float(query["tps"]) if "tps" in query else None,
        keys=keys, bounce_domain=bounce_domain,
    )
