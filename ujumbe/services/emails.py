"""Sending domains and their DKIM keys; what an SMTP connector is made of.

An account may send email only From an address at one of its sending
domains. The operator adds a domain (``ujumbe domains add``, or the admin
API), which generates its DKIM key; the private key is sealed at rest like
other secrets and read back by the dispatcher to sign.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from ujumbe.channels.email.dkim import DomainKey, dns_record, generate_key
from ujumbe.core import emails
from ujumbe.core.errors import Conflict, Invalid, NotFound
from ujumbe.services.sealing import Box
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import emails as q
from ujumbe.store.accounts import account_exists

SMTP_OPTIONS = {"starttls": bool, "verify": bool, "bounce_domain": str}


def public_domain(row: dict[str, Any]) -> dict[str, Any]:
    name, value = dns_record(row["domain"], row["selector"], row["public_key"])
    return {"domain": row["domain"], "account_id": row["account_id"], "selector": row["selector"],
            "dns_name": name, "dns_txt": value, "created_at": row["created_at"]}


class SendingDomains:
    def __init__(self, store: Store, box: Box) -> None:
        self.store = store
        self.box = box
        self._keys: dict[str, tuple[float, DomainKey | None]] = {}

    async def add(self, account_id: str, domain: str, *, selector: str | None = None) -> dict[str, Any]:
        try:
            name = emails.normalize_domain(domain)
        except emails.InvalidAddress as exc:
            raise Invalid(exc.reason, code="invalid_domain") from None
        selector = selector or f"uj{dt.datetime.now(dt.timezone.utc):%Y%m}"
        if not selector.replace("-", "").isalnum() or len(selector) > 63:
            raise Invalid("A selector is letters, digits and '-'", code="invalid_domain")
        pem, public = generate_key()
        row = {"domain": name, "account_id": account_id, "selector": selector,
               "private_key_enc": self.box.seal(pem), "public_key": public, "created_at": now_ms()}

        async def unit(tx: Tx) -> None:
            if not await account_exists(tx, account_id):
                raise NotFound(f"No account {account_id}", code="account_not_found")
            if await q.get_domain(tx, name) is not None:
                raise Conflict(f"The domain {name} is already a sending domain", code="domain_exists")
            await q.insert_domain(tx, row)

        await self.store.run(unit)
        return public_domain(row)

    async def list(self, account_id: str) -> list[dict[str, Any]]:
        return [public_domain(r) for r in await self.store.read(lambda tx: q.domains_of(tx, account_id))]

    async def get(self, domain: str) -> dict[str, Any]:
        row = await self.store.read(lambda tx: q.get_domain(tx, domain.strip().lower()))
        if row is None:
            raise NotFound(f"No sending domain {domain}", code="domain_not_found")
        return public_domain(row)

    async def remove(self, domain: str) -> None:
        if not await self.store.run(lambda tx: q.delete_domain(tx, domain.strip().lower())):
            raise NotFound(f"No sending domain {domain}", code="domain_not_found")
        self._keys.pop(domain.strip().lower(), None)

    async def sender_for(self, account_id: str, sender: str | None) -> str:
        """The From address of an email: the one given, if at one of the account's
        domains, else ``no-reply@`` its first domain."""
        rows = await self.store.read(lambda tx: q.domains_of(tx, account_id))
        if not sender:
            if not rows:
                raise Invalid("The account has no sending domain to send email from (ujumbe domains add)",
                              code="no_sending_domain")
            return f"no-reply@{rows[0]['domain']}"
        try:
            addr = emails.normalize(sender)
        except emails.InvalidAddress as exc:
            raise Invalid(f"The sender is not an email address: {exc.reason}", code="invalid_sender") from None
        if addr.domain not in {r["domain"] for r in rows}:
            raise Invalid(f"{addr.domain} is not one of this account's sending domains", code="sender_not_verified")
        return addr.address

    async def key(self, domain: str) -> DomainKey | None:
        """The DKIM key of a sending domain, for the dispatcher (kept a minute)."""
        hit = self._keys.get(domain)
        if hit is not None and time.monotonic() - hit[0] < 60:
            return hit[1]
        row = await self.store.read(lambda tx: q.get_domain(tx, domain))
        key = None if row is None else DomainKey(row["domain"], row["selector"], self.box.open(row["private_key_enc"]))
        self._keys[domain] = (time.monotonic(), key)
        return key


def check_address(c: dict[str, Any]) -> None:
    """A relay's or a trunk's host, port and optional username (``system_id``)."""
    if not isinstance(c.get("host"), str) or not c["host"].strip() or len(c["host"]) > 255:
        raise Invalid("'host' is required", code="invalid_connector")
    if not isinstance(c.get("port"), int) or not 1 <= c["port"] <= 65535:
        raise Invalid("'port' must be 1-65535", code="invalid_connector")
    if len(c.get("system_id") or "") > 255:
        raise Invalid("'username' is at most 255 characters", code="invalid_connector")


def check_smtp_connector(c: dict[str, Any]) -> None:
    """An SMTP connector: host, port, optional username (``system_id``), ``tls``
    (implicit TLS), ``binds`` (pooled connections), ``window_size`` (sends at once),
    ``tps``; ``options`` starttls / verify / bounce_domain."""
    check_address(c)
    if not isinstance(c.get("binds"), int) or not 1 <= c["binds"] <= 64:
        raise Invalid("'binds' (pooled connections) must be 1-64", code="invalid_connector")
    if not isinstance(c.get("window_size"), int) or not 1 <= c["window_size"] <= 4096:
        raise Invalid("'window' must be 1-4096", code="invalid_connector")
    tps = c.get("tps")
    if tps is not None and (not isinstance(tps, (int, float)) or not 0 < tps <= 100_000):
        raise Invalid("'tps' must be a positive number (or null for no limit)", code="invalid_connector")
    options = c.get("options") or {}
    if not isinstance(options, dict):
        raise Invalid("'options' must be an object", code="invalid_connector")
    for k, v in options.items():
        kind = SMTP_OPTIONS.get(k)
        if kind is None or not isinstance(v, kind):
            raise Invalid(f"SMTP options are {', '.join(SMTP_OPTIONS)} (starttls/verify true|false)",
                          code="invalid_connector")
    if options.get("starttls") and c.get("tls"):
        raise Invalid("Choose implicit TLS ('tls') or STARTTLS, not both", code="invalid_connector")
