"""Building one outbound email: MIME for any script, Message-ID, VERP, one-click unsubscribe.

The standard library's ``email`` package with the SMTP policy writes CRLF
lines, RFC 2047 encoded-words for non-ASCII headers (a Devanagari or Swahili
subject) and picks quoted-printable or base64 for UTF-8 bodies, so every
line stays within SMTP's limits whatever the script.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from urllib.parse import quote

from ujumbe.channels.base import Outbound


@dataclass(frozen=True, slots=True)
class Built:
    message_id: str  # without angle brackets: the operator id receipts match on
    return_path: str  # the VERP envelope sender bounces come back to
    data: bytes


def new_message_id(message_id: str, domain: str) -> str:
    # our message id for people reading headers, random so it cannot be guessed or repeat across retries
    return f"{message_id}.{os.urandom(8).hex()}@{domain}"


def verp(message_id_header: str, bounce_domain: str) -> str:
    """``bounce+<local>=<domain>@<bounce domain>``: the bounce names the message."""
    local, _, domain = message_id_header.partition("@")
    return f"bounce+{local}={domain}@{bounce_domain}"


def from_verp(address: str) -> str | None:
    """The Message-ID a VERP address stands for, or None if it is not one of ours."""
    local, _, _ = address.strip().strip("<>").rpartition("@")
    if not local.lower().startswith("bounce+"):
        return None
    token = local[len("bounce+"):]
    head, sep, domain = token.rpartition("=")
    if not sep or not head or not domain:
        return None
    return f"{head}@{domain}"


def _cte(text: str) -> str:
    """7-bit transfer encodings only, so a relay without 8BITMIME takes it:
    quoted-printable stays readable for mostly-Latin text, base64 is smaller
    for Devanagari and other scripts of multi-byte characters."""
    wide = sum(1 for c in text if ord(c) > 127)
    return "base64" if wide * 4 > len(text) else "quoted-printable"


def build(msg: Outbound, *, bounce_domain: str | None = None, now: float | None = None) -> Built:
    """The message for ``msg`` (sender, recipient, body; subject, html and
    unsubscribe URL in ``msg.meta``), ready to sign and send."""
    domain = msg.sender.rpartition("@")[2]
    mid = msg.meta.get("email_message_id") or new_message_id(msg.message_id, domain)
    em = EmailMessage(policy=SMTP)
    em["From"] = msg.sender
    em["To"] = msg.recipient
    em["Subject"] = msg.meta.get("subject") or ""
    em["Date"] = formatdate(now if now is not None else time.time(), usegmt=True)
    em["Message-ID"] = f"<{mid}>"
    if msg.meta.get("reply_to"):
        em["Reply-To"] = msg.meta["reply_to"]
    unsubscribe = msg.meta.get("unsubscribe_url")
    if unsubscribe:
        # RFC 8058 one-click: an https URI the mailbox provider POSTs to, and the Post header
        url = unsubscribe.replace("${to}", quote(msg.recipient, safe="@"))
        em["List-Unsubscribe"] = f"<{url}>"
        em["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    em.set_content(msg.body, charset="utf-8", cte=_cte(msg.body))
    if msg.meta.get("html"):
        em.add_alternative(msg.meta["html"], subtype="html", charset="utf-8", cte=_cte(msg.meta["html"]))
    return Built(mid, verp(mid, bounce_domain or domain), em.as_bytes(policy=SMTP))
