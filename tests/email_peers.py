"""Test peers for email: aiosmtpd as the relay (plain, STARTTLS, AUTH, DSN),
a self-signed certificate made with ``cryptography``, and DSNs sent back to
Ujumbe's bounce listener with aiosmtplib."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

DSN_PARAMS = {"RET", "ENVID", "NOTIFY", "ORCPT"}


def self_signed(tmp: Path) -> ssl.SSLContext:
    """A server context with a new self-signed certificate for localhost / 127.0.0.1."""
    import ipaddress

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "relay.crt", tmp / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


class DsnSMTP(SMTP):
    """aiosmtpd with the DSN extension (RFC 3461) advertised and its parameters
    accepted and kept in the envelope; aiosmtpd itself does not implement DSN."""

    def _getparams(self, params: Any) -> Any:
        result = super()._getparams(params)
        if result is not None:
            for k in DSN_PARAMS:
                result.pop(k, None)
        return result


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    rcpt_options: list[str]
    authenticated: bool
    tls: bool


@dataclass
class Relay:
    """The relay's behaviour by recipient local part: reject -> 550 at RCPT,
    defer -> 451 the first time, toobig -> 552 at DATA; anything else accepted."""

    dsn: bool = False
    messages: list[Received] = field(default_factory=list)
    deferred: dict[str, int] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)
    ehlos: int = 0  # one per plain session (two with STARTTLS)
    port: int = 0
    _server: Any = None

    async def handle_EHLO(self, server: Any, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        self.ehlos += 1
        if self.dsn:
            responses.insert(-1, "250-DSN")
        return responses

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        local = address.partition("@")[0].lower()
        if local == "reject":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local == "defer":
            seen = self.deferred.get(address, 0)
            self.deferred[address] = seen + 1
            if seen < 1:
                return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if any(r.partition("@")[0].lower() == "toobig" for r in envelope.rcpt_tos):
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        self.messages.append(Received(
            envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b"",
            list(envelope.mail_options), list(envelope.rcpt_options), bool(session.authenticated),
            session.ssl is not None,
        ))
        return "250 2.0.0 Ok: queued"

    async def start(self, *, tls: ssl.SSLContext | None = None, users: dict[str, str] | None = None) -> int:
        def authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and users is not None and \
                users.get(auth_data.login.decode()) == auth_data.password.decode()
            if ok:
                self.logins.append(auth_data.login.decode())
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

        kw: dict[str, Any] = {"hostname": "relay.test"}
        if tls is not None:
            kw.update(tls_context=tls, require_starttls=True)
        if users is not None:
            kw.update(authenticator=authenticator, auth_required=True, auth_require_tls=tls is not None)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: DsnSMTP(self, **kw), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def wait(self, count: int, timeout: float = 15) -> list[Received]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the relay got {len(self.messages)} messages, expected {count}")
            await asyncio.sleep(0.02)
        return self.messages

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def dsn(return_path: str, recipient: str, *, action: str, status: str, diagnostic: str = "", envid: str = "") -> bytes:
    """An RFC 3464 delivery status notification, as a receiving MTA writes it."""
    boundary = "dsn-boundary-1"
    lines = [
        "From: MAILER-DAEMON@mx.example.org",
        f"To: {return_path}",
        "Subject: Delivery Status Notification",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"Delivery to {recipient}: {action}.",
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mx.example.org",
        *([f"Original-Envelope-Id: {envid}"] if envid else []),
        "",
        f"Final-Recipient: rfc822; {recipient}",
        f"Action: {action}",
        f"Status: {status}",
        *([f"Diagnostic-Code: smtp; {diagnostic}"] if diagnostic else []),
        "",
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode()


async def send_dsn(port: int, return_path: str, data: bytes) -> None:
    # a DSN's envelope sender is empty (RFC 3464): it must never bounce itself
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as client:
        await client.sendmail("", [return_path], data)
