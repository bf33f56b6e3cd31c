"""Where callbacks may go: hostile URLs refused at accept in each dialect's
own error shape, unresolvable hosts accepted and retried, DNS rebinding
defeated at send time, passwords in callback URLs sealed at rest."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Receiver, auth, client_of, eventually, make_account, running
from tests.test_tingg import engagement, tingg_account
from tests.test_webhook_client import OK, RawServer
from ujumbe.runtime import Platform
from ujumbe.workers.webhook_client import HttpError, WebhookClient

# (URL, why it must be refused)
HOSTILE = [
    ("http://127.0.0.1:9/x", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "IPv6 unspecified"),
    ("http://[::1]/x", "IPv6 loopback"),
    ("http://[::127.0.0.1]/", "IPv4-compatible loopback"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped loopback"),
    ("http://[::ffff:10.0.0.5]/", "IPv4-mapped private"),
    ("http://[64:ff9b::7f00:1]/", "NAT64 of 127.0.0.1"),
    ("http://[64:ff9b::a00:5]/", "NAT64 of 10.0.0.5"),
    ("http://[2002:7f00:1::1]/", "6to4 of 127.0.0.1"),
    ("http://[2002:c0a8:101::1]/", "6to4 of 192.168.1.1"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
    ("http://[fe80::1]/", "IPv6 link-local"),
    ("http://[fc00::1]/", "IPv6 unique local"),
    ("http://2130706433/", "decimal 127.0.0.1"),
    ("http://0x7f.1/", "hex 127.0.0.1"),
    ("http://0177.0.0.1/", "octal 127.0.0.1"),
    ("http://10.0.0.5/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://localhost:8080/", "a name for loopback"),
    ("http://[::1", "unclosed IPv6 bracket"),
    ("http://a:99999/", "port out of range"),
    ("http://a:port/", "port not a number"),
    ("ftp://example.com/x", "not http"),
    ("not a url", "not a URL"),
    ("http://a b/", "a space in the host"),
    ("http://a\x00b/", "a NUL in the host"),
    ("http://" + "a" * 300 + "/", "a host name too long"),
]


@pytest.fixture
async def strict(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    async with running(tmp_path, database_url, allow_private_callbacks=False, callback_delay_scale=0.001) as p:
        yield p


def _keeps_alive(r: httpx.Response) -> bool:
    return r.headers.get("connection", "").lower() != "close"


async def test_hostile_callback_urls_are_refused_at_accept_in_each_dialects_shape(strict: Platform) -> None:
    account = await make_account(strict)
    async with client_of(strict) as api:
        _, tingg = await tingg_account(strict, api)
        for n, (url, why) in enumerate(HOSTILE):
            r = await api.post("/v1/messages", headers=auth(account), json={"to": "0708400000", "text": "x", "callback_url": url})
            assert r.status_code == 400, (url, why, r.text)
            # (a NUL is refused before the URL is even read: no text may carry one)
            assert r.json()["error"]["code"] in ("private_callback_url", "invalid_callback_url", "invalid_character"), (url, r.text)
            assert _keeps_alive(r), url

            r = await api.put("/v1/account/callbacks", headers=auth(account), json={"dlr_url": url})
            assert r.status_code == 400, (url, why, r.text)
            # (a NUL is refused before the URL is even read: no text may carry one)
            assert r.json()["error"]["code"] in ("private_callback_url", "invalid_callback_url", "invalid_character"), (url, r.text)
            assert _keeps_alive(r), url

            r = await api.post("/api/v2/engagement", headers=tingg, json=engagement(url, referenceID=f"hostile-{n}"))
            assert r.status_code == 400, (url, why, r.text)
            body = r.json()
            assert set(body) == {"transactionID", "statusCode", "message"}, (url, body)  # Tingg's shape, not native's
            assert body["statusCode"] == 400 and body["transactionID"] is None, (url, body)
            assert _keeps_alive(r), url
        # nothing was sent, and the refused URLs were not stored
        assert (await api.get("/v1/messages", headers=auth(account))).json()["data"] == []
        assert (await api.get("/v1/account/callbacks", headers=auth(account))).json()["dlr_url"] is None
        # public forms of the same notations are fine
        for url in ("http://8.8.8.8/x", "http://[64:ff9b::808:808]/", "http://[2606:4700:4700::1111]/"):
            r = await api.put("/v1/account/callbacks", headers=auth(account), json={"dlr_url": url})
            assert r.status_code == 200, (url, r.text)


async def test_a_callback_host_that_does_not_resolve_is_accepted_and_retried_visibly(strict: Platform) -> None:
    account = await make_account(strict)
    async with client_of(strict) as api:
        # the README's examples: example.com does not resolve offline, .example never does
        r = await api.put("/v1/account/callbacks", headers=auth(account), json={"dlr_url": "https://example.com/dlr"})
        assert r.status_code == 200, r.text
        r = await api.post(
            "/v1/messages", headers=auth(account),
            json={"to": "0708400000", "text": "hi", "callback_url": "https://client.example/dlr"},
        )
        assert r.status_code == 202, r.text
        tingg_user, tingg = await tingg_account(strict, api)
        r = await api.post("/api/v2/engagement", headers=tingg, json=engagement("https://client.example/tingg"))
        assert r.status_code == 200, r.text

        async def retried() -> list[dict[str, Any]]:
            data = []
            for who in (account, tingg_user):
                data += (await api.get("/v1/callbacks", headers=auth(who))).json()["data"]
            tried = [c for c in data if c["attempts"] >= 2]
            return data if {"client.example/dlr", "client.example/tingg"} <= {c["url"][8:] for c in tried} else []

        calls = await eventually(retried, timeout=30)
        assert all(c["status"] == "pending" and c["url"].startswith("https://client.example/") for c in calls)
        tried = [c for c in calls if c["attempts"]]
        # the resolver said no (or, with no DNS server reachable, took too long)
        assert all("gaierror" in c["last_error"] or "TimeoutError" in c["last_error"] for c in tried), tried


class _Rebinding:
    """getaddrinfo for one name, patched at the socket level: answers
    ``first`` the first ``times`` times, then ``then``; other names resolve
    as usual."""

    def __init__(self, name: str, first: str, then: str, times: int = 1) -> None:
        self.name, self.first, self.then, self.times = name, first, then, times
        self.calls = 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host != self.name:
            return self.real(host, port, *args, **kw)
        self.calls += 1
        address = self.first if self.calls <= self.times else self.then
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))]


async def test_the_sender_connects_only_to_the_address_it_checked() -> None:
    # "Public" here is 127.0.0.2 and "internal" 127.0.0.1, both on one port:
    # the name's first answer passes the check, the second must not be
    # connected to even though the first was fine (DNS rebinding).
    public = RawServer(lambda request: OK)
    internal = RawServer(lambda request: OK)
    for _ in range(20):
        outer = await asyncio.start_server(public.handle, "127.0.0.2", 0)
        port = outer.sockets[0].getsockname()[1]
        try:
            inner = await asyncio.start_server(internal.handle, "127.0.0.1", port)
            break
        except OSError:
            outer.close()
    answers = iter(["127.0.0.2", "127.0.0.1", "127.0.0.1"])

    async def resolver(host: str, port: int) -> list[str]:
        assert host == "rebind.test"
        return [next(answers)]

    client = WebhookClient(allow_address=lambda a: a != ipaddress.ip_address("127.0.0.1"), resolver=resolver)
    try:
        assert (await client.post(f"http://rebind.test:{port}/hook", b"{}", {}))[0] == 200
        await client.close()  # the next send needs a new connection, so a new answer
        with pytest.raises(HttpError, match="private or loopback address \\(127.0.0.1\\)"):
            await client.post(f"http://rebind.test:{port}/hook", b"{}", {})
        with pytest.raises(HttpError, match="private or loopback"):
            await client.post(f"http://rebind.test:{port}/hook", b"{}", {})
        assert public.connections == 1 and len(public.requests) == 1
        assert internal.connections == 0  # never reached
        assert b"Host: rebind.test:" in public.requests[0]  # the name, though the connection went to the address
    finally:
        await client.close()
        outer.close()
        inner.close()


async def test_a_name_that_rebinds_to_loopback_after_accept_gets_no_callback(
    strict: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = int(receiver.url.rsplit(":", 1)[1])
    fake = _Rebinding("rebind.test", "93.184.215.14", "127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    account = await make_account(strict)
    async with client_of(strict) as api:
        r = await api.post(
            "/v1/messages", headers=auth(account),
            json={"to": "0708400000", "text": "hi", "callback_url": f"http://rebind.test:{port}/hook"},
        )
        assert r.status_code == 202, r.text  # it resolved to a public address when accepted

        async def refused() -> list[dict[str, Any]]:
            data = (await api.get("/v1/callbacks", headers=auth(account))).json()["data"]
            return data if len(data) == 2 and any(c["attempts"] >= 3 for c in data) else []

        calls = await eventually(refused, timeout=30)
        tried = [c for c in calls if c["attempts"]]
        assert tried and all("127.0.0.1" in c["last_error"] and "private or loopback" in c["last_error"] for c in tried)
        assert receiver.requests == []


async def test_passwords_in_callback_urls_are_sealed_at_rest_masked_in_answers_and_unlogged(
    platform: Platform, receiver: Receiver, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    account = await make_account(platform)
    secret = "s3cret-Pass-9271"
    hook = receiver.url.replace("http://", f"http://alice:{secret}@") + "/cb"
    async with client_of(platform) as api:
        r = await api.put("/v1/account/callbacks", headers=auth(account), json={
            "dlr_url": f"https://bob:{secret}@client.example/dlr", "inbound_url": f"https://bob:{secret}@client.example/mo",
        })
        assert r.status_code == 200, r.text
        assert r.json()["dlr_url"] == "https://bob:***@client.example/dlr"
        me = await api.get("/v1/account", headers=auth(account))
        assert secret not in me.text and "bob:***@" in me.text
        # what GET showed, PUT back as it is, keeps the password rather than storing "***"
        shown = (await api.get("/v1/account/callbacks", headers=auth(account))).json()
        assert (await api.put("/v1/account/callbacks", headers=auth(account), json=shown)).status_code == 200
        stored = await platform.store.read(
            lambda tx: tx.fetchval("SELECT dlr_url FROM accounts WHERE id = ?", account["account_id"])
        )
        assert platform.accounts.callback_urls.open(stored) == f"https://bob:{secret}@client.example/dlr"
        r = await api.post("/v1/messages", headers=auth(account), json={"to": "0708400000", "text": "hi", "callback_url": hook})
        assert r.status_code == 202, r.text
        # the receiver is called with the password (as Basic auth), so it was kept, sealed
        calls = await receiver.wait_for(2)
        expected = "Basic " + base64.b64encode(f"alice:{secret}".encode()).decode()
        assert all(c.headers["authorization"] == expected for c in calls)
        listed = (await api.get("/v1/callbacks", headers=auth(account))).text
        assert secret not in listed and "alice:***@" in listed

    # nowhere in the database: every row of every table that holds a URL
    dump = []
    for table in ("accounts", "requests", "messages", "callbacks"):
        rows = await platform.store.read(lambda tx, t=table: tx.fetch(f"SELECT * FROM {t}"))
        dump += [repr(tuple(row)) for row in rows]
    assert dump and secret not in "\n".join(dump)
    assert "ujumbe-sealed." in "\n".join(dump)
    if platform.store.dialect == "sqlite":
        for path in Path(platform.store.path).parent.glob("*"):  # type: ignore[attr-defined]
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert secret not in caplog.text


async def test_a_resolver_that_hangs_does_not_hold_the_send(strict: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    real = socket.getaddrinfo
    release, answered = threading.Event(), threading.Event()

    def hanging(host: Any, *args: Any, **kw: Any) -> Any:
        if host == "slow.example":
            release.wait(60)  # a resolver with no DNS server to reach: it answers when the test is done
            answered.set()
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    # the check gives up after callback_resolve_timeout_s (3 s by default)
    monkeypatch.setattr(strict.settings, "callback_resolve_timeout_s", 0.3)
    account = await make_account(strict)
    try:
        async with client_of(strict) as api:
            r = await api.post(
                "/v1/messages", headers=auth(account),
                json={"to": "0708400000", "text": "hi", "callback_url": "https://slow.example/dlr"},
            )
            assert r.status_code == 202, r.text
            assert not answered.is_set()  # accepted while the resolver still hangs
    finally:
        release.set()


def _certificate(name: str, directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for DNS name ``name`` (no IP address in it)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ))
    return cert_path, key_path


async def test_tls_to_the_checked_address_still_names_and_verifies_the_host(tmp_path: Path) -> None:
    import ssl

    cert, key = _certificate("hook.test", tmp_path)
    seen_sni: list[str | None] = []
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server_tls.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment,misc,return-value]
    raw = RawServer(lambda request: OK)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    trusting = ssl.create_default_context(cafile=str(cert))  # trusts this certificate only
    client = WebhookClient(resolver=resolver, tls=trusting)
    try:
        # connected to 127.0.0.1, yet verified as hook.test: the certificate names no IP address
        assert (await client.post(f"https://hook.test:{port}/cb", b"{}", {}))[0] == 200
        assert seen_sni == ["hook.test"]
        assert b"Host: hook.test:" in raw.requests[0]
        # a name the certificate is not for fails verification, whatever address it resolved to
        with pytest.raises(ssl.SSLCertVerificationError):
            await client.post(f"https://other.test:{port}/cb", b"{}", {})
    finally:
        await client.close()
        server.close()
