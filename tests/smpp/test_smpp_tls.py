"""SMPP over TLS: the connector binds to a TLS server and refuses one it cannot trust."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.smpp.smpp_helpers import Events, outbound
from ujumbe.channels.smpp import SmppConnector, SmppServer


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class Acct:
    id = "acct-tls"
    max_binds = 2
    tps = None


async def test_connector_binds_and_submits_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    submits: list[Any] = []

    async def auth(system_id: str, password: str, *_: Any) -> Acct | None:
        return Acct() if (system_id, password) == ("op", "pw") else None

    async def on_submit(session: Any, account: Any, pdu: Any) -> str:
        submits.append(pdu)
        return f"tls{len(submits)}"

    server = SmppServer("127.0.0.1", 0, authenticate=auth, on_submit=on_submit, tls=server_ctx)
    await server.start()
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        connector = SmppConnector("localhost", server.port, "op", "pw", tls=trusted, rebind_max_s=1)
        await connector.start(Events())
        try:
            await connector.wait_up(timeout=5)
            result = await connector.send(outbound("over tls"))
            assert result.operator_ids == ["tls1"]
            assert submits[0].get("short_message") == b"over tls"
        finally:
            await connector.stop()

        untrusting = SmppConnector("localhost", server.port, "op", "pw", tls=ssl.create_default_context(), connect_timeout=2)
        await untrusting.start(Events())
        try:
            assert untrusting.binds_up == 0  # an unknown certificate is never bound to
        finally:
            await untrusting.stop()
    finally:
        await server.stop()
    assert len(submits) == 1
