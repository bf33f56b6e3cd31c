"""The bounce listener: an SMTP server (aiosmtpd) receiving delivery status
notifications (RFC 3464) at VERP return paths and turning them into receipts.

Mail is accepted only for ``bounce+<local>=<domain>@…`` addresses (the
Message-ID of one of our emails); anything else is refused at RCPT so the
listener is no open sink. Each DSN recipient block becomes a receipt for that
message: ``Action: failed`` -> undelivered with the status code and
diagnostic, ``delivered`` / ``relayed`` / ``expanded`` -> delivered,
``delayed`` -> nothing (the final DSN follows). A bounce that is not a DSN
(a plain "undeliverable" mail to the VERP address) counts as a failure.
"""

from __future__ import annotations

import asyncio
import email
import logging
import time
from email.message import Message
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.smtp import SMTP as SmtpServer
from aiosmtpd.smtp import Envelope, Session

from ujumbe.channels.base import ChannelEvents, Receipt
from ujumbe.channels.email.mime import from_verp
from ujumbe.core.states import State
from ujumbe.store import Store
from ujumbe.store import emails as q

log = logging.getLogger("ujumbe.bounces")

# RFC 3463 status codes -> the reason word receipts carry
REASONS = {
    "5.1.1": "user_unknown", "5.1.2": "bad_domain", "5.1.10": "user_unknown", "5.2.1": "mailbox_disabled",
    "5.2.2": "mailbox_full", "4.2.2": "mailbox_full", "5.2.3": "message_too_big", "5.7.1": "rejected_by_policy",
    "5.4.4": "bad_domain", "4.4.7": "expired",
}


def parse_dsn(raw: bytes) -> list[tuple[str, str, str, str]]:
    """(action, status, diagnostic, original envelope id) per recipient block of a DSN."""
    msg = email.message_from_bytes(raw, policy=default_policy)
    report: Message | None = None
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            report = part
            break
    if report is None:
        return []
    blocks = report.get_payload()
    if not isinstance(blocks, list) or not blocks:
        return []
    envid = str(blocks[0].get("Original-Envelope-Id", "") or "").strip()
    out = []
    for block in blocks[1:]:
        action = str(block.get("Action", "") or "").strip().lower()
        status = str(block.get("Status", "") or "").strip().split(" ")[0]
        diagnostic = " ".join(str(block.get("Diagnostic-Code", "") or "").split())
        if action:
            out.append((action, status, diagnostic, envid))
    return out


class _Handler:
    def __init__(self, listener: BounceListener) -> None:
        self.listener = listener

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if from_verp(address) is None:
            return "550 5.1.1 not a bounce address here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        for rcpt in envelope.rcpt_tos:
            message_id = from_verp(rcpt)
            if message_id is not None:
                await self.listener.bounce(message_id, raw)
        return "250 OK bounce received"


class BounceListener:
    def __init__(self, store: Store, events: ChannelEvents, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = store
        self.events = events
        self.host, self.port = host, port
        self._server: asyncio.base_events.Server | None = None
        self.received = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(
            lambda: SmtpServer(handler, hostname="ujumbe-bounces", data_size_limit=10 * 1024 * 1024),
            self.host, self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("bounce listener on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def bounce(self, message_id: str, raw: bytes) -> None:
        self.received += 1
        connector = await self.store.read(lambda tx: q.connector_of(tx, message_id))
        if connector is None:
            log.info("bounce for unknown message %s ignored", message_id)
            return
        now = int(time.time() * 1000)
        blocks = parse_dsn(raw) or [("failed", "5.0.0", "non-DSN bounce", "")]
        for action, status, diagnostic, _envid in blocks:
            if action == "failed":
                reason = REASONS.get(status, "bounced")
                receipt = Receipt(connector, message_id, State.UNDELIVERED, now, status or "5.0.0", reason,
                                  f"dsn action=failed status={status} {diagnostic}"[:300])
            elif action in ("delivered", "relayed", "expanded"):
                receipt = Receipt(connector, message_id, State.DELIVERED, now, "", "",
                                  f"dsn action={action} status={status}")
            else:
                continue  # delayed: the final DSN follows
            await self.events.receipt(receipt)
